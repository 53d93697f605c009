"""Why a Molecule scenario failed, in a few lines, from its log (scripts/run-molecule.sh prints it last,
after the scenario's tail, so the end of CI's output names the cause).

    python3 scripts/molecule_digest.py .local/molecule/production.log

Prints the action that failed, then what failed in it: the tasks and handlers the idempotence step
changed (with their hosts and loop items), Ansible's failed tasks (not those it was told to ignore)
with the start of their message, and pytest's FAILED and ERROR lines.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Molecule indents what Ansible and testinfra print with a box-drawing bar.
_BAR = re.compile(r"^\s*│ ?")
_ACTION = re.compile(r"➜ (\w+): Executing$")
_FATAL = re.compile(r"^(fatal|failed): \[([^\]]+)\]")
_HEADER = re.compile(r"^(TASK|RUNNING HANDLER) \[(.*)\]")
_CHANGED = re.compile(r"^changed: \[([^\]]+)\]( => \(item=.*\))?")
_PYTEST = re.compile(r"^(FAILED|ERROR) \S+::")
MESSAGE_CHARS = 300


def _lines(text: str) -> list[str]:
    return [_BAR.sub("", _ANSI.sub("", line)).rstrip() for line in text.splitlines()]


def failed_action(lines: list[str]) -> str | None:
    """The last action Molecule started before cleanup and destroy, which it runs after a failure
    (its DETAILS may call a failed idempotence step "Successful")."""
    last = None
    for line in lines:
        match = _ACTION.search(line)
        if match and match.group(1) not in ("cleanup", "destroy"):
            last = match.group(1)
    return last


def non_idempotent(lines: list[str]) -> list[str]:
    """What the second converge changed, as 'task [host]': read from the idempotence step's own
    output, handlers included (Molecule's list files a handler's change under the task before it)."""
    changed: list[str] = []
    inside = False
    header = "?"
    for line in lines:
        action = _ACTION.search(line)
        if action:
            inside = action.group(1) == "idempotence"
            continue
        if not inside:
            continue
        match = _HEADER.match(line)
        if match:
            header = match.group(2) if match.group(1) == "TASK" else f"handler {match.group(2)}"
            continue
        result = _CHANGED.match(line)
        if result:
            item = f"{header} [{result.group(1)}]{result.group(2) or ''}"
            if item not in changed:
                changed.append(item)
    return changed


def _block(lines: list[str], start: int) -> list[str]:
    """A result and its message: the lines from start up to the next blank line or task header."""
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.strip() or _HEADER.match(line):
            break
        block.append(line)
    return block


def failed_tasks(lines: list[str]) -> list[str]:
    """Each failed task as 'task [host]: message', leaving out the failures Ansible ignores."""
    found: list[str] = []
    task = "?"
    for number, line in enumerate(lines):
        header = _HEADER.match(line)
        if header:
            task = header.group(2)
            continue
        match = _FATAL.match(line)
        if not match:
            continue
        block = _block(lines, number)
        if any(item.strip() == "...ignoring" for item in block):
            continue
        text = " ".join(" ".join(item.split()) for item in block)
        message = text.split("=>", 1)[1].strip() if "=>" in text else text
        found.append(f"{task} [{match.group(2)}]: {message[:MESSAGE_CHARS]}")
    return found


def digest(text: str) -> list[str]:
    lines = _lines(text)
    action = failed_action(lines)
    tests = [line for line in lines if _PYTEST.match(line)]
    changed = non_idempotent(lines)
    tasks = failed_tasks(lines)
    out = [f"failed at: {action or 'destroy or create'}"]
    out += [f"changed on the second converge: {item}" for item in changed]
    out += [f"task failed: {item}" for item in tasks]
    out += [f"test {item}" for item in tests]
    return out


def main(argv: list[str]) -> int:
    for name in argv:
        for line in digest(Path(name).read_text(errors="replace")):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
