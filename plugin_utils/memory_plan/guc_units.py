"""PostgreSQL memory settings written exactly as ``SHOW`` prints them.

PostgreSQL stores a memory setting as an integer in the setting's base unit (kB for ``work_mem``,
8 kB blocks for ``shared_buffers``, MB for ``max_wal_size``) and ``SHOW`` prints it in the largest
of TB, GB, MB and kB that divides the value evenly (``convert_int_from_base_unit`` in
src/backend/utils/misc/guc.c): 2048MB shows as ``2GB``, 1536MB as ``1536MB``, 9039kB as ``9039kB``.
A value that is not a whole number of base units is rounded when PostgreSQL reads it, so the planner
rounds first (``whole_blocks``) and the rendered value is then exactly what ``SHOW`` returns.
"""

from __future__ import annotations

import re

KB_PER_UNIT = {"TB": 1024**3, "GB": 1024**2, "MB": 1024, "kB": 1}
# Size of the 8 kB pages that shared_buffers, effective_cache_size and wal_buffers count
# (BLCKSZ and XLOG_BLCKSZ of a default build, which Debian's packages are).
BLOCK_KB = 8

_MEMORY = re.compile(r"^(\d+)(TB|GB|MB|kB)$")


def show_memory(kb: int) -> str:
    """``kb`` kilobytes as PostgreSQL's ``SHOW`` prints it: the largest unit that divides evenly (0 has
    no unit)."""
    if kb < 0:
        raise ValueError(f"a memory size cannot be negative: {kb} kB")
    if kb == 0:
        return "0"
    unit, size = next((unit, size) for unit, size in KB_PER_UNIT.items() if kb % size == 0)
    return f"{kb // size}{unit}"


def parse_memory(text: str) -> int:
    """The number of kilobytes in a size such as ``512MB`` or ``9039kB`` (the units ``SHOW`` uses)."""
    if text == "0":
        return 0
    found = _MEMORY.match(text)
    if found is None:
        raise ValueError(f"not a PostgreSQL memory size with a unit: {text!r}")
    return int(found.group(1)) * KB_PER_UNIT[found.group(2)]


def whole_blocks(kb: int) -> int:
    """``kb`` rounded down to whole 8 kB blocks, so PostgreSQL keeps it unchanged."""
    return kb - kb % BLOCK_KB


def show_real(value: float) -> str:
    """A floating-point setting as ``SHOW`` prints it (C's ``%g``): 0.9, 1.1, 4."""
    return f"{value:g}"
