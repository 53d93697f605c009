"""Helpers shared by every scenario's testinfra tests (pytest finds this file above them)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
# The test bench's operator, as the deploy lock and the audit log name it (TOOLKIT_OPERATOR).
OPERATOR = "tester@bench"


SIBLING_IMAGE = "toolkit/systemd-debian:trixie"


def from_sibling(script: str) -> str:
    """Run a bash script in a sibling container: another machine on the test hosts' network."""
    done = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "bash", SIBLING_IMAGE, "-c", script],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def tcp_state(address: str, port: int, timeout: int = 3) -> str:
    """Try a TCP connection to ``address:port`` from a sibling container.

    Returns "open" (connected), "refused" (the host answered with a reset: nothing listens, or a
    REJECT), or "filtered" (no answer within ``timeout`` seconds: a DROP).
    """
    output = from_sibling(f"timeout {timeout} bash -c '</dev/tcp/{address}/{port}'; echo $?")
    code = int(output.strip().splitlines()[-1])
    return {0: "open", 124: "filtered"}.get(code, "refused")


def http_get(host: object, url: str) -> str:
    """GET ``url`` from the test host itself; the body, or "" when nothing answered."""
    script = (
        "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
    )
    result = host.run(f"python3 -c '{script}' {url}")  # type: ignore[attr-defined]
    return result.stdout.strip() if result.rc == 0 else ""


def host_address(host: object) -> str:
    """The test host's address on the controller's Docker network (what siblings connect to)."""
    return host.interface("eth0").addresses[0]  # type: ignore[attr-defined]


def resolve(host: object, expression: str, extra_vars: dict[str, object] | None = None) -> object:
    """Evaluate a Jinja ``expression`` in the host's inventory variables, as converge saw them
    (the debug module runs on the controller; the host is not contacted)."""
    name = host.backend.host  # type: ignore[attr-defined]
    command = [
        "ansible",
        name,
        "-i",
        os.environ["MOLECULE_INVENTORY_FILE"],
        "-m",
        "ansible.builtin.debug",
        "-a",
        f"msg={{{{ {expression} | to_json }}}}",
    ]
    if extra_vars:
        command += ["--extra-vars", json.dumps(extra_vars)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_STDOUT_CALLBACK": "json", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"][name]["msg"])


@dataclass(frozen=True)
class PlaybookRun:
    """The outcome of one ansible-playbook run against a test host."""

    rc: int
    output: str
    recap: dict[str, int]


def _recap(output: str, host: str) -> dict[str, int]:
    """Read ``ok=.. changed=.. failed=..`` for ``host`` from the PLAY RECAP lines."""
    for line in output.splitlines():
        words = line.split()
        if words and words[0] == host and ":" in words:
            pairs = (word.split("=", 1) for word in words[2:] if "=" in word)
            return {key: int(value) for key, value in pairs}
    return {}


@pytest.fixture(scope="session")
def test_key() -> Path:
    """The private half of the deploy user's authorized key (made by molecule/shared/prepare.yml)."""
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "test_ed25519"


@pytest.fixture
def run_playbook(host: object) -> Callable[..., PlaybookRun]:
    """Run a playbook of the scenario (or the project) against the host under test only.

    Uses Molecule's inventory and ansible.cfg (MOLECULE_INVENTORY_FILE, ANSIBLE_CONFIG), so the
    run sees exactly the variables converge saw, plus ``extra_vars``.
    """
    return playbook_runner(host)


