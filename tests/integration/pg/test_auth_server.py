"""Sluice logging in to the servers: the password from the [databases] line, else the users
file, else the client's own login; SCRAM passthrough with only a verifier (the ClientKey a
client's proof reveals), md5 passthrough with only the md5 hash, auth_query lookups, and the
server's refusals reaching the client with the server's SQLSTATE.

The cluster here asks for passwords (SCRAM for alice and carol, md5 for bob), so a login that
works proves Sluice answered the server's challenge; postgres stays trusted for the harness
and as auth_user.
"""
import os
import socket
import struct
import subprocess
import threading
import time

import psycopg2
import pytest

from pgutil import PgCluster

HBA = """\
local all postgres trust
host all postgres 127.0.0.1/32 trust
host all bob 127.0.0.1/32 md5
host all all 127.0.0.1/32 scram-sha-256
local all all scram-sha-256
"""


@pytest.fixture(scope="module")
def pwpg():
    cluster = PgCluster()
    cluster.start()
    with open(os.path.join(cluster.data, "pg_hba.conf"), "w") as f:
        f.write(HBA)
    if cluster.as_root:
        subprocess.run(["chown", "postgres", os.path.join(cluster.data, "pg_hba.conf")],
                       check=True)
    cluster.psql("SELECT pg_reload_conf()")
    cluster.psql("SET password_encryption = 'scram-sha-256'; "
                 "CREATE ROLE alice LOGIN PASSWORD 'alice-pw'; "
                 "CREATE ROLE carol LOGIN PASSWORD 'carol-pw'; "
                 "SET password_encryption = 'md5'; "
                 "CREATE ROLE bob LOGIN PASSWORD 'bob-pw'")
    yield cluster
    cluster.destroy()


def stored_secret(pg, user):
    conn = pg.connect()
    try:
        cur = conn.cursor()
        cur.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (user,))
        return cur.fetchone()[0]
    finally:
        conn.close()


def server_log(pg):
    with open(os.path.join(pg.dir, "log")) as f:
        return f.read()


def write_users(tmp_path, entries):
    path = tmp_path / "users.txt"
    path.write_text("".join(f'"{u}" "{s}"\n' for u, s in entries.items()))
    return str(path)


def start(sluice_factory, pwpg, users_file, **overrides):
    dbs = {"postgres": f"host=127.0.0.1 port={pwpg.port} dbname=postgres"}
    return sluice_factory(databases=dbs, auth_file=users_file, **overrides)


def login(s, user, password, **kw):
    return psycopg2.connect(host="127.0.0.1", port=s.port, user=user, password=password,
                            dbname="postgres", **kw)


def whoami(conn):
    cur = conn.cursor()
    cur.execute("SELECT current_user, inet_server_port()")
    return cur.fetchone()


def test_scram_passthrough_logs_in_with_only_the_verifier(sluice_factory, pwpg, tmp_path):
    users = write_users(tmp_path, {"alice": stored_secret(pwpg, "alice")})
    s = start(sluice_factory, pwpg, users, auth_type="scram-sha-256")
    conns = [login(s, "alice", "alice-pw") for _ in range(3)]
    for c in conns:
        assert whoami(c) == ("alice", pwpg.port)
    assert "itself (SCRAM passthrough)" in s.log()
    assert "alice-pw" not in s.log()
    for c in conns:
        c.close()


def test_scram_passthrough_server_connection_can_be_cancelled(sluice_factory, pwpg, tmp_path):
    """Sluice sends the cancel itself for a server libpq did not log in to."""
    users = write_users(tmp_path, {"alice": stored_secret(pwpg, "alice")})
    s = start(sluice_factory, pwpg, users, auth_type="scram-sha-256")
    conn = login(s, "alice", "alice-pw")
    timer = threading.Timer(0.5, conn.cancel)
    timer.start()
    cur = conn.cursor()
    with pytest.raises(psycopg2.Error) as ei:
        cur.execute("SELECT pg_sleep(30)")
    timer.join()
    assert ei.value.pgcode == "57014"
    conn.rollback()
    assert whoami(conn)[0] == "alice"
    conn.close()


