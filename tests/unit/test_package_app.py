"""scripts/package_app.py: the release's name from the build's inputs, the wheelhouse's requirement
list and its cache key, and when a tarball is reused instead of saved again."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import package_app
import pytest
from package_app import (
    PACKAGING_FILES,
    InputFile,
    collect_inputs,
    git_state,
    inputs_digest,
    release_version,
    runtime_requirements,
    tarball_current,
    wheelhouse_key,
)

REPO = Path(__file__).resolve().parents[2]
DOCKER_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
BASE = {"wheelhouse_key": "k1", "base_image": "debian:trixie-slim", "base_image_id": "sha256:aaa"}


# --- the name and its digest (pure) ------------------------------------------------------------


def test_release_version_is_the_wheel_version_and_ten_digits_of_the_digest() -> None:
    digest = hashlib.sha256(b"inputs").hexdigest()
    assert release_version("0.1.0", digest) == f"0.1.0-{digest[:10]}"
    # A PEP 440 local label names a commit, not the inputs; '+' cannot be in a Docker tag anyway.
    assert release_version("0.1.dev3+g1a2b3c4", digest) == f"0.1.dev3-{digest[:10]}"


def test_release_version_is_a_valid_docker_tag_that_keeps_the_digest() -> None:
    digest = "f" * 64
    for wheel_version in ("1!2.0", "0.1.0", "9" * 200):
        version = release_version(wheel_version, digest)
        assert DOCKER_TAG.match(version), version
        assert version.endswith(f"-{'f' * 10}")


def test_digest_does_not_depend_on_the_order_files_are_listed_in() -> None:
    files = [InputFile("app/a.py", b"a"), InputFile("app/b.py", b"b")]
    assert inputs_digest(files, BASE) == inputs_digest(list(reversed(files)), dict(reversed(BASE.items())))


@pytest.mark.parametrize(
    "other",
    [
        [InputFile("app/a.py", b"A")],  # content
        [InputFile("app/b.py", b"a")],  # a renamed file
        [InputFile("app/a.py", b"a", executable=True)],  # COPY keeps the mode
        [InputFile("app/a.py", b"a", symlink=True)],  # a link to "a" is not a file holding "a"
        [InputFile("app/a.py", b"a"), InputFile("app/c.py", b"")],  # an empty file added
        [],
    ],
)
def test_digest_changes_with_any_file(other: list[InputFile]) -> None:
    assert inputs_digest([InputFile("app/a.py", b"a")], BASE) != inputs_digest(other, BASE)


def test_digest_fields_cannot_run_into_each_other() -> None:
    # Path and content, or key and value, written one after the other would read the same.
    assert inputs_digest([InputFile("app/ab", b"c")], {}) != inputs_digest([InputFile("app/a", b"bc")], {})
    assert inputs_digest([], {"a": "b c"}) != inputs_digest([], {"a b": "c"})


@pytest.mark.parametrize("key", sorted(BASE))
def test_digest_changes_with_each_parameter(key: str) -> None:
    assert inputs_digest([], BASE) != inputs_digest([], {**BASE, key: BASE[key] + "x"})


# --- the inputs of a checkout --------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed repository shaped like this one: app/, the packaging scripts, an inventory."""
    # Git reads only this test's settings (no user's global excludes).
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text("[user]\n\tname = test\n\temail = test@example.invalid\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    repo = tmp_path / "repo"
    for name, text in {
        ".gitignore": ".venv/\n__pycache__/\n*.pyc\ndist/\n",
        "app/pyproject.toml": "[project]\nname = 'x'\nversion = '0.1.0'\n",
        "app/Dockerfile": "FROM debian\n",
        "app/docker/entrypoint.sh": "#!/bin/sh\n",
        "app/src/x/__init__.py": "VALUE = 1\n",
        "inventories/production/hosts.yml": "all: {}\n",
        "scripts/package_app.py": "# packaging\n",
        "scripts/build-base-image.sh": "# base\n",
    }.items():
        write(repo / name, text)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "initial")
    return repo


def name_of(repo: Path, base_image_id: str = "sha256:aaa") -> str:
    files = collect_inputs(repo / "app", repo, PACKAGING_FILES)
    return release_version("0.1.0", inputs_digest(files, {**BASE, "base_image_id": base_image_id}))


