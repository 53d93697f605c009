"""scripts/package_app.py: the image version, the wheelhouse's requirement list and its cache key,
and when a tarball is reused instead of saved again."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import package_app
import pytest
from package_app import image_version, runtime_requirements, tarball_current, wheelhouse_key


@pytest.mark.parametrize(
    ("describe", "dirty", "expected"),
    [
        ("v1.2.0", False, "1.2.0"),
        ("v1.2.0-3-g1a2b3c4", False, "1.2.0-3-g1a2b3c4"),
        ("v1.2.0-3-g1a2b3c4-dirty", True, "1.2.0-3-g1a2b3c4-dirty"),
        (None, False, "0.1.0-g1a2b3c4"),
        (None, True, "0.1.0-g1a2b3c4-dirty"),
    ],
)
def test_image_version_follows_git(describe: str | None, dirty: bool, expected: str) -> None:
    assert image_version(describe, "1a2b3c4", dirty, "0.1.0") == expected


def test_image_version_is_a_valid_docker_tag() -> None:
    # A PEP 440 local version has '+', which a Docker tag cannot hold; its label repeats the commit.
    assert image_version(None, "1a2b3c4", False, "0.1.dev3+g1a2b3c4") == "0.1.dev3-g1a2b3c4"
    assert image_version("v1.0+build.5", "1a2b3c4", False, "1.0") == "1.0-build.5"


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
