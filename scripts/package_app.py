#!/usr/bin/env python3
"""Package the invoice service as a Docker image tarball that a host without a registry can load.

Steps (`make package`):
  1. the base image debian:trixie-slim (scripts/build-base-image.sh, in parallel with 2 and 3);
  2. the service's wheel, built on this machine (app/dist/wheel/);
  3. a wheelhouse of its dependencies for the image's Python and platform (app/dist/wheelhouse/),
     downloaded again only when the dependency list changes: builds inside Docker cannot reach PyPI;
  4. `docker build` of app/Dockerfile (Debian packages over http, through the controller's
     apt-cacher-ng when it answers), tagged invoice-service:<version> and :latest;
  5. `docker save | gzip` to dist/invoice-service-<version>.tar.gz with a manifest beside it
     (dist/invoice-service-<version>.json; dist/invoice-service-latest.json points at the newest),
     skipped when the tarball of that very image is already there.
The version comes from git: `git describe --tags` of a v<version> tag when there is one, otherwise
the wheel's version plus the commit (0.1.0-g1a2b3c4, "-dirty" for uncommitted changes).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
IMAGE_NAME = "invoice-service"
# The image's Python (Debian 13's python3) and the platforms its wheels may be built for.
TARGET_PYTHON = "3.13"
TARGET_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any")
APT_CACHE_PORT = 3142
# Tarballs (and their image tags) kept in dist/: the newest few, so that repeated builds of a
# dirty tree do not fill the disk.
KEEP_TARBALLS = 3


@dataclass(frozen=True)
class WheelInfo:
    path: Path
    name: str
    version: str
    requirements: tuple[str, ...]


def log(message: str) -> None:
    print(f"package: {message}", flush=True)


@contextlib.contextmanager
def timed(step: str) -> Iterator[None]:
    start = time.monotonic()
    yield
    log(f"{step} ({time.monotonic() - start:.1f} s)")


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=True, text=True, **kwargs)  # type: ignore[call-overload]


# --- version -----------------------------------------------------------------------------------


def image_version(describe: str | None, commit: str, dirty: bool, wheel_version: str) -> str:
    """A Docker tag (letters, digits, '.', '_', '-') naming what was built.

    `describe` is `git describe --tags --match 'v[0-9]*' --dirty` (None without such a tag):
    v1.2.0 -> 1.2.0, v1.2.0-3-g1a2b3c4-dirty -> 1.2.0-3-g1a2b3c4-dirty. Without a tag the wheel's
    version stands in for it: 0.1.0-g1a2b3c4(-dirty).
    """
    if describe:
        version = describe.removeprefix("v")
    else:
        # A local version label (+g1a2b3c4.d20250101) would repeat the commit that follows.
        version = f"{wheel_version.split('+')[0]}-g{commit}" + ("-dirty" if dirty else "")
    tag = "".join(c if c.isalnum() or c in "._-" else "-" for c in version)
    return tag[:128]


def git_version(wheel_version: str) -> tuple[str, str]:
    """(image version, commit) of the checkout."""
    commit = run(["git", "-C", str(REPO), "rev-parse", "--short=7", "HEAD"], capture_output=True).stdout
    described = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--tags", "--match", "v[0-9]*", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = (
        subprocess.run(["git", "-C", str(REPO), "diff", "--quiet", "HEAD", "--"], check=False).returncode != 0
    )
    describe = described.stdout.strip() if described.returncode == 0 else None
    return image_version(describe, commit.strip(), dirty, wheel_version), commit.strip()


# --- wheel and wheelhouse ----------------------------------------------------------------------


def runtime_requirements(requires_dist: list[str]) -> tuple[str, ...]:
    """The Requires-Dist entries the service needs at run time (those of extras left out)."""
    kept = []
    for line in requires_dist:
        requirement = Requirement(line)
        if requirement.marker is not None and "extra" in str(requirement.marker):
            continue
        kept.append(str(requirement))
    return tuple(sorted(kept, key=str.lower))


def read_wheel(path: Path) -> WheelInfo:
    with zipfile.ZipFile(path) as wheel:
        metadata_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = HeaderParser().parsestr(wheel.read(metadata_name).decode())
    return WheelInfo(
        path=path,
        name=metadata["Name"],
        version=metadata["Version"],
        requirements=runtime_requirements(metadata.get_all("Requires-Dist") or []),
    )


def build_wheel(app_dir: Path, out_dir: Path) -> WheelInfo:
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    # The last commit's time as every file's time: the same sources give the same wheel, so the
    # image's layer cache holds when nothing changed.
    epoch = run(["git", "-C", str(REPO), "log", "-1", "--format=%ct"], capture_output=True).stdout.strip()
    run(
        [sys.executable, "-m", "pip", "wheel", "-qq", "--no-deps", "--wheel-dir", str(out_dir), str(app_dir)],
        env={**os.environ, "SOURCE_DATE_EPOCH": epoch or "315532800"},
    )
    wheels = sorted(out_dir.glob("*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"package: expected one wheel in {out_dir}, found {[w.name for w in wheels]}")
    return read_wheel(wheels[0])


def wheelhouse_key(requirements: tuple[str, ...]) -> str:
    recipe = "\n".join([*requirements, TARGET_PYTHON, *TARGET_PLATFORMS])
    return hashlib.sha256(recipe.encode()).hexdigest()


def ensure_wheelhouse(requirements: tuple[str, ...], wheelhouse: Path) -> bool:
    """Download the dependencies' wheels unless the wheelhouse holds this list already.

    Returns whether it downloaded. The stamp file is written last, so an interrupted download is
    redone.
    """
    key = wheelhouse_key(requirements)
    stamp = wheelhouse / ".key"
    if stamp.is_file() and stamp.read_text().strip() == key:
        return False
    staging = Path(tempfile.mkdtemp(prefix=".wheelhouse-", dir=wheelhouse.parent))
    try:
        (staging / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements))
        platforms = [arg for platform in TARGET_PLATFORMS for arg in ("--platform", platform)]
        run(
            [
                sys.executable, "-m", "pip", "download", "-qq", "--disable-pip-version-check",
                "--only-binary=:all:", "--python-version", TARGET_PYTHON, "--implementation", "cp",
                *platforms, "--dest", str(staging), "--requirement", str(staging / "requirements.txt"),
            ]
        )  # fmt: skip
        (staging / ".key").write_text(f"{key}\n")
        shutil.rmtree(wheelhouse, ignore_errors=True)
        staging.rename(wheelhouse)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


# --- image -------------------------------------------------------------------------------------


def apt_proxy() -> str | None:
    """http://<docker0 gateway>:3142 when apt-cacher-ng answers on this machine, else None."""
    try:
        socket.create_connection(("127.0.0.1", APT_CACHE_PORT), timeout=1).close()
    except OSError:
        return None
    inspected = subprocess.run(
        ["docker", "network", "inspect", "bridge", "--format", "{{json .IPAM.Config}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if inspected.returncode != 0 or not inspected.stdout.strip():
        return None
    config = json.loads(inspected.stdout)[0]
    # dockerd leaves Gateway out when it picked the default: the subnet's first address.
    gateway = config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
    return f"http://{gateway}:{APT_CACHE_PORT}"


def build_image(
    app_dir: Path, tags: list[str], base_image: str, labels: dict[str, str], log_path: Path
) -> None:
    args = [
        "docker",
        "build",
        "--file",
        str(app_dir / "Dockerfile"),
        "--build-arg",
        f"BASE_IMAGE={base_image}",
    ]
    proxy = apt_proxy()
    if proxy:
        log(f"apt through {proxy}")
        args += ["--build-arg", f"http_proxy={proxy}"]
    for tag in tags:
        args += ["--tag", tag]
    for key, value in labels.items():
        args += ["--label", f"{key}={value}"]
    with log_path.open("w") as out:
        result = subprocess.run([*args, str(app_dir)], stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = log_path.read_text().splitlines()[-40:]
        print("\n".join(tail), file=sys.stderr)
        raise SystemExit(f"package: docker build failed (full log: {log_path})")


def inspect_image(tag: str) -> dict[str, object]:
    out = run(["docker", "image", "inspect", tag], capture_output=True).stdout
    return json.loads(out)[0]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tarball_current(manifest_path: Path, image_id: str) -> bool:
    """Whether dist/ already holds an intact tarball of exactly this image."""
    if not manifest_path.is_file():
        return False
    manifest = json.loads(manifest_path.read_text())
    tarball = manifest_path.parent / str(manifest.get("tarball", ""))
    return (
        manifest.get("image_id") == image_id
        and tarball.is_file()
        and tarball.stat().st_size == manifest.get("tarball_bytes")
        and sha256_of(tarball) == manifest.get("sha256")
    )


def save_image(tag: str, tarball: Path) -> None:
    compressor = ["pigz", "-n", "-6"] if shutil.which("pigz") else ["gzip", "-n", "-6"]
    partial = tarball.with_name(f".{tarball.name}.partial")
    with partial.open("wb") as out:
        save = subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE)
        compress = subprocess.run(compressor, stdin=save.stdout, stdout=out, check=False)
        assert save.stdout is not None
        save.stdout.close()
        if save.wait() != 0 or compress.returncode != 0:
            partial.unlink(missing_ok=True)
            raise SystemExit(f"package: docker save {tag} | {compressor[0]} failed")
    partial.rename(tarball)


def write_manifest(path: Path, manifest: dict[str, object]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    partial.rename(path)
    latest = path.with_name(f"{IMAGE_NAME}-latest.json")
    latest.unlink(missing_ok=True)
    latest.symlink_to(path.name)


def prune_old(dist: Path, current: Path) -> None:
    """Remove all but the newest KEEP_TARBALLS tarballs, their manifests and their image tags."""
    manifests = sorted(
        (m for m in dist.glob(f"{IMAGE_NAME}-*.json") if not m.is_symlink() and m != current),
        key=lambda m: m.stat().st_mtime,
        reverse=True,
    )
    for manifest in manifests[KEEP_TARBALLS - 1 :]:
        old = json.loads(manifest.read_text())
        (dist / str(old.get("tarball", ""))).unlink(missing_ok=True)
        manifest.unlink()
        subprocess.run(["docker", "rmi", str(old.get("image"))], capture_output=True, check=False)
        log(f"removed the old {old.get('tarball')} and its image tag")


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--app-dir", type=Path, default=REPO / "app", help="the service's source (pyproject.toml)"
    )
    parser.add_argument("--dist", type=Path, default=REPO / "dist", help="where the tarball and manifest go")
    parser.add_argument("--base-image", default="debian:trixie-slim", help="the image FROM which it builds")
    parser.add_argument(
        "--no-base-build", action="store_true", help="use --base-image as it is (no build-base-image.sh)"
    )
    return parser.parse_args(argv)


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """One build at a time per dist/: `make test` builds beside the Molecule scenario that deploys
    the tarball and the check that loads it; a second build waits for the first, then finds the
    tarball of that very image already there."""
    with lock_path.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for the build already running ({lock_path})")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dist: Path = args.dist.resolve()
    dist.mkdir(parents=True, exist_ok=True)
    with exclusive(dist / ".package.lock"):
        return package(args, dist)


def package(args: argparse.Namespace, dist: Path) -> int:
    app_dir: Path = args.app_dir.resolve()
    started = time.monotonic()

    base = None
    if not args.no_base_build:
        # Runs while the wheel and wheelhouse are made; its output goes straight to ours.
        base = subprocess.Popen(
            [str(REPO / "scripts" / "build-base-image.sh")],
            env={**os.environ, "BASE_IMAGE": args.base_image},
        )
    try:
        with timed("wheel built"):
            wheel = build_wheel(app_dir, app_dir / "dist" / "wheel")
        log(f"wheel {wheel.path.name}: {len(wheel.requirements)} runtime requirements")
        with timed("wheelhouse ready"):
            downloaded = ensure_wheelhouse(wheel.requirements, app_dir / "dist" / "wheelhouse")
        count = len(list((app_dir / "dist" / "wheelhouse").glob("*.whl")))
        how = "downloaded" if downloaded else "cached"
        log(f"wheelhouse: {count} wheels for CPython {TARGET_PYTHON} ({how})")
    finally:
        if base is not None and base.wait() != 0:
            raise SystemExit("package: the base image could not be built (scripts/build-base-image.sh)")

    version, commit = git_version(wheel.version)
    tag = f"{IMAGE_NAME}:{version}"
    labels = {
        "org.opencontainers.image.title": IMAGE_NAME,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": commit,
        "org.opencontainers.image.base.name": args.base_image,
    }
    with timed(f"image {tag} built"):
        build_image(
            app_dir, [tag, f"{IMAGE_NAME}:latest"], args.base_image, labels, dist / "docker-build.log"
        )
    image = inspect_image(tag)
    image_id = str(image["Id"])

    manifest_path = dist / f"{IMAGE_NAME}-{version}.json"
    tarball = dist / f"{IMAGE_NAME}-{version}.tar.gz"
    if tarball_current(manifest_path, image_id):
        log(f"{tarball.name} already holds image {image_id[7:19]}; not saved again")
    else:
        with timed(f"saved {tarball.name}"):
            save_image(tag, tarball)
        write_manifest(
            manifest_path,
            {
                "name": IMAGE_NAME,
                "version": version,
                "image": tag,
                "image_id": image_id,
                "image_bytes": image["Size"],
                "wheel": wheel.path.name,
                "wheel_version": wheel.version,
                "git_commit": commit,
                "base_image": args.base_image,
                "tarball": tarball.name,
                "tarball_bytes": tarball.stat().st_size,
                "sha256": sha256_of(tarball),
            },
        )
    prune_old(dist, manifest_path)
    image_mb, tarball_mb = int(str(image["Size"])) / 1e6, tarball.stat().st_size / 1e6
    log(f"{tag} ({image_mb:.0f} MB) -> {tarball} ({tarball_mb:.0f} MB) in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
