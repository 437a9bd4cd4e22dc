"""Shutdown without losing a transaction: SIGTERM lets every open transaction finish (and
refuses new clients meanwhile), bounded by shutdown_timeout; SIGINT and a second SIGTERM do not
wait. so_reuseport lets a second Sluice share the port, for a rolling restart under load."""
import os
import signal
import socket
import subprocess
import threading
import time

import psycopg2
import pytest

from pgutil import pgbench, refused, run_psql, wait_for


def line(pg):
    return {"postgres": f"host=127.0.0.1 port={pg.port} dbname=postgres"}


def open_transaction(s, table, value):
    c = psycopg2.connect(**s.dsn())
    cur = c.cursor()
    cur.execute(f"INSERT INTO {table} VALUES ({value})")
    return c, cur


def test_sigterm_lets_a_long_transaction_commit_then_exits_0(sluice_factory, pg):
    s = sluice_factory(databases=line(pg), shutdown_timeout=60)
    pg.psql("CREATE TABLE IF NOT EXISTS shut_commit (v int)")
    idle = psycopg2.connect(**s.dsn())  # no transaction: closed at once
    c, cur = open_transaction(s, "shut_commit", 1)
    result = {}

    def finish():
        try:
            cur.execute("SELECT pg_sleep(1)")
            cur.execute("INSERT INTO shut_commit VALUES (2)")
            c.commit()
            result["ok"] = True
        except psycopg2.Error as e:
            result["error"] = e

    s.proc.send_signal(signal.SIGTERM)
    assert wait_for(lambda: refused(s.port)), "no new clients once SIGTERM arrived"
    assert not os.path.exists(s.socket_path)
    assert s.running(), "a transaction is open"
    t = threading.Thread(target=finish)
    t.start()
    t.join(30)
    assert result.get("ok"), result
    assert s.proc.wait(timeout=15) == 0, s.log()[-3000:]
    assert pg.psql("SELECT count(*) FROM shut_commit WHERE v IN (1, 2)")[0][0] == 2
    with pytest.raises(psycopg2.Error):
        idle.cursor().execute("SELECT 1")
    idle.close()
    c.close()
    assert "every transaction has ended" in s.log()


