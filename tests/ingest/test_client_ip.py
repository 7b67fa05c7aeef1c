from ipaddress import ip_address, ip_network

from services.ingest.client_ip import client_ip

PROXIES = [ip_network("10.0.0.0/8")]


def test_socket_peer_when_no_proxy_is_trusted() -> None:
    assert client_ip("198.51.100.4", ["203.0.113.7"], []) == ip_address("198.51.100.4")


def test_forwarded_for_believed_from_a_trusted_proxy() -> None:
    assert client_ip("10.0.0.2", ["203.0.113.7"], PROXIES) == ip_address("203.0.113.7")


def test_client_cannot_forge_its_way_past_the_proxy_chain() -> None:
    # The client sent "X-Forwarded-For: 203.0.113.7" itself; our proxy appended the real peer.
    assert client_ip("10.0.0.2", ["203.0.113.7, 198.51.100.9"], PROXIES) == ip_address("198.51.100.9")


def test_chain_of_trusted_proxies_is_walked() -> None:
    assert client_ip("10.0.0.2", ["203.0.113.7, 10.1.1.1"], PROXIES) == ip_address("203.0.113.7")


def test_garbage_is_no_address() -> None:
    assert client_ip("10.0.0.2", ["not-an-ip"], PROXIES) is None
    assert client_ip("testclient", [], PROXIES) is None


def test_every_line_of_the_header_is_one_chain() -> None:
    # The client's forged line first, our proxy's line second: the proxy's hop is the client.
    assert client_ip("10.0.0.2", ["203.0.113.7", "198.51.100.9"], PROXIES) == ip_address("198.51.100.9")
    assert client_ip("10.0.0.2", ["203.0.113.7, 198.51.100.9", "10.3.3.3"], PROXIES) == ip_address("198.51.100.9")
    assert client_ip("10.0.0.2", ["203.0.113.7", "10.3.3.3"], PROXIES) == ip_address("203.0.113.7")
