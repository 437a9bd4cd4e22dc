"""Bad input from clients, and PostgreSQL going away under Sluice."""
import socket
import struct
import subprocess
import threading
import time

import psycopg2
import pytest

from pgutil import error_fields, message, pgbench, raw_login, read_to_eof, startup_packet

BAD_MESSAGES = {
    "unknown message type": message(b"@"),
    "length below four": b"Q\0\0\0\x02",
    "over max_packet_size": message(b"Q", b"x" * 10000 + b"\0"),
    "query without terminator": message(b"Q", b"SELECT 1"),
    "malformed parse": message(b"P", b"ab"),
    "sync with a body": message(b"S", b"x"),
    "password message after login": message(b"p", b"secret\0"),
}


@pytest.mark.parametrize("name", sorted(BAD_MESSAGES))
def test_bad_message_gets_08P01_and_only_that_client_closes(sluice_factory, name):
    s = sluice_factory(max_packet_size=1024)
    good = psycopg2.connect(**s.dsn())
    good.autocommit = True
    bad, _ = raw_login(s.port)
    bad.sendall(BAD_MESSAGES[name])
    msgs, eof = read_to_eof(bad)
    errors = [error_fields(b) for t, b in msgs if t == b"E"]
    assert errors and errors[0]["C"] == "08P01", msgs
    assert eof, "the offending connection is closed"
    cur = good.cursor()
    cur.execute("SELECT 'still fine'")
    assert cur.fetchone() == ("still fine",)


@pytest.mark.parametrize("version", [0x00020000, 0x00040000])
def test_wrong_protocol_version(sluice, version):
    sock = socket.create_connection(("127.0.0.1", sluice.port))
    sock.sendall(startup_packet(version=version))
    msgs, eof = read_to_eof(sock)
    assert msgs and error_fields(msgs[0][1])["C"] == "08P01" and eof


def test_truncated_message_then_eof(sluice):
    sock, _ = raw_login(sluice.port)
    sock.sendall(b"Q\0\0\0\x20SELEC")
    sock.shutdown(socket.SHUT_WR)
    msgs, eof = read_to_eof(sock)
    assert msgs and error_fields(msgs[0][1])["C"] == "08P01" and eof


def test_bad_startup_length(sluice):
    sock = socket.create_connection(("127.0.0.1", sluice.port))
    sock.sendall(struct.pack("!I", 3))
    msgs, eof = read_to_eof(sock)
    assert msgs and error_fields(msgs[0][1])["C"] == "08P01" and eof


def seconds_to_first_query(s, limit=30):
    """Time until a new client's query through Sluice succeeds (a figure, not a check: the
    caller prints it); fails the test after `limit` seconds."""
    t0 = time.monotonic()
    while True:
        try:
            conn = psycopg2.connect(**s.dsn(), connect_timeout=limit)
            try:
                cur = conn.cursor()
                cur.execute("SELECT 1")
                if cur.fetchone() == (1,):
                    return time.monotonic() - t0
            finally:
                conn.close()
        except psycopg2.Error:
            pass
        assert time.monotonic() - t0 < limit, f"no query served within {limit} s of the restart"
        time.sleep(0.01)


def test_postgres_restart_under_load(sluice_factory, own_pg):
    own_pg.psql("SELECT 1")
    subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p", str(own_pg.port),
                    "-U", "postgres", "postgres"], check=True, capture_output=True)
    s = sluice_factory(databases={"*": f"host=127.0.0.1 port={own_pg.port}"},
                       default_pool_size=4)
    load = {}

    def run():
        load["result"] = pgbench(s.port, "-S", "-c", "8", "-j", "2", "-T", "4")

    t = threading.Thread(target=run)
    t.start()
    time.sleep(1.5)
    own_pg.stop("fast")
    time.sleep(0.5)
    # Logins are answered from the pool's known parameters; the first query needs the server
    # and is answered with a clear error (read raw: libpq drops a FATAL that comes with a close).
    sock, _ = raw_login(s.port)
    sock.sendall(message(b"Q", b"SELECT 1\0"))
    msgs, eof = read_to_eof(sock)
    fields = error_fields(msgs[0][1])
    assert fields["C"] == "08006" and "could not connect" in fields["M"] and eof, msgs
    own_pg.start()  # returns once PostgreSQL accepts connections
    print(f"\nPostgreSQL restart under load: first query through Sluice "
          f"{seconds_to_first_query(s):.3f} s after PostgreSQL was back")
    t.join()
    assert s.running(), "Sluice is still running"
    assert load["result"].processed > 0, load["result"].out
    # the same Sluice process serves new transactions without a restart
    for _ in range(3):
        conn = psycopg2.connect(**s.dsn())
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM pgbench_branches")
        assert cur.fetchone() == (1,)
        conn.close()
    b = pgbench(s.port, "-S", "-c", "8", "-j", "2", "-t", "50")
    assert b.rc == 0 and b.failed == 0 and b.processed == 400, b.out


def test_server_killed_mid_transaction_gives_08006(sluice_factory, own_pg):
    s = sluice_factory(databases={"*": f"host=127.0.0.1 port={own_pg.port}"})
    conn = psycopg2.connect(**s.dsn(), connect_timeout=10)
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    own_pg.psql(f"SELECT pg_terminate_backend({pid})")
    with pytest.raises(psycopg2.OperationalError) as e:
        cur.execute("SELECT 1")
    assert e.value.pgcode in (None, "08006", "57P01")
    # and a new client gets a fresh server
    conn2 = psycopg2.connect(**s.dsn())
    cur2 = conn2.cursor()
    cur2.execute("SELECT 1")
    assert cur2.fetchone() == (1,)


class Background:
    """Runs fn in a thread; result() gives what it returned or raised, and fails the test when
    fn is still running after `timeout` seconds: a client left hanging."""

    def __init__(self, fn):
        self.outcome = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn):
        try:
            self.outcome = fn()
        except Exception as e:  # the outcome under test
            self.outcome = e

    def result(self, what, timeout=15):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{what} hangs"
        return self.outcome


def test_postgres_killed_under_clients_in_a_transaction_and_a_query(sluice_factory, own_pg):
    s = sluice_factory(databases={"*": f"host=127.0.0.1 port={own_pg.port}"},
                       default_pool_size=4)
    idle = psycopg2.connect(**s.dsn())
    idle.cursor().execute("SELECT 1")  # inside a transaction, holding a server
    busy = psycopg2.connect(**s.dsn())
    busy.autocommit = True
    sleeper = Background(lambda: busy.cursor().execute("SELECT pg_sleep(30)"))
    deadline = time.time() + 10
    while not own_pg.psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
                          )[0][0]:
        assert time.time() < deadline, "the query never started"
        time.sleep(0.05)
    own_pg.kill()  # no goodbye to anyone: the server sockets just close
    err = sleeper.result("the client waiting for its query")
    assert isinstance(err, psycopg2.OperationalError), err
    assert err.pgcode in (None, "08006"), (err.pgcode, str(err))
    err = Background(lambda: idle.cursor().execute("SELECT 1")).result(
        "the client in a transaction")
    assert isinstance(err, psycopg2.OperationalError), err
    assert err.pgcode in (None, "08006"), (err.pgcode, str(err))
    assert s.running(), "Sluice is still running"
    own_pg.start()
    for _ in range(3):
        conn = psycopg2.connect(**s.dsn())
        cur = conn.cursor()
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
        conn.close()
    assert own_pg.server_connections() <= 4
