"""Ansible filter ``packages_missing``: which of a task's packages the host does not have yet.

``{{ ['ufw'] | packages_missing(ansible_facts) }}`` is ``[]`` once ufw is installed, going by the
``packages`` fact (``ansible.builtin.package_facts``, which the base role reads once per run, before
its own install). Without that fact every package counts as missing, so a role run on its own still
installs. The roles skip their apt installs when nothing is missing: an unchanged run then spends no
time in apt, which costs about a second per install even when there is nothing to do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping


def packages_missing(names: object, facts: object) -> list[str]:
    """Of ``names`` (a package or a list; ``name=version`` pins allowed), those not installed."""
    wanted = [names] if isinstance(names, str) else list(names or [])  # type: ignore[call-overload]
    installed = facts.get("packages") if isinstance(facts, Mapping) else None
    if not isinstance(installed, Mapping):
        return [str(name) for name in wanted]
    return [str(name) for name in wanted if str(name).split("=", 1)[0] not in installed]


class FilterModule:
    """Ansible's entry point."""

    def filters(self) -> dict[str, Callable[..., object]]:
        return {"packages_missing": packages_missing}
