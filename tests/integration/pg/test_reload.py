"""Reload (SIGHUP) without dropping anyone: [databases] lines changed, removed and added, pool
sizes, keys that need a restart, a file that does not load, and the service manager's view."""
import os
import signal
import socket
import subprocess
import threading
import time

import psycopg2
import pytest

from pgutil import pgbench, run_psql, wait_for


def tcp_line(pg, extra=""):
    return f"host=127.0.0.1 port={pg.port} dbname=postgres {extra}".strip()


def unix_line(pg, extra=""):
    return f"host={pg.dir} port={pg.port} dbname=postgres {extra}".strip()


def test_pgbench_across_reloads_of_pool_size_and_server_address(sluice_factory, pg):
    """Transaction mode under pgbench -c 10: a reload moves the database from TCP to the Unix
    socket with a smaller pool, another moves it back with a larger one. No transaction
    fails."""
    s = sluice_factory(databases={"postgres": tcp_line(pg, "pool_size=4")})
    result = {}
    bench = threading.Thread(target=lambda: result.update(
        b=pgbench(s.port, "-c", "10", "-j", "2", "-T", "8")))
    bench.start()
    assert wait_for(lambda: pg.server_connections() >= 4)
    time.sleep(2)
    s.rewrite({"postgres": unix_line(pg, "pool_size=2")})
    s.reload_and_wait()
    # Servers made with the old line are replaced as their transactions end.
    assert wait_for(lambda: "connection settings changed" in s.log())
    time.sleep(2)
    s.rewrite({"postgres": tcp_line(pg, "pool_size=6")})
    s.reload_and_wait()
    bench.join()
    b = result["b"]
    assert b.rc == 0 and b.failed == 0 and b.processed > 0, b.out
    assert s.log().count("connection settings changed") >= 2
    assert "reconfigured" in s.log(), "old servers were retired"
    assert s.running()


def test_servers_follow_the_new_address(sluice_factory, pg):
    """After the reload, the server connections come from the Unix socket (no client_addr)."""
    s = sluice_factory(databases={"postgres": tcp_line(pg)}, pool_mode="session")
    c = psycopg2.connect(**s.dsn(application_name="before"))
    cur = c.cursor()
    cur.execute("SELECT inet_client_addr() IS NULL")
    assert cur.fetchone() == (False,)
    c.close()
    s.rewrite({"postgres": unix_line(pg)})
    s.reload_and_wait()
    c = psycopg2.connect(**s.dsn())
    cur = c.cursor()
    cur.execute("SELECT inet_client_addr() IS NULL")
    assert cur.fetchone() == (True,), "the new line's Unix socket is used"
    c.close()


def test_removed_database_lets_its_client_finish_and_refuses_new_ones(sluice_factory, pg):
    lines = {"postgres": tcp_line(pg), "gone": tcp_line(pg)}
    s = sluice_factory(databases=lines)
    pg.psql("CREATE TABLE IF NOT EXISTS reload_rm (v int)")
    c = psycopg2.connect(**s.dsn(dbname="gone"))
    cur = c.cursor()
    cur.execute("INSERT INTO reload_rm VALUES (1)")  # a transaction is open
    s.rewrite({"postgres": tcp_line(pg)})
    s.reload_and_wait()
    assert "database gone removed" in s.log()
    with pytest.raises(psycopg2.Error) as e:
        psycopg2.connect(**s.dsn(dbname="gone"))
    assert e.value.pgcode == "3D000" or "3D000" in str(e.value) or "does not exist" in str(e.value)
    cur.execute("INSERT INTO reload_rm VALUES (2)")
    c.commit()
    cur.execute("SELECT 1")  # and it may go on until it leaves
    assert cur.fetchone() == (1,)
    c.close()
    assert pg.psql("SELECT count(*) FROM reload_rm WHERE v IN (1, 2)")[0][0] == 2
    r = run_psql(s.port, "SELECT 1", db="postgres")
    assert r.returncode == 0, r.stderr


def test_removed_database_gets_3D000_on_the_wire(sluice_factory, pg):
    from pgutil import error_fields, read_messages, startup_packet
    s = sluice_factory(databases={"postgres": tcp_line(pg), "gone": tcp_line(pg)})
    s.rewrite({"postgres": tcp_line(pg)})
    s.reload_and_wait()
    sock = socket.create_connection(("127.0.0.1", s.port))
    sock.sendall(startup_packet(database="gone"))
    msgs, _ = read_messages(sock)
    sock.close()
    assert msgs[0][0] == b"E", msgs
    assert error_fields(msgs[0][1])["C"] == "3D000"


def test_added_database_is_usable_without_restart(sluice_factory, pg):
    s = sluice_factory(databases={"postgres": tcp_line(pg)})
    r = run_psql(s.port, "SELECT 1", db="fresh")
    assert r.returncode != 0 and "does not exist" in r.stderr
    s.rewrite({"postgres": tcp_line(pg), "fresh": tcp_line(pg)})
    s.reload_and_wait()
    assert "database fresh added" in s.log()
    r = run_psql(s.port, "SELECT current_database()", db="fresh")
    assert r.returncode == 0 and r.stdout.strip() == "postgres", r.stderr


