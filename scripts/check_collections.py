"""Check that every collection in requirements.yml is installed at a version it accepts.

The pinned ``ansible`` package bundles the collections, so on a machine without Galaxy this is
how ``make setup`` proves they are present. Exit 0 when all are satisfied, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version


@dataclass(frozen=True)
class Requirement:
    """One collection named in requirements.yml, with the version range it accepts."""

    name: str
    version_range: str


def parse_requirements(text: str) -> list[Requirement]:
    """Read the ``collections`` list of a requirements.yml document."""
    data = yaml.safe_load(text) or {}
    entries = data.get("collections") or []
    requirements = []
    for entry in entries:
        if isinstance(entry, str):
            requirements.append(Requirement(entry, "*"))
        else:
            requirements.append(Requirement(entry["name"], str(entry.get("version", "*"))))
    return requirements


def to_specifier(version_range: str) -> SpecifierSet:
    """Turn Galaxy's range syntax (``*``, ``1.2.3``, ``>=1,<2``) into a PEP 440 specifier set."""
    text = version_range.strip()
    if text in ("", "*"):
        return SpecifierSet()
    parts = [part.strip() for part in text.split(",")]
    parts = [part if part[0] in "<>=!~" else f"=={part}" for part in parts]
    return SpecifierSet(",".join(parts))


def first_installed(listing: dict[str, dict[str, dict[str, str]]]) -> dict[str, str]:
    """Collapse ``ansible-galaxy collection list --format json`` to name -> version.

    Paths are listed in search order; the first path holding a collection is the one Ansible
    loads, so later copies are ignored.
    """
    installed: dict[str, str] = {}
    for collections in listing.values():
        for name, info in collections.items():
            installed.setdefault(name, info["version"])
    return installed


def problems(requirements: list[Requirement], installed: dict[str, str]) -> list[str]:
    """Return one message per requirement that the installed collections do not satisfy."""
    found = []
    for req in requirements:
        version = installed.get(req.name)
        if version is None:
            found.append(f"{req.name}: not installed (needs {req.version_range})")
            continue
        try:
            accepted = Version(version) in to_specifier(req.version_range)
        except (InvalidSpecifier, InvalidVersion) as error:
            found.append(f"{req.name}: cannot compare {version} with {req.version_range!r}: {error}")
            continue
        if not accepted:
            found.append(f"{req.name}: {version} installed, requirements.yml needs {req.version_range}")
    return found


def galaxy_listing() -> dict[str, dict[str, dict[str, str]]]:
    """Ask ansible-galaxy which collections this Ansible installation sees."""
    output = subprocess.run(
        ["ansible-galaxy", "collection", "list", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output)


def main(argv: list[str] | None = None) -> int:
    """Compare requirements.yml with the installed collections and report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("requirements", type=Path, nargs="?", default=Path("requirements.yml"))
    args = parser.parse_args(argv)
    requirements = parse_requirements(args.requirements.read_text())
    installed = first_installed(galaxy_listing())
    found = problems(requirements, installed)
    for message in found:
        print(f"collections: {message}", file=sys.stderr)
    if found:
        print(
            "collections: install them with `ansible-galaxy collection install -r requirements.yml`"
            " or pin an ansible release that bundles them in requirements-dev.txt",
            file=sys.stderr,
        )
        return 1
    summary = ", ".join(f"{req.name} {installed[req.name]}" for req in requirements)
    print(f"collections: all {len(requirements)} satisfied ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
