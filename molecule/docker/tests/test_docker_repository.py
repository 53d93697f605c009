"""Docker's repository path (docker_source: docker, production's default), as far as this bench goes.

The role's repository tasks run for real (repository.yml in this scenario): python3-debian is
installed, the key is checked by its fingerprint, the deb822 source is written and apt reads it.
What cannot be shown here: `apt-get update` against download.docker.com and installing docker-ce
(no route to Docker's servers from the test bench). Each test removes what it added, so the
scenario's other tests see the host as converge left it (Debian's engine).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

DOCKER_FINGERPRINT = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
SOURCES = "/etc/apt/sources.list.d/docker.sources"
KEYRING = "/etc/apt/keyrings/docker.asc"
WATCH = f"ls -la /etc/apt/sources.list.d /etc/apt/keyrings; md5sum {SOURCES} {KEYRING} 2>&1 || true"


@pytest.fixture
def clean_repository(host) -> Iterator[None]:
    """Start and end without Docker's repository, so Debian's engine stays the host's only source."""
    host.run(f"rm -f {SOURCES} {KEYRING}")
    yield
    host.run(f"rm -f {SOURCES} {KEYRING}")
    assert "download.docker.com" not in host.check_output("apt-get indextargets --no-release-info")


def _fields(text: str) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def _primary_fingerprints(host, path: str) -> list[str]:
    listing = host.check_output(
        f"GNUPGHOME=$(mktemp -d) gpg --batch --with-colons --show-keys {path}"
    ).splitlines()
    return [
        listing[index + 1].split(":")[9]
        for index, line in enumerate(listing[:-1])
        if line.startswith("pub:") and listing[index + 1].startswith("fpr:")
    ]


@pytest.mark.usefixtures("clean_repository")
def test_repository_is_added_with_the_checked_key(host, run_playbook) -> None:
    first = run_playbook("repository.yml")
    assert first.rc == 0, first.output[-3000:]
    again = run_playbook("repository.yml")
    assert again.rc == 0, again.output[-3000:]
    assert again.recap.get("changed") == 0, again.output[-3000:]

    # deb822_repository could import what it needs: the blocker was python3-debian missing.
    assert host.package("python3-debian").is_installed

    release = host.check_output(". /etc/os-release && echo $VERSION_CODENAME")
    sources = host.file(SOURCES)
    assert (sources.user, sources.group, sources.mode) == ("root", "root", 0o644)
    fields = _fields(sources.content_string)
    assert fields["Types"] == "deb"
    assert fields["URIs"] == "https://download.docker.com/linux/debian"
    assert fields["Suites"] == release
    assert fields["Components"] == "stable"
    assert fields["Architectures"] == "amd64"
    assert fields["Signed-By"] == KEYRING

    keyring = host.file(KEYRING)
    assert (keyring.user, keyring.group, keyring.mode) == ("root", "root", 0o644)
    assert _primary_fingerprints(host, KEYRING) == [DOCKER_FINGERPRINT]

    # apt parses the source and would fetch Docker's index (the fetch itself cannot reach
    # download.docker.com from here): a malformed file makes both commands fail.
    targets = host.run("apt-get indextargets --no-release-info --format '$(URI)'")
    assert targets.rc == 0, targets.stderr
    assert f"https://download.docker.com/linux/debian/dists/{release}/stable/binary-amd64/Packages" in (
        targets.stdout.splitlines()
    )
    uris = host.run("apt-get update --print-uris")
    assert uris.rc == 0, uris.stderr
    assert f"'https://download.docker.com/linux/debian/dists/{release}/InRelease'" in uris.stdout
    # Not read yet: no docker-ce from Docker's repository, so the role's install task refreshes
    # the lists before installing (the task reads the same command).
    assert "download.docker.com" not in host.check_output("apt-cache madison docker-ce")


@pytest.mark.usefixtures("clean_repository")
def test_a_key_with_another_fingerprint_is_refused_before_anything_is_trusted(
    host, assert_refused_before_change
) -> None:
    # What the repository tasks install first is already there: the refusal itself changes nothing.
    host.check_output("DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-debian gpg >/dev/null")
    wrong = "0000 1111 2222 3333 4444 5555 6666 7777 8888 9999"
    assert_refused_before_change(
        "repository.yml",
        {"docker_repo_key_fingerprint": wrong},
        f"Refusing the repository key docker.asc: it holds the key(s) {DOCKER_FINGERPRINT}, not exactly "
        f"the one Docker signs its repository with, {wrong.replace(' ', '')} (docker_repo_key_fingerprint)",
        watch=WATCH,
    )
    assert not host.file(SOURCES).exists
    assert not host.file(KEYRING).exists


def test_a_short_key_id_is_not_accepted_as_a_fingerprint(host, assert_refused_before_change) -> None:
    assert_refused_before_change(
        "converge.yml",
        {"docker_repo_key_fingerprint": "0EBFCD88"},
        "docker_repo_key_fingerprint must be a key's full fingerprint, 40 hex digits",
        watch=f"md5sum /etc/docker/daemon.json; {WATCH}",
    )
