"""Every make target, playbook, variable, app setting and repository file that README.md and
docs/*.md name exists: a renamed variable or a removed file breaks this test, not an operator's run.

What is read: `backticked` spans and, in fenced code blocks, `make X` commands, repository paths,
YAML keys and `{{ variable }}` references. A name counts as a variable when it carries a role's
prefix (or toolkit_, budget_, vault_); as an app setting when it is UPPER_CASE with an underscore.
"""

from __future__ import annotations

import ast
import glob
import re
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
ROLE_NAMES = sorted(path.name for path in (ROOT / "roles").iterdir() if path.is_dir())
VARIABLE_PREFIXES = tuple(f"{name}_" for name in [*ROLE_NAMES, "toolkit", "budget", "vault"])
TOP_DIRS = (
    "roles",
    "playbooks",
    "inventories",
    "group_vars",
    "scripts",
    "mk",
    "docs",
    "molecule",
    "tests",
    "app",
    "filter_plugins",
    "plugin_utils",
    ".config",
)
ROOT_FILES = ("Makefile", "ansible.cfg", "requirements.yml", "requirements-dev.txt", "pyproject.toml")

# Names the docs use that are not repository names, each with the reason.
ALLOWED = {
    # Environment variables read by tools, not by this repository's code.
    "ANSIBLE_VAULT_PASSWORD_FILE": "ansible's own environment variable",
    "MOLECULE_JOBS": "a make variable (Makefile), not an app setting",
    "ANSIBLE_ARGS": "a make variable (Makefile), not an app setting",
    "VERIFY_ARGS": "a make variable (mk/verify.mk), not an app setting",
    "DEBIAN_MIRROR": "an environment override read by scripts/debian_mirror.py, not an app setting",
    "AWS_ACCESS_KEY_ID": "restic's S3 credential, an environment variable of the backup job",
    "AWS_SECRET_ACCESS_KEY": "restic's S3 credential, an environment variable of the backup job",
    "vault.yml": "the operator's encrypted vault, made from vault.yml.example and never committed",
    "group_vars/vault.yml": "SECURITY.md names it as the file Ansible would not read (a group called vault)",
    "tests/test_<name>.py": "relative to a scenario's directory molecule/<name>/ (README.md, Adding a role)",
}
# Paths the docs name that are made by a run, not kept in the repository.
GENERATED_PREFIXES = (
    "dist/",
    ".local/",
    ".venv",
    "app/.venv",
    ".vault-pass",
    "inventories/production/group_vars/vps/vault.yml",
)

BACKTICK = re.compile(r"`([^`\n]+)`")
# Fenced blocks with one of these languages hold commands or YAML (a block without one, such as
# README.md's layout tree, is prose).
FENCE = re.compile(r"^```(sh|bash|shell|console|yaml|yml)[ \t]*$(.*?)^```", re.MULTILINE | re.DOTALL)
MAKE = re.compile(r"^\s*(?:\$\s+)?make\s+((?:[A-Z_]+=\S*\s+)*)([a-z][\w-]*)", re.MULTILINE)
PATH = re.compile(r"^(?:\./)?[\w.<>*{},-]+(?:/[\w.<>*{},-]*)+$")
TEMPLATE_REF = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)")
YAML_KEY = re.compile(r"^\s*(?:-\s+)?([A-Za-z_][A-Za-z0-9_]*):(?:\s|$)", re.MULTILINE)
UPPER = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$")
VARIABLE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$")


@dataclass(frozen=True)
class Reference:
    """A name a document uses and where."""

    doc: str
    line: int
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.kind} `{self.name}`"


# --- What exists ---------------------------------------------------------------------------------


@cache
def make_targets() -> frozenset[str]:
    """Targets of the Makefile and mk/*.mk (rules and .PHONY names)."""
    names: set[str] = set()
    for path in [ROOT / "Makefile", *sorted((ROOT / "mk").glob("*.mk"))]:
        text = path.read_text()
        names |= set(re.findall(r"^([a-zA-Z][\w-]*)\s*:(?!=)", text, re.MULTILINE))
        for phony in re.findall(r"^\.PHONY:\s*(.+)$", text, re.MULTILINE):
            names |= set(phony.split())
    return frozenset(names)


