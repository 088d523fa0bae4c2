"""Where a client connects: one server, or several replicas with round_robin.

A target is what gRPC itself takes (``host:port``, ``dns:///name:port``,
``ipv4:a:p,b:p``, ``unix:path``) or a list of replica addresses, given as a
sequence or as one comma-separated string (``"127.0.0.1:50051,127.0.0.1:50052"``).
gRPC's built-in ``ipv4:`` / ``ipv6:`` name resolvers take such a list when its
addresses are IP literals, so a list becomes one of those targets; a host
name in a list is refused (gRPC in Python has no resolver for a list of
names: use one DNS name that resolves to every replica, ``dns:///name:port``).

A list, or a target that names a resolver (``dns:``, ``ipv4:``, ``ipv6:``),
gets the ``round_robin`` load-balancing policy through the service config, so
calls spread over every address that answers and skip one that does not. A
single ``host:port`` keeps gRPC's default (``pick_first``).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ROUND_ROBIN_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
RESOLVER_SCHEMES = ("dns:", "ipv4:", "ipv6:")


@dataclass(frozen=True)
class ChannelTarget:
    """What a channel is opened with.

    Attributes:
        display: the target as the user gave it (a list joined with commas), for messages.
        uri: the gRPC target the channel is given.
        options: channel options the target needs (the round_robin service
            config; for a list, the first address as the default authority,
            which TLS checks the server's certificate against).
    """

    display: str
    uri: str
    options: tuple[tuple[str, Any], ...]


def _address(text: str) -> tuple[int, str]:
    """``(IP version, address)`` of one ``ip:port`` / ``[ipv6]:port``; ValueError otherwise."""
    address = text.strip()
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a replica address must be IP:PORT, not {text!r}")
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        ip = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        raise ValueError(
            f"a list of replicas takes IP addresses (127.0.0.1:50051, [::1]:50051), "
            f"not the host name in {text!r}; for names, give one DNS name that resolves "
            "to every replica (dns:///interlock.example:50051)"
        ) from None
    if ip.version == 6 and not bracketed:
        raise ValueError(f"an IPv6 address takes brackets: [{host}]:{port}, not {text!r}")
    return ip.version, address


def channel_target(target: str | Sequence[str]) -> ChannelTarget:
    """The channel target for ``target`` (see the module docstring); ValueError when unusable."""
    if isinstance(target, str):
        text = target.strip()
        if not text:
            raise ValueError("the target is empty; expected HOST:PORT or a list of IP:PORT")
        if text.startswith(RESOLVER_SCHEMES):
            return ChannelTarget(text, text, (("grpc.service_config", ROUND_ROBIN_SERVICE_CONFIG),))
        if "," not in text:
            return ChannelTarget(text, text, ())
        parts = text.split(",")
    else:
        parts = list(target)
        if not parts or not all(isinstance(p, str) for p in parts):
            raise ValueError("a list of replicas must hold one or more IP:PORT strings")
        if len(parts) == 1:
            return channel_target(parts[0])
    addresses = [_address(p) for p in parts]
    versions = {version for version, _ in addresses}
    if len(versions) > 1:
        raise ValueError("a list of replicas cannot mix IPv4 and IPv6 addresses")
    listed = ",".join(address for _, address in addresses)
    options = (
        ("grpc.service_config", ROUND_ROBIN_SERVICE_CONFIG),
        ("grpc.default_authority", addresses[0][1]),
    )
    return ChannelTarget(listed, f"ipv{versions.pop()}:{listed}", options)


__all__ = ["ROUND_ROBIN_SERVICE_CONFIG", "ChannelTarget", "channel_target"]
