#!/usr/bin/env python3
"""Print the Debian mirror this machine's apt already uses, for the image and apt-cache scripts.

An operator behind a local mirror or a proxy has it in the apt sources already; the scripts then
build images and fill the cache from there instead of a host name written into them. Reads, in
apt's own order, ``sources.list`` and ``sources.list.d/*.list`` (one-line format) and
``sources.list.d/*.sources`` (deb822), and prints the first entry that:

- is of type ``deb``, enabled, with an ``http://`` or ``https://`` URI that is not on loopback
  (the test hosts and images cannot reach the controller's 127.0.0.1);
- names a Debian suite: a codename (bookworm, trixie, ...) or an alias (stable, testing, ...),
  optionally with ``-updates``, ``-backports`` or ``-proposed-updates``; with ``--security`` a
  security suite instead (``<codename>-security``, or the older ``<codename>/updates``);
- has Debian's ``main`` component (third-party repositories that reuse Debian's codenames, such
  as Docker's ``bookworm stable``, are skipped).

``DEBIAN_MIRROR`` (``DEBIAN_SECURITY_MIRROR`` with ``--security``) overrides the lookup. When no
entry qualifies, deb.debian.org is printed and a line on stderr says so. Exit status is always 0.

usage: scripts/debian_mirror.py [--security] [--apt-dir /etc/apt]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"

CODENAMES = frozenset({"buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid", "experimental"})
ALIASES = frozenset({"oldoldstable", "oldstable", "stable", "testing", "unstable"})
UPDATE_SUFFIXES = ("", "-updates", "-backports", "-proposed-updates")
SECURITY_SUFFIXES = ("-security", "/updates")


@dataclass(frozen=True)
class Entry:
    """One apt source: a URI and the suites and components taken from it."""

    origin: str
    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    enabled: bool = True


def _strip_comment(line: str) -> str:
    """A one-line source without its comment (``#`` at the start or after whitespace)."""
    return re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()


def parse_one_line(text: str, origin: str = "sources.list") -> list[Entry]:
    """Entries of a one-line format file: ``deb [options] uri suite [component ...]``."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw)
        if not line:
            continue
        # Options in brackets may contain spaces: "[ arch=amd64 signed-by=/k.gpg ]".
        line = re.sub(r"\[[^\]]*\]", " ", line, count=1)
        words = line.split()
        if len(words) < 3:
            continue
        kind, uri, suite, *components = words
        entries.append(Entry(f"{origin}:{number}", (kind,), (uri,), (suite,), tuple(components)))
    return entries


def _paragraphs(text: str) -> Iterator[tuple[int, list[str]]]:
    """Stanzas of a deb822 file with the line number each starts at; comment lines dropped."""
    stanza: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("#"):
            continue
        if not line.strip():
            if stanza:
                yield start, stanza
            stanza = []
            continue
        if not stanza:
            start = number
        stanza.append(line)
    if stanza:
        yield start, stanza


def parse_deb822(text: str, origin: str = "debian.sources") -> list[Entry]:
    """Entries of a deb822 ``.sources`` file (``Types:``, ``URIs:``, ``Suites:``, ...)."""
    entries = []
    for start, lines in _paragraphs(text):
        fields: dict[str, str] = {}
        key = ""
        for line in lines:
            if line[0] in " \t" and key:  # a continuation line
                fields[key] += " " + line.strip()
                continue
            name, _, value = line.partition(":")
            key = name.strip().lower()
            fields[key] = value.strip()
        enabled = fields.get("enabled", "yes").lower() not in ("no", "false", "0")
        entries.append(
            Entry(
                f"{origin}:{start}",
                tuple(fields.get("types", "").split()),
                tuple(fields.get("uris", "").split()),
                tuple(fields.get("suites", "").split()),
                tuple(fields.get("components", "").split()),
                enabled,
            )
        )
    return entries


def read_sources(apt_dir: Path) -> list[Entry]:
    """Every entry of ``apt_dir``, in the order apt reads them."""
    entries = []
    main = apt_dir / "sources.list"
    if main.is_file():
        entries += parse_one_line(main.read_text(errors="replace"), str(main))
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if not path.is_file():
                continue
            if path.suffix == ".list":
                entries += parse_one_line(path.read_text(errors="replace"), str(path))
            elif path.suffix == ".sources":
                entries += parse_deb822(path.read_text(errors="replace"), str(path))
    return entries


def is_debian_suite(suite: str, security: bool = False) -> bool:
    """Whether ``suite`` is one of Debian's own (a security suite when ``security``)."""
    suffixes = SECURITY_SUFFIXES if security else UPDATE_SUFFIXES
    for suffix in suffixes:
        base = suite[: len(suite) - len(suffix)] if suffix else suite
        if (not suffix or suite.endswith(suffix)) and (base in CODENAMES or base in ALIASES):
            return True
    return False


def _usable(uri: str) -> bool:
    """An http(s) URI that names a host other than this machine's loopback."""
    parts = urllib.parse.urlsplit(uri)
    host = (parts.hostname or "").lower()
    loopback = host == "localhost" or host.startswith("127.") or host == "::1"
    return parts.scheme in ("http", "https") and bool(host) and not loopback


def pick(entries: Iterable[Entry], security: bool = False) -> tuple[str, str] | None:
    """The first qualifying URI (without a trailing slash) and the entry it came from."""
    for entry in entries:
        if not entry.enabled or "deb" not in entry.types or "main" not in entry.components:
            continue
        if not any(is_debian_suite(suite, security) for suite in entry.suites):
            continue
        for uri in entry.uris:
            if _usable(uri):
                return uri.rstrip("/"), entry.origin
    return None


def mirror(apt_dir: Path, security: bool, environ: dict[str, str]) -> tuple[str, str]:
    """The mirror to use and a sentence saying where it came from."""
    variable = "DEBIAN_SECURITY_MIRROR" if security else "DEBIAN_MIRROR"
    override = environ.get(variable, "").strip()
    if override:
        return override.rstrip("/"), f"{variable} is set"
    found = pick(read_sources(apt_dir), security)
    if found:
        return found[0], f"from {found[1]}"
    fallback = DEFAULT_SECURITY_MIRROR if security else DEFAULT_MIRROR
    kind = "security suite" if security else "Debian suite"
    return fallback, f"no http(s) {kind} with 'main' in {apt_dir}'s sources: using the default"


def main(argv: list[str] | None = None) -> int:
    """Print the mirror; where it came from goes to stderr."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--security", action="store_true", help="the security suites' mirror")
    parser.add_argument("--apt-dir", type=Path, default=Path("/etc/apt"), help="default: /etc/apt")
    parser.add_argument("--quiet", action="store_true", help="say nothing on stderr")
    args = parser.parse_args(argv)
    uri, reason = mirror(args.apt_dir, args.security, dict(os.environ))
    if not args.quiet:
        label = "security mirror" if args.security else "mirror"
        print(f"debian-mirror: {label} {uri} ({reason})", file=sys.stderr)
    print(uri)
    return 0


if __name__ == "__main__":
    sys.exit(main())
