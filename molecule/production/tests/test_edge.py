"""The edge as the outside sees it: Traefik in front of the API, on the production hosts.

These tests need the running proxy, so the pinned Traefik image (roles/traefik/defaults/main.yml).
No registry is reachable from this machine: where the controller's engine has the image (pulled
elsewhere and loaded, or `docker load -i` of a tarball named by TRAEFIK_IMAGE_TARBALL), the fixture
loads it into the host's engine and runs playbooks/deploy.yml, which then starts the proxy; where
it has not, every test here is skipped with that reason. Nothing stands in for Traefik.

Requests come from a sibling container on the hosts' network (another machine), by address, with
the API's host name (host_vars/_shared/bench.yml: app_domain) in the Host header and in SNI.
Let's Encrypt is out of reach from the bench, so the certificate served is Traefik's default one
(ACME cannot run).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml
from conftest import PROJECT, from_sibling_on, resolve

IMAGE: str = yaml.safe_load((PROJECT / "roles/traefik/defaults/main.yml").read_text())["traefik_image"]
NO_IMAGE = f"no Traefik image can be had on this machine (no registry): no {IMAGE} in the controller's engine"
NETWORK = "production-bench"
DOMAIN = "api.invoices.test"

# Runs in the sibling: one request by address with the API's name as Host and SNI, TLS unverified
# (the certificate is checked by what it says, below); prints status, headers and the certificate.
_REQUEST = r"""
import http.client, json, socket, ssl, sys, tempfile
scheme, address, path, name = sys.argv[1:5]
certificate = {}
if scheme == "https":
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection(name, 443, timeout=10, context=context)
    raw = socket.create_connection((address, 443), timeout=10)
    connection.sock = context.wrap_socket(raw, server_hostname=name)
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as pem:
        pem.write(ssl.DER_cert_to_PEM_cert(connection.sock.getpeercert(binary_form=True)))
        pem.flush()
        certificate = ssl._ssl._test_decode_cert(pem.name)
else:
    connection = http.client.HTTPConnection(address, 80, timeout=10)
connection.request("GET", path, headers={"Host": name})
answer = connection.getresponse()
print(json.dumps({"status": answer.status, "headers": dict(answer.getheaders()), "certificate": certificate}))
"""


def _docker(*args: str) -> int:
    return subprocess.run(["docker", *args], capture_output=True, check=False).returncode


def _controller_has_image() -> bool:
    tarball = os.environ.get("TRAEFIK_IMAGE_TARBALL", "")
    if tarball and _docker("load", "-i", tarball) != 0:
        pytest.fail(f"TRAEFIK_IMAGE_TARBALL={tarball} could not be loaded")
    return _docker("image", "inspect", IMAGE) == 0


@pytest.fixture(scope="module")
def edge(host) -> str:
    """The host's address, with Traefik running on it; skips where no image can be had."""
    if not _controller_has_image():
        pytest.skip(NO_IMAGE)
    name = host.backend.host
    if host.run(f"docker image inspect {IMAGE}").rc != 0:
        save = subprocess.Popen(["docker", "save", IMAGE], stdout=subprocess.PIPE)
        subprocess.run(["docker", "exec", "-i", name, "docker", "load"], stdin=save.stdout, check=True)
        save.wait()
    if host.run("docker inspect --format '{{.State.Running}}' traefik").stdout.strip() != "true":
        deploy = subprocess.run(
            [
                "ansible-playbook",
                "-i",
                os.environ["MOLECULE_INVENTORY_FILE"],
                "--limit",
                name,
                str(PROJECT / "playbooks" / "deploy.yml"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    return str(resolve(host, "ansible_host"))


def _get(address: str, scheme: str, path: str = "/health/ready") -> dict:
    output = from_sibling_on(NETWORK, f"python3 -c '{_REQUEST}' {scheme} {address} {path} {DOMAIN}")
    return json.loads(output.strip().splitlines()[-1])


def test_http_redirects_to_https(edge: str) -> None:
    answer = _get(edge, "http", "/health/ready")
    assert answer["status"] in (301, 308), answer
    assert answer["headers"]["Location"] == f"https://{DOMAIN}/health/ready"


def test_https_serves_the_api_with_a_certificate(edge: str) -> None:
    answer = _get(edge, "https")
    assert answer["status"] == 200, answer
    subject = dict(pair for rdn in answer["certificate"]["subject"] for pair in rdn)
    # Let's Encrypt is out of reach from the bench: Traefik's own default certificate is what a
    # host serves until ACME succeeds (make verify checks the real one on a real host).
    assert subject.get("commonName") in (DOMAIN, "TRAEFIK DEFAULT CERT"), answer["certificate"]


def test_hsts_and_the_security_headers(edge: str) -> None:
    headers = {key.lower(): value for key, value in _get(edge, "https")["headers"].items()}
    assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"


@pytest.mark.parametrize("path", ["/metrics", "/docs", "/openapi.json"])
def test_internal_paths_are_not_served_outside(edge: str, path: str) -> None:
    assert _get(edge, "https", path)["status"] in (403, 404)


def test_the_edge_rate_limit_answers_429(edge: str) -> None:
    # 100 a minute with bursts of 50 per client address (traefik_rate_limit_*): 200 at once exceed it.
    burst = (
        "import http.client, ssl\n"
        "context = ssl.create_default_context(); context.check_hostname = False;"
        " context.verify_mode = ssl.CERT_NONE\n"
        f"c = http.client.HTTPSConnection('{edge}', 443, timeout=10, context=context)\n"
        "codes = []\n"
        "for _ in range(200):\n"
        f"    c.request('GET', '/health', headers={{'Host': '{DOMAIN}'}}); r = c.getresponse(); r.read()\n"
        "    codes.append(r.status)\n"
        "print(' '.join(map(str, codes)))\n"
    )
    codes = from_sibling_on(NETWORK, f'python3 -c "{burst}"').split()
    assert "429" in codes, f"no 429 among {len(codes)} requests: {sorted(set(codes))}"


def test_the_edge_refuses_a_body_longer_than_the_largest_upload(host, edge: str) -> None:
    """traefik_max_request_body_bytes (the API's upload bound): one KiB more is answered 413 by
    Traefik itself (its plain-text body, not the API's JSON), before the API reads any of it."""
    limit = int(resolve(host, "traefik_max_request_body_bytes"))
    assert limit == 5 * 10 * 1024 * 1024 + 65536
    post = (
        "import http.client, ssl\n"
        "context = ssl.create_default_context(); context.check_hostname = False;"
        " context.verify_mode = ssl.CERT_NONE\n"
        f"c = http.client.HTTPSConnection('{edge}', 443, timeout=60, context=context)\n"
        f"c.request('POST', '/invoices/upload', body=b'x' * {limit + 1024},"
        f" headers={{'Host': '{DOMAIN}', 'Content-Type': 'application/octet-stream'}})\n"
        "r = c.getresponse(); r.read()\n"
        "print(r.status, r.getheader('Content-Type'))\n"
    )
    status, content_type = from_sibling_on(NETWORK, f'python3 -c "{post}"').split()[-2:]
    assert status == "413"
    assert not content_type.startswith("application/json")  # Traefik's answer, not the API's