def test_identical_inputs_give_the_identical_name(checkout: Path, tmp_path: Path) -> None:
    first = name_of(checkout)
    assert name_of(checkout) == first
    # Another clone elsewhere on disk, not one file changed: the same name.
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(checkout), str(clone)], check=True)
    assert name_of(clone) == first


def test_an_inventory_edit_and_its_commit_keep_the_name(checkout: Path) -> None:
    before = name_of(checkout)
    write(checkout / "inventories/production/hosts.yml", "all: {hosts: {vps1: {}}}\n")
    write(checkout / "inventories/production/group_vars/vps/main.yml", "app_api_workers: 2\n")
    assert name_of(checkout) == before, "an edited, uncommitted inventory renamed the release"
    git(checkout, "add", "-A")
    git(checkout, "commit", "-qm", "inventory only")
    assert name_of(checkout) == before, "a commit touching only the inventory renamed the release"


def test_a_reverted_app_edit_gives_back_the_name(checkout: Path) -> None:
    before = name_of(checkout)
    write(checkout / "app/src/x/__init__.py", "VALUE = 2\n")
    edited = name_of(checkout)
    assert edited != before
    write(checkout / "app/src/x/__init__.py", "VALUE = 1\n")
    assert name_of(checkout) == before


def test_an_untracked_file_in_the_app_changes_the_name(checkout: Path) -> None:
    before = name_of(checkout)
    write(checkout / "app/src/x/new.py", "")
    assert name_of(checkout) != before


@pytest.mark.parametrize(
    "ignored", ["app/.venv/bin/python", "app/src/x/__pycache__/m.cpython-311.pyc", "app/dist/wheel/x.whl"]
)
def test_ignored_files_in_the_app_keep_the_name(checkout: Path, ignored: str) -> None:
    before = name_of(checkout)
    write(checkout / ignored, "build output")
    assert name_of(checkout) == before


@pytest.mark.parametrize(
    "change",
    [
        lambda repo: write(repo / "scripts/package_app.py", "# packaging, changed\n"),
        lambda repo: write(repo / "scripts/build-base-image.sh", "# base, changed\n"),
        lambda repo: write(repo / "app/Dockerfile", "FROM debian:13\n"),
        lambda repo: (repo / "app/docker/entrypoint.sh").chmod(0o755),
        lambda repo: (repo / "app/src/x/__init__.py").unlink(),
        lambda repo: git(repo, "mv", "app/src/x/__init__.py", "app/src/x/y.py"),
    ],
    ids=["package_app.py", "build-base-image.sh", "Dockerfile", "chmod", "deleted", "renamed"],
)
def test_packaging_and_app_changes_change_the_name(checkout: Path, change: Callable[[Path], object]) -> None:
    before = name_of(checkout)
    change(checkout)
    assert name_of(checkout) != before


def test_a_rebuilt_base_image_changes_the_name(checkout: Path) -> None:
    assert name_of(checkout, base_image_id="sha256:aaa") != name_of(checkout, base_image_id="sha256:bbb")


def test_the_manifest_records_commit_and_dirtiness_apart_from_the_name(checkout: Path) -> None:
    commit, dirty = git_state(checkout)
    assert commit == git(checkout, "rev-parse", "--short=7", "HEAD").strip()
    assert not dirty
    write(checkout / "inventories/production/hosts.yml", "changed\n")
    assert git_state(checkout) == (commit, True)


def test_this_repositorys_build_files_are_inputs() -> None:
    """What app/Dockerfile copies and .dockerignore lets through (besides the wheels made from the app's
    tree) is among the inputs, as are the packaging files."""
    names = {item.path for item in collect_inputs(REPO / "app", REPO, PACKAGING_FILES)}
    dockerfile = (REPO / "app/Dockerfile").read_text()
    copied = re.findall(r"^COPY (?!--from)(\S+)", dockerfile, re.MULTILINE)
    allowed = re.findall(r"^!(\S+)", (REPO / "app/.dockerignore").read_text(), re.MULTILINE)
    sources = {f"app/{path}" for path in copied + allowed if not path.startswith("dist/")}
    assert sources, "no COPY sources found in app/Dockerfile"
    expected = {"app/Dockerfile", "app/.dockerignore", "app/pyproject.toml", *sources, *PACKAGING_FILES}
    assert expected <= names, expected - names
    assert not [name for name in names if not name.startswith("app/") and name not in PACKAGING_FILES]


