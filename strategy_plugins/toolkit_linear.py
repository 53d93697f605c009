"""Strategy ``toolkit_linear`` (ansible.cfg): Ansible's linear strategy, run through Mitogen.

Mitogen (``mitogen`` in requirements-dev.txt) keeps one Python interpreter per host and login
for the whole run, so a task no longer costs an SSH session, a sudo and a fresh interpreter with
its module shipped again: an unchanged ``site.yml`` on the sandbox took 122-129 s with the plain
linear strategy and 56-58 s through Mitogen (2026-12-01, README "Measured"). Tasks, their order and
their results are the linear strategy's.

Without Mitogen installed (an interpreter other than the toolkit's .venv), it is the plain linear
strategy with a warning; ``ANSIBLE_STRATEGY=linear`` chooses that deliberately (to rule Mitogen out
when a task misbehaves).
"""

from __future__ import annotations

from ansible.plugins.loader import strategy_loader
from ansible.utils.display import Display

try:
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy
except ImportError:  # pragma: no cover - depends on the interpreter running ansible
    Display().warning(
        "strategy toolkit_linear: mitogen is not installed in this Python, so the plain linear strategy "
        "runs (about twice as slow); `make setup` installs it into .venv"
    )
    StrategyModule = strategy_loader.get("linear", class_only=True)
else:
    _Linear = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Linear):  # type: ignore[misc,valid-type]
        """Mitogen's linear strategy."""
