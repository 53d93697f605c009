"""What the docker role promises, checked on the converged Debian 13 host."""

from __future__ import annotations

import json

import pytest
from conftest import http_get


def _info(host) -> dict:
    return json.loads(host.check_output("docker info --format '{{json .}}'"))


def _run(host, image: str, *args: str) -> str:
    return host.check_output(f"docker run --rm {image} " + " ".join(args))


def test_engine_runs_and_starts_at_boot(host) -> None:
    assert host.service("docker").is_running
    assert host.service("docker").is_enabled
    info = _info(host)
    assert info["Driver"] == "overlay2"


def test_daemon_settings_are_in_effect(host) -> None:
    info = _info(host)
    assert info["LoggingDriver"] == "local"
    assert info["LiveRestoreEnabled"] is True
    daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert daemon["log-opts"] == {"max-size": "10m", "max-file": "3"}
    assert daemon["userland-proxy"] is False


def test_config_and_socket_permissions(host) -> None:
    config = host.file("/etc/docker/daemon.json")
    assert (config.user, config.group, config.mode) == ("root", "root", 0o644)
    socket = host.file("/run/docker.sock")
    assert socket.is_socket
    assert (socket.user, socket.group, socket.mode) == ("root", "docker", 0o660)


def test_containers_cannot_gain_privileges(host, tiny_image) -> None:
    status = _run(host, tiny_image, "cat", "/proc/self/status")
    assert "NoNewPrivs:\t1" in status


def test_container_logs_are_rotated(host, tiny_image) -> None:
    host.check_output(f"docker run -d --name logcheck {tiny_image} sleep 60")
    try:
        config = json.loads(
            host.check_output("docker inspect --format '{{json .HostConfig.LogConfig}}' logcheck")
        )
    finally:
        host.run("docker rm -f logcheck")
    assert config["Type"] == "local"


def test_published_ports_bind_to_loopback_without_a_proxy(host, tiny_image) -> None:
    host.check_output(f"docker run -d --name webcheck -p 18080:8080 {tiny_image} httpd -f -p 8080 -h /www")
    try:
        bindings = host.check_output("docker port webcheck 8080/tcp")
        served = http_get(host, "http://127.0.0.1:18080/")
        proxies = host.run("pgrep -x docker-proxy")
    finally:
        host.run("docker rm -f webcheck")
    assert bindings.strip().splitlines() == ["127.0.0.1:18080"]
    assert served == "tiny-ok"
    assert proxies.rc == 1, "docker-proxy runs although userland-proxy is off"


def _get_from_container(host, image: str, address: str, network: str = "bridge") -> str:
    request = 'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 3 ' + f"{address} 8080"
    return host.run(f"docker run --rm --network {network} {image} sh -c '{request}'").stdout


def test_default_bridge_keeps_containers_apart(host, tiny_image) -> None:
    host.check_output(f"docker run -d --name icc-server {tiny_image} httpd -f -p 8080 -h /www")
    host.check_output("docker network create icc-check")
    try:
        host.check_output("docker network connect icc-check icc-server")
        inspect = (
            "docker inspect --format '{{(index .NetworkSettings.Networks \"%s\").IPAddress}}' icc-server"
        )
        on_bridge = host.check_output(inspect % "bridge")
        on_network = host.check_output(inspect % "icc-check")
        from_host = http_get(host, f"http://{on_bridge}:8080/")
        across_bridge = _get_from_container(host, tiny_image, on_bridge)
        # Control: the same client reaches the same server over a user-defined network.
        across_network = _get_from_container(host, tiny_image, on_network, network="icc-check")
    finally:
        host.run("docker rm -f icc-server")
        host.run("docker network rm icc-check")
    assert on_bridge.startswith("172.30.0.")
    assert from_host == "tiny-ok", "the server should answer the host itself"
    assert "tiny-ok" in across_network, "control failed: the probe cannot fetch at all"
    assert "tiny-ok" not in across_bridge, "a container reached another over the default bridge with icc off"


def test_new_networks_come_from_the_configured_pool(host) -> None:
    host.check_output("docker network create pool-check")
    try:
        subnet = host.check_output(
            "docker network inspect --format '{{(index .IPAM.Config 0).Subnet}}' pool-check"
        )
    finally:
        host.run("docker network rm pool-check")
    assert subnet.startswith("172.30."), subnet
    assert subnet.endswith("/24"), subnet


def test_python_sdk_talks_to_the_engine(host) -> None:
    version = host.check_output("python3 -c 'import docker; print(docker.from_env().version()[\"Version\"])'")
    assert version == _info(host)["ServerVersion"]


def test_compose_v2_where_the_distribution_has_it(host) -> None:
    if host.system_info.release.startswith("12"):
        pytest.skip("Debian 12's own packages have no compose v2 (docker_source=docker brings it)")
    assert host.check_output("docker compose version --short").startswith("2.")


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"docker_source": "snap"}, "docker_source"),
        ({"docker_log_max_file": 0}, "docker_log_max_file"),
        ({"docker_bridge_ip": "172.30.0.1"}, "docker_bridge_ip must be a CIDR"),
    ],
)
def test_bad_variable_fails_before_any_change(
    assert_refused_before_change, host, extra_vars: dict, message: str
) -> None:
    assert_refused_before_change("converge.yml", extra_vars, message, watch="md5sum /etc/docker/daemon.json")
