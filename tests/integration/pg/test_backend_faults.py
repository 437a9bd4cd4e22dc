"""Backends that misbehave under Sluice: a PostgreSQL frozen with SIGSTOP, and a fake server that
answers a query with garbage or closes in the middle of a message. Each ends with Sluice alive,
serving another pool, and holding no more descriptors than before. (PostgreSQL stopped and
restarted under load is in test_faults.py.)

Time limits are hang guards only; nothing passes or fails on how fast it happened."""
import os
import signal
import socket
import struct
import sys
import threading
import time

import psycopg2
import pytest

from pgutil import children, error_fields, message, raw_login, read_messages, read_to_eof, \
    startup_packet

sys.dont_write_bytecode = True  # no __pycache__ in bench/ from a test run
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "bench"))
from benchlib import churn  # noqa: E402

HANG = 30  # seconds: a client still waiting after this long is hanging


def wait_until(what, predicate, timeout=HANG):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.1)


def held(s, *backend_ports):
    return churn.holdings(s.pid, (s.port,), backend_ports)


def query_error(port, db, sql, timeout=HANG):
    """Logs in raw, sends one Query, reads until the connection closes or ReadyForQuery;
    returns (the first ErrorResponse's fields or None, eof, every message read)."""
    sock, _ = raw_login(port, database=db)
    try:
        sock.sendall(message(b"Q", sql.encode() + b"\0"))
        msgs, eof = read_messages(sock, until=b"Z", timeout=timeout)
        errors = [error_fields(b) for t, b in msgs if t == b"E"]
        return (errors[0] if errors else None), eof, msgs
    finally:
        sock.close()


def fresh_query_works(s, db="postgres"):
    conn = psycopg2.connect(**s.dsn(dbname=db), connect_timeout=HANG)
    try:
        cur = conn.cursor()
        cur.execute("SELECT 'served'")
        return cur.fetchone() == ("served",)
    finally:
        conn.close()


# ---- PostgreSQL frozen ----

def signal_cluster(cluster, sig):
    """Sends sig to the postmaster and every backend: SIGSTOP freezes the whole server, its
    sockets stay open and the kernel still accepts connections for it."""
    pm = cluster.postmaster_pid()
    for pid in [pm] + children(pm):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def test_postgres_frozen_timeouts_fire_and_sluice_stays_responsive(sluice_factory, pg, own_pg):
    s = sluice_factory(databases={"frozen": f"host=127.0.0.1 port={own_pg.port} dbname=postgres",
                                  "postgres": f"host=127.0.0.1 port={pg.port} dbname=postgres"},
                       query_timeout=1, server_connect_timeout=1, default_pool_size=2)
    # One server connection of the frozen pool is open and idle before the freeze.
    assert fresh_query_works(s, "frozen")
    base = held(s, pg.port, own_pg.port)
    signal_cluster(own_pg, signal.SIGSTOP)
    try:
        outcome = {}

        def on_frozen(name, sql):
            outcome[name] = query_error(s.port, "frozen", sql, timeout=60)

        # The first query gets the idle server: query_timeout cancels it, the frozen server
        # answers neither query nor cancel, and the connection is given up. The second needs a
        # new server connection: server_connect_timeout.
        waiting = [threading.Thread(target=on_frozen, args=("query", "SELECT 1"))]
        waiting[0].start()
        wait_until("the first query holds the idle server",
                   lambda: "query_timeout, cancelling" in s.log())
        waiting.append(threading.Thread(target=on_frozen, args=("connect", "SELECT 2")))
        waiting[1].start()

        # Meanwhile Sluice answers everything that does not need the frozen server.
        t0 = time.monotonic()
        assert fresh_query_works(s, "postgres"), "another pool is served"
        sock = socket.create_connection(("127.0.0.1", s.port))
        sock.sendall(startup_packet(database="nosuchdb"))
        msgs, eof = read_to_eof(sock, timeout=HANG)
        assert eof and msgs and error_fields(msgs[-1][1])["C"] == "3D000", msgs
        sock = socket.create_connection(("127.0.0.1", s.port))
        sock.sendall(struct.pack("!III", 16, 80877102, 12345) + b"\0\0\0\0")  # a cancel, no key
        assert read_to_eof(sock, timeout=HANG) == ([], True), "a cancel request is answered"
        served_in = time.monotonic() - t0
        for t in waiting:
            t.join(90)
            assert not t.is_alive(), "a client of the frozen server is left hanging"
        print(f"\nfrozen server: other pool, login error and cancel served in {served_in:.2f} s; "
              f"errors {[(k, v[0] and v[0]['C']) for k, v in outcome.items()]}")
        for name in ("query", "connect"):
            err, eof, msgs = outcome[name]
            assert err is not None and err["C"] in ("57014", "08006"), (name, msgs)
        assert "query_timeout" in outcome["query"][0]["M"], outcome["query"]
        assert "server_connect_timeout" in outcome["connect"][0]["M"], outcome["connect"]
    finally:
        signal_cluster(own_pg, signal.SIGCONT)
    assert s.running(), "Sluice is still running"
    wait_until("the frozen pool serves again once the server runs",
               lambda: _works_quietly(s, "frozen"), timeout=60)
    wait_until("descriptors back to where they were",
               lambda: held(s, pg.port, own_pg.port)["fds_other"] == base["fds_other"]
               and not held(s, pg.port, own_pg.port)["clients"][s.port])


def _works_quietly(s, db):
    try:
        return fresh_query_works(s, db)
    except psycopg2.Error:
        return False


# ---- a fake server that breaks the protocol ----