@pytest.mark.parametrize(
    "path",
    [
        "app/.venv/bin/python",
        "app/dist/wheel/invoice_service-0.1.0-py3-none-any.whl",
        "app/dist/wheelhouse/.key",
        "app/src/invoice_service/__pycache__/main.cpython-313.pyc",
        "app/.pytest_cache/v/cache/lastfailed",
        "app/.ruff_cache/CACHEDIR.TAG",
        "app/.hypothesis/examples/x",
    ],
)
def test_this_repository_ignores_the_apps_build_outputs_and_caches(path: str) -> None:
    ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "--no-index", "-q", path], check=False)
    assert ignored.returncode == 0, f"{path} is not ignored: it would change the release's name"


# --- wheelhouse and tarballs ---------------------------------------------------------------------


def test_runtime_requirements_leave_out_extras_and_keep_markers() -> None:
    requires = [
        "fastapi==0.1",
        'pytest==9.0; extra == "test"',
        "uvicorn[standard]==0.5",
        'uvloop==0.2; sys_platform != "win32"',
    ]
    assert runtime_requirements(requires) == (
        "fastapi==0.1",
        "uvicorn[standard]==0.5",
        'uvloop==0.2; sys_platform != "win32"',
    )


def test_wheelhouse_key_changes_with_the_dependency_list_only() -> None:
    key = wheelhouse_key(("a==1", "b==2"))
    assert key == wheelhouse_key(("a==1", "b==2"))
    assert key != wheelhouse_key(("a==1", "b==3"))
    assert key != wheelhouse_key(("a==1",))


def write_package(dist: Path, image_id: str, content: bytes = b"image") -> Path:
    tarball = dist / "invoice-service-1.0.tar.gz"
    tarball.write_bytes(content)
    manifest = dist / "invoice-service-1.0.json"
    manifest.write_text(
        json.dumps(
            {
                "image_id": image_id,
                "tarball": tarball.name,
                "tarball_bytes": len(content),
                "sha256": hashlib.sha256(content).hexdigest(),
            }
        )
    )
    return manifest


def test_tarball_is_reused_only_for_the_same_intact_image(tmp_path: Path) -> None:
    manifest = write_package(tmp_path, "sha256:aaa")
    assert tarball_current(manifest, "sha256:aaa")
    assert not tarball_current(manifest, "sha256:bbb"), "another image must be saved again"
    (tmp_path / "invoice-service-1.0.tar.gz").write_bytes(b"imagX")
    assert not tarball_current(manifest, "sha256:aaa"), "a corrupted tarball must be saved again"
    (tmp_path / "invoice-service-1.0.tar.gz").unlink()
    assert not tarball_current(manifest, "sha256:aaa"), "a missing tarball must be saved again"
    assert not tarball_current(tmp_path / "missing.json", "sha256:aaa")


def test_only_the_newest_tarballs_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    removed_tags: list[str] = []
    monkeypatch.setattr(package_app.subprocess, "run", lambda args, **_: removed_tags.append(args[2]))
    for age, version in enumerate(["4", "3", "2", "1"]):  # written oldest first
        (tmp_path / f"invoice-service-{version}.tar.gz").write_bytes(b"x")
        manifest = tmp_path / f"invoice-service-{version}.json"
        manifest.write_text(
            json.dumps({"tarball": f"invoice-service-{version}.tar.gz", "image": f"i:{version}"})
        )
        os.utime(manifest, (1000 + age, 1000 + age))
    package_app.prune_old(tmp_path, tmp_path / "invoice-service-1.json")
    assert sorted(p.name for p in tmp_path.glob("*.tar.gz")) == [
        "invoice-service-1.tar.gz",
        "invoice-service-2.tar.gz",
        "invoice-service-3.tar.gz",
    ]
    assert removed_tags == ["i:4"]


def test_latest_points_at_a_reused_release(tmp_path: Path) -> None:
    for version in ("a", "b"):
        package_app.write_manifest(tmp_path / f"invoice-service-{version}.json", {"version": version})
    assert os.readlink(tmp_path / "invoice-service-latest.json") == "invoice-service-b.json"
    package_app.point_latest(tmp_path / "invoice-service-a.json")
    assert os.readlink(tmp_path / "invoice-service-latest.json") == "invoice-service-a.json"
