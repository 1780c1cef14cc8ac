import base64
import pickle

from hypothesis import given
from hypothesis import strategies as st

from mailbeacon.tracking.tokens import Signer, Target, new_message_id

SECRET = "s" * 40
OTHER = "o" * 40


def test_it_round_trips_a_pixel_token() -> None:
    signer = Signer([SECRET])
    mid = new_message_id()
    assert signer.verify("o", signer.sign("o", mid)) == Target(mid, None)


def test_it_round_trips_a_click_token_with_its_link() -> None:
    signer = Signer([SECRET])
    mid = new_message_id()
    assert signer.verify("c", signer.sign("c", mid, 7)) == Target(mid, 7)


def test_tokens_are_compact_and_url_safe() -> None:
    signer = Signer([SECRET])
    token = signer.sign("c", new_message_id(), 65535)
    assert len(token) <= 42
    assert all(ch.isalnum() or ch in "-_" for ch in token)


def test_it_refuses_a_token_signed_with_another_secret() -> None:
    mid = new_message_id()
    assert Signer([SECRET]).verify("o", Signer([OTHER]).sign("o", mid)) is None


def test_it_refuses_a_pixel_token_used_as_a_click_token_and_back() -> None:
    signer = Signer([SECRET])
    mid = new_message_id()
    pixel = signer.sign("o", mid)
    click = signer.sign("c", mid, 0)
    assert signer.verify("c", pixel) is None
    assert signer.verify("o", click) is None


def test_it_refuses_a_token_whose_link_was_changed() -> None:
    signer = Signer([SECRET])
    raw = bytearray(base64.urlsafe_b64decode(signer.sign("c", new_message_id(), 1) + "=="))
    raw[14] ^= 1  # the link position's low byte
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert signer.verify("c", forged) is None


def test_it_refuses_a_truncated_token() -> None:
    signer = Signer([SECRET])
    token = signer.sign("o", new_message_id())
    for cut in range(len(token)):
        assert signer.verify("o", token[:cut]) is None


def test_it_refuses_a_re_encoded_token() -> None:
    signer = Signer([SECRET])
    token = signer.sign("o", new_message_id())  # 29 bytes: the last character has spare bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    variants = {token[:-1] + alphabet[(last & ~0b1111) | low] for low in range(16)} - {token}
    assert variants
    for variant in variants:
        assert signer.verify("o", variant) is None
    assert signer.verify("o", token + "=") is None


def test_rotating_the_key_keeps_old_mail_working() -> None:
    mid = new_message_id()
    old_token = Signer([OTHER]).sign("o", mid)
    rotated = Signer([SECRET, OTHER])
    assert rotated.verify("o", old_token) == Target(mid, None)
    new_token = rotated.sign("o", mid)
    assert Signer([SECRET]).verify("o", new_token) == Target(mid, None)
    assert Signer([OTHER]).verify("o", new_token) is None


@given(st.text(max_size=200))
def test_no_string_verifies_by_chance(token: str) -> None:
    signer = Signer([SECRET])
    assert signer.verify("o", token) is None
    assert signer.verify("c", token) is None


def test_no_message_id_starts_like_a_command_line_option() -> None:
    assert not any(new_message_id().startswith("-") for _ in range(5000))


def test_tokens_issued_before_still_verify_and_are_signed_the_same() -> None:
    # Signed with hmac.digest, as every token was before 2026-12-01: mail already sent has them.
    signer = Signer([SECRET])
    mid = "AAECAwQFBgcICQoL"
    pixel, click = (
        "AAECAwQFBgcICQoLSl3_vw3bAtrvB5EHqAHGMpA",
        "AAECAwQFBgcICQoLSgAHl4KMsEgOjU_UV9EQvk3WeA",
    )
    assert signer.verify("o", pixel) == Target(mid, None)
    assert signer.verify("c", click) == Target(mid, 7)
    assert (signer.sign("o", mid), signer.sign("c", mid, 7)) == (pixel, click)
    assert signer.verify_mark("AAAAAAAAACpKYvcUwRMTP6euGybzXo-5JQ") == 42


def test_a_signer_goes_to_another_process_whole() -> None:
    # Campaign workers get one so; the bytes are our own.
    signer = pickle.loads(pickle.dumps(Signer([SECRET, OTHER])))  # noqa: S301
    mid = new_message_id()
    assert signer.verify("o", Signer([OTHER]).sign("o", mid)) == Target(mid, None)
    assert Signer([SECRET]).verify("o", signer.sign("o", mid)) == Target(mid, None)
