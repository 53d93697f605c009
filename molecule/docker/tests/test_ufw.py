"""What the ufw role promises, checked on the converged hosts and from a sibling machine."""

from __future__ import annotations

import subprocess
import time

import pytest
from conftest import from_sibling, host_address, tcp_state


def _listen(host, port: int) -> None:
    """A plain TCP service on the host itself (busybox httpd daemonizes)."""
    host.check_output(f"mkdir -p /tmp/www && busybox httpd -p {port} -h /tmp/www")


def _stop_listening(host, port: int) -> None:
    host.run(f"pkill -f 'busybox httpd -p {port} '")


def test_status_shows_policies_and_rules(host) -> None:
    status = host.check_output("ufw status verbose")
    assert "Status: active" in status
    assert "Default: deny (incoming), allow (outgoing), deny (routed)" in status
    lines = [" ".join(line.split()) for line in status.splitlines()]
    for rule in (
        "22/tcp LIMIT IN Anywhere # ssh",
        "80/tcp ALLOW IN Anywhere # public",
        "443/tcp ALLOW IN Anywhere # public",
        "22/tcp (v6) LIMIT IN Anywhere (v6) # ssh",
        "80/tcp (v6) ALLOW IN Anywhere (v6) # public",
        "80/tcp ALLOW FWD Anywhere # docker",
        "443/tcp ALLOW FWD Anywhere # docker",
    ):
        assert rule in lines, f"missing rule {rule!r} in:\n{status}"


def test_forwarding_stays_on_for_docker(host) -> None:
    assert host.sysctl("net.ipv4.ip_forward") == 1


def test_unlisted_port_is_dropped_and_public_port_answers(host, tiny_image) -> None:
    address = host_address(host)
    _listen(host, 8000)
    _listen(host, 80)
    try:
        assert tcp_state(address, 8000) == "filtered"
        assert tcp_state(address, 80) == "open"
        # Allowed but nobody listening: the host answers with a reset.
        assert tcp_state(address, 443) == "refused"
    finally:
        _stop_listening(host, 8000)
        _stop_listening(host, 80)


def test_ssh_is_rate_limited(host, tiny_image) -> None:
    address = host_address(host)
    _listen(host, 22)
    try:
        results = from_sibling(
            "for i in $(seq 10); do"
            f" timeout 2 bash -c '</dev/tcp/{address}/22' && echo open || echo blocked; done"
        ).split()
    finally:
        _stop_listening(host, 22)
    assert results[0] == "open"
    assert "blocked" in results, f"10 quick connections were all accepted: {results}"


def _wait_for_boot(host) -> None:
    for _ in range(60):
        state = host.run("systemctl is-system-running").stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(1)
    pytest.fail(f"host did not finish booting: {state}")


def test_published_container_port_stays_closed_until_a_route_rule(host, tiny_image) -> None:
    """Docker's DNAT would bypass ufw; DOCKER-USER keeps it closed, across restarts and reboots."""
    address = host_address(host)
    host.check_output(
        f"docker run -d --name exposed --restart unless-stopped -p 0.0.0.0:8081:8080 {tiny_image}"
        " httpd -f -p 8080 -h /www"
    )
    try:
        assert host.check_output("docker port exposed 8080/tcp") == "0.0.0.0:8081"
        assert tcp_state(address, 8081) == "filtered"

        host.check_output("ufw route allow proto tcp from any to any port 8080")
        assert tcp_state(address, 8081) == "open"
        host.check_output("ufw route delete allow proto tcp from any to any port 8080")
        assert tcp_state(address, 8081) == "filtered"

        host.check_output("systemctl restart docker")
        assert tcp_state(address, 8081) == "filtered", "open after a Docker restart"

        subprocess.run(["docker", "restart", host.backend.host], check=True, capture_output=True)
        _wait_for_boot(host)
        assert host.check_output("docker inspect --format '{{.State.Running}}' exposed") == "true"
        assert tcp_state(address, 8081) == "filtered", "open after a reboot"
    finally:
        host.run("docker rm -f exposed")


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"ufw_default_incoming_policy": "maybe"}, "ufw_default_incoming_policy"),
        ({"ufw_ssh_port": 70000}, "Ports must be 1-65535"),
        ({"ufw_rules": [{"rule": "allow", "port": 0}]}, "Ports must be 1-65535"),
        ({"ufw_rules": [{"rule": "permit", "port": 25}]}, "rule"),
    ],
)
def test_bad_variable_fails_before_any_change(
    assert_refused_before_change, host, extra_vars: dict, message: str
) -> None:
    assert_refused_before_change("converge.yml", extra_vars, message, watch="ufw status verbose")
