"""Load the Python scripts that roles install on hosts (roles/<role>/files/<name>.py) as modules."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROLES = Path(__file__).resolve().parents[2] / "roles"


def load_role_script(role: str, name: str) -> ModuleType:
    """Import ``roles/<role>/files/<name>.py`` under ``name`` (registered in sys.modules)."""
    path = ROLES / role / "files" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None, path
    assert spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
