"""Ansible filter ``in_network``: whether an IPv4/IPv6 address lies inside a network.

``{{ '172.30.255.250' | in_network('172.30.255.0/24') }}`` is true; an address or network that does
not parse is false (the caller's assertion names what it expected). Python's ipaddress, so no
netaddr is needed on the controller.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable


def in_network(address: object, network: object) -> bool:
    """True when ``address`` is a host address inside ``network`` (neither its network nor its
    broadcast address, for IPv4 networks larger than /31)."""
    try:
        host = ipaddress.ip_address(str(address))
        net = ipaddress.ip_network(str(network), strict=False)
    except ValueError:
        return False
    if host.version != net.version or host not in net:
        return False
    if net.version == 4 and net.prefixlen < 31:
        return host not in (net.network_address, net.broadcast_address)
    return True


class FilterModule:
    """Ansible's entry point."""

    def filters(self) -> dict[str, Callable[..., object]]:
        return {"in_network": in_network}
