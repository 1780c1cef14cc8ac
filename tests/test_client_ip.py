import dataclasses
import ipaddress

from starlette.testclient import TestClient

from mailbeacon.ingest.hits import client_ip, normalise_ip
from mailbeacon.web.app import App
from mailbeacon.web.services import Services
from tests.conftest import Persona, path_of, send

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


def test_the_peer_is_the_client_when_no_proxy_is_trusted() -> None:
    assert client_ip("198.51.100.9", "203.0.113.1", ()) == "198.51.100.9"


def test_a_trusted_proxy_forwards_the_client_address() -> None:
    assert client_ip("10.0.0.2", "203.0.113.1", PROXIES) == "203.0.113.1"


def test_addresses_a_client_wrote_before_the_proxies_are_ignored() -> None:
    forwarded = "6.6.6.6, 203.0.113.1, 10.0.0.3"
    assert client_ip("10.0.0.2", forwarded, PROXIES) == "203.0.113.1"


def test_a_malformed_forwarded_for_falls_back_to_the_last_good_hop() -> None:
    assert client_ip("10.0.0.2", "banana", PROXIES) == "10.0.0.2"
    assert client_ip("10.0.0.2", "banana, 203.0.113.1", PROXIES) == "203.0.113.1"


def test_ipv6_and_ipv4_mapped_forms_are_normalised() -> None:
    assert normalise_ip("::ffff:192.0.2.1") == "192.0.2.1"
    assert normalise_ip("2001:DB8::0:1") == "2001:db8::1"
    assert normalise_ip("[2001:db8::1]") == "2001:db8::1"
    assert client_ip("fd00::1", "2001:db8::7", PROXIES) == "2001:db8::7"
    assert client_ip("::ffff:10.0.0.2", "::ffff:203.0.113.1", PROXIES) == "203.0.113.1"


def test_the_pixel_believes_x_forwarded_for_behind_a_trusted_proxy(
    services: Services, alice: Persona
) -> None:
    services.settings = dataclasses.replace(services.settings, trusted_proxies=PROXIES)
    with TestClient(
        App(services), base_url="https://t.example.test", client=("10.1.2.3", 4000)
    ) as client:
        message = send(client, alice)
        client.get(path_of(message["pixel_url"]), headers={"X-Forwarded-For": "2001:db8::5"})
        [hit] = client.get(f"/api/v1/messages/{message['id']}", headers=alice.auth).json()["hits"]
    assert hit["ip"] == "2001:db8::5"
