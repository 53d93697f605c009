"""Traefik's rendered configuration against the strict Traefik v3 JSON schemas.

No Traefik binary or image can be had on this machine, so the configuration the traefik role writes
is checked the way Traefik would read it: the role's own templates are rendered by Ansible
(tests/traefik/render.yml) with the sandbox's inventory and with the production inventory's values,
then traefik.yml is validated against the static schema and every file of the file provider's
directory against the dynamic one (tests/traefik/schemas/, SchemaStore's, Apache-2.0).
"""

from __future__ import annotations

import atexit
import copy
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "tests" / "traefik" / "schemas"
TEMPLATES = ROOT / "roles" / "traefik" / "templates" / "etc" / "traefik"
RENDER = ROOT / "tests" / "traefik" / "render.yml"
# The ansible-playbook beside this interpreter (the venv's), else the one on PATH.
PLAYBOOK = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) or "ansible-playbook"

# The vault's secrets (the app role's checks read them; nothing here uses them).
SECRETS: dict[str, object] = {
    "postgres_app_password": "render-check-" + "p" * 24,
    "redis_password": "render-check-" + "r" * 24,
    "app_jwt_secret": "render-check-" + "j" * 40,
}
# Production's own values (inventories/production/group_vars/vps/main.yml) with the dashboard on as
# its commented example shows; test values stand in for its placeholders (an example.net address
# is refused by the role, and the htpasswd line comes from the vault).
PRODUCTION_VALUES: dict[str, object] = {
    **SECRETS,
    "app_domain": "api.toolkit-test.dev",
    "traefik_acme_email": "ops@toolkit-test.dev",
    "traefik_dashboard_enabled": True,
    "traefik_dashboard_host": "traefik.toolkit-test.dev",
    "traefik_dashboard_users": ["admin:$2y$05$abcdefghijklmnopqrstuuWl1IsRBpmB7nb1Gx3FMMwcMvBdSGMc."],
}
INVENTORIES: dict[str, tuple[str, dict[str, object]]] = {
    "local": ("sandbox", SECRETS),
    "production": ("vps1", PRODUCTION_VALUES),
}


def _validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    """A validator of the draft the schema names in $schema (draft-07 for both), schema checked."""
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


@functools.cache
def static_validator() -> jsonschema.protocols.Validator:
    """The static schema, with its top level closed: SchemaStore's leaves it open, Traefik does not
    (an unknown top-level key stops it: "field not found, node: services", traefik/traefik#9840)."""
    schema = json.loads((SCHEMAS / "traefik-v3.json").read_text())
    return _validator({**schema, "additionalProperties": False})


@functools.cache
def dynamic_validator() -> jsonschema.protocols.Validator:
    return _validator(json.loads((SCHEMAS / "traefik-v3-file-provider.json").read_text()))


def _validator_for(name: str) -> jsonschema.protocols.Validator:
    return static_validator() if name == "traefik.yml" else dynamic_validator()


def _flatten(error: jsonschema.ValidationError) -> Iterator[str]:
    """An error and, for oneOf/anyOf, the errors of each alternative: "path: message" lines."""
    where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
    yield f"{where}: {error.message[:200]}"
    for suberror in error.context or ():
        yield from _flatten(suberror)


def problems(document: object, validator: jsonschema.protocols.Validator) -> list[str]:
    """Every schema violation of ``document``."""
    return [line for error in validator.iter_errors(document) for line in _flatten(error)]


Rendered = dict[str, dict[str, str]]


