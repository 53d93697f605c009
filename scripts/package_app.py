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
The version names the build's inputs, nothing else: <wheel version>-<10 hex digits of a sha256>
(0.1.0-7f3a9c01d2) over
  - every file of the app's tree that git tracks or that is untracked but not ignored
    (`git ls-files --cached --others --exclude-standard app/`: the sources, pyproject.toml,
    Dockerfile, .dockerignore, docker/; not .venv, caches or dist/), with its path and mode;
  - the packaging files outside it (PACKAGING_FILES: this script, the base image's recipe);
  - the wheelhouse's key (the dependency list, the target Python and platforms);
  - the base image's name and id (a rebuilt base image gives a new name).
So a rebuilt identical app keeps its name, and a change to any input gives a new one, whatever else
changed in the repository (an inventory, a commit touching only the roles). Git tags play no part: a
release is named by the version in app/pyproject.toml, which is an input. The manifest records the
commit and whether the working tree differed from it, for information only.
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
from collections.abc import Iterable, Iterator, Mapping
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
# changing app do not fill the disk.
KEEP_TARBALLS = 3
# Files outside app/ that shape the image, from the repository's root. The image's other build
# files (Dockerfile, .dockerignore, docker/) are in app/.
PACKAGING_FILES = ("scripts/package_app.py", "scripts/build-base-image.sh")
# Hex digits of the inputs' sha256 in the version: 40 bits, no collision among a project's builds.
DIGEST_DIGITS = 10
# Every file's time in the wheel: fixed, so that the same sources give the same wheel (and the
# image's layer cache holds) whatever the last commit was.
SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, the oldest time a zip file holds


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


# --- version: a name derived from the build's inputs -------------------------------------------


@dataclass(frozen=True)
class InputFile:
    """One file the image is built from: its path (from the repository's root, or app/ for the app's
    tree wherever it lies), whether it is executable (COPY keeps the mode) or a symbolic link (then
    `content` is its target) and its bytes."""

    path: str
    content: bytes
    executable: bool = False
    symlink: bool = False


def inputs_digest(files: Iterable[InputFile], parameters: Mapping[str, str]) -> str:
    """sha256 over the files (in path order, whatever order they come in) and the named parameters.

    Every field is length-prefixed, so no two different sets of inputs give the same byte stream.
    """
    digest = hashlib.sha256()
    for item in sorted(files, key=lambda f: f.path):
        kind = "link" if item.symlink else "exec" if item.executable else "file"
        path = item.path.encode()
        digest.update(b"%s %d:%s %d\n" % (kind.encode(), len(path), path, len(item.content)))
        digest.update(item.content)
    for key in sorted(parameters):
        name, value = key.encode(), parameters[key].encode()
        digest.update(b"param %d:%s %d:%s\n" % (len(name), name, len(value), value))
    return digest.hexdigest()


def release_version(wheel_version: str, digest: str) -> str:
    """A Docker tag (letters, digits, '.', '_', '-'): the wheel's version and the inputs' digest.

    0.1.0 and sha256 7f3a9c...: 0.1.0-7f3a9c01d2. A local version label (+g1a2b3c4) is left out:
    it would name a commit, not the inputs.
    """
    prefix = "".join(c if c.isalnum() or c in "._-" else "-" for c in wheel_version.split("+")[0])
    return f"{prefix[: 127 - DIGEST_DIGITS]}-{digest[:DIGEST_DIGITS]}"


def app_files(app_dir: Path) -> list[str]:
    """The app's tree as git sees it: tracked files and untracked ones .gitignore does not exclude
    (so no .venv, caches or dist/), relative to app_dir."""
    listed = run(
        ["git", "-C", str(app_dir), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
    ).stdout
    return sorted({name for name in listed.split("\0") if name})


def read_input(path: Path, name: str) -> InputFile | None:
    """The file at path as an input named `name`; None when it is gone (a tracked file deleted)."""
    if path.is_symlink():
        return InputFile(name, os.readlink(path).encode(), symlink=True)
    if not path.is_file():
        return None
    # Executable or not, as git records a file's mode (COPY keeps it).
    return InputFile(name, path.read_bytes(), executable=bool(path.stat().st_mode & 0o111))


def collect_inputs(app_dir: Path, repo: Path, packaging_files: Iterable[str]) -> list[InputFile]:
    """The app's tree (named app/<path>) and the packaging files (named from the repository's root)."""
    named = [(app_dir / rel, f"app/{rel}") for rel in app_files(app_dir)]
    named += [(repo / rel, rel) for rel in packaging_files]
    return [item for path, name in named if (item := read_input(path, name)) is not None]


def image_id_of(image: str) -> str:
    inspected = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", image],
        capture_output=True,
        text=True,
        check=False,
    )
    if inspected.returncode != 0:
        raise SystemExit(f"package: the base image {image} is not in the engine: {inspected.stderr.strip()}")
    return inspected.stdout.strip()


@dataclass(frozen=True)
class Release:
    version: str
    digest: str
    base_image_id: str


def name_release(app_dir: Path, wheel: WheelInfo, base_image: str) -> Release:
    """The version of what is about to be built, from its inputs (the base image must be there)."""
    base_image_id = image_id_of(base_image)
    parameters = {
        "wheelhouse_key": wheelhouse_key(wheel.requirements),
        "base_image": base_image,
        "base_image_id": base_image_id,
    }
    digest = inputs_digest(collect_inputs(app_dir, REPO, PACKAGING_FILES), parameters)
    return Release(release_version(wheel.version, digest), digest, base_image_id)


def git_state(repo: Path) -> tuple[str, bool]:
    """(commit, whether the working tree differs from it): recorded in the manifest, not in the name."""
    commit = run(["git", "-C", str(repo), "rev-parse", "--short=7", "HEAD"], capture_output=True).stdout
    status = run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True).stdout
    return commit.strip(), bool(status.strip())


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
    run(
        [sys.executable, "-m", "pip", "wheel", "-qq", "--no-deps", "--wheel-dir", str(out_dir), str(app_dir)],
        env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH},
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


def saved_image_id(manifest_path: Path) -> str | None:
    """The image id the manifest at manifest_path names, if there is one."""
    if not manifest_path.is_file():
        return None
    image_id = json.loads(manifest_path.read_text()).get("image_id")
    return None if image_id is None else str(image_id)


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
    point_latest(path)


def point_latest(path: Path) -> None:
    """dist/invoice-service-latest.json -> path: also when an earlier build's tarball is reused."""
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

    release = name_release(app_dir, wheel, args.base_image)
    version = release.version
    commit, dirty = git_state(REPO)
    tag = f"{IMAGE_NAME}:{version}"
    # Only what the inputs determine: a label naming the commit would make an identical app a new
    # image after every commit.
    labels = {
        "org.opencontainers.image.title": IMAGE_NAME,
        "org.opencontainers.image.version": version,
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
        os.utime(manifest_path)
        point_latest(manifest_path)
    else:
        saved = saved_image_id(manifest_path)
        if saved is not None and saved != image_id:
            log(
                f"the same inputs built image {image_id[7:19]}, not {saved[7:19]} saved before (the engine's"
                " build cache was dropped and Debian's packages changed meanwhile?): it replaces it"
            )
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
                "inputs_sha256": release.digest,
                "base_image": args.base_image,
                "base_image_id": release.base_image_id,
                "git_commit": commit,
                "git_dirty": dirty,
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
