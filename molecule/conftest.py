"""Helpers shared by every scenario's testinfra tests (pytest finds this file above them)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class PlaybookRun:
    """The outcome of one ansible-playbook run against a test host."""

    rc: int
    output: str
    recap: dict[str, int]


def _recap(output: str, host: str) -> dict[str, int]:
    """Read ``ok=.. changed=.. failed=..`` for ``host`` from the PLAY RECAP lines."""
    for line in output.splitlines():
        words = line.split()
        if words and words[0] == host and ":" in words:
            pairs = (word.split("=", 1) for word in words[2:] if "=" in word)
            return {key: int(value) for key, value in pairs}
    return {}


@pytest.fixture
def run_playbook(host: object) -> Callable[..., PlaybookRun]:
    """Run a playbook of the scenario (or the project) against the host under test only.

    Uses Molecule's inventory and ansible.cfg (MOLECULE_INVENTORY_FILE, ANSIBLE_CONFIG), so the
    run sees exactly the variables converge saw, plus ``extra_vars``.
    """
    name = host.backend.host  # type: ignore[attr-defined]

    def run(playbook: str | Path, extra_vars: dict[str, object] | None = None) -> PlaybookRun:
        path = Path(playbook)
        if not path.is_absolute():
            path = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / path
        command = [
            "ansible-playbook",
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            "--limit",
            name,
            str(path),
        ]
        if extra_vars:
            command += ["--extra-vars", json.dumps(extra_vars)]
        env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        output = done.stdout + done.stderr
        return PlaybookRun(done.returncode, output, _recap(output, name))

    return run
