"""Hostile and careless clients: what one client sends must never crash Sluice, reach into another
client's server stream, leak its session state to others, or grow Sluice's memory without bound.

Each test models one attack with real parts (a real PostgreSQL, psycopg2, psql, raw sockets for
byte sequences no driver would send), asserts the outcome for the innocent clients (their data
intact, the right values), and ends with Sluice still running and a fresh client served. The
sluice_factory fixture's teardown then stops Sluice and fails the test on an unclean exit or a
sanitizer report in its log.

Small pools (one or two server connections) make the clients really share servers. Time limits
are hang guards only (a client left waiting fails the test instead of hanging the run); no test
passes or fails on how fast something happened. The flood tests print Sluice's resident memory
(lines starting with 'RSS', visible with -s).
"""
import hashlib
import itertools
import math
import os
import re
import select
import socket
import string
import struct
import subprocess
import sys
import threading
import time

import psycopg2
import pytest

from pgutil import error_fields, message, raw_login, read_messages, read_to_eof, startup_packet

HANG = 20  # seconds: a client still waiting after this long is hanging

# ---- helpers ----


def connect(s, **kw):
    """A psycopg2 connection through Sluice, in autocommit: every statement is one transaction."""
    c = psycopg2.connect(**s.dsn(**kw), connect_timeout=10)
    c.autocommit = True
    return c


def within(what, fn, timeout=HANG):
    """Runs fn in a thread and returns what it returned (or raises what it raised); fails the
    test when it is still running after `timeout` seconds."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the caller
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{what}: still waiting after {timeout} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


def one(c, sql, args=None):
    """The first row of a statement, with a hang guard."""
    def run():
        cur = c.cursor()
        cur.execute(sql, args)
        return cur.fetchone()
    return within(sql[:60], run)


def execute(c, sql):
    """Runs a statement whose result does not matter, with a hang guard."""
    within(sql[:60], lambda: c.cursor().execute(sql))


def all_rows(c, sql, args=None):
    def run():
        cur = c.cursor()
        cur.execute(sql, args)
        return cur.fetchall()
    return within(sql[:60], run)


def sqlstate(c, sql):
    """Runs a statement that must fail; returns its SQLSTATE (None when it succeeded)."""
    try:
        one(c, sql)
    except psycopg2.Error as e:
        return e.pgcode
    return None


def assert_healthy(s):
    """Sluice still runs, and a client that connects now is served correctly."""
    assert s.running(), "Sluice is still running"

    def fresh():
        c = psycopg2.connect(**s.dsn(), connect_timeout=10)
        try:
            cur = c.cursor()
            cur.execute("SELECT 'fresh', 6 * 7")
            return cur.fetchone()
        finally:
            c.close()
    assert within("a fresh client", fresh) == ("fresh", 42)


def fresh_table(pg, name):
    pg.psql(f"DROP TABLE IF EXISTS {name}; "
            f"CREATE TABLE {name} (k int PRIMARY KEY, v text NOT NULL)")


def table_rows(pg, name):
    """The table's rows as PostgreSQL itself has them (not through Sluice)."""
    return pg.psql(f"SELECT k, v FROM {name} ORDER BY k")


def settle(predicate, timeout=10):
    """Polls until predicate() holds (Sluice resets and closes servers asynchronously)."""
    deadline = time.time() + timeout
    while not predicate() and time.time() < deadline:
        time.sleep(0.05)
    return predicate()


# raw protocol

def q(sql):
    return message(b"Q", sql.encode() + b"\0")


def parse(name, sql):
    return message(b"P", name.encode() + b"\0" + sql.encode() + b"\0\0\0")


def bind(stmt, *values):
    body = b"\0" + stmt.encode() + b"\0" + b"\0\0" + struct.pack("!h", len(values))
    for v in values:
        body += struct.pack("!i", len(v)) + v
    return message(b"B", body + b"\0\0")


EXECUTE = message(b"E", b"\0\0\0\0\0")
SYNC = message(b"S")


def datarow(body):
    n = struct.unpack("!h", body[:2])[0]
    pos, vals = 2, []
    for _ in range(n):
        ln = struct.unpack("!i", body[pos:pos + 4])[0]
        pos += 4
        if ln < 0:
            vals.append(None)
        else:
            vals.append(body[pos:pos + ln].decode())
            pos += ln
    return tuple(vals)


def results(msgs):
    """(rows, command tags, error fields) of a list of server messages."""
    rows = [datarow(b) for t, b in msgs if t == b"D"]
    tags = [b.rstrip(b"\0").decode() for t, b in msgs if t == b"C"]
    errors = [error_fields(b) for t, b in msgs if t == b"E"]
    return rows, tags, errors


def raw_query(sock, sql):
    """Sends a simple Query, reads to its ReadyForQuery; returns (rows, tags, errors)."""
    sock.sendall(q(sql))
    msgs, eof = read_messages(sock, timeout=HANG)
    assert msgs and msgs[-1][0] == b"Z", (sql, msgs, eof)
    return results(msgs)


def raw_ok(sock, sql):
    rows, tags, errors = raw_query(sock, sql)
    assert not errors, (sql, errors)
    return rows, tags


def start_copy_in(sock, sql):
    sock.sendall(q(sql))
    msgs, eof = read_messages(sock, until=b"G", timeout=HANG)
    assert msgs and msgs[-1][0] == b"G", (msgs, eof)


def copy_rows(first, size):
    """COPY text rows 'k<TAB>v<NL>' with keys from `first` on: at least `size` bytes of whole
    rows."""
    out, n, k = [], 0, first
    while n < size:
        line = f"{k}\tcopied-{k}-{'y' * 40}\n".encode()
        out.append(line)
        n += len(line)
        k += 1
    return b"".join(out)


def copydata_header(body_len):
    return b"d" + struct.pack("!I", body_len + 4)


# ---- 1. crashes from one message ----


@pytest.mark.parametrize("kind", [b"Q", b"P"], ids=["query", "parse"])
def test_message_declaring_two_gigabytes_gets_54000(sluice_factory, kind):
    """Attack: an idle client sends a header declaring a 0x7FFFFFF0-byte Query (or Parse), then
    a few bytes. Sluice must not try to hold 2 GB: it answers FATAL 54000 naming
    max_buffered_message and closes that connection only; a client sharing the pool goes on."""
    s = sluice_factory(default_pool_size=1)
    victim = connect(s)
    assert one(victim, "SELECT 'before'") == ("before",)
    bad, _ = raw_login(s.port)
    body = b"SELECT 1" if kind == b"Q" else b"\0SELECT 1"
    bad.sendall(kind + struct.pack("!I", 0x7FFFFFF0) + body)
    msgs, eof = read_to_eof(bad, timeout=HANG)
    errors = [error_fields(b) for t, b in msgs if t == b"E"]
    assert errors, f"no ErrorResponse for a declared 2 GB message: {msgs}, eof={eof}"
    e = errors[0]
    assert e.get("V", e.get("S")) == "FATAL", e
    assert e["C"] == "54000" and "max_buffered_message" in e["M"], e
    assert eof, "the offending connection is closed"
    assert one(victim, "SELECT 'after', 2 + 2") == ("after", 4)
    victim.close()
    assert_healthy(s)


