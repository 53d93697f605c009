"""Ansible filters for kernel settings: which ones a host may set live, and how the kernel differs.

A test host that is a container shares the kernel of the machine running it: only the settings of
its own network namespace (``net.ipv4.*``, ``net.ipv6.*``, ``net.core.somaxconn``, ...) are its
own; ``kernel.*``, ``fs.*``, ``vm.*``, ``dev.*`` and the rest of ``net.core.*`` belong to the
machine. The roles set every setting live on a real host (``apply: all``) and only the namespaced
ones on such a test host (``apply: namespaced``); they write all of them to /etc/sysctl.d either
way and check that the running kernel knows each one.

    {{ settings | sysctl_live(apply) }}              what to set on the running kernel
    {{ 'vm.swappiness' | sysctl_namespaced }}        false
    {{ settings | sysctl_drift(sysctl_output) }}     name: wanted value, where the kernel differs
    {{ settings | sysctl_unknown(sysctl_output, apply) }}  names the running kernel does not have
    {{ settings | sysctl_problems }}                 what is wrong with names and values
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

APPLY_MODES = ("all", "namespaced")
# Per network namespace: everything under these, except the few machine-wide ones below.
_NAMESPACED_PREFIXES = ("net.ipv4.", "net.ipv6.", "net.netfilter.", "net.unix.", "net.mptcp.")
_NAMESPACED_NAMES = frozenset(
    {
        "net.core.somaxconn",
        "net.core.xfrm_acq_expires",
        "net.core.xfrm_aevent_etime",
        "net.core.xfrm_aevent_rseqth",
        "net.core.xfrm_larval_drop",
    }
)
_MACHINE_WIDE_NET = frozenset({"net.ipv4.tcp_mem", "net.ipv4.udp_mem", "net.ipv4.ipfrag_secret_interval"})
# Settings that, once set to these values, cannot be set back until the next boot.
ONE_WAY = {
    "kernel.modules_disabled": "1",
    "kernel.kexec_load_disabled": "1",
    "kernel.unprivileged_bpf_disabled": "1",
    "kernel.yama.ptrace_scope": "3",
}
_NAME = re.compile(r"^[a-z0-9_-]+(\.[a-zA-Z0-9_*-]+)+$")
_VALUE = re.compile(r"^[^\n=]*$")
_LINE = re.compile(r"^(?P<name>\S+)\s*=\s?(?P<value>.*)$")


def _normal(value: object) -> str:
    """A value as the kernel prints it: words separated by one space."""
    return " ".join(str(value).split())


def sysctl_namespaced(name: object) -> bool:
    """True when ``name`` is a setting of the network namespace, not of the whole machine."""
    text = str(name)
    if text in _NAMESPACED_NAMES:
        return True
    return text.startswith(_NAMESPACED_PREFIXES) and text not in _MACHINE_WIDE_NET


def sysctl_one_way(name: object, value: object) -> bool:
    """True when setting ``name`` to ``value`` cannot be undone without a reboot."""
    return ONE_WAY.get(str(name)) == _normal(value)


def sysctl_live(settings: Mapping[str, object], apply: str) -> dict[str, str]:
    """The settings to set on the running kernel: all of them, or the namespaced ones only."""
    if apply not in APPLY_MODES:
        raise ValueError(f"apply must be one of {', '.join(APPLY_MODES)}, not {apply!r}")
    return {
        str(name): _normal(value)
        for name, value in settings.items()
        if apply == "all" or sysctl_namespaced(name)
    }


def _read(output: str) -> dict[str, str]:
    """``sysctl name...`` output (``name = value`` lines) as name: value."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        match = _LINE.match(line.strip())
        if match:
            found[match["name"]] = _normal(match["value"])
    return found


def sysctl_drift(settings: Mapping[str, object], output: str) -> dict[str, str]:
    """Of ``settings``, those the running kernel (``sysctl`` output) has at another value."""
    current = _read(output)
    return {
        str(name): _normal(value)
        for name, value in settings.items()
        if str(name) in current and current[str(name)] != _normal(value)
    }


def sysctl_unknown(settings: Mapping[str, object], output: str, apply: str = "all") -> list[str]:
    """Of ``settings``, the names the running kernel did not report (``sysctl -e`` skips them).

    With ``apply: namespaced`` the host sees the kernel from a network namespace of its own, where
    the machine-wide ``net.*`` settings (``net.core.bpf_jit_harden``) do not appear: those are not
    counted as unknown.
    """
    current = _read(output)
    return sorted(
        str(name)
        for name in settings
        if str(name) not in current
        and not (apply == "namespaced" and str(name).startswith("net.") and not sysctl_namespaced(name))
    )


def sysctl_problems(settings: object) -> list[str]:
    """What is wrong with a name: value mapping of kernel settings (empty when nothing is)."""
    if not isinstance(settings, Mapping):
        return [f"must be a mapping of setting: value, not {type(settings).__name__}"]
    problems = []
    for name, value in settings.items():
        if not _NAME.match(str(name)):
            problems.append(f"{name!r} is not a kernel setting name (like net.ipv4.tcp_syncookies)")
        if isinstance(value, (Mapping, list)) or value is None or not _VALUE.match(str(value)):
            problems.append(f"{name}: {value!r} is not a value sysctl can write")
    return problems


class FilterModule:
    """Ansible's entry point."""

    def filters(self) -> dict[str, Callable[..., object]]:
        return {
            "sysctl_namespaced": sysctl_namespaced,
            "sysctl_one_way": sysctl_one_way,
            "sysctl_live": sysctl_live,
            "sysctl_drift": sysctl_drift,
            "sysctl_unknown": sysctl_unknown,
            "sysctl_problems": sysctl_problems,
        }
