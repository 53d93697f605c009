"""The collection check that `make setup` runs: range parsing and what counts as a problem."""

from __future__ import annotations

import check_collections as cc
import pytest

REQUIREMENTS = """
collections:
  - name: community.general
    version: ">=11.0.0,<12.0.0"
  - name: ansible.posix
    version: "2.1.0"
  - community.docker
"""


def test_parse_reads_names_and_ranges() -> None:
    reqs = cc.parse_requirements(REQUIREMENTS)
    assert reqs == [
        cc.Requirement("community.general", ">=11.0.0,<12.0.0"),
        cc.Requirement("ansible.posix", "2.1.0"),
        cc.Requirement("community.docker", "*"),
    ]


@pytest.mark.parametrize(
    ("version_range", "version", "accepted"),
    [
        ("*", "0.0.1", True),
        (">=11.0.0,<12.0.0", "11.4.2", True),
        (">=11.0.0,<12.0.0", "12.0.0", False),
        ("2.1.0", "2.1.0", True),
        ("2.1.0", "2.1.1", False),
        ("!=1.0.0", "1.0.0", False),
    ],
)
def test_ranges_follow_galaxy_syntax(version_range: str, version: str, accepted: bool) -> None:
    found = cc.problems([cc.Requirement("x.y", version_range)], {"x.y": version})
    assert (found == []) is accepted


def test_missing_and_too_old_collections_are_named() -> None:
    reqs = cc.parse_requirements(REQUIREMENTS)
    found = cc.problems(reqs, {"community.general": "10.7.0", "ansible.posix": "2.1.0"})
    assert found == [
        "community.general: 10.7.0 installed, requirements.yml needs >=11.0.0,<12.0.0",
        "community.docker: not installed (needs *)",
    ]


def test_first_path_in_search_order_wins() -> None:
    listing = {
        "/home/op/.ansible/collections/ansible_collections": {"community.general": {"version": "11.0.0"}},
        "/venv/lib/ansible_collections": {"community.general": {"version": "9.0.0"}},
    }
    assert cc.first_installed(listing) == {"community.general": "11.0.0"}


def test_project_requirements_are_satisfied_by_the_pinned_ansible() -> None:
    """requirements.yml and requirements-dev.txt must agree: this is what `make setup` checks."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    reqs = cc.parse_requirements((root / "requirements.yml").read_text())
    assert cc.problems(reqs, cc.first_installed(cc.galaxy_listing())) == []
