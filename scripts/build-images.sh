#!/usr/bin/env bash
# Build the systemd test-host images (Debian 12 and 13) from Debian packages with debootstrap.
# An image is rebuilt only when it is missing or this recipe changed: the recipe's hash is part
# of a second tag (toolkit/systemd-debian:<suite>-<hash>) that is looked up before building.
#
# The Debian mirror is the one this machine's apt uses (scripts/debian_mirror.py reads the apt
# sources; DEBIAN_MIRROR and DEBIAN_SECURITY_MIRROR override it), so a controller behind a local
# mirror or proxy builds from there.
#
# usage: scripts/build-images.sh [suite ...]     (default: bookworm trixie)
set -euo pipefail

repo=${TOOLKIT_IMAGE_REPO:-toolkit/systemd-debian}
here=$(cd "$(dirname "$0")" && pwd)
mirror=$(python3 "$here/debian_mirror.py")
security_mirror=$(python3 "$here/debian_mirror.py" --security)
# What every test host has before any role runs: enough for systemd and Ansible, nothing more.
include=systemd,systemd-sysv,python3,python3-apt,sudo,iproute2,procps,ca-certificates,gnupg
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bookworm trixie)

recipe_hash() {
  { cat "$0"; echo "$1 $include $mirror $security_mirror"; } | sha256sum | cut -c1-12
}

ensure_debootstrap() {
  command -v debootstrap >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "build-images: debootstrap is missing; install it (apt-get install debootstrap)" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}

build() {
  local suite=$1 hash=$2 root
  root=$(mktemp -d "/var/tmp/rootfs-$suite.XXXXXX")
  trap 'rm -rf "$root"' RETURN
  echo "build-images: debootstrap $suite (recipe $hash)"
  debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror" \
    >"$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; rm -f "$root.log"; return 1; }
  rm -f "$root.log"
  # A host as a VPS provider hands it over: release, updates and security suites.
  cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
SOURCES
  # Docker mounts /proc/sys read-only; a VPS has it writable. Make the host's own part of it,
  # its network namespace's net/, writable early at boot (the container has CAP_SYS_ADMIN), so
  # those settings apply as on the real host. kernel/, fs/, vm/ and the rest are this machine's
  # own kernel: they stay read-only (the roles only check them: toolkit_sysctl_apply: namespaced),
  # so no test host, not even systemd-sysctl after a restart, can change the machine.
  cat >"$root/etc/systemd/system/proc-sys-writable.service" <<'UNIT'
[Unit]
Description=Make /proc/sys/net writable, as on a virtual machine (test host only)
DefaultDependencies=no
Before=systemd-sysctl.service sysinit.target
ConditionPathIsReadWrite=!/proc/sys/net

[Service]
Type=oneshot
ExecStart=/bin/mount --bind /proc/sys/net /proc/sys/net
ExecStart=/bin/mount -o remount,bind,rw /proc/sys/net

[Install]
WantedBy=sysinit.target
UNIT
  ln -s /etc/systemd/system/proc-sys-writable.service \
    "$root/etc/systemd/system/sysinit.target.wants/proc-sys-writable.service"
  # Every container gets its own machine id at first boot.
  : >"$root/etc/machine-id"
  rm -f "$root/var/lib/dbus/machine-id"
  # No package lists, dated so that any "cache valid for N seconds" check sees them as stale.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
  touch -d @0 "$root/var/lib/apt/lists"
  tar -C "$root" -c . | docker import \
    -c 'CMD ["/lib/systemd/systemd"]' -c 'ENV container=docker' \
    - "$repo:$suite-$hash" >/dev/null
  docker tag "$repo:$suite-$hash" "$repo:$suite"
  echo "build-images: $repo:$suite ready"
}

pids=()
for suite in "${suites[@]}"; do
  hash=$(recipe_hash "$suite")
  if docker image inspect "$repo:$suite-$hash" >/dev/null 2>&1; then
    docker tag "$repo:$suite-$hash" "$repo:$suite"
    echo "build-images: $repo:$suite is current (recipe $hash)"
    continue
  fi
  ensure_debootstrap
  build "$suite" "$hash" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