def test_sigterm_during_a_running_query(sluice_factory, pg):
    """The signal arrives while the statement runs on the server: it still commits."""
    s = sluice_factory(databases=line(pg))
    pg.psql("CREATE TABLE IF NOT EXISTS shut_running (v int)")
    c = psycopg2.connect(**s.dsn())
    cur = c.cursor()
    started = threading.Event()
    result = {}

    def work():
        try:
            cur.execute("INSERT INTO shut_running VALUES (1)")
            started.set()
            cur.execute("SELECT pg_sleep(1.5)")
            c.commit()
            result["ok"] = True
        except psycopg2.Error as e:
            result["error"] = e

    t = threading.Thread(target=work)
    t.start()
    assert started.wait(10)
    assert wait_for(lambda: pg.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'")[0][0] > 0)
    s.proc.send_signal(signal.SIGTERM)
    t.join(30)
    assert result.get("ok"), result
    assert s.proc.wait(timeout=15) == 0
    assert pg.psql("SELECT count(*) FROM shut_running")[0][0] >= 1
    c.close()


def test_shutdown_timeout_bounds_the_wait(sluice_factory, pg):
    s = sluice_factory(databases=line(pg), shutdown_timeout=1)
    pg.psql("CREATE TABLE IF NOT EXISTS shut_timeout (v int)")
    c, cur = open_transaction(s, "shut_timeout", 1)  # and never ends it
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(timeout=15) == 0
    assert "shutdown_timeout" in s.log()
    with pytest.raises(psycopg2.Error):
        cur.execute("SELECT 1")
    c.close()
    # The abandoned transaction was rolled back, not committed.
    assert wait_for(lambda: pg.psql("SELECT count(*) FROM shut_timeout")[0][0] == 0)


def test_sigint_is_immediate_but_clean(sluice_factory, pg):
    s = sluice_factory(databases=line(pg), shutdown_timeout=0)
    pg.psql("CREATE TABLE IF NOT EXISTS shut_int (v int)")
    c, cur = open_transaction(s, "shut_int", 1)
    s.proc.send_signal(signal.SIGINT)
    assert s.proc.wait(timeout=15) == 0  # shutdown_timeout 0 would wait forever
    with pytest.raises(psycopg2.Error):
        cur.execute("SELECT 1")
    c.close()
    assert wait_for(lambda: pg.server_connections() == 0)


def test_a_second_sigterm_forces_the_exit(sluice_factory, pg):
    s = sluice_factory(databases=line(pg), shutdown_timeout=0)
    pg.psql("CREATE TABLE IF NOT EXISTS shut_twice (v int)")
    c, cur = open_transaction(s, "shut_twice", 1)
    s.proc.send_signal(signal.SIGTERM)
    assert wait_for(lambda: refused(s.port))
    assert s.running(), "the transaction is still open"
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(timeout=15) == 0
    assert "a second request does not wait" in s.log()
    c.close()


def test_session_mode_client_is_closed_between_transactions(sluice_factory, pg):
    s = sluice_factory(databases=line(pg), pool_mode="session")
    pg.psql("CREATE TABLE IF NOT EXISTS shut_session (v int)")
    c, cur = open_transaction(s, "shut_session", 7)
    s.proc.send_signal(signal.SIGTERM)
    assert wait_for(lambda: refused(s.port))
    c.commit()
    assert s.proc.wait(timeout=15) == 0
    assert pg.psql("SELECT count(*) FROM shut_session WHERE v = 7")[0][0] == 1
    c.close()


def test_sighup_during_the_drain_is_ignored(sluice_factory, pg):
    """Hostile: reload and drain at once must not reopen anything."""
    s = sluice_factory(databases=line(pg))
    c = psycopg2.connect(**s.dsn())
    c.cursor().execute("SELECT 1")  # a transaction is open
    s.proc.send_signal(signal.SIGTERM)
    assert wait_for(lambda: refused(s.port))
    s.reload()
    c.commit()
    assert s.proc.wait(timeout=15) == 0
    assert refused(s.port)
    c.close()


def test_two_processes_share_a_port_with_so_reuseport(sluice_factory, pg):
    a = sluice_factory(databases=line(pg), so_reuseport=1)
    b = sluice_factory(databases=line(pg), so_reuseport=1, listen_port=a.port,
                       unix_socket_dir=a.dir)
    for s in (a, b):
        # b's start-up check connected to a's listener: wait for b's own.
        assert wait_for(lambda: f"listening on 127.0.0.1:{a.port}" in s.log()), s.log()
        assert s.running()
    # Both serve: connections on the port are spread over them.
    pids = set()
    for _ in range(40):
        r = run_psql(a.port, "SELECT 1")
        assert r.returncode == 0, r.stderr
    for s in (a, b):
        if "new pool postgres/postgres" in s.log():
            pids.add(s.pid)
    assert len(pids) == 2, "the kernel spread the connections over both"


def test_without_so_reuseport_a_second_process_cannot_start(sluice_factory, pg):
    a = sluice_factory(databases=line(pg))
    second = subprocess.run([a.proc.args[0], "-c", a.conf], capture_output=True, text=True,
                            timeout=30)
    assert second.returncode == 1
    assert f"could not listen on 127.0.0.1:{a.port}" in second.stdout + second.stderr
    assert os.path.exists(a.socket_path), "the failed start left the running one's socket"
    r = run_psql(a.port, "SELECT 1")
    assert r.returncode == 0, r.stderr


def test_rolling_restart_under_pgbench_loses_nothing(sluice_factory, pg):
    """Start a second Sluice on the port (so_reuseport), SIGTERM the first: pgbench connecting
    for each transaction (-C) sees no failure. They share the Unix socket directory: the old
    one must not remove the new one's socket file when it exits."""
    old = sluice_factory(databases=line(pg), so_reuseport=1)
    result = {}
    bench = threading.Thread(target=lambda: result.update(
        b=pgbench(old.port, "-c", "10", "-j", "2", "-T", "6", "-C")))
    bench.start()
    time.sleep(1.5)
    new = sluice_factory(databases=line(pg), so_reuseport=1, listen_port=old.port,
                         unix_socket_dir=old.dir)
    assert wait_for(lambda: "sluice started" in new.log()), new.log()
    time.sleep(1)
    old.proc.send_signal(signal.SIGTERM)
    assert old.proc.wait(timeout=15) == 0, old.log()[-3000:]
    bench.join()
    b = result["b"]
    assert b.rc == 0 and b.failed == 0 and b.processed > 0, b.out
    assert "new pool postgres/postgres" in new.log(), "the new process took over"
    assert os.path.exists(old.socket_path), "the old process left the new one's socket alone"
    r = run_psql(new.port, "SELECT 1", extra=("-h", old.dir))
    assert r.returncode == 0, r.stderr
