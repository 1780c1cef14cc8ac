import ipaddress
from pathlib import Path

import pytest

from mailbeacon.classify.networks import Networks

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_it_holds_ipv4_and_ipv6_networks() -> None:
    networks = Networks(["192.0.2.0/24", "2001:db8:1::/48"])
    assert "192.0.2.77" in networks
    assert "2001:db8:1:ffff::5" in networks
    assert "198.51.100.1" not in networks
    assert "2001:db8:2::1" not in networks
    assert len(networks) == 2


def test_the_first_and_last_address_are_inside_and_their_neighbours_outside() -> None:
    networks = Networks(["10.1.2.0/23", "2001:db8::/127", "0.0.0.0/32", "255.255.255.255/32"])
    assert "10.1.2.0" in networks
    assert "10.1.3.255" in networks
    assert "10.1.1.255" not in networks
    assert "10.1.4.0" not in networks
    assert "2001:db8::" in networks
    assert "2001:db8::1" in networks
    assert "2001:db8::2" not in networks
    assert "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff" not in networks
    assert str(ipaddress.IPv4Address(0)) in networks
    assert "255.255.255.255" in networks
    assert "0.0.0.1" not in networks


def test_adjacent_and_overlapping_networks_merge_into_one_range() -> None:
    networks = Networks(["10.0.1.0/24", "10.0.0.0/24", "10.0.0.128/25", "10.0.3.0/24"])
    assert len(networks) == 4
    assert networks.intervals == 2  # 10.0.0.0–10.0.1.255 and 10.0.3.0/24
    assert "10.0.0.255" in networks
    assert "10.0.1.0" in networks
    assert "10.0.2.0" not in networks
    assert Networks(["2001:db8::/33", "2001:db8:8000::/33"]).intervals == 1


def test_a_network_inside_another_changes_nothing() -> None:
    networks = Networks(["10.0.0.0/8", "10.20.0.0/16", "11.0.0.0/8"])
    assert networks.intervals == 1
    assert "11.255.255.255" in networks
    assert "12.0.0.0" not in networks


def test_host_bits_and_bare_addresses_are_understood() -> None:
    networks = Networks(["192.0.2.77/24", "198.51.100.9", "2001:db8::1"])
    assert "192.0.2.1" in networks
    assert "198.51.100.9" in networks
    assert "198.51.100.10" not in networks
    assert "2001:db8::1" in networks
    assert "2001:db8::2" not in networks


@pytest.mark.parametrize(
    "text",
    [
        "",
        "banana",
        "1.2.3",
        "1.2.3.4.5",
        "01.2.3.4",
        "256.0.0.1",
        " 192.0.2.1",
        "192.0.2.1/24",
        "[2001:db8::1]",
        "2001:db8::1%eth0",
        "::g",
        "192.0.2.1\x00",
        "١٩٢.٠.٢.١",
        "\ud800",
    ],
)
def test_anything_that_is_not_an_address_is_simply_not_in_it(text: str) -> None:
    assert text not in Networks(["0.0.0.0/0", "::/0"])


def test_things_that_are_not_text_are_not_in_it() -> None:
    networks = Networks(["0.0.0.0/0", "::/0"])
    assert None not in networks
    assert 3232235777 not in networks
    assert b"192.0.2.1" not in networks


def test_ipaddress_objects_are_looked_up_too() -> None:
    networks = Networks(["192.0.2.0/24", "2001:db8::/32"])
    assert ipaddress.ip_address("192.0.2.5") in networks
    assert ipaddress.ip_address("2001:db8::5") in networks
    assert ipaddress.ip_address("::ffff:192.0.2.5") in networks
    assert ipaddress.ip_address("198.51.100.1") not in networks


def test_ipv4_mapped_ipv6_is_looked_up_as_ipv4() -> None:
    networks = Networks(["192.0.2.0/24"])
    assert "::ffff:192.0.2.10" in networks
    assert "::FFFF:c000:020a" in networks
    assert "::ffff:198.51.100.1" not in networks
    # An IPv6 network never holds a plain IPv4 address, nor the other way round.
    assert "192.0.2.10" not in Networks(["::/0"])
    assert "2001:db8::1" not in Networks(["0.0.0.0/0"])


def test_the_constructor_refuses_a_malformed_network() -> None:
    for bad in ("10.0.0.0/33", "2001:db8::/129", "10.0.0.0/", "10.0.0.0/x", "nope", "10.0.0.0/-1"):
        with pytest.raises(ValueError, match="not an IP network"):
            Networks([bad])


def test_an_empty_set_holds_nothing() -> None:
    empty = Networks.empty()
    assert len(empty) == 0
    assert not empty
    assert "192.0.2.1" not in empty
    assert "2001:db8::1" not in empty


def test_parse_lines_reads_apples_csv_and_plain_lists_alike() -> None:
    apple_csv = [
        "172.224.226.0/27,GB,GB-EN,London,\n",
        "2a02:26f7:b3c0:4000::/64,US,US-CA,Los Angeles,90001\n",
    ]
    plain = ["172.224.226.0/27\n", "2a02:26f7:b3c0:4000::/64\n"]
    for lines in (apple_csv, plain):
        networks, skipped = Networks.parse_lines(lines)
        assert (len(networks), skipped) == (2, 0)
        assert "172.224.226.31" in networks
        assert "172.224.226.32" not in networks
        assert "2a02:26f7:b3c0:4000:ffff::1" in networks


def test_parse_lines_ignores_blank_lines_and_comments() -> None:
    lines = ["\ufeff# Private Relay egress\n", "\n", "   \n", "192.0.2.0/24  # office\n", "\t#x\n"]
    networks, skipped = Networks.parse_lines(lines)
    assert (len(networks), skipped) == (1, 0)
    assert "192.0.2.200" in networks


def test_parse_lines_skips_and_counts_malformed_lines() -> None:
    lines = [
        "prefix,country,region,city,postal",
        "192.0.2.0/24,US,US-CA,Los Angeles,",
        "<html><body>Service Unavailable</body></html>",
        "10.0.0.0/33",
        "10.0.0.0/" + "9" * 5000,
        "198.51.100.0/24",
    ]
    networks, skipped = Networks.parse_lines(lines)
    assert (len(networks), skipped) == (2, 4)
    assert "198.51.100.1" in networks


def test_the_shared_apple_lists_load_and_hold_relay_addresses_only() -> None:
    ipv4 = (SHARED_DATA / "apple-private-relay-egress-ipv4.txt").read_text().splitlines()
    ipv6 = (SHARED_DATA / "apple-private-relay-egress-ipv6.txt").read_text().splitlines()
    networks, skipped = Networks.parse_lines(ipv4 + ipv6)
    assert skipped == 0
    assert len(networks) == len([line for line in ipv4 + ipv6 if line.strip()])
    for first in (ipv4[0], ipv6[0]):
        network = ipaddress.ip_network(first)
        assert str(network[1]) in networks
        assert str(network[-1]) in networks
    assert "8.8.8.8" not in networks  # Google's resolver
    assert "17.0.0.1" not in networks  # Apple's own 17.0.0.0/8 is not where relays egress
    assert "2001:4860:4860::8888" not in networks