def playbook_runner(host: object) -> Callable[..., PlaybookRun]:
    """What the run_playbook fixture returns, for fixtures of a wider scope (several tests that
    assert on the same runs: each ansible-playbook run costs half a minute on this machine)."""
    name = host.backend.host  # type: ignore[attr-defined]

    def run(playbook: str | Path, extra_vars: dict[str, object] | None = None) -> PlaybookRun:
        path = Path(playbook)
        if not path.is_absolute():
            path = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / path
        command = [
            "ansible-playbook",
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            "--limit",
            name,
            str(path),
        ]
        if extra_vars:
            command += ["--extra-vars", json.dumps(extra_vars)]
        env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
        # Who deploys, for the deploy lock and the audit log (app_operator), as run_make says too.
        env["TOOLKIT_OPERATOR"] = OPERATOR
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        output = done.stdout + done.stderr
        return PlaybookRun(done.returncode, output, _recap(output, name))

    return run


@pytest.fixture
def run_make(host: object) -> Callable[..., PlaybookRun]:
    """Run a make target of the project (mk/operate.mk's: status, rollback, logs...) against the host
    under test, as an operator would against an inventory: INVENTORY= Molecule's, HOST= this host.
    ``timeout`` stops a target that does not end by itself (make logs FOLLOW=1): rc is then 124."""
    return make_runner(host)


