#!/usr/bin/env bash
# Build the app image's base, `debian:trixie-slim`, from Debian packages with debootstrap: no
# registry is reachable here, so the official image cannot be pulled. The result is named like the
# official one, so app/Dockerfile says `FROM debian:trixie-slim` and works unchanged where the
# official image can be pulled. Like the official slim image it keeps no documentation, man pages
# or translations (dpkg path excludes, which also apply to packages installed on top of it).
#
# The image is rebuilt only when it is missing or this recipe changed: the recipe's hash is part
# of a second tag (debian:trixie-slim-<hash>) that is looked up before building.
#
# The Debian mirror is the one this machine's apt uses (scripts/debian_mirror.py reads the apt
# sources; DEBIAN_MIRROR and DEBIAN_SECURITY_MIRROR override it).
#
# usage: scripts/build-base-image.sh
set -euo pipefail

suite=${BASE_IMAGE_SUITE:-trixie}
image=${BASE_IMAGE:-debian:$suite-slim}
here=$(cd "$(dirname "$0")" && pwd)
mirror=$(python3 "$here/debian_mirror.py")
security_mirror=$(python3 "$here/debian_mirror.py" --security)

hash=$({ cat "$0"; echo "$suite $image $mirror $security_mirror"; } | sha256sum | cut -c1-12)
if docker image inspect "$image-$hash" >/dev/null 2>&1; then
  docker tag "$image-$hash" "$image"
  echo "build-base-image: $image is current (recipe $hash)"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "build-base-image: debootstrap is missing; install it (apt-get install debootstrap)" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

root=$(mktemp -d "/var/tmp/rootfs-$suite-slim.XXXXXX")
trap 'rm -rf "$root" "$root.log"' EXIT
trap 'exit 130' INT TERM
echo "build-base-image: debootstrap $suite (recipe $hash)"
start=$(date +%s)
debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$root.log" 2>&1 \
  || { tail -n 30 "$root.log" >&2; exit 1; }

# What the official slim image leaves out, for this and every later package.
cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'DPKG'
# Written by scripts/build-base-image.sh: a container image keeps no documentation.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
DPKG
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root"/usr/share/{man,groff,info,lintian,linda,locale}/*

# Release, updates and security suites, in the deb822 form the official image uses.
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_mirror
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
test -s "$root/usr/share/keyrings/debian-archive-keyring.gpg" \
  || { echo "build-base-image: the rootfs has no debian-archive-keyring" >&2; exit 1; }

# Each container gets its own machine id; no package lists or downloaded packages in the image.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin
find "$root/var/log" -type f -delete
rm -rf "$root"/tmp/* "$root"/var/tmp/*

tar -C "$root" --numeric-owner -c . | docker import -c 'CMD ["bash"]' - "$image-$hash" >/dev/null
docker tag "$image-$hash" "$image"
echo "build-base-image: $image ready in $(( $(date +%s) - start )) s" \
  "($(docker image inspect --format '{{.Size}}' "$image" | numfmt --to=si)B)"
