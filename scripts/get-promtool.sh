#!/usr/bin/env bash
# Put promtool (the Prometheus rules checker and unit-test runner) in .local/bin/promtool on the
# controller, from the distribution's own prometheus package: `apt-get download` into a temporary
# directory and `dpkg-deb -x`, so nothing is installed and no service starts. Debian 12 ships
# Prometheus 2.42, Debian 13 2.53: the version the monitored hosts run. Idempotent: a no-op when
# .local/bin/promtool is there and runs. PROMTOOL_FORCE=1 fetches it again.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.local/bin/promtool"

if [ -z "${PROMTOOL_FORCE:-}" ] && [ -x "$dest" ] && "$dest" --version >/dev/null 2>&1; then
  echo "get-promtool: $("$dest" --version 2>&1 | head -n1) already in .local/bin"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
  echo "get-promtool: needs apt-get and dpkg-deb (a Debian controller)" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
chmod 0755 "$tmp"  # apt-get download may fetch as the _apt user when run as root

download() { (cd "$tmp" && apt-get download -q prometheus) >"$tmp/download.log" 2>&1; }
if ! download; then
  # The package lists may be missing (a fresh container) or stale (the version was superseded).
  if [ "$(id -u)" -eq 0 ]; then
    echo "get-promtool: apt-get download failed; apt-get update and retry"
    apt-get update -qq >/dev/null
    download || { cat "$tmp/download.log" >&2; exit 1; }
  else
    cat "$tmp/download.log" >&2
    echo "get-promtool: apt-get download prometheus failed (run apt-get update as root?)" >&2
    exit 1
  fi
fi

deb="$(find "$tmp" -maxdepth 1 -name 'prometheus_*.deb' | head -n1)"
[ -n "$deb" ] || { echo "get-promtool: no prometheus_*.deb downloaded" >&2; exit 1; }
dpkg-deb -x "$deb" "$tmp/root"
[ -x "$tmp/root/usr/bin/promtool" ] || { echo "get-promtool: $deb holds no usr/bin/promtool" >&2; exit 1; }

mkdir -p "$(dirname "$dest")"
install -m 0755 "$tmp/root/usr/bin/promtool" "$dest.new"
mv -f "$dest.new" "$dest"
echo "get-promtool: $("$dest" --version 2>&1 | head -n1) from $(basename "$deb") in .local/bin"