@pytest.mark.parametrize("mode", ["transaction", "session"])
@pytest.mark.parametrize("size", [100_000, 1_000_000], ids=["100kB", "1MB"])
def test_large_queries_work(sluice_factory, mode, size):
    """Not an attack: real large statements (a 100 kB or 1 MB literal, a VALUES list of that
    size) must keep working, with the right result, whatever limits protect against the attack
    above. A second client on the same one-server pool checks the stream stays in step."""
    s = sluice_factory(pool_mode=mode, default_pool_size=1 if mode == "transaction" else 2)
    c, other = connect(s), connect(s)
    text = (string.ascii_letters * (size // 52 + 1))[:size]
    assert one(c, f"SELECT length(t), md5(t) FROM (SELECT '{text}'::text AS t) s") == (
        size, hashlib.md5(text.encode()).hexdigest())
    assert one(other, "SELECT 'other'") == ("other",)
    n = size // 8  # '(12345),' is about eight bytes a row
    values = ",".join(f"({i})" for i in range(n))
    assert len(values) >= size * 0.8
    assert one(c, f"SELECT count(*), sum(x) FROM (VALUES {values}) v(x)") == (n, n * (n - 1) // 2)
    assert one(other, "SELECT 'other again'") == ("other again",)
    c.close()
    other.close()
    assert_healthy(s)


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_large_extended_protocol_messages_work(sluice_factory, mode):
    """Not an attack: a 1 MB Parse and a Bind carrying a 1 MB value (extended protocol, as
    drivers send them) work in both pool modes and return the right values."""
    s = sluice_factory(pool_mode=mode, default_pool_size=1 if mode == "transaction" else 2)
    sock, _ = raw_login(s.port)
    text = (string.ascii_letters * 20_000)[:1_000_000]
    sock.sendall(parse("big", f"SELECT length('{text}'::text) + length($1::text), md5($1::text)")
                 + SYNC)
    msgs, _ = read_messages(sock, timeout=HANG)
    assert [t for t, _ in msgs] == [b"1", b"Z"], msgs[:3]
    value = text[::-1].encode()
    for _ in range(2):
        sock.sendall(bind("big", value) + EXECUTE + SYNC)
        msgs, _ = read_messages(sock, timeout=HANG)
        rows, _, errors = results(msgs)
        assert not errors and rows == [(str(2_000_000), hashlib.md5(value).hexdigest())], msgs
    other = connect(s)
    assert one(other, "SELECT 'other'") == ("other",)
    other.close()
    sock.close()
    assert_healthy(s)


LYING = {
    "length 2": b"Q\0\0\0\x02",
    "length 0": b"Q\0\0\0\0",
    "empty query without terminator": b"Q\0\0\0\x04",
    "query without terminator": message(b"Q", b"SELECT 1"),
    "parse without query terminator": message(b"P", b"s\0SELECT 1"),
    "parse declaring 1000 types, none sent": message(b"P", b"s\0SELECT 1\0" +
                                                     struct.pack("!h", 1000)),
    "parse with a negative type count": message(b"P", b"s\0SELECT 1\0" + struct.pack("!h", -1)),
    "bind declaring 5 values, none sent": message(b"B", b"\0\0\0\0" + struct.pack("!h", 5)),
    "bind value longer than the message": message(b"B", b"\0\0\0\0\0\1" +
                                                  struct.pack("!i", 1_000_000) + b"abc"),
    "bind of a name without terminator": message(b"B", b"\0stmt"),
    "describe without terminator": message(b"D", b"Sabc"),
    "close of kind Z": message(b"C", b"Zx\0"),
    "execute without row limit": message(b"E", b"\0"),
    "function call declaring 3 arguments": message(b"F", struct.pack("!Ihh", 1317, 0, 3)),
}


@pytest.mark.parametrize("name", sorted(LYING))
def test_message_with_lying_lengths_does_not_crash(sluice_factory, name):
    """Attack: messages whose lengths lie (below four, no NUL where a string must end, counts
    and value lengths beyond the message). The client gets an error or is closed (it is not left
    waiting), and a victim sharing the only server keeps working with the right values."""
    s = sluice_factory(default_pool_size=1)
    victim = connect(s)
    assert one(victim, "SELECT 'victim', 1") == ("victim", 1)
    bad, _ = raw_login(s.port)
    bad.sendall(LYING[name] + SYNC)
    msgs, eof = read_messages(bad, timeout=HANG)
    assert eof or any(t in (b"E", b"Z") for t, _ in msgs), \
        f"the client got no answer and is still connected: {msgs}"
    if name.startswith(("length", "query without", "empty query")):
        errors = [error_fields(b) for t, b in msgs if t == b"E"]
        assert errors and errors[0]["C"] == "08P01", msgs
    bad.close()
    assert one(victim, "SELECT 'victim', 2") == ("victim", 2)
    victim.close()
    assert_healthy(s)


@pytest.mark.parametrize("declared", [1000, 1_000_000], ids=["1kB", "1MB"])
@pytest.mark.parametrize("kind", [b"Q", b"P", b"B", b"D", b"C", b"E", b"F", b"d", b"S", b"X"],
                         ids=lambda k: k.decode())
def test_message_longer_than_sent_then_disconnect(sluice_factory, kind, declared):
    """Attack: a message whose length promises more than is ever sent, then the client goes
    away. Nothing is left behind that another client could trip over."""
    s = sluice_factory(default_pool_size=1)
    victim = connect(s)
    bad, _ = raw_login(s.port)
    bad.sendall(kind + struct.pack("!I", declared + 4) + b"SELECT 'a" + b"x" * 200)
    time.sleep(0.2)  # let Sluice take in what was sent (the test holds either way)
    bad.close()
    for i in range(3):
        assert one(victim, "SELECT 'victim', %s", (i,)) == ("victim", i)
    victim.close()
    assert_healthy(s)


# ---- 2. a server changes hands only between whole messages ----

B_INSERTS = [f"INSERT INTO {{t}} VALUES ({k}, 'b{k}')" for k in range(1, 7)]


def insert_as_raw_client(s, table, keys=range(1, 7)):
    """A raw client runs one INSERT per key, each a Query of its own; every one must succeed.
    Raw, so that the first bytes this client sends to a server are known exactly."""
    sock, _ = raw_login(s.port)
    for k in keys:
        rows, tags = raw_ok(sock, f"INSERT INTO {table} VALUES ({k}, 'b{k}')")
        assert tags == ["INSERT 0 1"], tags
    rows, _ = raw_ok(sock, f"SELECT k, v FROM {table} ORDER BY k")
    sock.close()
    return [(int(k), v) for k, v in rows]


@pytest.mark.parametrize("missing", ["5", "next-message"])
def test_copydata_cut_off_by_disconnect_swallows_nothing(sluice_factory, pg, missing):
    """Attack: client A starts COPY FROM STDIN, sends a CopyData header declaring 70,000 bytes
    but only part of the body, and disconnects. The server is then mid-message: if it went to
    the next client, that client's first bytes would complete A's CopyData. With 5 bytes
    missing a Query header would vanish; with exactly the length of B's first INSERT message,
    that whole INSERT would silently become COPY data. B (one-server pool: the same server) must
    get every INSERT applied and no error, and none of A's rows may land."""
    table = "hostile_copy_cut"
    fresh_table(pg, table)
    s = sluice_factory(default_pool_size=1, query_wait_timeout=10)
    first_insert = f"INSERT INTO {table} VALUES (1, 'b1')"
    short = 5 if missing == "5" else len(q(first_insert))
    a, _ = raw_login(s.port)
    start_copy_in(a, f"COPY {table} FROM STDIN")
    data = copy_rows(1000, 70_000)[:70_000]
    a.sendall(copydata_header(70_000) + data[:70_000 - short])
    a.close()
    rows = within("client B", lambda: insert_as_raw_client(s, table))
    assert rows == [(k, f"b{k}") for k in range(1, 7)]
    assert table_rows(pg, table) == rows, "nothing of A's COPY landed"
    assert_healthy(s)


@pytest.mark.parametrize("kind", ["copydata", "query", "functioncall"])
def test_client_idle_in_the_middle_of_a_large_message(sluice_factory, pg, kind):
    """Attack: A runs SELECT 1, then sends the first 30 kB of a message declaring 100 kB and
    stays connected, idle. Neither a CopyData outside COPY nor a Query needs a server until it
    is whole, so B (one-server pool) must be served correctly meanwhile. A FunctionCall may be
    streamed to a server, so there B may instead get a clean query_wait_timeout error, but never
    a wrong result or a hang. After A disconnects, B's writes all land and none of A's do."""
    table = "hostile_idle_mid"
    fresh_table(pg, table)
    s = sluice_factory(default_pool_size=1, query_wait_timeout=5)
    a, _ = raw_login(s.port)
    assert raw_ok(a, "SELECT 1")[0] == [("1",)]
    if kind == "copydata":
        head = copydata_header(100_000) + copy_rows(5000, 30_000)
    elif kind == "query":
        head = b"Q" + struct.pack("!I", 100_004) + f"INSERT INTO {table} VALUES (99, '".encode()
        head += b"z" * 30_000
    else:  # FunctionCall of textlen (oid 1257) with one 99,984-byte text argument
        head = b"F" + struct.pack("!I", 100_004) + struct.pack("!Ihhhi", 1257, 1, 0, 1, 99_984)
        head += b"z" * 30_000
    a.sendall(head)
    time.sleep(0.5)  # let Sluice take in the partial message (the test holds either way)
    b, _ = raw_login(s.port)
    b.sendall(q(f"INSERT INTO {table} VALUES (1, 'b1')"))
    msgs, eof = read_messages(b, timeout=HANG)
    _, tags, errors = results(msgs)
    if kind == "functioncall" and errors and "query_wait_timeout" in errors[0]["M"]:
        assert eof, "refused with a clean error and closed"
        assert table_rows(pg, table) == [], "a refused client left nothing behind"
    else:
        assert not errors and tags == ["INSERT 0 1"] and msgs[-1][0] == b"Z", (msgs, eof)
        rows = within("client B while A idles mid-message",
                      lambda: insert_as_raw_client(s, table, keys=range(2, 4)))
        assert rows == [(k, f"b{k}") for k in range(1, 4)]
    a.close()
    rows = within("client B after A left", lambda: insert_as_raw_client(s, table,
                                                                         keys=range(4, 7)))
    assert rows[-3:] == [(k, f"b{k}") for k in range(4, 7)] and len(rows) in (3, 6), rows
    assert table_rows(pg, table) == rows
    assert_healthy(s)


def test_copy_failing_while_a_large_copydata_streams(sluice_factory, pg):
    """An innocent client: its COPY fails on the server (a NULL for a NOT NULL column in the
    first row; checked row by row, unlike a duplicate key, which PostgreSQL finds only when it
    flushes its batch of rows) while a 200 kB CopyData is still streaming. The server answers
    ErrorResponse and ReadyForQuery before the client has finished sending; the rest of that
    message and the CopyDone must then be dropped, not end up in the next client's stream. A
    gets the error and goes on; B (same one-server pool) gets all its INSERTs applied."""
    table = "hostile_copy_fail"
    fresh_table(pg, table)
    pg.psql(f"INSERT INTO {table} VALUES (1000, 'original')")
    s = sluice_factory(default_pool_size=1, query_wait_timeout=10)
    a, _ = raw_login(s.port)
    start_copy_in(a, f"COPY {table} FROM STDIN")
    big = copy_rows(2000, 200_000)
    a.sendall(message(b"d", b"999\t\\N\n") + copydata_header(len(big)) + big[:32_768])
    msgs, eof = read_messages(a, timeout=HANG)
    _, _, errors = results(msgs)
    assert errors and errors[0]["C"] == "23502", (msgs, eof)
    assert msgs[-1] == (b"Z", b"I"), msgs
    rest = big[32_768:]
    for i in range(0, len(rest), 8192):
        a.sendall(rest[i:i + 8192])
    a.sendall(message(b"c"))
    assert raw_ok(a, "SELECT 'a goes on'")[0] == [("a goes on",)]
    rows = within("client B", lambda: insert_as_raw_client(s, table))
    assert rows == [(k, f"b{k}") for k in range(1, 7)] + [(1000, "original")]
    assert raw_ok(a, "SELECT 'a still fine'")[0] == [("a still fine",)]
    a.close()
    assert table_rows(pg, table) == rows
    assert_healthy(s)


def test_session_mode_pool_survives_partial_copies(sluice_factory, pg):
    """Attack, session mode: five clients in a row each start COPY, send part of a 70 kB
    CopyData and disconnect. Each leaves a server mid-message, which cannot be reset with a
    query: the pool must not be left with dead or stuck servers. Afterwards new clients are
    served, and no partial COPY landed."""
    table = "hostile_copy_session"
    fresh_table(pg, table)
    s = sluice_factory(pool_mode="session", default_pool_size=2, query_wait_timeout=10)
    for i in range(5):
        a = within(f"partial copier {i}", lambda: raw_login(s.port)[0])
        within(f"COPY of copier {i}", lambda: start_copy_in(a, f"COPY {table} FROM STDIN"))
        a.sendall(copydata_header(70_000) + copy_rows(1000 * (i + 1), 40_000)[:40_000])
        a.close()
    for round_ in range(3):
        rows = within(f"new client {round_}", lambda: insert_as_raw_client(
            s, table, keys=[round_ + 1]))
        assert rows == [(k, f"b{k}") for k in range(1, round_ + 2)]
    held = [connect(s), connect(s)]  # both servers at once, each in a session of its own
    assert [one(c, "SELECT count(*) FROM " + table) for c in held] == [(3,), (3,)]
    for c in held:
        c.close()
    assert settle(lambda: pg.server_connections() <= 2)
    assert_healthy(s)


IDLE_COPY = {
    "copydata": message(b"d", b"1\tstray\n") * 3,
    "copydone": message(b"c"),
    "copyfail": message(b"f", b"client gave up\0"),
    "large copydata": message(b"d", copy_rows(1, 100_000)),
    "all": (message(b"d", b"1\tstray\n") + message(b"c") + message(b"f", b"no\0")
            + message(b"d", copy_rows(1, 100_000)) + message(b"c")),
}


@pytest.mark.parametrize("name", sorted(IDLE_COPY))
def test_copy_messages_from_an_idle_client_do_not_hold_a_server(sluice_factory, name):
    """Attack: with no COPY running, a client sends CopyData / CopyDone / CopyFail and then
    nothing more. PostgreSQL ignores them outside COPY, so they must not take (and keep) the
    only server: another client is served meanwhile, and the sender itself still works."""
    s = sluice_factory(default_pool_size=1, query_wait_timeout=5)
    a, _ = raw_login(s.port)
    a.sendall(IDLE_COPY[name])
    time.sleep(0.5)  # let Sluice take the messages in (the test holds either way)
    b = connect(s)
    for i in range(3):
        assert one(b, "SELECT 'b', %s", (i,)) == ("b", i)
    assert raw_ok(a, "SELECT 'a still works'")[0] == [("a still works",)]
    assert one(b, "SELECT 'b after a'") == ("b after a",)
    a.close()
    b.close()
    assert_healthy(s)


# ---- 3. session state stays with its client ----


@pytest.fixture()
def hostile_role(pg):
    pg.psql("DO $$ BEGIN CREATE ROLE hostile_r; EXCEPTION WHEN duplicate_object THEN NULL; "
            "END $$")
    pg.psql("GRANT hostile_r TO postgres")
    return "hostile_r"


def server_defaults(pg, *names):
    return {n: pg.psql(f"SHOW {n}")[0][0] for n in names}


def test_startup_settings_stay_with_their_client(sluice_factory, pg):
    """A client's startup options (work_mem, statement_timeout) and application_name apply to
    that client in every transaction, and never to another client that later gets the same
    (only) server: B always sees the server defaults."""
    defaults = server_defaults(pg, "work_mem", "statement_timeout")
    s = sluice_factory(default_pool_size=1, query_wait_timeout=10)
    a = connect(s, options="-c work_mem=123MB -c statement_timeout=4567",
                application_name="hostile-a")
    b = connect(s)
    query = ("SELECT current_setting('work_mem'), current_setting('statement_timeout'), "
             "current_setting('application_name')")
    for _ in range(4):
        assert one(a, query) == ("123MB", "4567ms", "hostile-a")
        rb = one(b, query)
        assert rb[:2] == (defaults["work_mem"], defaults["statement_timeout"]), rb
        assert rb[2] != "hostile-a", rb
        assert one(b, "SHOW work_mem") == (defaults["work_mem"],)
        assert one(b, "SHOW statement_timeout") == (defaults["statement_timeout"],)
        assert one(a, "SHOW work_mem") == ("123MB",)
    a.close()
    b.close()
    assert_healthy(s)


REAL_GUCS = {"work_mem": "11MB", "lock_timeout": "3210ms", "statement_timeout": "7654ms",
             "idle_in_transaction_session_timeout": "98765ms", "extra_float_digits": "2",
             "default_statistics_target": "321"}


def test_forty_startup_settings_all_apply(sluice_factory, pg):
    """A client with 40 startup settings (34 custom placeholders, 6 real GUCs) sees all 40 in
    every transaction, even after another client had the server; the other client sees none of
    them."""
    defaults = server_defaults(pg, *REAL_GUCS)
    custom = {f"myapp.p{i}": f"v{i}" for i in range(1, 35)}
    wanted = dict(custom, **REAL_GUCS)
    assert len(wanted) == 40
    options = " ".join(f"-c {k}={v}" for k, v in wanted.items())
    s = sluice_factory(default_pool_size=1, query_wait_timeout=10)
    a = connect(s, options=options)
    b = connect(s)
    names = list(wanted)
    query = "SELECT " + ", ".join(f"current_setting('{n}', true)" for n in names)
    for _ in range(3):
        got_a = dict(zip(names, one(a, query)))
        assert got_a == wanted, {k: v for k, v in got_a.items() if v != wanted[k]}
        got_b = dict(zip(names, one(b, query)))
        for n in custom:
            assert got_b[n] in (None, ""), (n, got_b[n])
        for n in REAL_GUCS:
            assert got_b[n] == defaults[n], (n, got_b[n])
    a.close()
    b.close()
    assert_healthy(s)


def test_list_valued_startup_setting_keeps_its_list(sluice_factory, pg):
    """A startup search_path of two schemas ('-c search_path=hostile_schema,\\ public') means
    what it means on PostgreSQL itself: two schemas, names resolved through them, in every
    transaction, even after another client had the server (not one schema named
    "hostile_schema, public"). The other client keeps the default search_path."""
    pg.psql("CREATE SCHEMA IF NOT EXISTS hostile_schema; "
            "DROP TABLE IF EXISTS hostile_schema.hostile_where, public.hostile_where; "
            "CREATE TABLE hostile_schema.hostile_where AS SELECT 'schema'::text AS v; "
            "CREATE TABLE public.hostile_where AS SELECT 'public'::text AS v")
    default = server_defaults(pg, "search_path")["search_path"]
    s = sluice_factory(default_pool_size=1, query_wait_timeout=10)
    a = connect(s, options=r"-c search_path=hostile_schema,\ public")
    b = connect(s)
    query = ("SELECT current_setting('search_path'), current_schemas(false)::text, "
             "(SELECT v FROM hostile_where)")
    for _ in range(3):
        assert one(a, query) == ("hostile_schema, public", "{hostile_schema,public}", "schema")
        assert one(b, query) == (default, "{public}", "public")
    a.close()
    b.close()
    assert_healthy(s)


def test_startup_role_stays_with_its_client(sluice_factory, hostile_role):
    """A client that logs in with options '-c role=hostile_r' acts as hostile_r in every
    transaction; a client sharing the only server acts as postgres, always."""
    s = sluice_factory(default_pool_size=1, query_wait_timeout=10)
    a = connect(s, options=f"-c role={hostile_role}")
    b = connect(s)
    for _ in range(4):
        assert one(a, "SELECT current_user, session_user") == (hostile_role, "postgres")
        assert one(b, "SELECT current_user, session_user") == ("postgres", "postgres")
    a.close()
    b.close()
    assert_healthy(s)


def _value(expect, i):
    return expect(i) if callable(expect) else expect


# name: (setup statements, A's probe, A expects, B's probe, B expects: a value or 'error:CODE')
PIN_CASES = {
    "set": (["SET work_mem = '77MB'"], "SELECT current_setting('work_mem')", "77MB",
            "SELECT current_setting('work_mem')", "default work_mem"),
    "set-role": (["SET ROLE hostile_r"], "SELECT current_user", "hostile_r",
                 "SELECT current_user", "postgres"),
    "session-authorization": (["SET SESSION AUTHORIZATION hostile_r"],
                              "SELECT session_user || '/' || current_user", "hostile_r/hostile_r",
                              "SELECT session_user || '/' || current_user", "postgres/postgres"),
    "set-config": (["SELECT set_config('work_mem', '77MB', false)"],
                   "SELECT current_setting('work_mem')", "77MB",
                   "SELECT current_setting('work_mem')", "default work_mem"),
    "temp-table": (["CREATE TEMP TABLE t_hostile (x int)", "INSERT INTO t_hostile VALUES (7)"],
                   "SELECT x FROM t_hostile", 7,
                   "SELECT to_regclass('pg_temp.t_hostile') IS NULL", True),
    "advisory-lock": (["SELECT pg_advisory_lock(4242)"],
                      "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 "
                      "AND pid = pg_backend_pid() AND granted", 1,
                      # false because A holds it; on A's own server it would be granted again
                      "SELECT pg_try_advisory_lock(4242) AND pg_advisory_unlock(4242)", False),
    "prepare": (["PREPARE hp AS SELECT 1"], "EXECUTE hp", 1, "EXECUTE hp", "error:26000"),
    "cursor-with-hold": (["BEGIN", "DECLARE hc CURSOR WITH HOLD FOR SELECT generate_series(1, 100)",
                          "COMMIT"], "FETCH hc", lambda i: i + 1, "FETCH hc", "error:34000"),
    # a LISTEN Sluice cannot answer itself runs on the server: inside a transaction, or mixed
    "listen-in-transaction": (["BEGIN", "LISTEN ch_pinned", "COMMIT"],
                              "SELECT count(*) FROM pg_listening_channels()", 1,
                              "SELECT count(*) FROM pg_listening_channels()", 0),
    "listen-mixed": (["LISTEN ch_mixed; SELECT 1"],
                     "SELECT count(*) FROM pg_listening_channels()", 1,
                     "SELECT count(*) FROM pg_listening_channels()", 0),
    # code Sluice cannot see into may do anything
    "do-block": (["DO $$BEGIN PERFORM set_config('work_mem', '77MB', false); END$$"],
                 "SELECT current_setting('work_mem')", "77MB",
                 "SELECT current_setting('work_mem')", "default work_mem"),
}


@pytest.mark.parametrize("case", list(PIN_CASES))
def test_untracked_session_state_pins_its_client(sluice_factory, pg, hostile_role, case):
    """Attack: a client leaves session state Sluice cannot carry from server to server (a SET
    of an unreported parameter, a role, a temporary table, an advisory lock, a SQL prepared
    statement, a holdable cursor). That client must stay on its server (same backend, state
    visible in every later transaction) and no other client may see the state: B, running many
    transactions on the two-server pool, always gets the other server. Sluice logs the pin.
    After A (and B, whose probe may pin it too) leave, both servers are clean for everyone."""
    setup, a_probe, a_expect, b_probe, b_expect = PIN_CASES[case]
    default_work_mem = server_defaults(pg, "work_mem")["work_mem"]
    if b_expect == "default work_mem":
        b_expect = default_work_mem
    s = sluice_factory(default_pool_size=2, query_wait_timeout=10)
    a, b = connect(s), connect(s)
    for sql in setup:
        execute(a, sql)
    a_pid = one(a, "SELECT pg_backend_pid()")[0]
    for i in range(8):
        assert one(a, a_probe) == (_value(a_expect, i),), (case, i)
        assert one(a, "SELECT pg_backend_pid()") == (a_pid,), "A stays on its server"
        for _ in range(3):
            if isinstance(b_expect, str) and b_expect.startswith("error:"):
                assert sqlstate(b, b_probe) == b_expect[6:], (case, i)
            else:
                assert one(b, b_probe) == (b_expect,), (case, i)
            assert one(b, "SELECT pg_backend_pid()") != (a_pid,), "B never gets A's server"
    assert settle(lambda: "pinned" in s.log()), "Sluice logs that the client was pinned"
    pinned = [line for line in s.log().splitlines() if "pinned" in line]
    print(f"\n{case}: {pinned[0] if pinned else None}", file=sys.stderr)
    a.close()
    b.close()  # B's probe may have pinned B as well (EXECUTE, an advisory lock function)
    # A's server was reset (or closed): its lock and temporary table are gone from PostgreSQL
    assert settle(lambda: pg.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                  "AND objid = 4242")[0][0] == 0), "the advisory lock is freed"
    assert settle(lambda: pg.psql("SELECT count(*) FROM pg_class WHERE relname = 't_hostile' "
                                  "AND relpersistence = 't'")[0][0] == 0), "temp table dropped"
    # and on both servers (two clients in open transactions hold one each) nothing is left
    xs = [connect(s), connect(s)]
    pids = set()
    for x in xs:
        x.autocommit = False
        got = one(x, "SELECT pg_backend_pid(), current_setting('work_mem'), current_user, "
                     "session_user, to_regclass('pg_temp.t_hostile'), "
                     "(SELECT count(*) FROM pg_prepared_statements WHERE name = 'hp'), "
                     "(SELECT count(*) FROM pg_cursors WHERE name = 'hc')")
        pids.add(got[0])
        assert got[1:] == (default_work_mem, "postgres", "postgres", None, 0, 0), (case, got)
    assert len(pids) == 2, "the two clients held both servers"
    for x in xs:
        x.rollback()
        x.close()
    assert_healthy(s)


def function_call(oid, *args):
    """A fast-path FunctionCall message with text arguments and a text result."""
    body = struct.pack("!Ihh", oid, 1, 0) + struct.pack("!h", len(args))
    for a in args:
        body += struct.pack("!i", len(a)) + a
    return message(b"F", body + struct.pack("!h", 0))


def test_fast_path_function_call_pins_its_client(sluice_factory, pg):
    """Attack: a FunctionCall names its function by OID, so a session-level set_config sent that
    way is invisible to any SQL check. The client is pinned: it keeps its server and its value,
    while B on the same two-server pool never sees it; after A leaves both servers are clean."""
    oid = int(pg.psql("SELECT 'pg_catalog.set_config'::regproc::oid")[0][0])
    default_work_mem = server_defaults(pg, "work_mem")["work_mem"]
    s = sluice_factory(default_pool_size=2, query_wait_timeout=10)
    a, _ = raw_login(s.port)
    a.sendall(function_call(oid, b"work_mem", b"77MB", b"false"))
    msgs, eof = read_messages(a, timeout=HANG)
    assert msgs and msgs[-1][0] == b"Z" and any(t == b"V" for t, _ in msgs), (msgs, eof)
    a_pid = raw_ok(a, "SELECT pg_backend_pid()")[0][0][0]
    b = connect(s)
    for i in range(6):
        rows, _ = raw_ok(a, "SELECT current_setting('work_mem'), pg_backend_pid()")
        assert rows == [("77MB", a_pid)], i
        assert one(b, "SELECT current_setting('work_mem')") == (default_work_mem,), i
    assert settle(lambda: "fast-path function call" in s.log()), "the pin is logged"
    a.close()
    xs = [connect(s), connect(s)]
    for x in xs:
        x.autocommit = False
        assert one(x, "SELECT current_setting('work_mem')") == (default_work_mem,)
    for x in xs:
        x.rollback()
        x.close()
    b.close()
    assert_healthy(s)


def _bind_execute(sock, stmt):
    sock.sendall(bind(stmt) + EXECUTE + SYNC)
    msgs, eof = read_messages(sock, timeout=HANG)
    rows, _, errors = results(msgs)
    assert not errors and msgs and msgs[-1][0] == b"Z", (msgs, eof)
    return rows


def _replace_each(names):
    return [sql for n in names for sql in (
        f'DEALLOCATE "{n}"', f'PREPARE "{n}" AS SELECT \'x\'::text')]


def _deallocate_variants(names):
    return [sql for n in names for sql in (
        f"DEALLOCATE PREPARE {n}", f"/* hi */ DEALLOCATE {n}", f"SELECT 1; DEALLOCATE {n}",
        f"deallocate \"{n}\"", f"PREPARE {n} AS SELECT 'x'::text")]


STATEMENT_ATTACKS = {
    "replace-each": _replace_each,
    "deallocate-variants": _deallocate_variants,
    "execute-each": lambda names: [f'EXECUTE "{n}"' for n in names],
    "classic": lambda names: ["DEALLOCATE sluice_1; PREPARE sluice_1 AS SELECT 'x'",
                              "PREPARE sluice_1 AS SELECT 'x'::text",
                              "PREPARE sluice_2 AS SELECT 'x'::text"],
    "deallocate-all": lambda names: ["DEALLOCATE ALL"],
    "discard-all": lambda names: ["DISCARD ALL"],
}


@pytest.mark.parametrize("attack", list(STATEMENT_ATTACKS))
def test_attacker_cannot_replace_a_protocol_prepared_statement(sluice_factory, attack):
    """Attack: on the shared server the attacker finds the server-side names of another
    client's protocol-level prepared statements (pg_prepared_statements) and DEALLOCATEs and
    re-PREPAREs them with its own text (in several spellings), EXECUTEs them, drops all, or
    tries the classic 'DEALLOCATE sluice_1; PREPARE sluice_1 AS ...'. The victim's Bind/Execute
    of its statement, sent while the attacker is still connected, must run the victim's own
    query (it may wait until the attacker leaves, if the attacker got pinned)."""
    s = sluice_factory(default_pool_size=1, query_wait_timeout=10)
    victim, _ = raw_login(s.port)
    victim.sendall(parse("v1", "SELECT 'victim'::text") + SYNC)
    msgs, _ = read_messages(victim, timeout=HANG)
    assert [t for t, _ in msgs] == [b"1", b"Z"], msgs
    assert _bind_execute(victim, "v1") == [("victim",)]
    attacker = connect(s)
    names = [r[0] for r in all_rows(attacker, "SELECT name FROM pg_prepared_statements")]
    print(f"\nattacker sees prepared statements: {names}", file=sys.stderr)
    for sql in STATEMENT_ATTACKS[attack](names):
        try:
            execute(attacker, sql)
        except psycopg2.Error:
            pass  # refused or failed: either is fine for the attacker
    victim.sendall(bind("v1") + EXECUTE + SYNC)
    time.sleep(0.5)  # the victim's request is in (the test holds either way)
    attacker.close()
    msgs, eof = read_messages(victim, timeout=HANG)
    rows, _, errors = results(msgs)
    assert not errors and rows == [("victim",)], (msgs, eof)
    for _ in range(2):
        assert _bind_execute(victim, "v1") == [("victim",)], "the victim runs its own statement"
    victim.close()
    assert_healthy(s)


def _random_part(names):
    """The part of each name after the prefix all of them share."""
    prefix = os.path.commonprefix(names)
    return [n[len(prefix):] for n in names]


def test_server_side_statement_names_are_not_guessable(sluice_factory):
    """The names Sluice gives protocol-level statements on the server must carry at least 64
    random bits each, not a counter (sluice_1, sluice_2, ...) another client could guess: seen
    from a client on the same server, every name differs from the others in many positions."""
    s = sluice_factory(default_pool_size=1)
    victim, _ = raw_login(s.port)
    for i in range(6):
        victim.sendall(parse(f"v{i}", f"SELECT {i} AS n{i}") + SYNC)
        assert [t for t, _ in read_messages(victim, timeout=HANG)[0]] == [b"1", b"Z"]
        assert _bind_execute(victim, f"v{i}") == [(str(i),)]
    observer = connect(s)
    names = [r[0] for r in all_rows(observer, "SELECT name FROM pg_prepared_statements")]
    print(f"\nserver-side names: {names}", file=sys.stderr)
    assert len(names) >= 6, names
    assert not any(re.fullmatch(r"sluice_[0-9a-f]{1,8}", n) for n in names), names
    parts = _random_part(names)
    for p in parts:
        if all(ch in string.hexdigits for ch in p):
            bits = 4 * len(p)
        else:
            bits = len(p) * math.log2(len(string.ascii_letters + string.digits + "_-"))
        assert bits >= 64, (p, names)
    for x, y in itertools.combinations(parts, 2):
        differ = sum(cx != cy for cx, cy in zip(x[-16:], y[-16:]))
        assert differ >= 6, (x, y)
    observer.close()
    victim.close()
    assert_healthy(s)


def wait_notifies(conn, done, timeout=HANG):
    """Polls a psycopg2 connection for notifications until done(list of (channel, payload))
    holds or `timeout` passes; returns the list (and clears the connection's)."""
    got = []
    deadline = time.monotonic() + timeout
    while True:
        conn.poll()
        got += [(n.channel, n.payload) for n in conn.notifies]
        conn.notifies.clear()
        left = deadline - time.monotonic()
        if done(got) or left <= 0:
            return got
        select.select([conn], [], [], min(left, 0.5))


def test_listen_notify_in_transaction_mode(sluice_factory):
    """A LISTENs in transaction mode; C sends NOTIFY and pg_notify. A receives both, with the
    right channel and payload, while running other queries with correct results in between.
    B, running queries on the same pooled servers and never listening, receives nothing."""
    s = sluice_factory(default_pool_size=2, query_wait_timeout=10)
    a, b, c = connect(s), connect(s), connect(s)
    execute(a, "LISTEN ch1")
    for i in range(3):
        assert one(b, "SELECT 'b', %s", (i,)) == ("b", i)
    execute(c, "NOTIFY ch1, 'hello'")
    assert one(b, "SELECT 'b', 10") == ("b", 10)
    assert one(a, "SELECT 40 + 2") == (42,)
    assert wait_notifies(a, lambda g: len(g) >= 1) == [("ch1", "hello")]
    execute(c, "SELECT pg_notify('ch1', 'p2')")
    assert one(a, "SELECT 'a between'") == ("a between",)
    assert wait_notifies(a, lambda g: len(g) >= 1) == [("ch1", "p2")]
    for i in range(5):
        assert one(b, "SELECT 'b', %s", (i,)) == ("b", i)
        assert one(a, "SELECT %s * 2", (i,)) == (i * 2,)
    b.poll()
    assert b.notifies == [], "B never listened"
    for x in (a, b, c):
        x.close()
    assert_healthy(s)


def test_listen_channels_per_client_are_bounded(sluice_factory):
    """Attack: a client LISTENs on ever more channels, each costing Sluice memory. Past 1,024
    it gets FATAL 54000 and is closed; a listener on another channel keeps its notifications."""
    s = sluice_factory(default_pool_size=2, query_wait_timeout=10)
    a, c = connect(s), connect(s)
    execute(a, "LISTEN keep")
    hostile, _ = raw_login(s.port)  # psycopg2 reports a FATAL error without its SQLSTATE
    _, tags, errors = raw_query(hostile, "; ".join(f"LISTEN flood_{i}" for i in range(1000)))
    assert tags == ["LISTEN"] * 1000 and not errors
    hostile.sendall(q("; ".join(f"LISTEN flood_more_{i}" for i in range(30))))
    msgs, eof = read_messages(hostile, timeout=HANG)
    _, _, errors = results(msgs)
    assert errors and errors[0]["C"] == "54000" and eof, msgs
    execute(c, "NOTIFY keep, 'still here'")
    assert wait_notifies(a, lambda g: len(g) >= 1) == [("keep", "still here")]
    for x in (a, c):
        x.close()
    assert_healthy(s)


@pytest.mark.parametrize("text", [b"SELECT 1\0LISTEN sneaky", b"LISTEN keep\0LISTEN sneaky",
                                  b"\0LISTEN sneaky", b"LISTEN sneaky\0", b"LISTEN sneaky\0x"])
def test_listen_hidden_behind_a_nul_is_not_registered(sluice_factory, text):
    """Attack: a Query whose text has a NUL inside, with a LISTEN before or after it. The server
    refuses such a message (08P01), so no statement of it runs; Sluice must not register a
    LISTEN from it either. The session goes on, and a NOTIFY on that channel reaches
    nobody: the marker sent after it reaches a real listener, and the attacker's next query
    brings no notification with it."""
    s = sluice_factory(default_pool_size=2, query_wait_timeout=10)
    a, c = connect(s), connect(s)
    execute(a, "LISTEN keep")
    hostile, _ = raw_login(s.port)
    hostile.sendall(message(b"Q", text + b"\0"))
    msgs, eof = read_messages(hostile, timeout=HANG)
    _, tags, errors = results(msgs)
    assert not eof and msgs[-1][0] == b"Z", msgs
    assert [e["C"] for e in errors] == ["08P01"] and "LISTEN" not in tags, msgs
    execute(c, "NOTIFY sneaky, 'smuggled'")
    execute(c, "NOTIFY keep, 'marker'")
    assert wait_notifies(a, lambda g: len(g) >= 1) == [("keep", "marker")]
    hostile.sendall(q("SELECT 'after'"))
    msgs, eof = read_messages(hostile, timeout=HANG)
    assert not eof and [t for t, _ in msgs] == [b"T", b"D", b"C", b"Z"], msgs
    hostile.close()
    for x in (a, c):
        x.close()
    assert_healthy(s)


@pytest.mark.parametrize("text", [b"DEALLOCATE s1\0junk", b"DEALLOCATE s1\0",
                                  b"DEALLOCATE ALL\0x"])
def test_deallocate_with_a_nul_inside_drops_nothing(sluice_factory, text):
    """A Query whose text is a DEALLOCATE of the client's own protocol-level statement, then a
    NUL and more. The server refuses such a message whole (08P01), so the statement must stay:
    Sluice may not answer it as a DEALLOCATE and forget the name, idle or inside a
    transaction."""
    s = sluice_factory(default_pool_size=1, query_wait_timeout=10)
    c, _ = raw_login(s.port)
    c.sendall(parse("s1", "SELECT 'mine'::text") + SYNC)
    msgs, _ = read_messages(c, timeout=HANG)
    assert [t for t, _ in msgs] == [b"1", b"Z"], msgs
    for begin in (False, True):
        if begin:
            raw_ok(c, "BEGIN")
        c.sendall(message(b"Q", text + b"\0"))
        msgs, eof = read_messages(c, timeout=HANG)
        _, tags, errors = results(msgs)
        assert not eof and msgs[-1][0] == b"Z", msgs
        assert [e["C"] for e in errors] == ["08P01"] and not tags, msgs
        if begin:
            raw_query(c, "ROLLBACK")
        assert _bind_execute(c, "s1") == [("mine",)]
    c.close()
    assert_healthy(s)


def test_refused_query_hands_no_unnamed_statement_to_another_client(sluice_factory):
    """The server refuses a Query with a NUL inside its text (08P01) before running it, so
    unlike any simple query it does not drop the unnamed statement. Sluice must not take it as
    dropped: another client on that server that binds the unnamed statement without parsing
    one gets 26000, not the first client's statement, and the first client's own unnamed
    statement still binds afterwards, as it would on the server directly."""
    s = sluice_factory(default_pool_size=1, query_wait_timeout=10)
    a, _ = raw_login(s.port)
    b, _ = raw_login(s.port)
    a.sendall(parse("", "SELECT 'secret of a'::text") + SYNC)
    msgs, _ = read_messages(a, timeout=HANG)
    assert [t for t, _ in msgs] == [b"1", b"Z"], msgs
    a.sendall(message(b"Q", b"SELECT 1\0x\0"))
    msgs, eof = read_messages(a, timeout=HANG)
    _, tags, errors = results(msgs)
    assert not eof and msgs[-1][0] == b"Z", msgs
    assert [e["C"] for e in errors] == ["08P01"] and not tags, msgs
    b.sendall(bind("") + EXECUTE + SYNC)
    msgs, eof = read_messages(b, timeout=HANG)
    rows, _, errors = results(msgs)
    assert not eof and msgs[-1][0] == b"Z", msgs
    assert not rows and [e["C"] for e in errors] == ["26000"], msgs
    assert _bind_execute(a, "") == [("secret of a",)]
    for x in (a, b):
        x.close()
    assert_healthy(s)


def test_query_skipped_after_a_batch_error_does_not_keep_the_server(sluice_factory):
    """After an error in an extended-protocol message the server skips every message up to
    the next Sync, a Query among them: it never answers that Query, nor does the Query drop the
    unnamed statement. A client that sends Parse, a failing Bind, a Query and Sync gets what the
    server sends (ParseComplete, ErrorResponse, ReadyForQuery); the only server connection
    goes back to the pool, where another client that binds the unnamed statement without
    parsing one gets 26000, not the first client's statement; the first client goes on."""
    s = sluice_factory(default_pool_size=1, query_wait_timeout=10)
    a, _ = raw_login(s.port)
    a.sendall(parse("", "SELECT 'secret of a'::text") + bind("", b"x") + q("SELECT 2") + SYNC)
    msgs, eof = read_messages(a, timeout=HANG)
    rows, tags, errors = results(msgs)
    assert not eof and [t for t, _ in msgs] == [b"1", b"E", b"Z"], msgs
    assert [e["C"] for e in errors] == ["08P01"], msgs
    b, _ = raw_login(s.port)
    b.sendall(bind("") + EXECUTE + SYNC)
    msgs, eof = read_messages(b, timeout=HANG)
    rows, _, errors = results(msgs)
    assert not eof and msgs[-1][0] == b"Z", msgs
    assert not rows and [e["C"] for e in errors] == ["26000"], msgs
    rows, _, errors = raw_query(b, "SELECT 4")
    assert rows == [("4",)] and not errors
    rows, _, errors = raw_query(a, "SELECT 3")
    assert rows == [("3",)] and not errors
    for x in (a, b):
        x.close()
    assert_healthy(s)


def _copy_msgs(*rows):
    return b"".join(message(b"d", r) for r in rows) + message(b"c")


def test_sync_among_copy_data_gives_the_server_back(sluice_factory, pg):
    """A Sync sent while the server copies in is read as part of the COPY and never answered.
    The client gets what the server sends (CopyInResponse, CommandComplete, ReadyForQuery) and
    the only server connection goes back to the pool for the next client."""
    pg.psql("DROP TABLE IF EXISTS copy_sync; CREATE TABLE copy_sync (x int)")
    s = sluice_factory(default_pool_size=1, query_wait_timeout=10)
    a, _ = raw_login(s.port)
    a.sendall(q("COPY copy_sync FROM STDIN") + SYNC + _copy_msgs(b"1\n", b"2\n"))
    msgs, eof = read_messages(a, timeout=HANG)
    _, tags, errors = results(msgs)
    assert not eof and [t for t, _ in msgs] == [b"G", b"C", b"Z"] and tags == ["COPY 2"], msgs
    b, _ = raw_login(s.port)
    assert raw_ok(b, "SELECT count(*) FROM copy_sync")[0] == [("2",)]
    assert raw_ok(a, "SELECT 3")[0] == [("3",)]
    for x in (a, b):
        x.close()
    assert_healthy(s)


def test_syncs_sent_during_copy_data_are_not_queued(sluice_factory, pg):
    """Syncs sent once the COPY runs are ignored by the server and take no place among the
    requests awaiting answers: more of them than that bound (4,096) neither stall the client
    nor keep the server."""
    pg.psql("DROP TABLE IF EXISTS copy_many; CREATE TABLE copy_many (x int)")
    s = sluice_factory(default_pool_size=1, query_wait_timeout=10)
    a, _ = raw_login(s.port)
    a.sendall(q("COPY copy_many FROM STDIN"))
    msgs, _ = read_messages(a, until=b"G", timeout=HANG)
    assert [t for t, _ in msgs] == [b"G"], msgs
    a.sendall(SYNC * 5000 + _copy_msgs(b"7\n"))
    msgs, eof = read_messages(a, timeout=HANG)
    _, tags, _ = results(msgs)
    assert not eof and [t for t, _ in msgs] == [b"C", b"Z"] and tags == ["COPY 1"], msgs
    b, _ = raw_login(s.port)
    assert raw_ok(b, "SELECT sum(x) FROM copy_many")[0] == [("7",)]
    for x in (a, b):
        x.close()
    assert_healthy(s)


def test_two_copies_in_one_query_with_syncs_among_their_data(sluice_factory, pg):
    """One Query holding two COPY FROM STDIN, all of it sent at once with a Sync among the data
    of each: every Sync is read as COPY data. The client gets both COPYs' results and one
    ReadyForQuery; the server goes back to the pool."""
    pg.psql("DROP TABLE IF EXISTS copy_two; CREATE TABLE copy_two (x int)")
    s = sluice_factory(default_pool_size=1, query_wait_timeout=10)
    a, _ = raw_login(s.port)
    a.sendall(q("COPY copy_two FROM STDIN; COPY copy_two FROM STDIN") + SYNC +
              _copy_msgs(b"1\n") + SYNC + _copy_msgs(b"2\n", b"3\n"))
    msgs, eof = read_messages(a, timeout=HANG)
    _, tags, errors = results(msgs)
    assert not eof and [t for t, _ in msgs] == [b"G", b"C", b"G", b"C", b"Z"], msgs
    assert tags == ["COPY 1", "COPY 2"], msgs
    b, _ = raw_login(s.port)
    assert raw_ok(b, "SELECT sum(x) FROM copy_two")[0] == [("6",)]
    for x in (a, b):
        x.close()
    assert_healthy(s)


@pytest.mark.parametrize("tail", ["sync-then-bad-row", "query"])
def test_copy_whose_end_sluice_cannot_know_closes_that_client(sluice_factory, pg, tail):
    """Two COPYs Sluice cannot follow message by message: a Sync among the data of a COPY that
    then fails (the server may have read it before or after failing, so the number of
    ReadyForQuery to come is unknown), and a Query among COPY data (the server fails the COPY
    on it and never answers it). That client gets 08P01 and is closed, with its server;
    another client gets a server and its data is intact."""
    pg.psql("DROP TABLE IF EXISTS copy_bad; CREATE TABLE copy_bad (x int)")
    s = sluice_factory(default_pool_size=1, query_wait_timeout=10)
    a, _ = raw_login(s.port)
    if tail == "query":
        rest = message(b"d", b"1\n") + q("SELECT 1") + _copy_msgs(b"2\n")
    else:
        rest = message(b"d", b"1\n") + SYNC + _copy_msgs(b"x\n")
    a.sendall(q("COPY copy_bad FROM STDIN") + rest)
    msgs, eof = read_messages(a, timeout=HANG)
    errors = [error_fields(body) for t, body in msgs if t == b"E"]
    assert eof and errors and errors[-1]["C"] == "08P01" and errors[-1]["S"] == "FATAL", msgs
    b, _ = raw_login(s.port)
    assert raw_ok(b, "SELECT count(*) FROM copy_bad")[0] == [("0",)]
    b.close()
    assert_healthy(s)


def test_listening_connection_comes_back(sluice_factory, pg):
    """An unlucky operator: Sluice's listening connection is terminated on the server. Clients
    keep their subscriptions; Sluice opens a new connection by itself, and notifications reach
    the listener again (those sent while it was down may be lost: the test sends until one
    arrives)."""
    s = sluice_factory(default_pool_size=2, query_wait_timeout=10)
    a, c = connect(s), connect(s)
    execute(a, "LISTEN comeback")
    killed = pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE query = 'LISTEN \"comeback\"'")
    assert killed == [(True,)], killed
    assert settle(lambda: "listening connection of" in s.log() and "lost" in s.log())
    got = []
    deadline = time.monotonic() + HANG
    while not got and time.monotonic() < deadline:
        execute(c, "NOTIFY comeback, 'again'")
        got = wait_notifies(a, lambda g: len(g) >= 1, timeout=0.5)
    assert got and got[0] == ("comeback", "again"), got
    for x in (a, c):
        x.close()
    assert_healthy(s)


def test_unlisten_stops_delivery(sluice_factory):
    """UNLISTEN ch1 stops ch1 for that client; UNLISTEN * stops everything. Checked with a
    marker notification on a channel still listened to, sent after the ones that must not
    arrive (a backend delivers notifications in commit order)."""
    s = sluice_factory(default_pool_size=2, query_wait_timeout=10)
    a, c = connect(s), connect(s)
    for sql in ("LISTEN ch1", "LISTEN ch2", "UNLISTEN ch1"):
        execute(a, sql)
    for sql in ("NOTIFY ch1, 'gone'", "NOTIFY ch2, 'marker1'"):
        execute(c, sql)
    assert wait_notifies(a, lambda g: ("ch2", "marker1") in g) == [("ch2", "marker1")]
    for sql in ("LISTEN ch1", "LISTEN ch3", "UNLISTEN *", "LISTEN ch4"):
        execute(a, sql)
    for sql in ("NOTIFY ch1, 'gone'", "NOTIFY ch2, 'gone'", "NOTIFY ch3, 'gone'",
                "NOTIFY ch4, 'marker2'"):
        execute(c, sql)
    assert wait_notifies(a, lambda g: ("ch4", "marker2") in g) == [("ch4", "marker2")]
    a.close()
    c.close()
    assert_healthy(s)


def test_two_listeners_and_one_leaving(sluice_factory):
    """Two clients LISTEN on one channel: both get each notification. One disconnects: no error
    for anyone, the other still gets later notifications, and clients that come later (on the
    servers the listeners used) receive none."""
    s = sluice_factory(default_pool_size=3, query_wait_timeout=10)
    a, d, c = connect(s), connect(s), connect(s)
    for x in (a, d):
        execute(x, "LISTEN ch1")
    execute(c, "NOTIFY ch1, 'both'")
    for x in (a, d):
        assert wait_notifies(x, lambda g: len(g) >= 1) == [("ch1", "both")]
    d.close()
    assert one(c, "SELECT 'c fine'") == ("c fine",)
    execute(c, "NOTIFY ch1, 'after d left'")
    assert wait_notifies(a, lambda g: len(g) >= 1) == [("ch1", "after d left")]
    later = [connect(s) for _ in range(3)]
    for x in later:
        assert one(x, "SELECT 'later'") == ("later",)
    execute(c, "NOTIFY ch1, 'third'")
    assert wait_notifies(a, lambda g: len(g) >= 1) == [("ch1", "third")]
    for x in later:
        assert one(x, "SELECT 'later again'") == ("later again",)
        x.poll()
        assert x.notifies == [], "a client that never listened gets nothing"
        x.close()
    a.close()
    c.close()
    assert_healthy(s)


# ---- 5. bounded memory per client ----

RSS_BOUND_MB = 100
RSS_GUARD_MB = 4096  # a flood stops here, to keep the machine alive (the test fails anyway)


def proc_kb(pid, field):
    """A field of /proc/PID/status in kB (VmRSS: resident now, VmHWM: peak resident)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def sanitized(pid):
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()


class Flood:
    """Sends `chunk` over and over on a socket from a thread, reading nothing, until `total`
    bytes are sent, `seconds` pass, one send stays blocked for `blocked` seconds (Sluice stopped
    reading: the bound held), the connection fails, or Sluice's RSS reaches the guard."""

    def __init__(self, sock, chunk, total, pid, seconds=20, blocked=3):
        self.sock, self.chunk, self.total, self.pid = sock, chunk, total, pid
        self.seconds, self.blocked = seconds, blocked
        self.sent, self.why = 0, None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(self.blocked)
        deadline = time.monotonic() + self.seconds
        view, off = memoryview(self.chunk), 0
        while self.sent < self.total:
            if time.monotonic() > deadline:
                self.why = f"{self.seconds} s passed"
                return
            if off == 0 and proc_kb(self.pid, "VmRSS") > RSS_GUARD_MB * 1024:
                self.why = f"RSS guard of {RSS_GUARD_MB} MB reached"
                return
            try:
                n = self.sock.send(view[off:])
            except socket.timeout:
                self.why = f"a send blocked for {self.blocked} s"
                return
            except OSError as e:
                self.why = f"connection failed: {e}"
                return
            self.sent += n
            off = (off + n) % len(self.chunk)
        self.why = "everything sent"

    def wait(self):
        self.thread.join(self.seconds + self.blocked + 10)
        assert not self.thread.is_alive()
        return self.why


def check_rss(s, name, base_kb, detail):
    """Prints Sluice's memory for the record and asserts the growth stayed bounded."""
    peak, now = proc_kb(s.pid, "VmHWM"), proc_kb(s.pid, "VmRSS")
    asan = sanitized(s.pid)
    print(f"\nRSS {name}: before {base_kb / 1024:.1f} MB, peak {peak / 1024:.1f} MB, "
          f"at end {now / 1024:.1f} MB{' (ASan build)' if asan else ''}; {detail}",
          file=sys.stderr)
    # ASan keeps some freed memory in quarantine and adds its own bookkeeping: a little more
    # room there (a bounded flood grows an ASan build by about 15 MB).
    bound = RSS_BOUND_MB + (50 if asan else 0)
    assert (peak - base_kb) / 1024 < bound, f"{name}: {(peak - base_kb) / 1024:.0f} MB growth"


def served_meanwhile(s, tag):
    c = connect(s)
    try:
        assert one(c, "SELECT %s, 6 * 7", (tag,)) == (tag, 42)
    finally:
        c.close()


def flood_test(s, name, sock, chunk, total, first=b""):
    for _ in range(3):
        served_meanwhile(s, "warm-up")
    base = proc_kb(s.pid, "VmRSS")
    if first:
        sock.sendall(first)
    f = Flood(sock, chunk, total, s.pid)
    served_meanwhile(s, "during the flood")
    why = f.wait()
    served_meanwhile(s, "after the flood, flooder still connected")
    check_rss(s, name, base, f"{f.sent / 2**20:.0f} MB sent, stopped: {why}")
    sock.close()
    assert_healthy(s)


def test_sync_flood_memory_is_bounded(sluice_factory):
    """Attack: a client sends 20 million Sync messages and never reads the ReadyForQuery
    answers. Sluice must stop reading from it rather than queue 120 MB of answers; other clients
    are served throughout."""
    s = sluice_factory(default_pool_size=2)
    sock, _ = raw_login(s.port)
    chunk = SYNC * (2**20 // 5)
    flood_test(s, "sync flood", sock, chunk, 20_000_000 * 5)


def test_close_flood_behind_a_slow_query_memory_is_bounded(sluice_factory):
    """Attack: SELECT pg_sleep(2), then up to 110 million Close('S', 'x') messages without
    reading: requests queue behind the running query. Sluice must bound that queue; other
    clients are served throughout."""
    s = sluice_factory(default_pool_size=2)
    sock, _ = raw_login(s.port)
    close = message(b"C", b"Sx\0")
    chunk = close * (2**20 // len(close))
    flood_test(s, "close flood", sock, chunk, 110_000_000 * len(close),
               first=q("SELECT pg_sleep(2)"))


def test_unread_large_results_memory_is_bounded(sluice_factory, pg):
    """Attack: a client sends 2,000 SELECT repeat('x', 1000000) (2 GB of results) and never
    reads. Sluice must stop reading the server once the client's output is backed up (the
    backend then waits in ClientWrite) instead of holding the results; others are served."""
    s = sluice_factory(default_pool_size=2)
    for _ in range(3):
        served_meanwhile(s, "warm-up")
    base = proc_kb(s.pid, "VmRSS")
    sock, _ = raw_login(s.port)
    sock.sendall(q("SELECT repeat('x', 1000000)") * 2000)
    served_meanwhile(s, "during the flood")
    probe = ("SELECT state, wait_event FROM pg_stat_activity "
             "WHERE query = 'SELECT repeat(''x'', 1000000)'")
    deadline, blocked, why = time.monotonic() + 30, 0, "30 s passed"
    while time.monotonic() < deadline:
        rows = pg.psql(probe)
        blocked = blocked + 1 if rows and rows[0] == ("active", "ClientWrite") else 0
        if blocked >= 10:
            why = "the backend waits on ClientWrite: Sluice stopped reading it"
            break
        if rows and rows[0][0] == "idle":
            why = "the backend finished all 2,000 queries: Sluice took every result"
            break
        if proc_kb(s.pid, "VmRSS") > RSS_GUARD_MB * 1024:
            why = f"RSS guard of {RSS_GUARD_MB} MB reached"
            break
        time.sleep(0.2)
    served_meanwhile(s, "after the flood, flooder still connected")
    check_rss(s, "unread results", base, why)
    sock.close()
    assert_healthy(s)


# ---- 6. ambient credentials ----

PW_USER, PW = "pw_user", "pw-Secret-6"
REFUSED = ("28P01", "08006", "28000")


@pytest.fixture()
def password_pg(own_pg):
    """A cluster of the test's own where pw_user must give a password over TCP."""
    own_pg.psql(f"CREATE ROLE {PW_USER} LOGIN PASSWORD '{PW}'")
    hba = os.path.join(own_pg.data, "pg_hba.conf")
    with open(hba) as f:
        text = f.read()
    with open(hba, "w") as f:  # the first matching line wins
        f.write(f"host all {PW_USER} 127.0.0.1/32 scram-sha-256\n" + text)
    own_pg.psql("SELECT pg_reload_conf()")
    return own_pg


def psql_as_pw_user(port, env):
    return subprocess.run(["psql", "-X", "-At", "-w", "-h", "127.0.0.1", "-p", str(port), "-U",
                           PW_USER, "-d", "postgres", "-c", "SELECT current_user"],
                          capture_output=True, text=True, timeout=60,
                          env=dict({k: v for k, v in os.environ.items()
                                    if not k.startswith("PG")}, **env))


def ambient_env(kind, port, tmp_path):
    line = f"127.0.0.1:{port}:*:{PW_USER}:{PW}\n"
    if kind == "PGPASSWORD":
        return {"PGPASSWORD": PW}
    if kind == "PGPASSFILE":
        path = tmp_path / "passfile"
        path.write_text(line)
        path.chmod(0o600)
        return {"PGPASSFILE": str(path)}
    home = tmp_path / "home"
    home.mkdir()
    (home / ".pgpass").write_text(line)
    (home / ".pgpass").chmod(0o600)
    return {"HOME": str(home)}


@pytest.mark.parametrize("kind", ["PGPASSWORD", "PGPASSFILE", "HOME/.pgpass"])
def test_ambient_credentials_do_not_log_clients_in(sluice_factory, password_pg, monkeypatch,
                                                   tmp_path, kind):
    """Attack: Sluice's own environment happens to hold pw_user's password (PGPASSWORD, a
    PGPASSFILE, ~/.pgpass). A client of a trust-auth Sluice that names pw_user on a [databases]
    line without a password must not be logged in on the strength of that: the server refuses
    it. (First shown: the same environment does log psql in directly, so the credential is
    live, and without it psql is refused.)"""
    env = ambient_env(kind, password_pg.port, tmp_path)
    assert psql_as_pw_user(password_pg.port, {}).returncode != 0, "pg_hba asks for a password"
    direct = psql_as_pw_user(password_pg.port, env)
    if kind == "HOME/.pgpass" and direct.returncode != 0:
        pytest.skip("this libpq does not look for .pgpass under $HOME")
    assert direct.returncode == 0 and direct.stdout.strip() == PW_USER, direct.stderr
    with monkeypatch.context() as m:
        for k, v in env.items():
            m.setenv(k, v)
        s = sluice_factory(databases={"*": f"host=127.0.0.1 port={password_pg.port}"})
    sock = socket.create_connection(("127.0.0.1", s.port))
    sock.sendall(startup_packet(user=PW_USER))
    msgs, eof = read_messages(sock, timeout=HANG)
    if not eof and msgs and msgs[-1][0] == b"Z":
        sock.sendall(q("SELECT current_user"))
        more, eof = read_messages(sock, timeout=HANG)
        msgs += more
    rows, _, errors = results(msgs)
    assert (PW_USER,) not in rows, "logged in with Sluice's ambient password"
    assert errors and errors[0]["C"] in REFUSED, msgs
    sock.close()
    assert_healthy(s)


def test_password_on_the_databases_line_logs_in(sluice_factory, password_pg):
    """The configured way: password=... on the [databases] line logs pw_user in."""
    s = sluice_factory(databases={"*": f"host=127.0.0.1 port={password_pg.port} password={PW}"})
    c = connect(s, user=PW_USER)
    assert one(c, "SELECT current_user") == (PW_USER,)
    c.close()
    assert_healthy(s)
