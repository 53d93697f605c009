"""filter_plugins/sysctl.py: which kernel settings a host sets live, and how the kernel differs."""

from __future__ import annotations

import pytest
import yaml
from role_scripts import ROOT, load_plugin

sysctl = load_plugin("filter_plugins", "sysctl")

OUTPUT = """net.ipv4.conf.all.rp_filter = 0
net.ipv4.tcp_rmem = 4096\t131072\t6291456
kernel.kptr_restrict = 2
vm.swappiness = 60
"""


@pytest.mark.parametrize(
    ("name", "namespaced"),
    [
        ("net.ipv4.conf.all.rp_filter", True),
        ("net.ipv6.conf.default.accept_redirects", True),
        ("net.core.somaxconn", True),
        ("net.netfilter.nf_conntrack_max", True),
        ("net.core.bpf_jit_harden", False),
        ("net.core.rmem_max", False),
        ("net.ipv4.tcp_mem", False),
        ("kernel.kptr_restrict", False),
        ("vm.swappiness", False),
        ("fs.protected_fifos", False),
        ("dev.tty.ldisc_autoload", False),
    ],
)
def test_only_the_network_namespaces_settings_are_namespaced(name: str, namespaced: bool) -> None:
    assert sysctl.sysctl_namespaced(name) is namespaced


def test_live_settings_follow_the_apply_mode() -> None:
    settings = {"net.ipv4.tcp_syncookies": 1, "kernel.kptr_restrict": 2, "vm.swappiness": 10}
    assert sysctl.sysctl_live(settings, "all") == {k: str(v) for k, v in settings.items()}
    assert sysctl.sysctl_live(settings, "namespaced") == {"net.ipv4.tcp_syncookies": "1"}
    with pytest.raises(ValueError, match="apply must be one of all, namespaced"):
        sysctl.sysctl_live(settings, "some")


def test_drift_lists_only_what_the_kernel_has_at_another_value() -> None:
    settings = {
        "net.ipv4.conf.all.rp_filter": 1,  # differs
        "net.ipv4.tcp_rmem": "4096 131072  6291456",  # same, whatever the spacing
        "kernel.kptr_restrict": 2,  # same
        "kernel.sysrq": 0,  # the kernel has none: not drift (sysctl_unknown reports it)
    }
    assert sysctl.sysctl_drift(settings, OUTPUT) == {"net.ipv4.conf.all.rp_filter": "1"}


def test_unknown_settings_are_those_the_kernel_did_not_print() -> None:
    settings = {"kernel.kptr_restrict": 2, "kernel.sysrq": 0, "net.core.bpf_jit_harden": 2}
    assert sysctl.sysctl_unknown(settings, OUTPUT) == ["kernel.sysrq", "net.core.bpf_jit_harden"]
    # From a network namespace of its own a host cannot see the machine-wide net.core settings.
    assert sysctl.sysctl_unknown(settings, OUTPUT, "namespaced") == ["kernel.sysrq"]


@pytest.mark.parametrize(
    ("name", "value", "one_way"),
    [
        ("kernel.modules_disabled", 1, True),
        ("kernel.kexec_load_disabled", "1", True),
        ("kernel.yama.ptrace_scope", 3, True),
        ("kernel.yama.ptrace_scope", 2, False),
        ("kernel.unprivileged_bpf_disabled", 1, True),
        ("kernel.unprivileged_bpf_disabled", 2, False),
        ("kernel.kptr_restrict", 2, False),
    ],
)
def test_one_way_switches_are_known(name: str, value: object, one_way: bool) -> None:
    assert sysctl.sysctl_one_way(name, value) is one_way


def test_no_one_way_switch_is_ever_namespaced() -> None:
    """So a test host (apply: namespaced) can never set one on the machine running the tests."""
    assert not [name for name in sysctl.ONE_WAY if sysctl.sysctl_namespaced(name)]
    defaults = yaml.safe_load((ROOT / "roles" / "hardening" / "defaults" / "main.yml").read_text())
    live = sysctl.sysctl_live(defaults["hardening_sysctl"], "namespaced")
    assert not [name for name, value in live.items() if sysctl.sysctl_one_way(name, value)]
    assert all(name.startswith("net.") for name in live), live


def test_the_hardening_set_keeps_forwarding_for_docker() -> None:
    defaults = yaml.safe_load((ROOT / "roles" / "hardening" / "defaults" / "main.yml").read_text())
    assert not [name for name in defaults["hardening_sysctl"] if "forward" in name]
    assert "kernel.modules_disabled" not in defaults["hardening_sysctl"], (
        "Docker and ufw load modules on demand"
    )


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"kernel sysrq": 1}, "'kernel sysrq' is not a kernel setting name"),
        ({"sysrq": 1}, "'sysrq' is not a kernel setting name"),
        ({"kernel.sysrq": None}, "kernel.sysrq: None is not a value sysctl can write"),
        ({"kernel.sysrq": [1]}, "kernel.sysrq: [1] is not a value sysctl can write"),
        ({"kernel.sysrq": "1\nvm.swappiness=100"}, "is not a value sysctl can write"),
        (["kernel.sysrq"], "must be a mapping of setting: value, not list"),
    ],
)
def test_problems_name_the_setting(settings: object, problem: str) -> None:
    problems = sysctl.sysctl_problems(settings)
    assert len(problems) == 1
    assert problem in problems[0]


def test_good_settings_have_no_problems() -> None:
    assert sysctl.sysctl_problems({"net.ipv4.tcp_rmem": "4096 131072 6291456", "kernel.sysrq": 0}) == []


def test_the_filters_are_registered() -> None:
    filters = sysctl.FilterModule().filters()
    assert set(filters) == {
        "sysctl_namespaced",
        "sysctl_one_way",
        "sysctl_live",
        "sysctl_drift",
        "sysctl_unknown",
        "sysctl_problems",
    }
