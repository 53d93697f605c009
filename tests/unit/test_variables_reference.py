"""docs/VARIABLES.md: generated from a role's spec and defaults, kept current, strict about gaps."""

from __future__ import annotations

from pathlib import Path

import gen_variables_reference as gen
import pytest

ROOT = Path(__file__).resolve().parents[2]

SPEC = """\
---
argument_specs:
  main: &demo_spec
    short_description: A demo role
    description:
      - Does one thing
        well.
    options:
      demo_mode:
        type: str
        choices: [fast, "off"]
        default: fast
        description: How it runs.
      demo_port:
        type: int
        required: true
        description: Port (1-65535).
      demo_hosts:
        type: list
        elements: str
        description: Hosts | peers.
      demo_rules:
        type: list
        elements: dict
        default: []
        description: Rules.
        options:
          port:
            type: int
            required: true
            description: Destination port.
      demo_url:
        type: str
        default: "https://example.org/{{ demo_mode }}/a/very/long/path/that/goes/on/and/on/for/ever/and/ever"
        description: Where it fetches from.
  validate: *demo_spec
"""

DEFAULTS = """\
---
demo_mode: fast
demo_hosts: [a.example, b.example]
demo_rules: []
demo_url: "https://example.org/{{ demo_mode }}/a/very/long/path/that/goes/on/and/on/for/ever/and/ever"
"""

EXPECTED_TABLE = """\
| variable | type | required | default | description |
| --- | --- | --- | --- | --- |
| `demo_mode` | str, one of: fast, "off" | no | `fast` | How it runs. |
| `demo_port` | int | yes |  | Port (1-65535). |
| `demo_hosts` | list of str | no | `[a.example, b.example]` | Hosts \\| peers. |
| `demo_rules` | list of dict | no | `[]` | Rules. |
| `demo_rules[].port` | int | yes |  | Destination port. |
| `demo_url` | str | no | `https://example.org/{{ demo_mode }}/a/very/long/path/that/goes/on/and/o…` \
| Where it fetches from. |
"""


def make_role(roles: Path, spec: str = SPEC, defaults: str = DEFAULTS, name: str = "demo") -> Path:
    """A role directory with just the two files the generator reads."""
    role = roles / name
    (role / "meta").mkdir(parents=True)
    (role / "defaults").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(spec)
    (role / "defaults" / "main.yml").write_text(defaults)
    return role


def test_role_section_has_descriptions_and_the_expected_table(tmp_path: Path) -> None:
    make_role(tmp_path)
    text = gen.render(gen.read_roles(tmp_path))
    assert "## demo\n\n*A demo role*\n\nDoes one thing well.\n\n" + EXPECTED_TABLE in text
    assert "- [demo](#demo): A demo role" in text


def test_default_comes_from_defaults_when_the_spec_has_none(tmp_path: Path) -> None:
    make_role(tmp_path)
    (row,) = [row for row in gen.read_roles(tmp_path)[0].rows if row.name == "demo_hosts"]
    assert row.default == "`[a.example, b.example]`"


def test_output_is_deterministic_and_check_passes_after_writing(tmp_path: Path) -> None:
    make_role(tmp_path / "roles")
    make_role(tmp_path / "roles", name="another")
    out = tmp_path / "VARIABLES.md"
    args = ["--roles", str(tmp_path / "roles"), "--output", str(out)]
    assert gen.main(args) == 0
    first = out.read_text()
    assert first.index("## another") < first.index("## demo")
    assert gen.main(args) == 0
    assert out.read_text() == first
    assert gen.main([*args, "--check"]) == 0


def test_check_fails_when_a_spec_changes_without_regenerating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    role = make_role(tmp_path / "roles")
    out = tmp_path / "VARIABLES.md"
    args = ["--roles", str(tmp_path / "roles"), "--output", str(out)]
    gen.main(args)
    spec = role / "meta" / "argument_specs.yml"
    spec.write_text(spec.read_text().replace("How it runs.", "How fast it runs."))
    assert gen.main([*args, "--check"]) == 1
    assert "is stale; run `make docs`" in capsys.readouterr().err


def test_strict_names_the_role_and_each_gap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = SPEC.replace("            description: Destination port.\n", "").replace(
        "default: fast\n", "default: slow\n"
    )
    make_role(tmp_path / "roles", spec=spec, defaults=DEFAULTS + "demo_secret: hunter2\n")
    args = ["--roles", str(tmp_path / "roles"), "--output", str(tmp_path / "V.md")]
    assert gen.main(args) == 0, "without --strict the gaps are not an error"
    capsys.readouterr()
    assert gen.main([*args, "--strict"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "variables: role demo: option demo_mode: spec default slow differs from defaults/main.yml fast",
        "variables: role demo: option demo_rules[].port has no description",
        "variables: role demo: defaults/main.yml defines demo_secret, which the argument spec does not list",
    ]


def test_a_role_without_a_main_spec_is_left_out(tmp_path: Path) -> None:
    make_role(tmp_path, spec="---\nargument_specs:\n  other: {options: {}}\n", name="bare")
    make_role(tmp_path)
    assert [role.name for role in gen.read_roles(tmp_path)] == ["demo"]


def test_committed_reference_matches_the_roles(capsys: pytest.CaptureFixture[str]) -> None:
    status = gen.main(
        ["--roles", str(ROOT / "roles"), "--output", str(ROOT / "docs" / "VARIABLES.md"), "--check"]
    )
    assert status == 0, capsys.readouterr().err + " (run `make docs`)"


def test_descriptions_show_placeholders_and_stars_literally_outside_code(tmp_path: Path) -> None:
    spec = SPEC.replace(
        "description: How it runs.", "description: Under releases/<version>/, `*-*-* <x>` or LLM_*."
    )
    make_role(tmp_path, spec=spec)
    (row,) = [row for row in gen.read_roles(tmp_path)[0].rows if row.name == "demo_mode"]
    text = gen.render(gen.read_roles(tmp_path))
    assert "| Under releases/&lt;version>/, `*-*-* <x>` or LLM_\\*. |" in text
    assert row.description == "Under releases/<version>/, `*-*-* <x>` or LLM_*."
