"""Cancel and every timeout, each asserted by its outcome (no timing thresholds)."""
import socket
import struct
import threading
import time

import psycopg2
import pytest

from pgutil import error_fields, message, raw_login, read_messages, read_to_eof


def test_cancel_reaches_only_the_linked_server_and_keeps_it(sluice_factory, pg):
    s = sluice_factory(default_pool_size=2)
    a = psycopg2.connect(**s.dsn())
    b = psycopg2.connect(**s.dsn())
    a.autocommit = b.autocommit = True
    result = {}

    def other():
        cur = b.cursor()
        cur.execute("SELECT pg_sleep(1.5), 'b done'")
        result["b"] = cur.fetchone()[1]

    t = threading.Thread(target=other)
    t.start()
    time.sleep(0.3)
    threading.Timer(0.5, a.cancel).start()
    with pytest.raises(psycopg2.errors.QueryCanceled):
        a.cursor().execute("SELECT pg_sleep(30)")
    t.join()
    assert result["b"] == "b done", "the other client's query was not cancelled"
    cur = a.cursor()
    cur.execute("SELECT 1")
    assert cur.fetchone() == (1,)
    assert pg.server_connections() <= 2
    a.cancel()  # a cancel with nothing running is a no-op
    cur.execute("SELECT 2")
    assert cur.fetchone() == (2,)


def test_cancel_of_a_query_waiting_for_a_server(sluice_factory):
    # From the client's side the query is running: a cancel ends it with 57014 now, not when
    # a server frees up or query_wait_timeout strikes, and the connection stays usable.
    s = sluice_factory(default_pool_size=1, query_wait_timeout=60)
    holder = psycopg2.connect(**s.dsn())
    holder.cursor().execute("SELECT 1")  # an open transaction holds the only server
    waiter = psycopg2.connect(**s.dsn())
    waiter.autocommit = True
    outcome = {}

    def wait():
        try:
            waiter.cursor().execute("SELECT 'ran'")
            outcome["value"] = "ran"
        except psycopg2.Error as e:
            outcome["value"] = e

    t = threading.Thread(target=wait, daemon=True)
    t.start()
    time.sleep(0.5)  # the query is queued by now
    waiter.cancel()
    t.join(20)
    alive = t.is_alive()
    holder.rollback()  # frees the server whatever happened, so nothing is left hanging
    t.join(20)
    assert not alive, "the cancel was not answered while the query waited for a server"
    assert isinstance(outcome["value"], psycopg2.errors.QueryCanceled), outcome["value"]
    cur = waiter.cursor()
    cur.execute("SELECT 1")
    assert cur.fetchone() == (1,)


def test_cancel_of_a_waiting_pipeline_skips_to_its_sync(sluice_factory):
    # Extended protocol: after the cancel's error, what the client sends up to its Sync is
    # dropped (as the server does after an error), even when the Sync comes later.
    s = sluice_factory(default_pool_size=1, query_wait_timeout=60)
    holder = psycopg2.connect(**s.dsn())
    holder.cursor().execute("SELECT 1")  # an open transaction holds the only server
    sock, login = raw_login(s.port)
    pid, key = struct.unpack("!II", [body for t, body in login if t == b"K"][0])
    sock.sendall(message(b"P", b"\0SELECT 7\0\0\0")
                 + message(b"B", b"\0\0" + b"\0\0" + b"\0\0" + b"\0\0")
                 + message(b"E", b"\0\0\0\0\0"))
    time.sleep(0.5)  # queued for the server by now
    with socket.create_connection(("127.0.0.1", s.port)) as c:
        c.sendall(struct.pack("!IIII", 16, 80877102, pid, key))
        assert c.recv(1) == b""  # answered by closing, as the server does
    msgs, _ = read_messages(sock, until=b"E")
    assert [t for t, _ in msgs] == [b"E"], msgs
    assert error_fields(msgs[0][1])["C"] == "57014"
    sock.sendall(message(b"H") + message(b"S"))
    msgs, _ = read_messages(sock)
    assert msgs == [(b"Z", b"I")], msgs
    holder.rollback()
    sock.sendall(message(b"Q", b"SELECT 8\0"))
    msgs, _ = read_messages(sock)
    assert [t for t, _ in msgs] == [b"T", b"D", b"C", b"Z"], msgs
    assert msgs[1][1].endswith(b"8")
    sock.close()
    holder.close()


