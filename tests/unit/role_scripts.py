"""Load the Python scripts that roles install on hosts (roles/<role>/files/<name>.py), and the
repository's Ansible plugins (filter_plugins/, strategy_plugins/), as modules."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"


def load_role_script(role: str, name: str) -> ModuleType:
    """Import ``roles/<role>/files/<name>.py`` under ``name`` (registered in sys.modules)."""
    return load_file(ROLES / role / "files" / f"{name}.py", name)


def load_plugin(directory: str, name: str) -> ModuleType:
    """Import ``<directory>/<name>.py`` of the repository (an Ansible plugin) under ``name``."""
    return load_file(ROOT / directory / f"{name}.py", name)


def load_file(path: Path, name: str) -> ModuleType:
    """Import the Python file ``path`` under ``name`` (registered in sys.modules)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None, path
    assert spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
