#!/usr/bin/env python3
"""Run a command on an inventory's host as root, its output streamed to this terminal.

The operate make targets (mk/operate.mk: status, releases, logs, exec, app-stop, ...) run
toolkit-app on the host through this script. Ansible cannot stream (make logs FOLLOW=1) or give a
terminal (make exec), so the script asks Ansible how it reaches the host (the inventory's address,
port, user, key and SSH options, templated and decrypted as Ansible sees them) and then runs ssh
itself (sudo on the host unless the login is root), or docker exec for a host reached through the
Docker connection.

    scripts/on_host.py -i INVENTORY [--host NAME] [--tty] -- COMMAND...

Without --host the inventory's vps group must hold exactly one host. The operator ($TOOLKIT_OPERATOR,
else user@machine) goes along as TOOLKIT_OPERATOR, for the host's audit log.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass

# What Ansible would use to reach the host, rendered by the debug module on the controller (no
# connection is made).
CONNECTION_EXPRESSION = (
    "{{ {'connection': ansible_connection | default('ssh'),"
    " 'address': ansible_host | default(inventory_hostname),"
    " 'port': ansible_port | default(lookup('ansible.builtin.config', 'DEFAULT_REMOTE_PORT'))"
    " | default(22, true),"
    " 'user': ansible_user | default(lookup('ansible.builtin.config', 'DEFAULT_REMOTE_USER'))"
    " | default('root', true),"
    " 'key': ansible_ssh_private_key_file | default(ansible_private_key_file)"
    " | default(lookup('ansible.builtin.config', 'DEFAULT_PRIVATE_KEY_FILE')) | default('', true),"
    " 'ssh_args': ansible_ssh_common_args | default('') ~ ' ' ~ ansible_ssh_extra_args | default('')} }}"
)


CONTROL_DIR = os.path.expanduser("~/.ansible/cp")
CONTROL_OPTIONS = [
    "-o",
    "ControlMaster=auto",
    "-o",
    "ControlPersist=60s",
    "-o",
    f"ControlPath={CONTROL_DIR}/toolkit-%C",
]


class OnHostError(Exception):
    pass


@dataclass(frozen=True)
class Connection:
    name: str
    connection: str
    address: str
    port: int
    user: str
    key: str
    ssh_args: str


def parse_debug_output(output: str) -> dict[str, Connection]:
    """`ansible -o -m debug` lines: `name | SUCCESS => {"changed": false, "msg": {...}}`."""
    hosts: dict[str, Connection] = {}
    for line in output.splitlines():
        name, sep, rest = line.partition(" | ")
        if not sep:
            continue
        status, arrow, payload = rest.partition(" => ")
        if not arrow or not status.startswith("SUCCESS"):
            raise OnHostError(f"Ansible could not read {name}'s connection: {rest.strip()}")
        msg = json.loads(payload)["msg"]
        hosts[name.strip()] = Connection(
            name=name.strip(),
            connection=str(msg["connection"]),
            address=str(msg["address"]),
            port=int(msg["port"]),
            user=str(msg["user"]),
            key=str(msg["key"] or ""),
            ssh_args=str(msg["ssh_args"]).strip(),
        )
    return hosts


def remote_command(connection: Connection, command: list[str], *, tty: bool, operator: str) -> list[str]:
    """The local command line that runs ``command`` as root on the host."""
    as_root = ["env", f"TOOLKIT_OPERATOR={operator}", *command]
    if connection.connection in ("community.docker.docker", "docker"):
        return ["docker", "exec", *(["-it"] if tty else ["-i"]), connection.address, *as_root]
    if connection.connection not in ("ssh", "ansible.builtin.ssh", "paramiko", "smart"):
        raise OnHostError(f"{connection.name}: connection {connection.connection} is not supported here")
    if connection.user != "root":
        as_root = ["sudo", "--non-interactive", *as_root]
    # One connection per host for a minute, shared by the commands that follow: sshd's port is
    # rate-limited (ufw limit: 6 new connections in 30 s), which a few make targets in a row
    # would otherwise reach.
    ssh = ["ssh", "-t" if tty else "-T", "-p", str(connection.port), *CONTROL_OPTIONS]
    if connection.key:
        ssh += ["-i", os.path.expanduser(connection.key)]
    ssh += shlex.split(connection.ssh_args)
    return [*ssh, f"{connection.user}@{connection.address}", shlex.join(as_root)]


def resolve(inventory: str, host: str | None) -> Connection:
    done = subprocess.run(
        [
            "ansible",
            "-i",
            inventory,
            host or "vps",
            "-o",
            "-m",
            "ansible.builtin.debug",
            "-a",
            f"msg={CONNECTION_EXPRESSION}",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"},
    )
    hosts = parse_debug_output(done.stdout)
    if done.returncode != 0 or not hosts:
        raise OnHostError(
            f"no host {host or 'in the vps group'} in {inventory}: {(done.stderr or done.stdout).strip()}"
        )
    if len(hosts) > 1:
        raise OnHostError(f"{inventory} has several hosts ({', '.join(sorted(hosts))}): name one with HOST=")
    return next(iter(hosts.values()))


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="on_host.py", description=__doc__.split("\n\n")[0])
    cli.add_argument("-i", "--inventory", required=True)
    cli.add_argument("--host", help="the inventory host (default: the vps group's only host)")
    cli.add_argument("--tty", action="store_true", help="a terminal (interactive commands)")
    cli.add_argument("command", nargs=argparse.REMAINDER)
    args = cli.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        cli.error("no command")
    try:
        connection = resolve(args.inventory, args.host or None)
        operator = os.environ.get("TOOLKIT_OPERATOR") or f"{getpass.getuser()}@{socket.gethostname()}"
        line = remote_command(connection, command, tty=args.tty, operator=operator)
        os.makedirs(CONTROL_DIR, mode=0o700, exist_ok=True)
    except OnHostError as error:
        print(f"on_host: {error}", file=sys.stderr)
        return 2
    return subprocess.run(line, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
