"""The forwarding path takes nothing from malloc once warm: requests and replies reuse the
loop's pooled buffers and write requests, which the admin console's SHOW MEM counts (allocs:
objects the pool ever took from malloc). Plain and TLS clients, with and without query_timeout
(which appends maxTimeMS to each request in place); after hostile detours (a message larger
than a pooled block, a client that stops reading its replies) the path is flat again. Nothing
here times anything: the counts are compared."""
import socket
import struct

import bson
import psycopg2
import pymongo
import pytest

from test_tls import certs, tls_sluice, tls_socket  # noqa: F401 (certs is a fixture)
from wire import op_msg

WARMUP = 200
REQUESTS = 2000
POOLED = ("buffers_16k", "buffers_64k", "write_requests")


class Console:
    """One admin console session for the whole test: its own buffers come and go with each
    SHOW, never overlapping the traffic measured (a session that closed would release its
    buffers on a later loop iteration, possibly while a request is being forwarded)."""

    def __init__(self, s):
        self.conn = psycopg2.connect(host="127.0.0.1", port=s.pg_port, user="admin",
                                     dbname="sluice")
        self.conn.autocommit = True
        self.mem()  # the session's own first needs, before anything is measured

    def mem(self):
        """SHOW MEM as {name: row}."""
        cur = self.conn.cursor()
        cur.execute("SHOW MEM")
        cols = [d[0] for d in cur.description]
        return {r[0]: dict(zip(cols, r)) for r in cur.fetchall()}

    def allocs(self):
        rows = self.mem()
        return {k: int(rows[k]["allocs"]) for k in POOLED}

    def close(self):
        self.conn.close()


@pytest.fixture()
def console_of():
    opened = []

    def make(s):
        opened.append(Console(s))
        return opened[-1]

    yield make
    for c in opened:
        c.close()


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        d = sock.recv(n - len(buf))
        assert d, "the connection closed"
        buf += d
    return buf


def reply(sock):
    """One whole OP_MSG reply's body (no checksum: none was asked for)."""
    head = read_exact(sock, 16)
    length = struct.unpack("<i", head[:4])[0]
    rest = read_exact(sock, length - 16)
    return bson.decode(rest[5:])


def forward(coll, n, tag):
    for i in range(n):
        coll.insert_one({"tag": tag, "i": i})
        assert coll.find_one({"tag": tag, "i": i})["i"] == i


def raw_forward(sock, n, start):
    """n inserts and finds over one socket, OP_MSG by hand (so no driver opens a connection
    of its own meanwhile: a new TLS connection's handshake takes blocks of its own)."""
    for i in range(start, start + n):
        sock.sendall(op_msg({"insert": "raw", "documents": [{"i": i}], "$db": "steady"},
                            request_id=2 * i + 1))
        assert reply(sock)["n"] == 1
        sock.sendall(op_msg({"find": "raw", "filter": {"i": i}, "$db": "steady"},
                            request_id=2 * i + 2))
        assert reply(sock)["cursor"]["firstBatch"][0]["i"] == i


def assert_raw_flat(console, sock):
    raw_forward(sock, WARMUP, 0)
    before = console.allocs()
    raw_forward(sock, REQUESTS // 2, WARMUP)
    after = console.allocs()
    assert after == before, f"the forwarding path allocated: {before} -> {after}"


def assert_flat(console, coll, tag):
    forward(coll, WARMUP, tag + "-warm")
    before = console.allocs()
    forward(coll, REQUESTS // 2, tag)  # an insert and a find each
    after = console.allocs()
    assert after == before, f"the forwarding path allocated: {before} -> {after}"


@pytest.mark.parametrize("query_timeout", [0, 30])
def test_plain_forwarding_takes_nothing_from_malloc(sluice_factory, console_of, query_timeout):
    s = sluice_factory(admin_users="admin", query_timeout=query_timeout)
    console = console_of(s)
    with pymongo.MongoClient(s.uri()) as client:
        coll = client.steady.plain
        coll.drop()
        assert_flat(console, coll, f"plain-{query_timeout}")
    rows = console.mem()
    assert int(rows["buffers_64k"]["size"]) == 65536
    assert int(rows["buffers_16k"]["size"]) == 16384


@pytest.mark.parametrize("query_timeout", [0, 30])
def test_raw_forwarding_takes_nothing_from_malloc(sluice_factory, console_of, query_timeout):
    s = sluice_factory(admin_users="admin", query_timeout=query_timeout)
    console = console_of(s)
    with socket.create_connection(("127.0.0.1", s.port), timeout=20) as sock:
        assert_raw_flat(console, sock)


@pytest.mark.parametrize("query_timeout", [0, 30])
def test_tls_forwarding_takes_nothing_from_malloc(sluice_factory, certs,  # noqa: F811
                                                  console_of, query_timeout):
    s = tls_sluice(sluice_factory, certs, admin_users="admin", query_timeout=query_timeout)
    console = console_of(s)
    sock = tls_socket(s, certs)
    try:
        assert_raw_flat(console, sock)
    finally:
        sock.close()


def test_raw_ping_round_trips_reuse_one_set_of_blocks(sluice_factory, console_of):
    """One connection, OP_MSG pings written and read by hand: after the first few, the pool
    serves every one, and between them the idle client holds no buffer."""
    s = sluice_factory(admin_users="admin")
    console = console_of(s)
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=20)
    try:
        for i in range(REQUESTS + WARMUP):
            if i == WARMUP:
                before = console.allocs()
            sock.sendall(op_msg({"ping": 1, "$db": "admin"}, request_id=i + 1))
            assert reply(sock)["ok"] == 1
        assert console.allocs() == before
        rows = console.mem()
        assert int(rows["buffers_64k"]["used"]) == 0, "an idle connection holds no buffer"
    finally:
        sock.close()


def test_flat_again_after_a_large_message_and_a_slow_reader(sluice_factory, console_of):
    """Hostile detours: a 1 MB document (larger than any pooled block, so its buffers come from
    malloc and go back to it) and a client that pipelines requests without reading the replies
    until many are queued (write requests pile up). Afterwards the steady path allocates
    nothing again."""
    s = sluice_factory(admin_users="admin")
    console = console_of(s)
    with pymongo.MongoClient(s.uri()) as client:
        coll = client.steady.detours
        coll.drop()
        forward(coll, WARMUP, "warm")
        coll.insert_one({"big": "x" * (1 << 20)})
        assert len(coll.find_one({"big": {"$exists": True}})["big"]) == 1 << 20
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=20)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            find = {"find": "detours", "filter": {"tag": "warm"}, "$db": "steady"}
            sock.sendall(b"".join(op_msg(find, request_id=i + 1) for i in range(50)))
            for _ in range(50):
                assert reply(sock)["ok"] == 1
        finally:
            sock.close()
        forward(coll, WARMUP, "rewarm")
        before = console.allocs()
        forward(coll, REQUESTS // 2, "after")
        assert console.allocs() == before
