"""filter_plugins/networks.py: in_network, which the app role's checks of app_api_addresses use."""

from __future__ import annotations

import pytest
from role_scripts import load_plugin

networks = load_plugin("filter_plugins", "networks")


@pytest.mark.parametrize(
    ("address", "network", "inside"),
    [
        ("172.30.255.250", "172.30.255.0/24", True),
        ("172.30.255.1", "172.30.255.0/24", True),
        ("172.30.254.250", "172.30.255.0/24", False),
        ("172.30.255.0", "172.30.255.0/24", False),  # the network's own address
        ("172.30.255.255", "172.30.255.0/24", False),  # its broadcast address
        ("fd00::5", "fd00::/64", True),
        ("fd00::5", "172.30.255.0/24", False),
        ("not-an-address", "172.30.255.0/24", False),
        ("172.30.255.250", "", False),
    ],
)
def test_in_network(address: str, network: str, inside: bool) -> None:
    assert networks.in_network(address, network) is inside


def test_the_filter_is_registered() -> None:
    assert networks.FilterModule().filters()["in_network"] is networks.in_network
