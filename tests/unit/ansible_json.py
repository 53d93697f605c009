"""Run Ansible against this repository's real inventories with the JSON callback (no host is contacted
by the callers: they evaluate variables with the debug module, which runs on the controller)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def inventory_file(inventory: str) -> str:
    """The hosts file of ``inventories/<inventory>/``."""
    return str(ROOT / "inventories" / inventory / "hosts.yml")


def run_json(command: list[str]) -> dict:
    """Run ``command`` (ansible or ansible-playbook) with the project's ansible.cfg and the JSON
    stdout callback; the parsed output. Fails the test with Ansible's output when it fails."""
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_STDOUT_CALLBACK": "json",
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        },
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout)
