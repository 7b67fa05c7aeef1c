"""The client's IP address: the socket peer, or X-Forwarded-For when a trusted proxy sent it."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address


def client_ip(peer: str, forwarded_for: Sequence[str], trusted_proxies: Sequence[Network]) -> Address | None:
    """Walk X-Forwarded-For from the right while the hop is a trusted proxy.

    `forwarded_for` is every X-Forwarded-For line of the request, in the order received:
    HTTP allows a list header to be split over several lines, and a client may send its own
    line ahead of the one our proxy appends, so the lines are joined into one chain (as
    RFC 9110 §5.3 says they mean) before it is walked. Only the part of the chain added by
    our own proxies is believed: the first address that is not one of them is the client.
    A client cannot forge its way past the allow-list by sending its own X-Forwarded-For,
    because that entry sits left of a hop we trust.
    """
    try:
        current = ip_address(peer)
    except ValueError:
        return None
    if not forwarded_for or not _trusted(current, trusted_proxies):
        return current
    chain = [hop.strip() for line in forwarded_for for hop in line.split(",") if hop.strip()]
    for hop in reversed(chain):
        try:
            current = ip_address(hop)
        except ValueError:
            return None
        if not _trusted(current, trusted_proxies):
            return current
    return current


def _trusted(address: Address, trusted_proxies: Sequence[Network]) -> bool:
    return any(address in network for network in trusted_proxies)
