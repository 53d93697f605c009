"""playbooks/preflight.yml against the production inventory's own files, on throwaway Debian hosts.

What an operator sees on a first run: every placeholder left in the production files is named in ONE
run, each with the file to edit; a filled-in inventory passes; a host that is not Debian 12 or 13 is
refused in one sentence before any role looks at it; production refuses an API published without
Traefik and warns on every run about what it was told to go without. The host never changes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conftest import Host, Run, make_inventory, random_vault, run_playbook, run_preflight

UBUNTU_OS_RELEASE = (
    'NAME="Ubuntu"\nVERSION="24.04.1 LTS (Noble Numbat)"\nID=ubuntu\nID_LIKE=debian\n'
    'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nVERSION_ID="24.04"\nVERSION_CODENAME=noble\n'
)


def filled_in(deploy_key: str) -> dict[str, object]:
    """The values an operator puts in main.yml: a real key, real names, an alert channel, an offsite copy."""
    return {
        "base_deploy_authorized_keys": [deploy_key],
        "app_domain": "api.invoices.test",
        "traefik_acme_email": "ops@invoices.test",
        "alerting_webhook_url": "https://ntfy.invoices.test/toolkit-alerts",
        "backup_restic_enabled": True,
        "backup_restic_repository": "sftp:backup@backup.invoices.test:/srv/restic/toolkit",
        "backup_pitr_offsite": {
            "type": "s3",
            "endpoint": "s3.us-west-004.backblazeb2.com",
            "region": "us-west-004",
            "bucket": "invoices-test-pitr",
            "key": "0040000000000000000000001",
            "key_secret": "K004-not-a-real-application-key",
        },
    }


def problem(run: Run, role: str, variable: str) -> tuple[str, str]:
    """The (message, file to edit) of the problem `role` reported about `variable`."""
    found = [(message, where) for who, message, where in run.problems if who == role and variable in message]
    assert found, f"no [{role}] problem names {variable}; problems: {run.problems}\n{run.output[-3000:]}"
    return found[0]


def assert_untouched(run: Run, host: Host, before: list[str]) -> None:
    assert run.recap["changed"] == 0, run.recap
    assert host.run("getent passwd deploy").returncode == 2, "preflight created the deploy user"
    assert host.changes() == before, "preflight changed files on the host"


def test_shipped_production_files_name_every_placeholder_in_one_run(host: Host, tmp_path: Path) -> None:
    before = host.changes()
    run = run_preflight(make_inventory(tmp_path, host), host)

    assert run.rc != 0
    assert run.recap["failed"] == 1, "preflight must fail once, at the end, not at the first problem"
    settings = str(tmp_path / "group_vars" / "vps" / "main.yml")
    vault = str(tmp_path / "group_vars" / "vps" / "vault.yml")
    expected = [
        ("base", "base_deploy_authorized_keys", settings),
        ("app", "app_domain", settings),
        ("traefik", "traefik_acme_email", settings),
        ("postgres", "postgres_app_password", vault),
        ("redis", "redis_password", vault),
        ("app", "app_jwt_secret", vault),
        ("alerting", "alerting_required", settings),
        ("backup", "backup_offsite_required", settings),
        ("backup", "backup_pitr_offsite", settings),
    ]
    for role, variable, where in expected:
        _message, edit = problem(run, role, variable)
        assert edit.startswith(where), (variable, edit)
    assert "ssh-keygen -l refuses it" in problem(run, "base", "base_deploy_authorized_keys")[0]
    assert "example domain" in problem(run, "app", "app_domain")[0]
    assert "ops@example.net" in problem(run, "traefik", "traefik_acme_email")[0]
    assert "vps/vault.yml.example" in problem(run, "redis", "redis_password")[0]
    assert f"Preflight refused {host.name}: {len(run.problems)} problems" in run.output
    assert_untouched(run, host, before)


def test_filled_in_production_inventory_passes(
    host: Host, tmp_path: Path, deploy_key: str, image_tarball: Path
) -> None:
    before = host.changes()
    hosts = make_inventory(tmp_path, host, filled_in(deploy_key), random_vault())
    run = run_preflight(hosts, host, "-e", f"app_image_tarball={image_tarball}")

    assert run.rc == 0, run.output[-4000:]
    assert run.recap["failed"] == 0
    assert run.problems == []
    assert "WARNING:" not in run.output
    assert_untouched(run, host, before)


def test_an_app_host_without_a_database_host_is_refused_before_anything_changes(
    host: Host, tmp_path: Path, deploy_key: str, image_tarball: Path
) -> None:
    # The two-host layout (group_vars/all/topology.yml) with its db host left out of the inventory.
    before = host.changes()
    hosts = make_inventory(tmp_path, host, filled_in(deploy_key), random_vault(), groups=("app",))
    run = run_preflight(hosts, host, "-e", f"app_image_tarball={image_tarball}")

    assert run.rc != 0
    message, _ = problem(run, "topology", "db group")
    assert f"the app group's hosts {host.name} run without a database" in message
    assert "must hold exactly one host (it holds 0: none)" in message
    assert_untouched(run, host, before)


def test_a_4gb_host_given_the_8gb_budget_is_refused_naming_both_sizes(
    make_host: Callable[..., Host], tmp_path: Path, deploy_key: str, image_tarball: Path
) -> None:
    # The container's cgroup limits are what the host has: 4 GB and one CPU, like a KVM 1 VPS.
    small = make_host("--memory", "4g", "--cpus", "1")
    before = small.changes()
    hosts = make_inventory(tmp_path, small, filled_in(deploy_key), random_vault())
    run = run_preflight(hosts, small, "-e", f"app_image_tarball={image_tarball}")

    assert run.rc != 0
    assert run.recap["changed"] == 0
    memory, edit = problem(run, "budget", "budget_total_mb")
    assert "budget_total_mb is 8192 MB, but this host has 4096 MB" in memory
    assert "the cgroup limit in /sys/fs/cgroup/memory" in memory
    assert edit.startswith(str(tmp_path / "group_vars" / "vps" / "main.yml"))
    vcpus, _ = problem(run, "budget", "budget_vcpus")
    assert "budget_vcpus is 2, but this host has 1 vCPU(s)" in vcpus
    assert_untouched(run, small, before)

    # The same host with a budget for its size passes that check (the plan for 4 GB is its own).
    smaller = {
        **filled_in(deploy_key),
        "budget_total_mb": 4096,
        "budget_vcpus": 1,
        "budget_shares": {
            "postgres": "25%",
            "redis": 128,
            "api": 1024,
            "worker": 640,
            "proxy": 128,
            "monitoring": 128,
            "os_reserve": 384,
            "headroom": "15%",
        },
    }
    fitted = run_preflight(
        make_inventory(tmp_path / "fitted", small, smaller, random_vault()),
        small,
        "-e",
        f"app_image_tarball={image_tarball}",
    )
    assert fitted.rc == 0, fitted.output[-4000:]
    assert_untouched(fitted, small, before)


def test_a_host_that_is_not_debian_is_refused_in_one_sentence(
    make_host: Callable[..., Host], tmp_path: Path, deploy_key: str, image_tarball: Path
) -> None:
    ubuntu = make_host()
    rewrite = f"rm -f /etc/os-release && printf '%s' '{UBUNTU_OS_RELEASE}' > /etc/os-release"
    assert ubuntu.run(rewrite).returncode == 0
    before = ubuntu.changes()
    hosts = make_inventory(tmp_path, ubuntu, filled_in(deploy_key), random_vault())
    run = run_preflight(hosts, ubuntu, "-e", f"app_image_tarball={image_tarball}")

    assert run.rc != 0
    sentence = (
        f"{ubuntu.name} runs Ubuntu 24.04, but the toolkit supports only Debian 12 (bookworm) and "
        "Debian 13 (trixie): reinstall the host with one of them (the provider's panel offers both)."
    )
    assert sentence in run.output, run.output[-3000:]
    assert "Check each role's variables" not in run.output, "a role's validation ran on an unsupported host"
    assert_untouched(run, ubuntu, before)

    # provision.yml run on its own (no preflight): the base role, the first, refuses the host in one
    # sentence before it configures anything (Debian's unattended-upgrades origins on Ubuntu were
    # the silent failure).
    provision = run_playbook("provision.yml", hosts, ubuntu, "-e", f"app_image_tarball={image_tarball}")
    assert provision.rc != 0
    assert f"{ubuntu.name} runs Ubuntu 24.04, which the base role does not support" in provision.output
    assert "TASK [base : Install" not in provision.output
    assert ubuntu.run("test -e /etc/apt/apt.conf.d/50unattended-upgrades").returncode != 0
    assert_untouched(provision, ubuntu, before)


def test_production_refuses_a_direct_api_and_warns_about_each_opt_out(
    host: Host, tmp_path: Path, deploy_key: str, image_tarball: Path
) -> None:
    """No alert channel, no offsite copy and no Traefik image, each opted out of: accepted with a warning
    each (they are not problems); the API published directly: refused, the only problem."""
    before = host.changes()
    overrides = {
        "base_deploy_authorized_keys": [deploy_key],
        "app_domain": "api.invoices.test",
        "traefik_acme_email": "ops@invoices.test",
        "alerting_required": False,
        "backup_offsite_required": False,
        "traefik_image_required": False,
        "app_publish_direct": True,
    }
    hosts = make_inventory(tmp_path, host, overrides, random_vault())
    run = run_preflight(hosts, host, "-e", f"app_image_tarball={image_tarball}")

    assert run.rc != 0
    for variable in ("traefik_image_required", "alerting_required", "backup_offsite_required"):
        assert f"WARNING: {variable} is false in production" in run.output, variable
    assert len(run.problems) == 1, run.problems
    message, edit = problem(run, "production", "app_publish_direct")
    assert "served through Traefik only" in message
    assert edit == str(tmp_path / "group_vars" / "vps" / "main.yml")
    assert_untouched(run, host, before)