@functools.cache
def _image_tarball() -> Path:
    """What the app role's validation looks for on the controller: a tarball and its manifest beside
    it (`make package` writes the real ones into dist/; rendering needs only their names), so the
    render runs on a fresh clone before anything is packaged."""
    directory = Path(tempfile.mkdtemp(prefix="toolkit-render-dist-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    tarball = directory / "invoice-service-0.0.0-render.tar.gz"
    tarball.write_bytes(b"")
    manifest = {"version": "0.0.0-render", "image": "invoice-service:0.0.0-render", "image_id": "sha256:0"}
    (directory / "invoice-service-0.0.0-render.json").write_text(
        json.dumps({**manifest, "tarball": tarball.name})
    )
    return tarball


def _render(inventory: str, values: dict[str, object]) -> subprocess.Popen[str]:
    """Start render.yml for an inventory, with the json callback."""
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
    }
    # Never the inventory's connection: should a task need a host, it is this controller. render.yml
    # gathers no facts, so the addresses group_vars/all reads from them are given (TEST-NET-1).
    local = {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "traefik_bind_addresses": ["192.0.2.10"],
        "app_publish_address": "192.0.2.10",
        "app_image_tarball": str(_image_tarball()),
    }
    command = [PLAYBOOK, "-i", str(ROOT / "inventories" / inventory / "hosts.yml"), str(RENDER)]
    command += ["--extra-vars", json.dumps({**local, **values})]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    """inventory -> {"traefik.yml" or "dynamic/<name>": rendered text}, both rendered in parallel."""
    runs = {inventory: _render(inventory, values) for inventory, (_, values) in INVENTORIES.items()}
    files: Rendered = {}
    for inventory, run in runs.items():
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, f"rendering for {inventory} failed:\n{stdout[-4000:]}{stderr[-2000:]}"
        host = INVENTORIES[inventory][0]
        tasks = {task["task"]["name"]: task for task in json.loads(stdout)["plays"][0]["tasks"]}
        files[inventory] = {}
        for result in tasks["Render the static and dynamic configuration"]["hosts"][host]["results"]:
            if result.get("skipped"):
                continue
            name = Path(result["item"]).name.removesuffix(".j2")
            files[inventory][name if name == "traefik.yml" else f"dynamic/{name}"] = result["msg"]
        route = tasks["Render the app's route"]["hosts"][host]
        if not route.get("skipped"):
            files[inventory]["dynamic/invoice-service.yml"] = route["msg"]
    return files


def _load(rendered: Rendered, inventory: str, name: str) -> dict[str, Any]:
    document = yaml.safe_load(rendered[inventory][name])
    assert isinstance(document, dict), f"{name} ({inventory}) is not a YAML mapping"
    return document


def _dynamic(rendered: Rendered, inventory: str) -> list[str]:
    return sorted(name for name in rendered[inventory] if name.startswith("dynamic/"))


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_static_configuration_is_valid(rendered: Rendered, inventory: str) -> None:
    found = problems(_load(rendered, inventory, "traefik.yml"), static_validator())
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_every_dynamic_file_is_valid(rendered: Rendered, inventory: str) -> None:
    names = _dynamic(rendered, inventory)
    assert names, "nothing rendered into the file provider's directory"
    for name in names:
        found = problems(_load(rendered, inventory, name), dynamic_validator())
        assert found == [], f"{name}:\n" + "\n".join(found)


def test_production_renders_acme_and_the_dashboard(rendered: Rendered) -> None:
    """The production run covers what the sandbox leaves out: the schemas saw these parts."""
    static = _load(rendered, "production", "traefik.yml")
    assert static["entryPoints"]["websecure"]["http"]["tls"] == {"certResolver": "letsencrypt"}
    acme = static["certificatesResolvers"]["letsencrypt"]["acme"]
    assert acme["caServer"] == "https://acme-v02.api.letsencrypt.org/directory"
    assert acme["httpChallenge"] == {"entryPoint": "web"}
    assert static["api"] == {"dashboard": True, "insecure": False}
    assert _dynamic(rendered, "production") == [
        "dynamic/dashboard.yml",
        "dynamic/invoice-service.yml",
        "dynamic/middlewares.yml",
    ]
    router = _load(rendered, "production", "dynamic/dashboard.yml")["http"]["routers"]["dashboard"]
    assert router["tls"] == {"certResolver": "letsencrypt"}


def test_sandbox_renders_without_acme_or_dashboard(rendered: Rendered) -> None:
    static = _load(rendered, "local", "traefik.yml")
    assert "certificatesResolvers" not in static
    assert "api" not in static
    assert static["entryPoints"]["websecure"]["http"]["tls"] == {}
    # No app_domain in the sandbox: the app role writes no route (the API is published directly).
    assert _dynamic(rendered, "local") == ["dynamic/middlewares.yml"]
    assert "docker" not in static["providers"]


def test_production_routes_the_domain_to_the_api_container_by_name(rendered: Rendered) -> None:
    """The app role's file: Host(domain) on websecure minus the internal paths, to the release's
    container on the edge network; Traefik has no Docker provider (no socket)."""
    assert list(_load(rendered, "production", "traefik.yml")["providers"]) == ["file"]
    http = _load(rendered, "production", "dynamic/invoice-service.yml")["http"]
    router = http["routers"]["invoice-service"]
    assert router["rule"] == (
        "Host(`api.toolkit-test.dev`) && !(PathPrefix(`/metrics`) || PathPrefix(`/docs`)"
        " || PathPrefix(`/redoc`) || PathPrefix(`/openapi.json`))"
    )
    assert router["entryPoints"] == ["websecure"]
    assert router["tls"] == {"certResolver": "letsencrypt"}
    assert router["service"] == "invoice-service"
    servers = http["services"]["invoice-service"]["loadBalancer"]["servers"]
    assert servers == [{"url": "http://invoice-service-api-1:8000"}]


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_the_edge_refuses_bodies_longer_than_the_apis_largest_upload(
    rendered: Rendered, inventory: str
) -> None:
    """Every router on websecure goes through the chain, and the chain through the buffering
    middleware: 5 photos of 10 MiB and 64 KiB of framing pass, one byte more is a 413 at the edge."""
    middlewares = _load(rendered, inventory, "dynamic/middlewares.yml")["http"]["middlewares"]
    assert "body-limit" in middlewares["edge"]["chain"]["middlewares"]
    assert middlewares["body-limit"]["buffering"] == {
        "maxRequestBodyBytes": 5 * 10 * 1024 * 1024 + 65536,
        "memRequestBodyBytes": 1024 * 1024,
    }


def test_every_dynamic_template_the_role_writes_is_rendered() -> None:
    """render.yml renders every template of the dynamic directory; config.yml must write no other."""
    tasks = yaml.safe_load((ROOT / "roles" / "traefik" / "tasks" / "config.yml").read_text())
    written = {
        Path(task["ansible.builtin.template"]["src"]).name
        for task in tasks
        if "ansible.builtin.template" in task
        and task["ansible.builtin.template"]["src"].startswith("etc/traefik/dynamic/")
    }
    assert written == {path.name for path in (TEMPLATES / "dynamic").glob("*.j2")}


@pytest.mark.parametrize(
    ("inventory", "file", "path", "key"),
    [
        ("production", "traefik.yml", [], "certificateResolvers"),
        ("production", "traefik.yml", ["entryPoints", "websecure", "http"], "bogus"),
        ("production", "traefik.yml", ["certificatesResolvers", "letsencrypt", "acme"], "mail"),
        ("local", "traefik.yml", ["providers", "file"], "watcher"),
        ("production", "dynamic/invoice-service.yml", ["http", "routers", "invoice-service"], "entrypoints"),
        ("production", "dynamic/middlewares.yml", [], "bogus"),
        (
            "production",
            "dynamic/middlewares.yml",
            ["http", "middlewares", "security-headers", "headers"],
            "stsSecond",
        ),
        ("production", "dynamic/dashboard.yml", ["http", "routers", "dashboard"], "entrypoints"),
    ],
)
def test_an_unknown_key_is_refused(
    rendered: Rendered, inventory: str, file: str, path: list[str], key: str
) -> None:
    """The check can fail: the rendered file with one misspelt or invented key is refused, by name."""
    document = _load(rendered, inventory, file)
    assert problems(document, _validator_for(file)) == []
    broken = copy.deepcopy(document)
    node = broken
    for part in path:
        node = node[part]
    assert key not in node
    node[key] = "x"
    found = problems(broken, _validator_for(file))
    assert any(f"'{key}' was unexpected" in line for line in found), "\n".join(found) or "no problem found"