def test_pool_size_grows_and_shrinks_on_reload(sluice_factory, pg):
    s = sluice_factory(databases={"postgres": tcp_line(pg, "pool_size=2")}, min_pool_size=0)
    holders = []
    try:
        for _ in range(4):
            c = psycopg2.connect(**s.dsn())
            c.cursor().execute("SELECT 1")  # opens a transaction: holds a server
            holders.append(c)
            if len(holders) == 2:
                break
        assert wait_for(lambda: pg.server_connections() == 2)
        s.rewrite({"postgres": tcp_line(pg, "pool_size=4")})
        s.reload_and_wait()
        for _ in range(2):
            c = psycopg2.connect(**s.dsn())
            c.cursor().execute("SELECT 1")
            holders.append(c)
        assert wait_for(lambda: pg.server_connections() == 4)
        s.rewrite({"postgres": tcp_line(pg, "pool_size=1")})
        s.reload_and_wait()
        for c in holders:
            c.commit()
        # Released servers over the new size close.
        assert wait_for(lambda: pg.server_connections() <= 1)
    finally:
        for c in holders:
            c.close()


def test_restart_keys_are_logged_by_name_and_keep_their_value(sluice_factory, pg):
    s = sluice_factory(databases={"postgres": tcp_line(pg)})
    old_socket = s.socket_path
    s.rewrite({"postgres": tcp_line(pg)}, listen_port=s.port + 1, so_reuseport=1,
              query_timeout=30)
    s.reload_and_wait()
    log = s.log()
    assert "reload: listen_port changed; it takes effect at the next restart" in log
    assert "reload: so_reuseport changed" in log
    assert "query_timeout" not in log.split("reload:")[-1], "reloadable keys are not listed"
    r = run_psql(s.port, "SELECT 1")
    assert r.returncode == 0, r.stderr
    assert os.path.exists(old_socket)


def test_a_file_that_does_not_load_changes_nothing(sluice_factory, pg):
    s = sluice_factory(databases={"postgres": tcp_line(pg)})
    with open(s.conf, "a") as f:
        f.write("[sluice]\npool_mode = sometimes\n")
    s.reload_and_wait()
    assert "keeping the running configuration" in s.log()
    r = run_psql(s.port, "SELECT 1")
    assert r.returncode == 0, r.stderr


def test_a_reload_storm_under_load(sluice_factory, pg):
    """Hostile: SIGHUP in a tight loop while pgbench runs, the line flipping between two
    addresses: no failed transaction, no crash."""
    s = sluice_factory(databases={"postgres": tcp_line(pg, "pool_size=3")})
    result = {}
    bench = threading.Thread(target=lambda: result.update(
        b=pgbench(s.port, "-c", "8", "-j", "2", "-T", "5", "-S")))
    bench.start()
    for i in range(40):
        s.rewrite({"postgres": (unix_line if i % 2 else tcp_line)(pg, f"pool_size={1 + i % 4}")})
        s.reload()
        time.sleep(0.1)
    bench.join()
    b = result["b"]
    assert b.rc == 0 and b.failed == 0 and b.processed > 0, b.out
    assert s.running()


class NotifySocket:
    """What systemd listens on for a Type=notify service: an AF_UNIX datagram socket."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(10)

    def next(self):
        return self.sock.recv(4096).decode()

    def until(self, word):
        seen = []
        while True:
            msg = self.next()
            seen.append(msg)
            if word in msg.split("\n"):
                return msg, seen

    def close(self):
        self.sock.close()


def test_sd_notify_ready_reloading_stopping(sluice_factory, pg, monkeypatch, tmp_path):
    ns = NotifySocket(str(tmp_path / "notify"))
    monkeypatch.setenv("NOTIFY_SOCKET", ns.path)
    try:
        s = sluice_factory(databases={"postgres": tcp_line(pg)})
        msg, _ = ns.until("READY=1")
        assert "STATUS=" in msg and f"MAINPID={s.pid}" in msg
        s.reload()
        msg, _ = ns.until("RELOADING=1")
        usec = [line for line in msg.split("\n") if line.startswith("MONOTONIC_USEC=")]
        assert usec and abs(int(usec[0].split("=")[1]) / 1e6 - time.monotonic()) < 60
        msg, _ = ns.until("READY=1")
        s.proc.send_signal(signal.SIGTERM)
        msg, _ = ns.until("STOPPING=1")
        assert s.proc.wait(timeout=10) == 0
    finally:
        ns.close()


def test_without_notify_socket_nothing_breaks(sluice_factory, pg, monkeypatch):
    """Hostile: NOTIFY_SOCKET names nothing: the notifications fail quietly."""
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/notify")
    s = sluice_factory(databases={"postgres": tcp_line(pg)})
    s.reload_and_wait()
    r = run_psql(s.port, "SELECT 1")
    assert r.returncode == 0, r.stderr
