"""The database on its own host: site.yml with split-db in the db group and split-app in the app group.

Each test runs once, on the app host (the verifier's hosts: app); the db host is reached beside it.
What a user notices: the app serves through PostgreSQL on the other host, over TLS that verifies
the server, and nobody else on the network reaches that PostgreSQL.
"""

from __future__ import annotations

import json
import os
import shlex

import pytest
import testinfra
from conftest import API_URL, Client, api_call, resolve, tcp_state_on

DB_HOST, APP_HOST = "split-db", "split-app"
# molecule.yml: the hosts' fixed addresses on the scenario's network (their private network).
DB_ADDRESS, APP_ADDRESS = "172.29.30.11", "172.29.30.12"
NETWORK = "split-bench"

# A connection from a container of the app, with its own settings (DATABASE_URL, PGSSLMODE and
# PGSSLROOTCERT from its env files), in the sslmode given: whether PostgreSQL let it in, over TLS.
_CONNECT = """
import asyncio, os, sys
import asyncpg
async def main(mode):
    url = os.environ["DATABASE_URL"].replace("+asyncpg", "")
    try:
        connection = await asyncpg.connect(url, ssl=mode or None, timeout=10)
    except Exception as error:
        print(f"refused: {type(error).__name__}: {error}")
        return
    row = await connection.fetchrow("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    print(f"connected ssl={row['ssl']} {row['version']}")
asyncio.run(main(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def db() -> testinfra.host.Host:
    """The db host, through Molecule's inventory like the app host (so resolve() works on it)."""
    return testinfra.get_host(
        f"ansible://{DB_HOST}?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}"
    )


def psql(db: testinfra.host.Host, sql: str) -> str:
    return db.check_output(f"runuser -u postgres -- psql -XAtq -d invoice -c {shlex.quote(sql)}")


def from_the_apps_container(host: testinfra.host.Host, sslmode: str) -> str:
    """_CONNECT in a fresh container of the live release (toolkit-app exec: its image, env files and
    mounts; `docker exec` cannot enter a container on these nested test hosts)."""
    command = ["toolkit-app", "exec", "python3", "-c", _CONNECT, sslmode]
    return host.check_output(shlex.join(command)).strip().splitlines()[-1]


def test_the_app_serves_through_the_database_on_the_other_host(host, db) -> None:
    status, body = api_call(APP_HOST, "GET", f"{API_URL}/health/ready")
    assert status == 200, body
    assert body["checks"]["database"]["status"] == "ok", body
    client = Client(APP_HOST)
    assert psql(db, f"SELECT count(*) FROM users WHERE email = '{client.email}'") == "1"
    assert client.get("/invoices")["items"] == []


def test_the_apps_connections_come_from_the_app_host_over_tls(host, db) -> None:
    api_call(APP_HOST, "GET", f"{API_URL}/health/ready")
    rows = psql(
        db,
        "SELECT DISTINCT a.client_addr, s.ssl, s.version FROM pg_stat_activity AS a"
        " JOIN pg_stat_ssl AS s USING (pid) WHERE a.usename = 'invoice'",
    ).splitlines()
    assert rows == [f"{APP_ADDRESS}|t|TLSv1.3"], rows


def test_the_app_verifies_the_database_hosts_certificate(host) -> None:
    env = host.check_output("cat /opt/invoice-service/current/app.env")
    assert "PGSSLMODE='verify-full'" in env, env
    # Its own settings: TLS, the server's certificate checked against the address connected to.
    assert from_the_apps_container(host, "").startswith("connected ssl=True TLSv1.3")
    # Without TLS the database host lets nobody in (hostssl only, for the app host's address).
    refused = from_the_apps_container(host, "disable")
    assert refused.startswith("refused:"), refused
    assert "no encryption" in refused, refused


def test_a_third_host_on_the_network_is_refused_by_the_database_host(host) -> None:
    # The app host reaches PostgreSQL's port; another container on the same network does not
    # (ufw drops it: the port is open to the app host's address alone).
    assert host.run(f"timeout 3 bash -c '</dev/tcp/{DB_ADDRESS}/5432'").rc == 0
    assert tcp_state_on(NETWORK, DB_ADDRESS, 5432) == "filtered"
    # Nor does the app host's Redis answer anyone on the network.
    assert tcp_state_on(NETWORK, APP_ADDRESS, 6379) in ("filtered", "refused")


def test_each_host_runs_its_own_part(host, db) -> None:
    assert db.service("postgresql@17-main").is_running
    assert not db.exists("docker"), "the db host runs no container engine"
    assert not db.package("redis-server").is_installed
    assert host.service("redis-server").is_running
    assert host.service("docker").is_running
    assert not host.package("postgresql-17").is_installed
    # PostgreSQL listens on loopback and on the private address only.
    listening = {socket.split("://")[1] for socket in db.socket.get_listening_sockets() if ":5432" in socket}
    assert listening - {"::1:5432"} == {"127.0.0.1:5432", f"{DB_ADDRESS}:5432"}, listening


def test_each_host_has_its_own_budget(host, db) -> None:
    db_plan = resolve(db, "budget_plan")
    app_plan = resolve(host, "budget_plan")
    assert db_plan["parts"] == ["db"]
    assert app_plan["parts"] == ["app"]
    # The db host's PostgreSQL has 75 % of its 8 GB (inventories/production/group_vars/db.yml), and
    # connections for what the app host's processes may open, plus the reserve.
    assert db_plan["postgres"]["memory_mb"] == 6144
    memory_max = int(db.check_output("systemctl show -p MemoryMax --value postgresql@17-main"))
    assert memory_max == 6144 * 2**20
    reserve = resolve(db, "budget_db_connection_reserve")
    assert app_plan["db_connections"] > 0
    assert db_plan["postgres"]["max_connections"] == app_plan["db_connections"] + int(reserve)
    assert psql(db, "SHOW max_connections") == str(db_plan["postgres"]["max_connections"])
    assert psql(db, "SHOW shared_buffers") == db_plan["postgres"]["settings"]["shared_buffers"]
    # The app host's API and worker have the share PostgreSQL has on a one-host layout.
    assert app_plan["api"]["memory_mb"] == 3584
    assert app_plan["worker"]["memory_mb"] == 2048


def test_the_pre_release_dump_and_the_backups_are_on_the_database_host(host, db) -> None:
    dumps = db.check_output("ls /var/backups/invoice-service").split()
    assert any(name.startswith("pre-release-") and name.endswith(".dump") for name in dumps), dumps
    assert not host.file("/var/backups/invoice-service").exists
    # The db host's backup holds the database alone: the uploads live on the app host.
    Client(APP_HOST)  # a row to back up, whatever ran before
    backup = db.run("systemctl start toolkit-backup.service")
    assert backup.rc == 0, backup.stderr
    newest = db.check_output("ls -1 /var/backups/toolkit | grep -E '^[0-9]{8}T[0-9]{6}Z$' | tail -n 1")
    manifest = json.loads(db.file(f"/var/backups/toolkit/{newest}/manifest.json").content_string)
    assert manifest["uploads"] is None, manifest
    assert manifest["tables"]["public.users"] >= 1, manifest["tables"]
