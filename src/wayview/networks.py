"""wayview.networks: comma-separated lists of addresses or CIDRs in settings
(`metrics.allow_from`, `trusted_proxies`) and whether an address lies in one."""

from __future__ import annotations

import ipaddress

__all__ = ["Address", "Network", "address_allowed", "in_networks", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(text: str) -> tuple[Network, ...]:
    """The networks of a comma-separated list of addresses or CIDRs; a bare address is a /32
    or /128.

    >>> parse_networks("127.0.0.1, 10.0.0.0/8,::1")
    (IPv4Network('127.0.0.1/32'), IPv4Network('10.0.0.0/8'), IPv6Network('::1/128'))

    Raises:
        ValueError: an entry is not an address or network (the message names it).
    """
    return tuple(ipaddress.ip_network(part.strip(), strict=False)
                 for part in text.split(",") if part.strip())


def in_networks(ip: Address | None, networks: tuple[Network, ...]) -> bool:
    """Whether `ip` lies in one of `networks`; an IPv4 address mapped into IPv6
    (`::ffff:10.1.2.3`) counts as the IPv4 one."""
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


def address_allowed(address: str | None, networks: tuple[Network, ...]) -> bool:
    """`in_networks` for an address as text (the peer of a connection); False for none or
    for text that is not an address.

    >>> nets = parse_networks("10.0.0.0/8")
    >>> address_allowed("10.1.2.3", nets), address_allowed("::ffff:10.1.2.3", nets)
    (True, True)
    >>> address_allowed("192.0.2.1", nets), address_allowed(None, nets)
    (False, False)
    """
    if not address:
        return False
    try:
        return in_networks(ipaddress.ip_address(address), networks)
    except ValueError:
        return False
