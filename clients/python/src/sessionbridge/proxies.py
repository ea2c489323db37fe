"""Which address is the client's, and which host and scheme it asked for,
when the app runs behind proxies (clients/README.md, "Trusted proxies").

`trusted_proxies` is either a list of addresses and CIDR blocks, or a hop
count. With none (the default), the peer is the client and every
`X-Forwarded-*` / `Forwarded` header is ignored.
"""

from __future__ import annotations

import ipaddress
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

Headers = Sequence[Tuple[str, str]]
"""Request headers as (lower-case name, value) pairs, in the order received."""

TrustedProxiesSpec = Union[None, int, str, Sequence[str], "TrustedProxies"]
"""What `trusted_proxies=` accepts: None, a hop count, a list of addresses
and CIDR blocks, or one string holding either ("10.0.0.0/8, 127.0.0.1",
"1")."""

_Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
_Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def parse_address(value: str) -> Optional[_Address]:
    """The IP address in `ip`, `ip:port`, `[v6]` or `[v6]:port`, or None.
    An IPv4-mapped IPv6 address is returned as the IPv4 address."""
    text = value.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        out = []
        escaped = False
        for ch in value[1:-1]:
            if escaped:
                out.append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            else:
                out.append(ch)
        return "".join(out)
    return value


def parse_forwarded(values: Iterable[str]) -> List[Dict[str, str]]:
    """The elements of RFC 7239 `Forwarded` headers, left to right, each as
    a dict of its parameters (names lower-cased, quoted values unquoted)."""
    elements: List[Dict[str, str]] = []
    for header in values:
        element: Dict[str, str] = {}
        pair: List[str] = []
        in_quotes = False
        escaped = False

        def end_pair() -> None:
            text = "".join(pair).strip()
            pair.clear()
            if "=" in text:
                name, _, value = text.partition("=")
                element.setdefault(name.strip().lower(), _unquote(value))

        for ch in header:
            if in_quotes:
                pair.append(ch)
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_quotes = False
            elif ch == '"':
                in_quotes = True
                pair.append(ch)
            elif ch == ";":
                end_pair()
            elif ch == ",":
                end_pair()
                if element:
                    elements.append(element)
                element = {}
            else:
                pair.append(ch)
        end_pair()
        if element:
            elements.append(element)
    return elements


def _all(headers: Headers, name: str) -> List[str]:
    return [value for key, value in headers if key == name]


def _split_list(values: Iterable[str]) -> List[str]:
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def forwarded_for(headers: Headers) -> List[str]:
    """The addresses the proxies recorded, left to right: every
    `X-Forwarded-For` header in order, or, when there is none, the `for=`
    values of `Forwarded`. Values are as written (quotes removed)."""
    xff = _all(headers, "x-forwarded-for")
    if xff:
        return _split_list(xff)
    return [e["for"] for e in parse_forwarded(_all(headers, "forwarded")) if "for" in e]


def _rightmost(headers: Headers, header: str, parameter: str) -> Optional[str]:
    """The rightmost value of `header`, else `parameter` of the nearest
    `Forwarded` element only: when the nearest proxy wrote no such value,
    one further left may come from the client."""
    values = _split_list(_all(headers, header))
    if values:
        return values[-1]
    elements = parse_forwarded(_all(headers, "forwarded"))
    return elements[-1].get(parameter) or None if elements else None


class TrustedProxies:
    """The `trusted_proxies` option, parsed once."""

    __slots__ = ("hops", "networks")

    def __init__(self, spec: TrustedProxiesSpec = None) -> None:
        self.hops = 0
        self.networks: Tuple[_Network, ...] = ()
        if isinstance(spec, TrustedProxies):
            self.hops, self.networks = spec.hops, spec.networks
            return
        if spec is None:
            return
        if isinstance(spec, bool):
            raise TypeError("trusted_proxies: a hop count or a list of addresses, not a bool")
        if isinstance(spec, int):
            if spec < 0:
                raise ValueError("trusted_proxies: a hop count is 0 or more")
            self.hops = spec
            return
        if isinstance(spec, str):
            text = spec.strip()
            if text.isdigit():
                self.hops = int(text)
                return
            items: Sequence[str] = [p for p in (s.strip() for s in text.split(",")) if p]
        else:
            items = spec
        networks = []
        for item in items:
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise ValueError(f"trusted_proxies: not an address or CIDR block: {item!r}") from None
        self.networks = tuple(networks)

    def __repr__(self) -> str:
        if self.hops:
            return f"TrustedProxies({self.hops})"
        return f"TrustedProxies({[str(n) for n in self.networks]!r})"

    @property
    def enabled(self) -> bool:
        return bool(self.hops or self.networks)

    def trusts(self, value: str) -> bool:
        """Whether `value` (an address as a header or the peer gives it) is
        in the list. Always False for a hop count."""
        address = parse_address(value)
        if address is None:
            return False
        return any(address in network for network in self.networks)

    def trusts_peer(self, peer: str) -> bool:
        """Whether the proxy headers of a request from `peer` are believed."""
        return self.hops > 0 or self.trusts(peer)

    def client_ip(self, peer: str, headers: Headers) -> str:
        """The client's address, as it is sent to the sidecar: the peer, or
        the address the trusted proxies vouch for (as written; a value that
        is not an address is passed on for the sidecar to reject)."""
        if self.hops:
            chain = forwarded_for(headers)
            return chain[-self.hops] if len(chain) >= self.hops else peer
        if not self.networks or not self.trusts(peer):
            return peer
        chain = forwarded_for(headers)
        for value in reversed(chain):
            if not self.trusts(value):
                return value
        return chain[0] if chain else peer

    def host_and_scheme(self, peer: str, headers: Headers, host: str, scheme: str) -> Tuple[str, str]:
        """`host` and `scheme` of the connection, or those the nearest trusted
        proxy wrote (the rightmost `X-Forwarded-Host` / `-Proto`, else the
        nearest `Forwarded` element's host= / proto=)."""
        if not self.trusts_peer(peer):
            return host, scheme
        forwarded_host = _rightmost(headers, "x-forwarded-host", "host")
        forwarded_proto = _rightmost(headers, "x-forwarded-proto", "proto")
        return forwarded_host or host, forwarded_proto or scheme