def test_md5_passthrough_logs_in_with_only_the_hash(sluice_factory, pwpg, tmp_path):
    secret = stored_secret(pwpg, "bob")
    assert secret.startswith("md5")
    users = write_users(tmp_path, {"bob": secret})
    s = start(sluice_factory, pwpg, users, auth_type="md5")
    conn = login(s, "bob", "bob-pw")
    assert whoami(conn) == ("bob", pwpg.port)
    assert "itself (md5 passthrough)" in s.log()
    conn.close()


def test_plaintext_from_users_file_logs_in_through_libpq(sluice_factory, pwpg, tmp_path):
    users = write_users(tmp_path, {"carol": "carol-pw"})
    s = start(sluice_factory, pwpg, users, auth_type="scram-sha-256")
    conn = login(s, "carol", "carol-pw")
    assert whoami(conn)[0] == "carol"
    assert "passthrough" not in s.log(), "libpq logs in with the plaintext password"
    conn.close()


def test_verifier_unlike_the_servers_gets_the_servers_refusal(sluice_factory, pwpg, tmp_path):
    """A verifier made with another salt passes Sluice's check, then the server refuses the
    ClientKey: the client sees the server's 28P01, and Sluice stays up for others."""
    other = subprocess.run([os.environ.get("SLUICE_BIN", "build/sluice"), "--make-verifier",
                            "alice"], input="alice-pw\n", capture_output=True, text=True,
                           check=True).stdout.strip()
    user, secret = [x.strip('"') for x in other.split(" ", 1)]
    assert user == "alice" and secret.startswith("SCRAM-SHA-256$")
    users = write_users(tmp_path, {"alice": secret, "carol": stored_secret(pwpg, "carol")})
    s = start(sluice_factory, pwpg, users, auth_type="scram-sha-256", server_login_retry=600)
    before = server_log(pwpg).count('password authentication failed for user "alice"')
    for _ in range(5):
        with pytest.raises(psycopg2.OperationalError) as ei:
            login(s, "alice", "alice-pw")
        assert "password authentication failed" in str(ei.value)
    after = server_log(pwpg).count('password authentication failed for user "alice"')
    assert after - before == 1, "one refused login, then server_login_retry holds off the rest"
    conn = login(s, "carol", "carol-pw")
    assert whoami(conn)[0] == "carol"
    conn.close()


def test_auth_query_finds_a_user_missing_from_the_file(sluice_factory, pwpg, tmp_path):
    users = write_users(tmp_path, {"postgres": "unused"})
    s = start(sluice_factory, pwpg, users, auth_type="scram-sha-256", auth_user="postgres")
    conn = login(s, "carol", "carol-pw")
    assert whoami(conn)[0] == "carol"
    assert "itself (SCRAM passthrough)" in s.log(), "the looked-up verifier logs in"
    conn.close()
    with pytest.raises(psycopg2.OperationalError) as wrong:
        login(s, "carol", "not-it")
    with pytest.raises(psycopg2.OperationalError) as unknown:
        login(s, "nobody", "not-it")
    assert 'password authentication failed for user "carol"' in str(wrong.value)
    assert 'password authentication failed for user "nobody"' in str(unknown.value)


def test_auth_query_failure_is_an_error_not_a_hang(sluice_factory, pwpg, tmp_path):
    users = write_users(tmp_path, {"postgres": "unused"})
    s = start(sluice_factory, pwpg, users, auth_type="scram-sha-256", auth_user="postgres",
              auth_query="SELECT no_such_column FROM pg_shadow WHERE usename=$1")
    with pytest.raises(psycopg2.OperationalError) as ei:
        login(s, "carol", "carol-pw", connect_timeout=30)
    assert "timeout" not in str(ei.value)
    assert "auth_query failed" in s.log()


