"""The mirror the image and apt-cache scripts take from the controller's apt sources."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import debian_mirror as dm
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "debian_mirror.py"

ONE_LINE = """\
# The operator's local mirror, with options and a trailing comment.
deb [ arch=amd64 signed-by=/k/debian.gpg ] http://mirror.lan/debian/ bookworm main contrib # LAN
deb-src http://mirror.lan/debian bookworm main
deb http://mirror.lan/debian-security bookworm-security main
"""

DEB822 = """\
# Written by the installer.
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://proxy.lan:3142/debian
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://proxy.lan:3142/debian-security
Suites: trixie-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

NODESOURCE = """\
Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
Components: main
Signed-By: /usr/share/keyrings/nodesource.gpg
"""

GOOGLE = "deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n"
DOCKER = (
    "deb [signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/debian bookworm stable\n"
)


def _apt_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_one_line_format_with_options_and_comments() -> None:
    entries = dm.parse_one_line(ONE_LINE)
    assert [(e.types, e.uris, e.suites, e.components) for e in entries] == [
        (("deb",), ("http://mirror.lan/debian/",), ("bookworm",), ("main", "contrib")),
        (("deb-src",), ("http://mirror.lan/debian",), ("bookworm",), ("main",)),
        (("deb",), ("http://mirror.lan/debian-security",), ("bookworm-security",), ("main",)),
    ]
    assert dm.pick(entries) == ("http://mirror.lan/debian", "sources.list:2")
    assert dm.pick(entries, security=True) == ("http://mirror.lan/debian-security", "sources.list:4")


def test_deb822_stanzas_with_comments() -> None:
    entries = dm.parse_deb822(DEB822)
    assert [e.origin for e in entries] == ["debian.sources:2", "debian.sources:9"]
    assert entries[0].suites == ("trixie", "trixie-updates")
    assert dm.pick(entries) == ("http://proxy.lan:3142/debian", "debian.sources:2")
    assert dm.pick(entries, security=True) == ("http://proxy.lan:3142/debian-security", "debian.sources:9")


def test_deb822_continuation_lines_and_disabled_stanzas() -> None:
    text = (
        "Types: deb\nURIs: http://off.lan/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n\n"
        "Types: deb\nURIs:\n http://on.lan/debian\nSuites: bookworm\nComponents: main\n"
    )
    assert dm.pick(dm.parse_deb822(text)) == ("http://on.lan/debian", "debian.sources:7")


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("deb http://mirror.lan/debian-security bookworm-security main\n", "security suite"),
        (GOOGLE, "third-party suite"),
        (DOCKER, "Debian codename, but no main component"),
        ("deb-src http://mirror.lan/debian bookworm main\n", "source packages only"),
        ("deb file:/srv/debian bookworm main\n", "not http(s)"),
        ("deb http://127.0.0.1:3142/debian bookworm main\n", "loopback: unreachable from containers"),
        ("deb http://localhost/debian bookworm main\n", "loopback: unreachable from containers"),
        ("# deb http://mirror.lan/debian bookworm main\n", "commented out"),
    ],
)
def test_entries_that_are_not_a_debian_mirror_are_skipped(source: str, why: str) -> None:
    assert dm.pick(dm.parse_one_line(source)) is None, why


def test_third_party_files_before_the_mirror_are_skipped(tmp_path: Path) -> None:
    apt_dir = _apt_dir(
        tmp_path,
        {
            "sources.list.d/00-docker.list": DOCKER,
            "sources.list.d/google-cloud-sdk.list": GOOGLE,
            "sources.list.d/nodesource.sources": NODESOURCE,
            "sources.list.d/zz-debian.sources": DEB822,
            "sources.list.d/old.list.disabled": "deb http://wrong.lan/debian bookworm main\n",
        },
    )
    assert dm.mirror(apt_dir, False, {}) == (
        "http://proxy.lan:3142/debian",
        f"from {apt_dir}/sources.list.d/zz-debian.sources:2",
    )


def test_sources_list_comes_before_the_directory(tmp_path: Path) -> None:
    apt_dir = _apt_dir(tmp_path, {"sources.list": ONE_LINE, "sources.list.d/debian.sources": DEB822})
    assert dm.mirror(apt_dir, False, {})[0] == "http://mirror.lan/debian"


def test_the_variable_overrides_the_sources(tmp_path: Path) -> None:
    apt_dir = _apt_dir(tmp_path, {"sources.list": ONE_LINE})
    assert dm.mirror(apt_dir, False, {"DEBIAN_MIRROR": "http://override.lan/debian/"}) == (
        "http://override.lan/debian",
        "DEBIAN_MIRROR is set",
    )
    security = {"DEBIAN_SECURITY_MIRROR": "http://override.lan/sec"}
    assert dm.mirror(apt_dir, True, security)[0] == "http://override.lan/sec"


def test_no_debian_entry_falls_back_with_a_message(tmp_path: Path) -> None:
    apt_dir = _apt_dir(tmp_path, {"sources.list.d/nodesource.sources": NODESOURCE})
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--apt-dir", str(apt_dir)],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.stdout == "http://deb.debian.org/debian\n"
    assert "no http(s) Debian suite with 'main'" in done.stderr
    assert dm.mirror(apt_dir, True, {})[0] == "http://deb.debian.org/debian-security"


def test_the_script_prints_only_the_uri_on_stdout(tmp_path: Path) -> None:
    apt_dir = _apt_dir(tmp_path, {"sources.list.d/debian.sources": DEB822})
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--security", "--apt-dir", str(apt_dir)],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.stdout == "http://proxy.lan:3142/debian-security\n"
    assert done.stderr.startswith(
        "debian-mirror: security mirror http://proxy.lan:3142/debian-security (from "
    )
