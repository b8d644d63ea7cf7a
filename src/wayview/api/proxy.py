"""wayview.api.proxy: the client's own address and scheme behind a trusted reverse proxy.

Behind nginx or Caddy every request comes from the proxy's address, so the throttles keyed by
client address (sign-up, sign-in), the metrics allow-list and the logs would see one client.
With `trusted_proxies` set (CIDRs of the proxies), a request whose peer is one of them takes
its client from `X-Forwarded-For` — the right-most address that is not itself a trusted proxy,
so a client cannot pose as another by sending the header itself — and its scheme from
`X-Forwarded-Proto`. Requests from anywhere else keep their peer address: the headers are
ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import MutableMapping
from typing import Any

from wayview.networks import Address, Network, in_networks

__all__ = ["forwarded_scope"]


def _address(text: str) -> Address | None:
    value = text.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1:value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _header(scope: MutableMapping[str, Any], name: bytes) -> str | None:
    values = [v for k, v in scope.get("headers", ()) if k == name]
    if not values:
        return None
    return ",".join(v.decode("latin-1") for v in values)


def forwarded_scope(scope: MutableMapping[str, Any], networks: tuple[Network, ...]
                    ) -> MutableMapping[str, Any]:
    """`scope` with the client and scheme the trusted proxy saw (or `scope` itself).

    >>> from wayview.networks import parse_networks
    >>> nets = parse_networks("127.0.0.1")
    >>> s = {"client": ("127.0.0.1", 5), "scheme": "http", "headers": [
    ...     (b"x-forwarded-for", b"198.51.100.7, 203.0.113.9"), (b"x-forwarded-proto", b"https")]}
    >>> out = forwarded_scope(s, nets)
    >>> out["client"], out["scheme"]
    (('203.0.113.9', 0), 'https')
    >>> forwarded_scope({**s, "client": ("192.0.2.1", 5)}, nets)["client"]
    ('192.0.2.1', 5)
    """
    client = scope.get("client")
    if not networks or not client or not in_networks(_address(str(client[0])), networks):
        return scope
    changed = dict(scope)
    forwarded = _header(scope, b"x-forwarded-for")
    if forwarded:
        hops = [_address(part) for part in forwarded.split(",")]
        for hop in reversed(hops):
            if hop is None:
                break  # a malformed entry: trust nothing left of it
            if not in_networks(hop, networks):
                changed["client"] = (str(hop), 0)
                break
    proto = (_header(scope, b"x-forwarded-proto") or "").split(",")[-1].strip().lower()
    if proto in ("http", "https"):
        changed["scheme"] = proto
    return changed