# What the fake server sends in answer to a query, by the database name the login asked for,
# and whether it then closes the connection.
GARBAGE = {
    "unknown_type": (message(b"@", b"junk"), False),
    "lying_length": (b"E" + struct.pack("!I", 0x7FFFFFFF), False),
    "length_below_four": (b"C" + struct.pack("!I", 2), False),
    "truncated_then_close": (message(b"T", b"\0\x01col\0" + b"\0" * 18)[:9], True),
    "close_mid_datarow": (message(b"D", b"\0\x01\0\0\0\x05hello")[:8], True),
    "close_before_answer": (b"", True),
}


class FakeServer:
    """Speaks just enough of the protocol for libpq's login (AuthenticationOk, ParameterStatus,
    BackendKeyData, ReadyForQuery), then answers the first Query or Sync with GARBAGE[database].
    Counts the connections it has open."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.open = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.open += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _recv(conn, n):
        buf = b""
        while len(buf) < n:
            d = conn.recv(n - len(buf))
            if not d:
                raise EOFError
            buf += d
        return buf

    def _serve(self, conn):
        try:
            ln = struct.unpack("!I", self._recv(conn, 4))[0]
            body = self._recv(conn, ln - 4)
            if ln == 8 and struct.unpack("!I", body)[0] == 80877103:
                # An SSLRequest (server_tls_sslmode prefer): no TLS here, as a server with
                # ssl = off answers; the startup packet follows in cleartext.
                conn.sendall(b"N")
                ln = struct.unpack("!I", self._recv(conn, 4))[0]
                body = self._recv(conn, ln - 4)
            parts = body[4:].split(b"\0")
            params = dict(zip(parts[::2], parts[1::2]))
            reply, close = GARBAGE[params[b"database"].decode()]
            out = message(b"R", struct.pack("!I", 0))
            for k, v in (("server_version", "15.0"), ("client_encoding", "UTF8"),
                         ("server_encoding", "UTF8"), ("standard_conforming_strings", "on"),
                         ("integer_datetimes", "on"), ("DateStyle", "ISO, MDY"),
                         ("TimeZone", "UTC")):
                out += message(b"S", k.encode() + b"\0" + v.encode() + b"\0")
            conn.sendall(out + message(b"K", struct.pack("!II", 4242, 1)) + message(b"Z", b"I"))
            while True:
                hdr = self._recv(conn, 5)
                self._recv(conn, struct.unpack("!I", hdr[1:])[0] - 4)
                if hdr[:1] == b"X":
                    return
                if hdr[:1] in (b"Q", b"S"):
                    conn.sendall(reply)
                    if close:
                        return
        except (EOFError, OSError):
            pass
        finally:
            conn.close()
            with self.lock:
                self.open -= 1

    def close(self):
        self.listener.close()


@pytest.fixture()
def fake_server():
    f = FakeServer()
    yield f
    f.close()


def query_raw(port, db, sql, timeout=HANG):
    """Logs in, sends one Query and returns every byte that comes back until the connection
    closes (or ReadyForQuery arrives at a message boundary), and whether it closed."""
    sock, _ = raw_login(port, database=db)
    try:
        sock.sendall(message(b"Q", sql.encode() + b"\0"))
        sock.settimeout(timeout)
        data = b""
        while True:
            try:
                d = sock.recv(65536)
            except ConnectionResetError:
                d = b""
            if not d:
                return data, True
            data += d
            if split_messages(data)[1] == b"" and data.endswith(message(b"Z", b"I")):
                return data, False
    finally:
        sock.close()


def split_messages(data):
    """(whole messages, the bytes of an incomplete last one)."""
    msgs = []
    while len(data) >= 5 and len(data) >= 1 + struct.unpack("!I", data[1:5])[0]:
        ln = struct.unpack("!I", data[1:5])[0]
        msgs.append((data[:1], data[5:1 + ln]))
        data = data[1 + ln:]
    return msgs, data


def check_garbage_outcome(data, eof, sent):
    """What a client may see when its server breaks the protocol: either whole messages ending
    with an ErrorResponse (Sluice did not pass the broken message on), or the start of the
    broken message and then the end of the connection, with nothing spliced into it (a message
    cannot be finished by anyone else once part of it was relayed)."""
    partial = sent[:len(data)] == data and len(data) > 0 and len(data) <= len(sent)
    if partial and sent[:1] in (b"T", b"D") and data[:1] == sent[:1]:
        assert eof, "the client of a broken server is closed"
        return None
    msgs, rest = split_messages(data)
    assert not rest, f"the client got an incomplete message followed by the end: {data!r}"
    errors = [error_fields(b) for t, b in msgs if t == b"E"]
    assert errors and errors[-1]["C"] in ("08006", "08P01", "XX000"), msgs
    return errors[-1]


@pytest.mark.parametrize("garbage", sorted(GARBAGE))
def test_server_sending_garbage_costs_only_its_connection(sluice_factory, pg, fake_server,
                                                          garbage):
    dbs = {name: f"host=127.0.0.1 port={fake_server.port} dbname={name}" for name in GARBAGE}
    dbs["postgres"] = f"host=127.0.0.1 port={pg.port} dbname=postgres"
    s = sluice_factory(databases=dbs, default_pool_size=2)
    assert fresh_query_works(s)
    base = held(s, pg.port, fake_server.port)
    for _ in range(3):  # the pool keeps working: each query gets a fresh server connection
        data, eof = query_raw(s.port, garbage, "SELECT 1", timeout=10)
        check_garbage_outcome(data, eof, GARBAGE[garbage][0])
        assert fresh_query_works(s), "another pool is served"
    wait_until("the broken server connections are closed", lambda: fake_server.open == 0)
    assert s.running(), "Sluice is still running"
    wait_until("descriptors back to where they were",
               lambda: held(s, pg.port, fake_server.port)["fds_other"] == base["fds_other"]
               and not held(s, pg.port, fake_server.port)["clients"][s.port])