def test_slow_auth_query_holds_up_nobody_and_a_client_leaving_drops_it(sluice_factory, pwpg,
                                                                        tmp_path):
    """A lookup that takes seconds: another user (in the file) logs in and works meanwhile; a
    client that gives up mid-lookup leaves nothing behind."""
    users = write_users(tmp_path, {"alice": stored_secret(pwpg, "alice")})
    s = start(sluice_factory, pwpg, users, auth_type="scram-sha-256", auth_user="postgres",
              auth_query="SELECT usename, passwd FROM pg_shadow, pg_sleep(3) WHERE usename=$1")
    slow = {}

    def carol():
        try:
            slow["conn"] = login(s, "carol", "carol-pw")
        except psycopg2.Error as e:
            slow["error"] = e

    t = threading.Thread(target=carol)
    t.start()
    time.sleep(0.5)
    conn = login(s, "alice", "alice-pw")
    assert whoami(conn)[0] == "alice"
    assert t.is_alive(), "alice logged in while carol's lookup was still running"
    t.join()
    assert whoami(slow["conn"])[0] == "carol"
    slow["conn"].close()
    conn.close()


def test_client_leaving_mid_lookup_drops_the_lookup(sluice_factory, pwpg, tmp_path):
    """A raw client sends its startup packet, then vanishes while its lookup runs (for a minute):
    the lookup's connection closes with it, not when the query would have answered."""
    users = write_users(tmp_path, {"alice": stored_secret(pwpg, "alice")})
    s = start(sluice_factory, pwpg, users, auth_type="scram-sha-256", auth_user="postgres",
              auth_query="SELECT usename, passwd FROM pg_shadow, pg_sleep(60) WHERE usename=$1")
    base = s.fd_count()
    sock = socket.create_connection(("127.0.0.1", s.port))
    body = b"user\0carol\0database\0postgres\0\0"
    sock.sendall(struct.pack("!II", 8 + len(body), 196608) + body)
    deadline = time.time() + 10
    while s.fd_count() < base + 2 and time.time() < deadline:
        time.sleep(0.1)
    assert s.fd_count() == base + 2, "the client and its lookup's connection"
    sock.close()
    deadline = time.time() + 10
    while s.fd_count() > base and time.time() < deadline:
        time.sleep(0.1)
    assert s.fd_count() == base, "the lookup's connection closed with its client"
    conn = login(s, "alice", "alice-pw")
    assert whoami(conn)[0] == "alice"
    conn.close()


def test_learned_key_opens_new_server_connections(sluice_factory, pwpg, tmp_path):
    """The pool keeps the ClientKey: after its server connection is killed, the next query
    gets a new one through the same passthrough login."""
    users = write_users(tmp_path, {"alice": stored_secret(pwpg, "alice")})
    s = start(sluice_factory, pwpg, users, auth_type="scram-sha-256", pool_mode="session")
    conn = login(s, "alice", "alice-pw")
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    conn.close()
    admin = pwpg.connect()
    admin.autocommit = True
    admin.cursor().execute("SELECT pg_terminate_backend(%s)", (pid,))
    admin.close()
    time.sleep(0.3)
    conn = login(s, "alice", "alice-pw")
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid(), current_user")
    new_pid, user = cur.fetchone()
    assert user == "alice" and new_pid != pid
    assert s.log().count("itself (SCRAM passthrough)") >= 2
    conn.close()


def test_unknown_database_is_told_only_after_the_login(sluice_factory, pwpg, tmp_path):
    """As PostgreSQL: whether a database exists is no business of a client that has not
    proved who it is."""
    users = write_users(tmp_path, {"alice": stored_secret(pwpg, "alice")})
    s = start(sluice_factory, pwpg, users, auth_type="scram-sha-256")
    with pytest.raises(psycopg2.OperationalError) as wrong:
        psycopg2.connect(host="127.0.0.1", port=s.port, user="alice", password="nope",
                         dbname="no_such_db")
    assert "password authentication failed" in str(wrong.value)
    with pytest.raises(psycopg2.OperationalError) as right:
        psycopg2.connect(host="127.0.0.1", port=s.port, user="alice", password="alice-pw",
                         dbname="no_such_db")
    assert 'database "no_such_db" does not exist' in str(right.value)
