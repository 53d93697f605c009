#!/usr/bin/env python3
"""`make verify [ENV=...]`: check ENV's deployed hosts from this controller as an outside user sees them.

Usage: scripts/verify.py --inventory inventories/production/hosts.yml [--limit HOST] [--no-ssh-audit]
Prints one PASS/FAIL/SKIP line per check and host; exits 1 when a check failed, 2 when the
inventory cannot be read. The checks are in scripts/hostcheck/.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostcheck.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