def test_query_timeout_cancels_and_keeps_the_connection(sluice_factory, pg):
    s = sluice_factory(query_timeout=1, default_pool_size=1)
    conn = psycopg2.connect(**s.dsn())
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    with pytest.raises(psycopg2.errors.QueryCanceled):
        cur.execute("SELECT pg_sleep(10)")
    cur.execute("SELECT pg_backend_pid()")
    assert cur.fetchone()[0] == pid, "the server connection stayed in the pool"


def test_query_wait_timeout(sluice_factory):
    s = sluice_factory(query_wait_timeout=1, default_pool_size=1)
    holder = psycopg2.connect(**s.dsn())
    holder.cursor().execute("SELECT 1")  # psycopg2 opened a transaction: the server is held
    # libpq drops a FATAL message that arrives with the close (as it does for PostgreSQL's
    # own), so the waiter speaks the protocol directly to see the error.
    waiter, _ = raw_login(s.port)
    waiter.sendall(message(b"Q", b"SELECT 1\0"))
    msgs, eof = read_to_eof(waiter)
    assert msgs and msgs[0][0] == b"E", msgs
    fields = error_fields(msgs[0][1])
    assert fields["C"] == "08P01" and "query_wait_timeout" in fields["M"] and eof
    holder.rollback()
    again = psycopg2.connect(**s.dsn())
    again.cursor().execute("SELECT 1")
    again.close()


def test_idle_transaction_timeout_rolls_back_and_disconnects(sluice_factory, pg):
    pg.psql("CREATE TABLE IF NOT EXISTS idle_tx (x int)")
    pg.psql("TRUNCATE idle_tx")
    s = sluice_factory(idle_transaction_timeout=1)
    conn = psycopg2.connect(**s.dsn())
    cur = conn.cursor()
    cur.execute("INSERT INTO idle_tx VALUES (1)")
    time.sleep(2)
    with pytest.raises(psycopg2.OperationalError) as e:
        cur.execute("SELECT 1")
    assert "idle_transaction_timeout" in str(e.value) or conn.closed
    assert pg.psql("SELECT count(*) FROM idle_tx")[0][0] == 0
    other = psycopg2.connect(**s.dsn())
    other.cursor().execute("SELECT 1")


def test_client_login_timeout(sluice_factory):
    s = sluice_factory(client_login_timeout=1)
    sock = socket.create_connection(("127.0.0.1", s.port))  # and sends nothing
    msgs, eof = read_to_eof(sock, timeout=10)
    assert eof, "Sluice closed the connection"
    assert msgs and error_fields(msgs[-1][1])["C"] == "08P01", msgs
    assert "client_login_timeout" in error_fields(msgs[-1][1])["M"]
    assert sock.recv(1) == b""


def test_server_connect_timeout_against_a_silent_server(sluice_factory):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts TCP, never speaks
    port = silent.getsockname()[1]
    s = sluice_factory(server_connect_timeout=1,
                       databases={"silent": f"host=127.0.0.1 port={port} dbname=x"})
    with pytest.raises(psycopg2.OperationalError) as e:
        psycopg2.connect(**s.dsn(dbname="silent", connect_timeout=20))
    assert "server_connect_timeout" in str(e.value)
    silent.close()


def test_server_down_gives_a_clear_error(sluice_factory):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens here
    s = sluice_factory(databases={"down": f"host=127.0.0.1 port={port} dbname=x"})
    with pytest.raises(psycopg2.OperationalError) as e:
        psycopg2.connect(**s.dsn(dbname="down"))
    assert "could not connect to the server" in str(e.value)