def _yaml_keys(path: Path) -> set[str]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return set()
    return set(data) if isinstance(data, dict) else set()


def _spec_options(path: Path) -> set[str]:
    data = yaml.safe_load(path.read_text()) or {}
    names: set[str] = set()
    for entry in (data.get("argument_specs") or {}).values():
        names |= set((entry or {}).get("options") or {})
    return names


def _set_facts(path: Path) -> set[str]:
    """Names a tasks file sets with set_fact (module options excluded)."""
    names: set[str] = set()
    for task in _tasks(yaml.safe_load(path.read_text()) or []):
        for key in ("ansible.builtin.set_fact", "set_fact"):
            if isinstance(task.get(key), dict):
                names |= set(task[key]) - {"cacheable"}
    return names


def _tasks(items: object) -> list[dict]:
    found: list[dict] = []
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict):
                found.append(item)
                for nested in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers"):
                    found += _tasks(item.get(nested))
    return found


@cache
def known_variables() -> frozenset[str]:
    """Role defaults, vars and argument specs, facts the roles set, group_vars/all, the inventories'
    group_vars and the vault example."""
    names: set[str] = set()
    for role in (ROOT / "roles").iterdir():
        for path in [*role.glob("defaults/*.yml"), *role.glob("vars/*.yml")]:
            names |= _yaml_keys(path)
        if (role / "meta" / "argument_specs.yml").exists():
            names |= _spec_options(role / "meta" / "argument_specs.yml")
        for path in role.glob("tasks/*.yml"):
            names |= _set_facts(path)
    for path in [*ROOT.glob("group_vars/**/*.yml"), *ROOT.glob("inventories/*/group_vars/**/*.y*ml*")]:
        names |= _yaml_keys(path)
    for path in ROOT.glob("inventories/*/hosts.yml"):
        names |= set(re.findall(r"^\s+([a-z_]+):", path.read_text(), re.MULTILINE))
    return frozenset(names)


@cache
def app_settings() -> frozenset[str]:
    """The app's settings (pydantic fields of every settings module)."""
    names: set[str] = set()
    for path in (ROOT / "app" / "src").rglob("settings.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                names |= {
                    item.target.id
                    for item in node.body
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
                }
    return frozenset(names)