def make_runner(host: object) -> Callable[..., PlaybookRun]:
    """What the run_make fixture returns, for fixtures of a wider scope."""
    name = host.backend.host  # type: ignore[attr-defined]

    def run(target: str, timeout: float | None = None, **variables: str) -> PlaybookRun:
        command = ["make", "--no-print-directory", "-C", str(PROJECT), target]
        command += [f"INVENTORY={os.environ['MOLECULE_INVENTORY_FILE']}", f"HOST={name}"]
        # The Makefile exports ANSIBLE_FORCE_COLOR=1; only a command-line variable overrides it.
        command += ["ANSIBLE_FORCE_COLOR=0"]
        command += [f"{key}={value}" for key, value in variables.items()]
        env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
        env["TOOLKIT_OPERATOR"] = OPERATOR
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, env=env, check=False, timeout=timeout
            )
        except subprocess.TimeoutExpired as expired:
            output = (expired.stdout or b"").decode() + (expired.stderr or b"").decode()  # type: ignore[union-attr]
            return PlaybookRun(124, output, {})
        output = done.stdout + done.stderr
        return PlaybookRun(done.returncode, output, _recap(output, name))

    return run


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "on_host(name, reason): run the test against the test host `name` only; the other hosts'"
        " items are deselected (the summary counts them). For tests of logic that does not change"
        " with the Debian release, where a second run would only spend the machine's two cores.",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the items of an ``on_host`` test whose host is not the named one."""
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        marker = item.get_closest_marker("on_host")
        callspec = getattr(item, "callspec", None)
        target = callspec.params.get("_testinfra_host") if callspec else None
        if marker is None or target is None:
            kept.append(item)
            continue
        if not marker.kwargs.get("reason"):
            raise pytest.UsageError(f"{item.nodeid}: on_host needs a reason= (why one host is enough)")
        name = target.backend.get_hostname()
        (kept if name == marker.args[0] else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


# A scenario whose tests run under pytest-xdist with --dist loadscope (molecule/backup) tests each
# host on one worker, in file order, the hosts side by side: the scope of a test is its host (the
# testinfra id, e.g. [ansible://backup-debian12-...]), not its module. (--dist loadgroup with
# xdist_group marks would say the same, but pytest-xdist 3.8 cannot rename pytest 9.2's node ids.)
HOST_IN_NODEID = re.compile(r"\[(?:ansible|docker|ssh)://([\w.]+?-debian\d+)")


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling  # only under pytest-xdist

    class ByHost(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            found = HOST_IN_NODEID.search(nodeid)
            return found.group(1) if found else super()._split_scope(nodeid)

    return ByHost(config, log)


TINY_IMAGE = "toolkit/busybox:test"


@pytest.fixture
def tiny_image(host: object) -> str:
    """A small image in the test host's own Docker engine: static busybox, built on the host.

    No registry is reachable, so the image is made from Debian's busybox-static package. It
    serves /www over HTTP with ``httpd -f -p PORT -h /www`` and has ``nc`` for probes (its
    ``wget`` crashes in Debian 12's static build).
    """
    return build_tiny_image(host)


def build_tiny_image(host: object) -> str:
    """What the tiny_image fixture returns (builds the image once per host), for wider scopes."""
    if host.run(f"docker image inspect {TINY_IMAGE}").rc != 0:  # type: ignore[attr-defined]
        host.check_output(  # type: ignore[attr-defined]
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static >/dev/null"
            " && rm -rf /tmp/tiny && mkdir -p /tmp/tiny/bin /tmp/tiny/www"
            " && cp /bin/busybox /tmp/tiny/bin/busybox"
            " && for applet in sh cat sleep httpd nc; do ln -s busybox /tmp/tiny/bin/$applet; done"
            " && echo tiny-ok > /tmp/tiny/www/index.html"
            " && tar -C /tmp/tiny -c . | docker import -c 'ENV PATH=/bin' -c 'CMD [\"/bin/sh\"]'"
            f" - {TINY_IMAGE} >/dev/null"
        )
    return TINY_IMAGE


@pytest.fixture
def assert_refused_before_change(
    host: object, run_playbook: Callable[..., PlaybookRun]
) -> Callable[..., None]:
    """The one shape of every "a bad variable fails before any change" test.

    ``check(playbook, extra_vars, message, watch=..., secrets=...)`` runs ``playbook`` with
    ``extra_vars`` and asserts what an operator relies on: the run fails, its output names the
    problem (``message``), nothing changed (``changed=0`` in the recap, and the output of the
    ``watch`` command on the host, e.g. checksums of the role's files, is the same before and
    after), and none of ``secrets`` is printed.
    """

    def check(
        playbook: str,
        extra_vars: dict[str, object],
        message: str,
        *,
        watch: str,
        secrets: tuple[str, ...] = (),
    ) -> None:
        before = host.check_output(watch)  # type: ignore[attr-defined]
        run = run_playbook(playbook, extra_vars)
        assert run.rc != 0, f"a bad value was accepted: {extra_vars}\n{run.output[-3000:]}"
        assert message in run.output, run.output[-3000:]
        assert run.recap.get("changed") == 0, run.output[-3000:]
        for secret in secrets:
            assert secret not in run.output, "a secret leaked into the output"
        assert host.check_output(watch) == before, f"{watch!r} changed although the run was refused"  # type: ignore[attr-defined]

    return check


# --- Hosts on a scenario network, reached by address (the production scenario) -------------------


def from_sibling_on(network: str, script: str) -> str:
    """Run a bash script in a sibling container on the Docker ``network`` of a scenario: another
    machine beside hosts that have fixed addresses there (Docker isolates bridge networks from
    each other, so a sibling on the default bridge would not reach them)."""
    done = subprocess.run(
        ["docker", "run", "--rm", "--network", network, "--entrypoint", "bash", SIBLING_IMAGE, "-c", script],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def tcp_state_on(network: str, address: str, port: int, timeout: int = 3) -> str:
    """Like tcp_state, from a sibling on ``network``: "open", "refused" or "filtered"."""
    output = from_sibling_on(network, f"timeout {timeout} bash -c '</dev/tcp/{address}/{port}'; echo $?")
    code = int(output.strip().splitlines()[-1])
    return {0: "open", 124: "filtered"}.get(code, "refused")


_HTTP_ON_HOST = """
import json, sys, urllib.error, urllib.request
method, url, headers = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
body = sys.stdin.buffer.read() if method in ("POST", "PUT", "PATCH") else None
request = urllib.request.Request(url, data=body, method=method, headers=headers)
try:
    with urllib.request.urlopen(request, timeout=30) as answer:
        status, head, data = answer.status, dict(answer.headers), answer.read()
except urllib.error.HTTPError as error:
    status, head, data = error.code, dict(error.headers), error.read()
print(json.dumps({"status": status, "headers": head, "body": data.decode(errors="replace")}))
"""


def http_on_host(
    container: str, method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    """One HTTP request made on the test host itself (through ``docker exec``, the bench's own
    access, so a request body of any size travels on stdin): (status, headers, body)."""
    command = ["docker", "exec", "-i", container, "python3", "-c", _HTTP_ON_HOST]
    done = subprocess.run(
        [*command, method, url, json.dumps(headers or {})],
        input=body,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    answer = json.loads(done.stdout)
    return answer["status"], answer["headers"], answer["body"]


# --- The monitoring stack on a converged host ---------------------------------------------------


def prometheus_api(host: object, path: str) -> dict:
    """GET ``path`` of the host's Prometheus HTTP API (on its loopback), as JSON."""
    return json.loads(host.check_output(f"curl -sf 'http://127.0.0.1:9090{path}'"))  # type: ignore[attr-defined]


def prometheus_query(host: object, expression: str) -> list[dict]:
    """The result of an instant PromQL query on the host's Prometheus (the expression URL-encoded:
    curl would take its braces for a glob)."""
    command = (
        f"curl -sfG --data-urlencode {shlex.quote('query=' + expression)} http://127.0.0.1:9090/api/v1/query"
    )
    return json.loads(host.check_output(command))["data"]["result"]  # type: ignore[attr-defined]


def wait_for(predicate: Callable[[], object], timeout: float, what: str, every: float = 3) -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


# --- A user of the API on a deployed host (the production and split scenarios) -------------------

# The API container's loopback port on the host (app_local_port), which monitoring's api check uses.
API_URL = "http://127.0.0.1:8000"


def api_call(
    container: str, method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict]:
    """One request; a 429 (the API's rate limit) is waited out as its Retry-After says, then retried."""
    for _ in range(5):
        status, answer_headers, answer = http_on_host(container, method, url, body, headers)
        if status != 429:
            return status, json.loads(answer or "{}")
        time.sleep(min(int(answer_headers.get("Retry-After", "5")), 65))
    pytest.fail(f"{method} {url}: still rate-limited after 5 waits")


# A receipt photo the offline OCR reads (the production scenario's files).
RECEIPT = Path(__file__).resolve().parent / "production" / "files" / "receipt-supermarket.png"


def unique_photo() -> bytes:
    """RECEIPT with a PNG text chunk of its own: the same picture under another hash, so the
    extraction cache (keyed by the image's sha256) misses and the chain really runs."""
    png = RECEIPT.read_bytes()
    data = b"Comment\x00" + uuid.uuid4().hex.encode()
    chunk = len(data).to_bytes(4, "big") + b"tEXt" + data
    chunk += zlib.crc32(b"tEXt" + data).to_bytes(4, "big")
    assert png[-8:-4] == b"IEND", "RECEIPT must end with its IEND chunk"
    return png[:-12] + chunk + png[-12:]


class Client:
    """A user of the API, on the host, through the API container's loopback port."""

    def __init__(self, container: str, base: str = API_URL) -> None:
        self.container = container
        self.base = base
        self.email = email = f"stack-{uuid.uuid4().hex[:8]}@example.org"
        password = uuid.uuid4().hex
        credentials = json.dumps({"email": email, "password": password}).encode()
        json_header = {"Content-Type": "application/json"}
        status, body = api_call(container, "POST", f"{base}/auth/register", credentials, json_header)
        assert status == 202, body
        status, body = api_call(container, "POST", f"{base}/auth/login", credentials, json_header)
        assert status == 200, body
        self.auth = {"Authorization": f"Bearer {body['access_token']}"}

    def get(self, path: str) -> dict:
        status, body = api_call(self.container, "GET", f"{self.base}{path}", headers=self.auth)
        assert status == 200, (path, status, body)
        return body

    def upload(self, *photos: bytes) -> str:
        boundary = uuid.uuid4().hex
        part = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="receipt.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        body = b"".join(part + photo + b"\r\n" for photo in photos) + f"--{boundary}--\r\n".encode()
        headers = {**self.auth, "Content-Type": f"multipart/form-data; boundary={boundary}"}
        status, answer = api_call(self.container, "POST", f"{self.base}/invoices/upload", body, headers)
        assert status == 202, answer
        return answer["invoice_id"]

    def wait_until_settled(self, invoice_id: str, seconds: int = 240) -> dict:
        deadline = time.monotonic() + seconds
        detail: dict = {}
        while time.monotonic() < deadline:
            detail = self.get(f"/invoices/{invoice_id}")
            if detail["status"] in ("extracted", "failed"):
                return detail
            time.sleep(3)
        pytest.fail(f"invoice {invoice_id} still {detail.get('status')} after {seconds} s: {detail}")


def ssh_login(
    address: str, user: str, key: Path, command: str = "id --user --name"
) -> subprocess.CompletedProcess[str]:
    """One SSH login from the controller, offering ``key`` only (no agent, no known hosts)."""
    return subprocess.run(
        [
            "ssh",
            "-i",
            str(key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=10",
            f"{user}@{address}",
            command,
        ],
        capture_output=True,
        text=True,
        check=False,
    )


# --- An alert channel on the test host: a webhook receiver on its loopback ------------------------
# Scenarios point alerting_webhook_url at http://127.0.0.1:8766/toolkit-alerts (molecule/base).
WEBHOOK_PORT = 8766
WEBHOOK_RECORD = "/var/tmp/webhook-posts.jsonl"
ALERT_PATH = "/toolkit-alerts"
_WEBHOOK_SERVER = """
import http.server, json, time

class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        record = {{"path": self.path, "title": self.headers["Title"], "priority": self.headers["Priority"],
                   "body": body, "at": time.time()}}
        with open("{record}", "a") as out:
            out.write(json.dumps(record) + "\\n")
        self.send_response(200)
        self.end_headers()

    def do_GET(self):
        self.send_response(200 if self.path == "/health/ready" else 404)
        self.end_headers()

http.server.HTTPServer(("127.0.0.1", {port}), Handler).serve_forever()
"""


def webhook_posts(host: object, path: str | None = ALERT_PATH) -> list[dict[str, str]]:
    """The POSTs the webhook receiver recorded to ``path`` (the alert channel by default; None: all),
    oldest first (title, priority, body, path). The base scenario's Watchdog posts to /deadman on the
    same receiver every 20 s, whichever test is running."""
    record = host.file(WEBHOOK_RECORD)  # type: ignore[attr-defined]
    if not record.exists:
        return []
    posts = [json.loads(line) for line in record.content_string.splitlines()]
    return [post for post in posts if path is None or post["path"] == path]


@pytest.fixture
def webhook(host: object) -> Iterator[str]:
    """The webhook receiver on the host's loopback (a transient unit); yields the file of its POSTs."""
    script = _WEBHOOK_SERVER.format(record=WEBHOOK_RECORD, port=WEBHOOK_PORT)
    host.check_output(f"printf %s {shlex.quote(script)} > /var/tmp/webhook.py")  # type: ignore[attr-defined]
    host.run(f"systemctl stop test-webhook-listener; rm -f {WEBHOOK_RECORD}")  # type: ignore[attr-defined]
    host.check_output("systemd-run --unit test-webhook-listener python3 /var/tmp/webhook.py")  # type: ignore[attr-defined]
    for _ in range(50):
        if host.run(f"timeout 1 bash -c '</dev/tcp/127.0.0.1/{WEBHOOK_PORT}'").rc == 0:  # type: ignore[attr-defined]
            break
        time.sleep(0.1)
    yield WEBHOOK_RECORD
    host.run("systemctl stop test-webhook-listener")  # type: ignore[attr-defined]
