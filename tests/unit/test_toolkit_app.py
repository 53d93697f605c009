"""toolkit-app (the host side of make status/releases/logs/exec/...) and scripts/on_host.py, which
runs it over SSH: what they print and which commands they build."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from role_scripts import load_role_script

ta = load_role_script("app", "toolkit_app")
_spec = importlib.util.spec_from_file_location(
    "on_host", Path(__file__).resolve().parents[2] / "scripts" / "on_host.py"
)
assert _spec is not None
assert _spec.loader is not None
on_host = importlib.util.module_from_spec(_spec)
sys.modules["on_host"] = on_host
_spec.loader.exec_module(on_host)

SETTINGS = ta.Settings(
    project="invoice-service",
    base_dir=Path("/opt/invoice-service"),
    log_sources={
        "traefik": {"container": "traefik"},
        "postgres": {"file": "/nonexistent/postgresql-*-main.log"},
        "redis": {"unit": "redis-server"},
    },
)


def test_releases_are_listed_newest_live_first_with_the_live_and_pinned_ones_marked() -> None:
    releases = [
        ta.Release("0.1.0-aaaa", "2026-11-30T10:00:00+00:00"),
        ta.Release("0.1.0-cccc", None),
        ta.Release("0.1.0-bbbb", "2026-12-01T09:00:00+00:00"),
    ]
    lines = ta.release_lines(releases, live="0.1.0-aaaa", pinned="0.1.0-aaaa")
    assert lines == [
        "  0.1.0-bbbb  went live 2026-12-01T09:00:00+00:00",
        "* 0.1.0-aaaa  went live 2026-11-30T10:00:00+00:00  (pinned)",
        "  0.1.0-cccc  never went live",
    ]


def test_pin_and_lock_lines_say_who_when_and_what_to_do() -> None:
    assert ta.pin_line(None).startswith("not pinned")
    pin = {
        "version": "0.1.0-aaaa",
        "by": "ana@laptop",
        "at": "2026-12-01T09:00:00+00:00",
        "reason": "rollback from b",
    }
    line = ta.pin_line(pin)
    assert line.startswith(
        "PINNED to 0.1.0-aaaa by ana@laptop at 2026-12-01T09:00:00+00:00 (rollback from b)"
    )
    assert "make app-deploy" in line
    assert ta.lock_line(None) == "deploy lock: free"
    holder = {"by": "bo@ci", "at": "2026-12-01T09:01:00+00:00", "action": "deploy", "version": "0.2.0-x"}
    assert (
        ta.lock_line(holder) == "deploy lock: HELD by bo@ci since 2026-12-01T09:01:00+00:00 (deploy 0.2.0-x)"
    )


@pytest.mark.parametrize(
    "output",
    [
        # compose >= 2.21: one object per line
        '{"Service": "worker", "State": "running", "Health": "", "Status": "Up 2 minutes"}\n'
        '{"Service": "api", "State": "running", "Health": "healthy", "Status": "Up 2 minutes (healthy)"}\n',
        # older compose: one array
        '[{"Service": "worker", "State": "running", "Health": "", "Status": "Up 2 minutes"},'
        ' {"Service": "api", "State": "running", "Health": "healthy", "Status": "Up 2 minutes (healthy)"}]',
    ],
)
def test_compose_ps_in_either_format_becomes_one_line_per_service(output: str) -> None:
    lines = ta.container_lines(ta.parse_compose_ps(output))
    assert [line.split()[:3] for line in lines] == [
        ["api", "running", "(healthy)"],
        ["worker", "running", "Up"],
    ]
    assert ta.container_lines(ta.parse_compose_ps("")) == [
        "  (no container: the app is not deployed or was removed)"
    ]


def test_log_commands_by_service() -> None:
    release = Path("/opt/invoice-service/releases/0.1.0-aaaa")
    api = ta.log_command(SETTINGS, release, "api", follow=True, lines=50)
    assert api[:2] == ["docker", "compose"]
    assert api[-6:] == ["--no-color", "--tail", "50", "--timestamps", "--follow", "api"]
    assert "--project-name" in api
    assert str(release / "compose.yaml") in api
    assert ta.log_command(SETTINGS, release, "traefik", follow=False, lines=10) == [
        "docker", "logs", "--tail", "10", "traefik",
    ]  # fmt: skip
    # A glob without a match is passed on as it is (tail then names the missing file).
    assert ta.log_command(SETTINGS, release, "postgres", follow=True, lines=5) == [
        "tail", "-n", "5", "-F", "/nonexistent/postgresql-*-main.log",
    ]  # fmt: skip
    assert ta.log_command(SETTINGS, release, "redis", follow=False, lines=5)[-2:] == ["-u", "redis-server"]
    with pytest.raises(
        ta.AppError, match="no service nginx \\(known: api, worker, postgres, redis, traefik\\)"
    ):
        ta.log_command(SETTINGS, release, "nginx", follow=False, lines=5)


def test_the_newest_log_file_of_a_glob_is_followed(tmp_path: Path) -> None:
    for version in ("15", "17"):
        (tmp_path / f"postgresql-{version}-main.log").write_text("")
    settings = ta.Settings(
        "p", tmp_path, log_sources={"postgres": {"file": str(tmp_path / "postgresql-*-main.log")}}
    )
    assert ta.log_command(settings, tmp_path, "postgres", follow=False, lines=1)[-1].endswith(
        "postgresql-17-main.log"
    )


def _host(tmp_path: Path) -> ta.Settings:
    settings = ta.Settings("invoice-service", tmp_path)
    for version, stamp in (("1.0-a", "2026-11-30T10:00:00+00:00"), ("1.0-b", "2026-12-01T10:00:00+00:00")):
        (tmp_path / "releases" / version).mkdir(parents=True)
        (tmp_path / "releases" / version / ".live").write_text(stamp + "\n")
    (tmp_path / "current").symlink_to(tmp_path / "releases" / "1.0-a")
    return settings


def test_releases_on_a_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = _host(tmp_path)
    (tmp_path / "pin.json").write_text(json.dumps({"version": "1.0-a"}))
    assert ta.command_releases(settings) == 0
    assert capsys.readouterr().out.splitlines() == [
        "  1.0-b  went live 2026-12-01T10:00:00+00:00",
        "* 1.0-a  went live 2026-11-30T10:00:00+00:00  (pinned)",
    ]


def test_unlock_breaks_the_lock_and_audits_who_held_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _host(tmp_path)
    monkeypatch.setenv("TOOLKIT_OPERATOR", "ana@laptop")
    assert ta.command_unlock(settings) == 0
    assert "nothing to break" in capsys.readouterr().out
    (tmp_path / "deploy.lock").mkdir()
    holder = {"by": "bo@ci", "at": "2026-12-01T09:01:00+00:00", "action": "deploy", "version": "1.0-c"}
    (tmp_path / "deploy.lock" / "holder.json").write_text(json.dumps(holder))
    assert ta.command_unlock(settings) == 0
    assert not (tmp_path / "deploy.lock").exists()
    assert "broke the deploy lock: HELD by bo@ci" in capsys.readouterr().out
    (line,) = (tmp_path / "audit.log").read_text().splitlines()
    assert " unlock by ana@laptop: broke the deploy lock: HELD by bo@ci since " in line
    assert oct((tmp_path / "audit.log").stat().st_mode & 0o777) == "0o640"


def test_no_live_release_says_to_deploy_first(tmp_path: Path) -> None:
    with pytest.raises(ta.AppError, match=r"no live release .* run make deploy first"):
        ta.command_status(ta.Settings("invoice-service", tmp_path))


def test_exec_needs_a_command(tmp_path: Path) -> None:
    with pytest.raises(ta.AppError, match="nothing to run"):
        ta.command_exec(_host(tmp_path), [], interactive=False)


# --- scripts/on_host.py ------------------------------------------------------------------------

DEBUG_OUTPUT = (
    'vps1 | SUCCESS => {"changed": false, "msg": {"address": "203.0.113.10", "connection": "ssh", '
    '"key": "~/.ssh/id_ed25519", "port": 2222, "ssh_args": "-o IdentitiesOnly=yes ", "user": "deploy"}}\n'
)


def test_on_host_reads_the_connection_ansible_would_use() -> None:
    (connection,) = on_host.parse_debug_output(DEBUG_OUTPUT).values()
    assert connection == on_host.Connection(
        "vps1", "ssh", "203.0.113.10", 2222, "deploy", "~/.ssh/id_ed25519", "-o IdentitiesOnly=yes"
    )
    with pytest.raises(on_host.OnHostError, match="could not read vps1's connection: UNREACHABLE"):
        on_host.parse_debug_output("vps1 | UNREACHABLE! => {}")


def test_on_host_runs_the_command_as_root_over_ssh_or_docker_exec() -> None:
    (connection,) = on_host.parse_debug_output(DEBUG_OUTPUT).values()
    line = on_host.remote_command(
        connection, ["toolkit-app", "exec", "--", "sh", "-c", "echo 'hi'"], tty=False, operator="ana@laptop"
    )
    assert line[:4] == ["ssh", "-T", "-p", "2222"]
    assert "ControlMaster=auto" in line  # one connection shared by the commands of a minute
    assert line[line.index("-i") + 1] == "~/.ssh/id_ed25519".replace("~", str(Path.home()))
    assert line[-3:-1] == ["IdentitiesOnly=yes", "deploy@203.0.113.10"]
    assert line[-1] == (
        "sudo --non-interactive env TOOLKIT_OPERATOR=ana@laptop toolkit-app exec -- sh -c "
        "'echo '\"'\"'hi'\"'\"''"
    )
    root = on_host.Connection("h", "ssh", "h", 22, "root", "", "")
    assert on_host.remote_command(root, ["toolkit-app", "status"], tty=True, operator="o")[:2] == [
        "ssh",
        "-t",
    ]
    assert on_host.remote_command(root, ["toolkit-app", "status"], tty=True, operator="o")[-1] == (
        "env TOOLKIT_OPERATOR=o toolkit-app status"
    )
    docker = on_host.Connection("sandbox", "community.docker.docker", "sandbox", 22, "root", "", "")
    assert on_host.remote_command(docker, ["toolkit-app", "logs"], tty=False, operator="o") == [
        "docker", "exec", "-i", "sandbox", "env", "TOOLKIT_OPERATOR=o", "toolkit-app", "logs",
    ]  # fmt: skip
