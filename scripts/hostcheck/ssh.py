"""sshd as the outside sees it: its banner, and ssh-audit's hardened policy for its Debian release.

Debian 13's OpenSSH (10.0) penalises an address whose connections end without trying to log in
(PerSourcePenalties noauth:1, one second each, enforced once an address has more than min:15
seconds): a scan is such connections. Here they are few (this banner, then ssh-audit's policy
audit, which runs no connection-rate test); the banner is read again afterwards, so a penalty or a
fail2ban ban the scan caused is reported instead of meeting the next `make deploy`.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from hostcheck.results import Result, failed, passed

# ssh-audit's built-in policies, the ones the ssh_hardening role implements and its Molecule
# scenario audits (molecule/ssh_hardening/tests/test_ssh_hardening.py).
POLICIES = {12: "Hardened Debian 12 (version 3)", 13: "Hardened Debian 13 (version 1)"}
# ufw's `limit` rule refuses an address that opened 6 connections within this many seconds.
UFW_LIMIT_WINDOW = 30.0
# fail2ban reads sshd's journal and bans within about a second of the lines it counts: the banner is
# read again only after this long, so a ban the scan caused is seen instead of raced past.
SETTLE_SECONDS = 5.0
# OpenSSH upstream versions Debian ships, when the banner carries no "debNN" suffix.
OPENSSH_RELEASES = {"9.2": 12, "10.0": 13}


def read_banner(address: str, port: int, timeout: float = 10.0) -> str:
    """sshd's identification line (one connection, closed before the key exchange)."""
    with socket.create_connection((address, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        data = b""
        while b"\n" not in data and len(data) < 512:
            chunk = sock.recv(256)
            if not chunk:
                break
            data += chunk
    line = next((line for line in data.decode(errors="replace").splitlines() if line.startswith("SSH-")), "")
    if not line:
        raise ConnectionError(f"{address}:{port} closed the connection without an SSH banner")
    return line.strip()


def debian_release(banner: str) -> int | None:
    """12 or 13 from "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u7" / "SSH-2.0-OpenSSH_10.0p2 Debian-7"."""
    if "Debian" not in banner:
        return None
    suffix = re.search(r"\+deb(\d+)u\d+", banner)
    if suffix:
        return int(suffix.group(1))
    version = re.search(r"OpenSSH_(\d+\.\d+)", banner)
    return OPENSSH_RELEASES.get(version.group(1)) if version else None


def ssh_audit_command(address: str, port: int, policy: str) -> list[str]:
    """ssh-audit from this venv (requirements-dev.txt pins it), policy audit only."""
    beside = Path(sys.executable).parent / "ssh-audit"
    program = str(beside) if beside.exists() else shutil.which("ssh-audit") or "ssh-audit"
    return [
        program,
        "--no-colors",
        "--timeout=15",
        "--skip-rate-test",
        "-p",
        str(port),
        "-P",
        policy,
        address,
    ]


def audit_result(policy: str, returncode: int, report: str) -> Result:
    """PASS when ssh-audit exited 0 and printed that the policy passed."""
    if returncode == 0 and "Passed" in report and f"Policy: {policy}" in report:
        return passed("ssh-audit", f"policy {policy!r} passed")
    lines = [line.strip() for line in report.splitlines() if line.strip()]
    detail = "; ".join(
        line for line in lines if "Failed" in line or "Errors" in line or "error" in line.lower()
    )
    return failed(
        "ssh-audit", f"policy {policy!r} did not pass (exit {returncode}): {detail or ' '.join(lines[-5:])}"
    )


def check_ssh_audit(address: str, port: int, banner: str, timeout: float = 180.0) -> Result:
    """Run ssh-audit's hardened policy for the release the banner names."""
    release = debian_release(banner)
    if release not in POLICIES:
        return failed(
            "ssh-audit", f"banner {banner!r} names no Debian 12 or 13 OpenSSH; no hardened policy to audit"
        )
    policy = POLICIES[release]
    try:
        run = subprocess.run(
            ssh_audit_command(address, port, policy),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return failed("ssh-audit", f"could not run ssh-audit: {exc}")
    return audit_result(policy, run.returncode, run.stdout + run.stderr)


def check_still_reachable(
    address: str, port: int, window: float = UFW_LIMIT_WINDOW + 1, settle: float = SETTLE_SECONDS
) -> Result:
    """After the scans, sshd still greets this controller (no PerSourcePenalties drop, no fail2ban ban).

    It first waits `settle` seconds, for a ban the scan caused to land. A refused connection may be
    ufw's SSH rate limit (`limit`: a sixth new connection within 30 seconds is refused, and every
    refused attempt counts again): wait out its window without connecting, then ask once more. Only
    a refusal that outlasts the window fails.
    """
    time.sleep(settle)
    try:
        banner = read_banner(address, port)
        return passed("ssh-after-scan", f"sshd still greets this controller after the scans ({banner})")
    except ConnectionRefusedError:
        time.sleep(window)
    except OSError as exc:
        return _unreachable_after_scan(address, port, exc)
    try:
        banner = read_banner(address, port)
    except OSError as exc:
        return _unreachable_after_scan(address, port, exc)
    return passed(
        "ssh-after-scan",
        f"sshd greets this controller again ({banner}) after ufw's SSH rate limit refused it for up to "
        f"{window:.0f} s (a deploy right after a scan waits as long)",
    )


def _unreachable_after_scan(address: str, port: int, exc: OSError) -> Result:
    return failed(
        "ssh-after-scan",
        f"sshd on {address}:{port} no longer greets this controller ({exc}): the "
        "scan got it penalised (sshd PerSourcePenalties) or banned (fail2ban); "
        "see docs/DEPLOYMENT.md, 'make verify'",
    )
