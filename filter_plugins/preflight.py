"""Ansible filters of playbooks/preflight.yml: every problem of every role, readable, in one report.

``{{ ansible_failed_result | preflight_problems(role) }}`` turns the result of a role's failed
``validate`` entry point into one problem per independent failure: each failed item of a looped
check, each argument-spec error (not the whole spec), or the task's message.
``{{ problems | preflight_report(host, settings_file, vault_file, vault_variables) }}`` is the text
preflight fails with: each problem with its role and the file to edit: the inventory's settings
file, the vault file when the message names only secrets the vault holds, or both when it names both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping


def _one_line(text: object) -> str:
    """Folded YAML and Jinja leave runs of spaces and line breaks: one readable line."""
    return " ".join(str(text).split())


def preflight_problems(failed_result: Mapping[str, object], role: str) -> list[dict[str, str]]:
    """The problems of a role's failed validation, each ``{"role": role, "msg": "..."}``."""
    messages: list[str] = []
    argument_errors = failed_result.get("argument_errors")
    results = failed_result.get("results")
    if isinstance(argument_errors, list) and argument_errors:
        messages = [f"{_one_line(error)} (roles/{role}/meta/argument_specs.yml)" for error in argument_errors]
    elif isinstance(results, list):
        messages = [
            _one_line(result.get("msg", "failed"))
            for result in results
            if isinstance(result, Mapping) and result.get("failed")
        ]
    if not messages:
        messages = [_one_line(failed_result.get("msg") or "failed without a message")]
    return [{"role": role, "msg": message} for message in messages]


# A variable name as messages write them: lower case words joined by underscores.
_VARIABLE = re.compile(r"(?<![A-Za-z0-9_./~-])[a-z][a-z0-9]*(?:_[a-z0-9]+)+(?![A-Za-z0-9_/])")


def _where(message: str, settings_file: str, vault_file: str, vault_variables: list[str]) -> str:
    named = list(dict.fromkeys(_VARIABLE.findall(message)))
    secrets = [name for name in named if name in vault_variables]
    if not secrets:
        return settings_file
    if len(secrets) == len(named):
        return vault_file
    return f"{settings_file} ({', '.join(secrets)} in {vault_file})"


def preflight_report(
    problems: Iterable[Mapping[str, str]],
    host: str,
    settings_file: str,
    vault_file: str,
    vault_variables: Iterable[str],
) -> str:
    """The text preflight fails ``host`` with: one line per problem, naming the file to edit."""
    secrets = list(vault_variables)
    listed = list(problems)
    lines = [
        f"Preflight refused {host}: {len(listed)} problem{'s' if len(listed) != 1 else ''} "
        "(nothing was changed on the host). Fix each one, then run again:"
    ]
    for number, problem in enumerate(listed, start=1):
        message = _one_line(problem["msg"])
        where = _where(message, settings_file, vault_file, secrets)
        lines.append(f"{number}. [{problem['role']}] {message} -> edit {where}")
    return "\n".join(lines)


class FilterModule:
    """Ansible's entry point."""

    def filters(self) -> dict[str, Callable[..., object]]:
        return {"preflight_problems": preflight_problems, "preflight_report": preflight_report}
