#!/usr/bin/env bash
# Run apt-cacher-ng on the controller so every test host fetches each Debian package once.
# Optional: the Molecule prepare step uses the cache only when it answers, so a machine where it
# cannot be installed still runs the suite (just slower). Prints what it did; never fails the build.
set -uo pipefail

port=3142
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

if answers; then
  echo "apt-cache: apt-cacher-ng answers on :$port"
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "apt-cache: no apt-cacher-ng on :$port and cannot install it here; test hosts download directly"
  exit 0
fi
if ! [ -x /usr/sbin/apt-cacher-ng ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq apt-cacher-ng >/dev/null 2>&1 \
    || { echo "apt-cache: apt-cacher-ng could not be installed; test hosts download directly"; exit 0; }
fi
# The package's default backend (ftp.debian.org) may be out of reach; use the mirror the test
# hosts name (this machine's own, from its apt sources: scripts/debian_mirror.py, DEBIAN_MIRROR
# overrides it), so the cache fetches from where they would.
backends=/etc/apt-cacher-ng/backends_debian
want="$(python3 "$(dirname "$0")/debian_mirror.py")/"
grep -qxF "$want" "$backends" 2>/dev/null || printf '# written by ensure-apt-cache.sh\n%s\n' "$want" >"$backends"
if [ -d /run/systemd/system ]; then
  systemctl start apt-cacher-ng
else
  install -d -o apt-cacher-ng -g apt-cacher-ng /run/apt-cacher-ng /var/cache/apt-cacher-ng /var/log/apt-cacher-ng
  setsid runuser -u apt-cacher-ng -- /usr/sbin/apt-cacher-ng -c /etc/apt-cacher-ng \
    pidfile=/run/apt-cacher-ng/pid SocketPath=/run/apt-cacher-ng/socket ForeGround=0 \
    </dev/null >/dev/null 2>&1
fi
for _ in $(seq 1 20); do
  if answers; then echo "apt-cache: apt-cacher-ng started on :$port"; exit 0; fi
  sleep 0.5
done
echo "apt-cache: apt-cacher-ng did not start; test hosts download directly"
exit 0
