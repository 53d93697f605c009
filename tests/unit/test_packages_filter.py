"""filter_plugins/packages.py: packages_missing, so the roles skip an apt install with nothing to do."""

from __future__ import annotations

import pytest
from role_scripts import load_plugin

packages = load_plugin("filter_plugins", "packages")

FACTS = {"packages": {"ufw": [{"version": "0.36.2-9"}], "redis-server": [{"version": "5:8.0.2-3"}]}}


@pytest.mark.parametrize(
    ("names", "missing"),
    [
        (["ufw"], []),
        ("ufw", []),
        (["ufw", "fail2ban"], ["fail2ban"]),
        (["redis-server=5:8.0.2-3", "acl"], ["acl"]),
        ([], []),
    ],
)
def test_only_packages_the_host_lacks_are_missing(names: object, missing: list[str]) -> None:
    assert packages.packages_missing(names, FACTS) == missing


@pytest.mark.parametrize("facts", [{}, {"packages": None}, None, {"distribution": "Debian"}])
def test_without_the_packages_fact_everything_is_missing(facts: object) -> None:
    """A role run without the base role's package_facts installs as before."""
    assert packages.packages_missing(["ufw", "acl"], facts) == ["ufw", "acl"]


def test_the_filter_is_registered() -> None:
    assert packages.FilterModule().filters()["packages_missing"] is packages.packages_missing
