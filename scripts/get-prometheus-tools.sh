#!/usr/bin/env bash
# Put promtool (Prometheus's configuration and rules checker and unit-test runner) and amtool
# (Alertmanager's configuration checker) in .local/bin on the controller, from the distribution's
# own packages (prometheus, prometheus-alertmanager): `apt-get download` into a temporary directory
# and `dpkg-deb -x`, so nothing is installed and no service starts. Debian 12 ships Prometheus 2.42
# and Alertmanager 0.25, Debian 13 2.53 and 0.28: the versions the monitored hosts run. Idempotent:
# a tool already in .local/bin that runs is kept. PROMTOOL_FORCE=1 fetches them again.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.local/bin"

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
  echo "get-prometheus-tools: needs apt-get and dpkg-deb (a Debian controller)" >&2
  exit 1
fi

# fetch PACKAGE TOOL: usr/bin/TOOL of PACKAGE's .deb into .local/bin/TOOL.
fetch() {
  local package=$1 tool=$2 dest="$bin/$2" tmp deb
  if [ -z "${PROMTOOL_FORCE:-}" ] && [ -x "$dest" ] && "$dest" --version >/dev/null 2>&1; then
    echo "get-prometheus-tools: $tool $("$dest" --version 2>&1 | head -n1 | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1) already in .local/bin"
    return 0
  fi
  tmp="$(mktemp -d)"
  chmod 0755 "$tmp"  # apt-get download may fetch as the _apt user when run as root
  if ! (cd "$tmp" && apt-get download -q "$package") >"$tmp/download.log" 2>&1; then
    # The package lists may be missing (a fresh container) or stale (the version was superseded).
    if [ "$(id -u)" -eq 0 ]; then
      echo "get-prometheus-tools: apt-get download $package failed; apt-get update and retry"
      apt-get update -qq >/dev/null
      (cd "$tmp" && apt-get download -q "$package") >"$tmp/download.log" 2>&1 \
        || { cat "$tmp/download.log" >&2; rm -rf "$tmp"; exit 1; }
    else
      cat "$tmp/download.log" >&2
      echo "get-prometheus-tools: apt-get download $package failed (run apt-get update as root?)" >&2
      rm -rf "$tmp"
      exit 1
    fi
  fi
  deb="$(find "$tmp" -maxdepth 1 -name "${package}_*.deb" | head -n1)"
  [ -n "$deb" ] || { echo "get-prometheus-tools: no ${package}_*.deb downloaded" >&2; rm -rf "$tmp"; exit 1; }
  dpkg-deb -x "$deb" "$tmp/root"
  [ -x "$tmp/root/usr/bin/$tool" ] || { echo "get-prometheus-tools: $deb holds no usr/bin/$tool" >&2; exit 1; }
  mkdir -p "$bin"
  install -m 0755 "$tmp/root/usr/bin/$tool" "$dest.new"
  mv -f "$dest.new" "$dest"
  echo "get-prometheus-tools: $tool from $(basename "$deb") in .local/bin"
  rm -rf "$tmp"
}

fetch prometheus promtool
fetch prometheus-alertmanager amtool
