"""Strategy ``toolkit_linear`` (ansible.cfg): Ansible's linear strategy, run through Mitogen.

Mitogen (``mitogen`` in requirements-dev.txt) keeps one Python interpreter per host and login
for the whole run, so a task no longer costs an SSH session, a sudo and a fresh interpreter with
its module shipped again: an unchanged ``site.yml`` on the sandbox took 122-129 s with the plain
linear strategy and 56-58 s through Mitogen (2026-12-01, README "Measured"). Tasks, their order and
their results are the linear strategy's.

Host keys: an inventory states its policy with OpenSSH's ``StrictHostKeyChecking`` in its ssh
arguments (the sandbox's ``accept-new``: a new host's key is recorded on first contact, a changed key
is refused; the test bench's ``no``). Mitogen puts its own ``StrictHostKeyChecking yes`` before the
inventory's options, and the first value wins, so a new host (a fresh sandbox, a new VPS) was
refused. ``honour_host_key_policy`` maps the inventory's value to Mitogen's ``check_host_keys``:
accept-new -> "accept" (the same policy), no/off -> "ignore", yes/ask -> "enforce".

Without Mitogen installed (an interpreter other than the toolkit's .venv), it is the plain linear
strategy with a warning; ``ANSIBLE_STRATEGY=linear`` chooses that deliberately (to rule Mitogen out
when a task misbehaves).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ansible.plugins.loader import strategy_loader
from ansible.utils.display import Display

STRICT = re.compile(r"StrictHostKeyChecking[= ]+([A-Za-z-]+)", re.IGNORECASE)
POLICY = {"accept-new": "accept", "no": "ignore", "off": "ignore", "yes": "enforce", "ask": "enforce"}


def host_key_policy(arguments: dict[str, Any]) -> dict[str, Any]:
    """Mitogen's SSH arguments with check_host_keys following the inventory's StrictHostKeyChecking
    (OpenSSH's first value counts) where Mitogen would enforce; anything else is left as it is."""
    kwargs = arguments.get("kwargs", {})
    stated = STRICT.search(" ".join(str(part) for part in kwargs.get("ssh_args") or []))
    if kwargs.get("check_host_keys") == "enforce" and stated:
        kwargs["check_host_keys"] = POLICY.get(stated.group(1).lower(), "enforce")
    return arguments


def honour_host_key_policy(connection: Any) -> None:
    """Wrap ansible_mitogen.connection's SSH connection method with host_key_policy."""
    original: Callable[[Any], dict[str, Any]] = connection._connect_ssh

    def connect_ssh(spec: Any) -> dict[str, Any]:
        return host_key_policy(original(spec))

    for method, function in list(connection.CONNECTION_METHOD.items()):
        if function is original:
            connection.CONNECTION_METHOD[method] = connect_ssh
    connection._connect_ssh = connect_ssh


try:
    import ansible_mitogen.connection
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy
except ImportError:  # pragma: no cover - depends on the interpreter running ansible
    Display().warning(
        "strategy toolkit_linear: mitogen is not installed in this Python, so the plain linear strategy "
        "runs (about twice as slow); `make setup` installs it into .venv"
    )
    StrategyModule = strategy_loader.get("linear", class_only=True)
else:
    honour_host_key_policy(ansible_mitogen.connection)
    _Linear = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Linear):  # type: ignore[misc,valid-type]
        """Mitogen's linear strategy."""