@cache
def repository_files() -> frozenset[str]:
    """Tracked and untracked (not ignored) files, relative to the root."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return frozenset(listed)


def path_exists(name: str) -> bool:
    """A repository path, a directory, a glob or a path with <placeholders> / {a,b} alternatives."""
    name = name.removeprefix("./").rstrip("/")
    pattern = re.sub(r"<[^>]+>", "*", name)
    alternatives = re.match(r"^(.*)\{([^}]+)\}(.*)$", pattern)
    patterns = (
        [
            alternatives.group(1) + choice + alternatives.group(3)
            for choice in alternatives.group(2).split(",")
        ]
        if alternatives
        else [pattern]
    )
    # group_vars/<group>/ named without its inventory: in any inventory (or the site-wide one).
    bases = ["", "inventories/*/"] if name.startswith("group_vars/") else [""]
    return all(any(glob.glob(str(ROOT / (base + each))) for base in bases) for each in patterns)


def basename_exists(name: str) -> bool:
    """A bare file name (site.yml) that some repository file has."""
    return any(Path(path).name == name for path in repository_files())


# --- What the documents name ----------------------------------------------------------------------


def _classify(token: str) -> str | None:
    token = token.strip()
    if token.startswith(("http://", "https://", "/")) or " " in token:
        return None
    if PATH.match(token) and (
        token.split("/")[0] in TOP_DIRS or token.split("/")[0].startswith("inventories")
    ):
        return "file"
    if token in ROOT_FILES:
        return "file"
    if re.match(r"^[\w-]+\.(?:yml|py|sh|mk|md|cfg|toml)$", token):
        return "file name"
    if VARIABLE.match(token) and token.startswith(VARIABLE_PREFIXES) and "__" not in token:
        return "variable"
    if UPPER.match(token):
        return "setting"
    return None


def references(doc: Path) -> list[Reference]:
    """Every name the document uses that this test can check."""
    text = doc.read_text()
    name = str(doc.relative_to(ROOT))
    found: list[Reference] = []

    def line_of(offset: int) -> int:
        return text.count("\n", 0, offset) + 1

    fences = [(match.start(2), match.end(2)) for match in FENCE.finditer(text)]
    in_fence = lambda offset: any(start <= offset < end for start, end in fences)  # noqa: E731
    for match in BACKTICK.finditer(text):
        if in_fence(match.start()):
            continue
        token = match.group(1).strip()
        if token.startswith("make "):
            target = MAKE.match(token)
            if target:
                found.append(Reference(name, line_of(match.start()), "make target", target.group(2)))
            continue
        for part in re.split(r"\s*[=:]\s*", token)[:1] if ":" in token and "/" not in token else [token]:
            kind = _classify(part)
            if kind:
                found.append(Reference(name, line_of(match.start()), kind, part.strip()))
    for start, end in fences:
        block = text[start:end]
        for match in MAKE.finditer(block):
            found.append(Reference(name, line_of(start + match.start(2)), "make target", match.group(2)))
        for word in (w.rstrip(",.;:") for w in re.findall(r"[\w./<>{},*-]+", block)):
            if "/" in word and _classify(word) == "file":
                found.append(Reference(name, line_of(start), "file", word))
        for key in YAML_KEY.findall(block):
            kind = _classify(key)
            if kind in ("variable", "setting"):
                found.append(Reference(name, line_of(start), kind, key))
        for ref in TEMPLATE_REF.findall(block):
            if _classify(ref) == "variable":
                found.append(Reference(name, line_of(start), "variable", ref))
    for match in re.finditer(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        target = match.group(1)
        if not target.startswith(("http://", "https://", "mailto:")):
            resolved = (doc.parent / target).resolve()
            if not resolved.exists():
                found.append(Reference(name, line_of(match.start()), "link", target))
    return found


def unknown(reference: Reference) -> bool:
    """True when the name exists nowhere it should."""
    name = reference.name
    if reference.kind == "link":
        return True
    if name in ALLOWED:
        return False
    if reference.kind == "make target":
        return name not in make_targets()
    if reference.kind == "file":
        return not name.startswith(GENERATED_PREFIXES) and not path_exists(name)
    if reference.kind == "file name":
        return not basename_exists(name) and not name.startswith(GENERATED_PREFIXES)
    if reference.kind == "variable":
        return name not in known_variables()
    if reference.kind == "setting":
        return name not in app_settings()
    return False


def problems(doc: Path) -> list[str]:
    return sorted({str(reference) for reference in references(doc) if unknown(reference)})


# --- Tests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOCS, ids=[str(doc.relative_to(ROOT)) for doc in DOCS])
def test_every_name_the_document_uses_exists(doc: Path) -> None:
    assert problems(doc) == []


def test_the_check_catches_a_missing_variable_setting_target_and_file(tmp_path: Path) -> None:
    doc = ROOT / "docs" / "_probe_test_docs_references.md"
    doc.write_text(
        "Add `vault_app_jwt_secret` to the vault; set `app_domain`.\n\n"
        "```yaml\napp_env_extra:\n  LLM_PROVIDERS: tesseract\n  EXTRACTION_PROVIDERS: ocr\n```\n\n"
        "```sh\nmake deploy ENV=production\nmake deplyo\n```\n\n"
        "See `playbooks/site.yml`, `playbooks/nothere.yml`, `inventories/<env>/hosts.yml`, "
        "[gone](GONE.md).\n"
    )
    try:
        found = problems(doc)
    finally:
        doc.unlink()
    names = {line.split("`")[1] for line in found}
    assert names == {"vault_app_jwt_secret", "LLM_PROVIDERS", "deplyo", "playbooks/nothere.yml", "GONE.md"}, (
        found
    )


def test_every_allowlisted_name_still_appears_in_a_document() -> None:
    text = "\n".join(doc.read_text() for doc in DOCS)
    stale = [name for name in ALLOWED if name not in text]
    assert stale == [], f"remove from ALLOWED: {stale}"
