"""Pooling: pgbench in every mode, bounded server connections, parameter isolation, prepared
statements across servers, max_client_conn, and nothing leaked."""
import concurrent.futures
import ctypes
import socket
import threading
import time

import psycopg2
import pytest

from pgutil import (accepted_sockets, error_fields, message, pgbench, raw_login, read_messages,
                    read_to_eof, startup_packet)


# pgbench (15) prepares with a blocking PQprepare: in session mode a client waiting for a
# server would stall the other clients of its thread, among them the ones holding the servers.
# One thread per client there; in transaction mode every server comes back after each
# transaction, so two threads share all clients.

@pytest.mark.parametrize("pool_mode", ["transaction", "session"])
@pytest.mark.parametrize("protocol", ["simple", "extended", "prepared"])
def test_pgbench_more_clients_than_servers(sluice_factory, pg, pool_mode, protocol):
    # In session mode the clients beyond the pool wait for a whole session to end: fewer
    # transactions keep that short.
    if pool_mode == "transaction":
        clients, threads, pool, tx = 20, 2, 5, 50
    else:
        clients, threads, pool, tx = 12, 12, 4, 20
    s = sluice_factory(pool_mode=pool_mode, default_pool_size=pool)
    args = ("-M", protocol, "-c", str(clients), "-j", str(threads))
    b = pgbench(s.port, *args, "-t", str(tx))
    assert b.rc == 0 and b.failed == 0, b.out
    assert b.processed == clients * tx, b.out
    # select-only as well, which pgbench runs without a transaction block
    b = pgbench(s.port, "-S", *args, "-t", str(2 * tx))
    assert b.rc == 0 and b.failed == 0 and b.processed == clients * 2 * tx, b.out
    assert pg.server_connections() <= pool


@pytest.mark.parametrize("pool_mode", ["transaction", "session"])
@pytest.mark.parametrize("protocol", ["simple", "prepared"])
def test_pgbench_new_connection_per_transaction(sluice_factory, pool_mode, protocol):
    s = sluice_factory(pool_mode=pool_mode, default_pool_size=4)
    threads = "2" if pool_mode == "transaction" else "8"
    b = pgbench(s.port, "-C", "-M", protocol, "-c", "8", "-j", threads, "-t", "50")
    assert b.rc == 0 and b.failed == 0 and b.processed == 400, b.out


def test_server_connections_bounded_by_pool_size(sluice_factory, pg):
    s = sluice_factory(default_pool_size=3)
    peak = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak.append(pg.server_connections())
            time.sleep(0.05)

    t = threading.Thread(target=sample)
    t.start()
    b = pgbench(s.port, "-c", "30", "-j", "2", "-T", "3")
    stop.set()
    t.join()
    assert b.rc == 0 and b.failed == 0 and b.processed > 0, b.out
    assert 0 < max(peak) <= 3, peak


def test_session_parameters_follow_the_client(sluice_factory):
    s = sluice_factory(default_pool_size=1)
    a = psycopg2.connect(**s.dsn(options="-c IntervalStyle=sql_standard"))
    b = psycopg2.connect(**s.dsn(application_name="bee"))
    a.autocommit = b.autocommit = True
    ca, cb = a.cursor(), b.cursor()
    ca.execute("SET TimeZone = 'Asia/Tokyo'")
    ca.execute("SET application_name = 'ay'")
    ca.execute("SET DateStyle = 'German'")
    cb.execute("SET IntervalStyle = 'iso_8601'")
    query = ("SELECT current_setting('TimeZone'), current_setting('application_name'), "
             "current_setting('DateStyle'), current_setting('IntervalStyle')")
    for _ in range(3):  # one server: every statement switches it between the two clients
        ca.execute(query)
        ra = ca.fetchone()
        cb.execute(query)
        rb = cb.fetchone()
        assert ra == ("Asia/Tokyo", "ay", "German, DMY", "sql_standard"), ra
        assert rb[0] != "Asia/Tokyo" and rb[1] == "bee" and rb[2] == "ISO, MDY", rb
        assert rb[3] == "iso_8601", rb
        cb.execute("SHOW TimeZone")
        tz_b = cb.fetchone()[0]
        ca.execute("SHOW TimeZone")
        assert ca.fetchone()[0] == "Asia/Tokyo" and tz_b != "Asia/Tokyo"
    a.close()
    b.close()


def test_client_encoding_follows_the_client(sluice_factory):
    s = sluice_factory(default_pool_size=1)
    # LATIN1 from the startup packet; the other client starts in UTF8 and SETs WIN1252 later.
    a = psycopg2.connect(**s.dsn(client_encoding="LATIN1"))
    b = psycopg2.connect(**s.dsn())
    a.autocommit = b.autocommit = True
    ca, cb = a.cursor(), b.cursor()
    # The server converts to each client's encoding: psycopg2 decodes 'é' right only if the
    # server connection it landed on used that client's encoding.
    query = "SELECT 'é', current_setting('client_encoding')"
    for step in range(4):
        if step == 2:
            b.set_client_encoding("WIN1252")
        ca.execute(query)
        assert ca.fetchone() == ("é", "LATIN1")
        cb.execute(query)
        assert cb.fetchone() == ("é", "UTF8" if step < 2 else "WIN1252")
    a.close()
    b.close()


@pytest.mark.parametrize("reset", ["RESET {name}", "SET {name} TO DEFAULT", "RESET ALL",
                                   "DISCARD ALL"],
                         ids=["reset", "set-to-default", "reset-all", "discard-all"])
def test_reset_returns_to_the_clients_own_startup_values(sluice_factory, reset):
    # As on PostgreSQL itself, a reset goes back to what the client's startup packet set (its
    # parameters and its options), not to the defaults of whichever server it is on.
    s = sluice_factory(default_pool_size=1)
    a = psycopg2.connect(**s.dsn(application_name="from-startup", client_encoding="LATIN1",
                                 options="-c TimeZone=Europe/Paris"))
    b = psycopg2.connect(**s.dsn())  # shares the one server
    a.autocommit = b.autocommit = True
    ca, cb = a.cursor(), b.cursor()
    startup = {"application_name": "from-startup", "client_encoding": "LATIN1",
               "TimeZone": "Europe/Paris"}
    changed = {"application_name": "changed", "client_encoding": "WIN1252",
               "TimeZone": "Asia/Tokyo"}

    def show(name):
        cb.execute("SELECT 1")  # the other client has the server in between
        ca.execute(f"SHOW {name}")
        return ca.fetchone()[0]

    for name, value in changed.items():
        ca.execute(f"SET {name} = '{value}'")
        assert show(name) == value
        if "{name}" in reset:
            ca.execute(reset.format(name=name))
            assert show(name) == startup[name], (reset, name)
    if "{name}" not in reset:
        ca.execute(reset)
        assert {name: show(name) for name in startup} == startup, reset
    cb.execute("SHOW TimeZone")
    assert cb.fetchone()[0] not in ("Europe/Paris", "Asia/Tokyo")


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_reset_inside_a_kept_server_sets_the_startup_value_again(sluice_factory, mode):
    # The server stays with the client (session mode, or an open transaction): Sluice SETs the
    # startup value on it again right after the reset, so the same server answers with it.
    s = sluice_factory(default_pool_size=1, pool_mode=mode)
    conn = psycopg2.connect(**s.dsn(options="-c TimeZone=Europe/Paris"))
    cur = conn.cursor()  # not autocommit: one transaction holds the server throughout
    cur.execute("SET TimeZone = 'Asia/Tokyo'")
    cur.execute("RESET TimeZone")
    cur.execute("SHOW TimeZone")
    assert cur.fetchone()[0] == "Europe/Paris"
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    conn.commit()
    cur.execute("SELECT pg_backend_pid(), current_setting('TimeZone')")
    assert cur.fetchone() == (pid, "Europe/Paris")
    conn.close()


class Libpq:
    """libpq itself, for protocol-level prepared statements (PQprepare / PQexecPrepared)."""

    def __init__(self):
        pq = ctypes.CDLL("libpq.so.5")
        vp, cp, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        for name, res, args in [
            ("PQconnectdb", vp, [cp]), ("PQfinish", None, [vp]), ("PQstatus", i, [vp]),
            ("PQprepare", vp, [vp, cp, cp, i, vp]),
            ("PQexecPrepared", vp, [vp, cp, i, ctypes.POINTER(cp), vp, vp, i]),
            ("PQdescribePrepared", vp, [vp, cp]), ("PQexec", vp, [vp, cp]),
            ("PQresultStatus", i, [vp]), ("PQresultErrorField", cp, [vp, i]),
            ("PQgetvalue", cp, [vp, i, i]), ("PQnparams", i, [vp]), ("PQclear", None, [vp]),
            ("PQntuples", i, [vp]), ("PQgetResult", vp, [vp]),
            ("PQexecParams", vp, [vp, cp, i, vp, vp, vp, vp, i]),
            ("PQputCopyData", i, [vp, cp, i]), ("PQputCopyEnd", i, [vp, cp]),
        ]:
            f = getattr(pq, name)
            f.restype, f.argtypes = res, args
        self.pq = pq

    def connect(self, port):
        c = self.pq.PQconnectdb(f"host=127.0.0.1 port={port} user=postgres "
                                "dbname=postgres".encode())
        assert self.pq.PQstatus(c) == 0
        return c

    def _result(self, r):
        status = self.pq.PQresultStatus(r)
        code = self.pq.PQresultErrorField(r, ord("C"))
        value = self.pq.PQgetvalue(r, 0, 0) if self.pq.PQntuples(r) else None
        nparams = self.pq.PQnparams(r)
        self.pq.PQclear(r)
        return status, (code.decode() if code else None), value, nparams

    def prepare(self, c, name, sql, nparams=0):
        return self._result(self.pq.PQprepare(c, name.encode(), sql.encode(), nparams, None))

    def execp(self, c, name, *params):
        arr = (ctypes.c_char_p * max(1, len(params)))(*[str(p).encode() for p in params])
        return self._result(self.pq.PQexecPrepared(c, name.encode(), len(params), arr, None,
                                                   None, 0))

    def describe(self, c, name):
        return self._result(self.pq.PQdescribePrepared(c, name.encode()))

    def exec(self, c, sql):
        return self._result(self.pq.PQexec(c, sql.encode()))

    def copy_in(self, c, sql, data):
        """COPY FROM STDIN sent by PQexecParams (the extended protocol): the status and
        SQLSTATE of its first result."""
        st = self._result(self.pq.PQexecParams(c, sql.encode(), 0, None, None, None, None, 0))
        assert st[0] == PGRES_COPY_IN, st
        assert self.pq.PQputCopyData(c, data, len(data)) == 1
        assert self.pq.PQputCopyEnd(c, None) == 1
        first = None
        while (r := self.pq.PQgetResult(c)):
            first = first or self._result(r)[:2]
        return first


PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_COPY_IN, PGRES_FATAL_ERROR = 1, 2, 4, 7


def test_prepared_statements_across_servers(sluice_factory, pg):
    s = sluice_factory(default_pool_size=2, max_prepared_statements=3)
    lib = Libpq()
    conns = [lib.connect(s.port) for _ in range(6)]
    for i, c in enumerate(conns):
        assert lib.prepare(c, "add", f"SELECT $1::int + {i}", 1)[0] == PGRES_COMMAND_OK
        assert lib.prepare(c, "fixed", "SELECT 42")[0] == PGRES_COMMAND_OK
        for j in range(4):  # more statements than max_prepared_statements: evictions
            assert lib.prepare(c, f"extra{j}", f"SELECT {j} AS n")[0] == PGRES_COMMAND_OK
    for _ in range(3):
        for i, c in enumerate(conns):
            st, code, val, _ = lib.execp(c, "add", 10)
            assert st == PGRES_TUPLES_OK and val == str(10 + i).encode(), (st, code, val)
            assert lib.describe(c, "add")[3] == 1
            assert lib.execp(c, "extra3")[2] == b"3"
            assert lib.execp(c, "fixed")[2] == b"42"
    assert pg.server_connections() <= 2
    c = conns[0]
    # a failed Parse leaves nothing behind; the name can then be prepared correctly
    st, code, _, _ = lib.prepare(c, "bad", "SELEC 1")
    assert st == PGRES_FATAL_ERROR and code == "42601"
    assert lib.execp(c, "bad")[1] == "26000"
    assert lib.prepare(c, "bad", "SELECT 7")[0] == PGRES_COMMAND_OK
    assert lib.execp(c, "bad")[2] == b"7"
    # DEALLOCATE ALL and DISCARD ALL are understood and touch only this client
    assert lib.exec(c, "DEALLOCATE ALL")[0] == PGRES_COMMAND_OK
    assert lib.execp(c, "add", 1)[1] == "26000"
    assert lib.prepare(c, "add", "SELECT $1::int * 2", 1)[0] == PGRES_COMMAND_OK
    assert lib.execp(c, "add", 21)[2] == b"42"
    assert lib.exec(conns[1], "DISCARD ALL")[0] == PGRES_COMMAND_OK
    assert lib.execp(conns[1], "fixed")[1] == "26000"
    assert lib.execp(conns[2], "fixed")[2] == b"42", "other clients keep their statements"
    for c in conns:
        lib.pq.PQfinish(c)


def test_copy_in_by_the_extended_protocol_gives_the_server_back(sluice_factory, pg):
    """libpq sends a COPY FROM STDIN run by PQexecParams as Parse, Bind, Describe, Execute
    and Sync, then the data, CopyDone and another Sync. The server reads the first Sync as part
    of the COPY and answers only the second. With one server connection, the COPY must leave
    the server to the next client, whether it succeeds or fails on bad data."""
    pg.psql("DROP TABLE IF EXISTS copy_ext; CREATE TABLE copy_ext (x int)")
    s = sluice_factory(default_pool_size=1, query_wait_timeout=10)
    lib = Libpq()
    a, b = lib.connect(s.port), lib.connect(s.port)
    for data, want in ((b"1\n2\n", (PGRES_COMMAND_OK, None)),
                       (b"3\nx\n", (PGRES_FATAL_ERROR, "22P02"))):
        assert lib.copy_in(a, "COPY copy_ext FROM STDIN", data) == want
        st, code, value, _ = lib.exec(b, "SELECT count(*) FROM copy_ext")
        assert (st, code, value) == (PGRES_TUPLES_OK, None, b"2")
    assert lib.exec(a, "SELECT sum(x) FROM copy_ext")[2] == b"3"
    for c in (a, b):
        lib.pq.PQfinish(c)


def login_when_possible(port, timeout=10):
    """raw_login, retried until Sluice has noticed that a slot became free."""
    deadline = time.time() + timeout
    while True:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(startup_packet())
        msgs, eof = read_messages(sock)
        if msgs and msgs[-1] == (b"Z", b"I"):
            return sock
        sock.close()
        assert time.time() < deadline, msgs
        time.sleep(0.05)


def test_unnamed_statement_prepared_in_one_sync_and_run_in_the_next(sluice_factory):
    # PQprepare(conn, "", ...) then PQexecPrepared(conn, "", ...): two Sync segments, so two
    # transactions that may land on different servers, and the server's unnamed statement
    # may since have been replaced by another client's. Each client must run its own.
    s = sluice_factory(default_pool_size=1)
    a, _ = raw_login(s.port)
    b, _ = raw_login(s.port)
    for sock, who in ((a, "a"), (b, "b")):
        sock.sendall(_parse("", f"SELECT 'mine: {who}'") + message(b"S"))
        msgs, _ = read_messages(sock)
        assert [t for t, _ in msgs] == [b"1", b"Z"], msgs
    for sock, who in ((a, "a"), (b, "b"), (a, "a")):
        sock.sendall(_bind_exec_sync(""))
        msgs, _ = read_messages(sock)
        rows = [body[6:] for t, body in msgs if t == b"D"]
        assert rows == [f"mine: {who}".encode()], (who, msgs)
    a.close()
    b.close()
    # the same through libpq, with more clients than servers
    s = sluice_factory(default_pool_size=2)
    lib = Libpq()
    conns = [lib.connect(s.port) for _ in range(4)]
    for _ in range(3):
        for i, c in enumerate(conns):
            assert lib.prepare(c, "", f"SELECT {i} + $1::int", 1)[0] == PGRES_COMMAND_OK
        for i, c in enumerate(conns):
            st, code, val, _ = lib.execp(c, "", 100)
            assert st == PGRES_TUPLES_OK and val == str(100 + i).encode(), (i, st, code, val)
    for c in conns:
        lib.pq.PQfinish(c)


def test_unnamed_statement_of_another_client_is_never_run(sluice_factory):
    # A client that has no unnamed statement (its own Parse failed) binds "": it gets 26000,
    # not the unnamed statement another client left on the shared server.
    s = sluice_factory(default_pool_size=1)
    a, _ = raw_login(s.port)
    b, _ = raw_login(s.port)
    a.sendall(_parse("", "SELECT 'belongs to a'") + message(b"S"))
    assert [t for t, _ in read_messages(a)[0]] == [b"1", b"Z"]
    b.sendall(_parse("", "SELEC broken") + message(b"S"))
    assert [t for t, _ in read_messages(b)[0]] == [b"E", b"Z"]
    a.sendall(_bind_exec_sync(""))  # puts a's statement back on the server
    assert [t for t, _ in read_messages(a)[0]] == [b"2", b"D", b"C", b"Z"]
    b.sendall(_bind_exec_sync(""))
    msgs, _ = read_messages(b)
    assert msgs[0][0] == b"E" and error_fields(msgs[0][1])["C"] == "26000", msgs
    # Describe of the unnamed statement in a later Sync segment describes the client's own
    b.sendall(_parse("", "SELECT 1 AS b_column") + message(b"S"))
    assert [t for t, _ in read_messages(b)[0]] == [b"1", b"Z"]
    a.sendall(_bind_exec_sync(""))
    assert [t for t, _ in read_messages(a)[0]] == [b"2", b"D", b"C", b"Z"]
    b.sendall(message(b"D", b"S\0") + message(b"S"))
    msgs, _ = read_messages(b)
    assert [t for t, _ in msgs] == [b"t", b"T", b"Z"], msgs
    assert b"b_column" in msgs[1][1]
    a.close()
    b.close()


def test_sql_deallocate_of_a_protocol_level_statement(sluice_factory):
    # Drivers that prepare at protocol level may drop a statement with SQL (psycopg 3 does).
    s = sluice_factory(default_pool_size=1)
    lib = Libpq()
    a, b = lib.connect(s.port), lib.connect(s.port)
    for c in (a, b):
        assert lib.prepare(c, "s1", "SELECT 11")[0] == PGRES_COMMAND_OK
        assert lib.execp(c, "s1")[2] == b"11"
    st, code, _, _ = lib.exec(a, "DEALLOCATE s1")
    assert st == PGRES_COMMAND_OK, code
    assert lib.execp(a, "s1")[1] == "26000"
    assert lib.execp(b, "s1")[2] == b"11", "only that client's statement is gone"
    assert lib.prepare(a, "s1", "SELECT 12")[0] == PGRES_COMMAND_OK
    assert lib.execp(a, "s1")[2] == b"12"
    assert lib.exec(a, "DEALLOCATE nosuch")[1] == "26000"
    for c in (a, b):
        lib.pq.PQfinish(c)


def test_max_client_conn_refuses_with_53300(sluice_factory):
    s = sluice_factory(max_client_conn=2)
    a, _ = raw_login(s.port)
    b, _ = raw_login(s.port)
    c = socket.create_connection(("127.0.0.1", s.port))
    c.sendall(startup_packet())
    msgs, eof = read_to_eof(c)
    assert msgs and msgs[-1][0] == b"E" and eof, msgs
    assert error_fields(msgs[-1][1])["C"] == "53300"
    # libpq shows the message of a refused login
    with pytest.raises(psycopg2.OperationalError) as e:
        psycopg2.connect(**s.dsn())
    text = str(e.value).lower()
    assert e.value.pgcode == "53300" or "max_client_conn" in text or "too many" in text, text
    a.close()
    d = login_when_possible(s.port)  # a slot is free again
    for x in (b, d):
        x.close()


def settle(predicate, timeout=5):
    """Polls until predicate() holds (Sluice closes sockets asynchronously); returns its value."""
    deadline = time.time() + timeout
    while not predicate() and time.time() < deadline:
        time.sleep(0.05)
    return predicate()


def test_no_leaks_after_many_clients(sluice_factory, pg):
    pool = 4
    s = sluice_factory(default_pool_size=pool, max_client_conn=300)

    def client_side_fds():
        # everything but the server connections, which the pool may keep
        return s.fd_count(except_peer_port=pg.port)

    # The start-up probe's connection may still be closing: count once no client is left.
    assert settle(lambda: accepted_sockets(s.pid, s.port) == 0)
    base = client_side_fds()  # before any client: listeners, loop, log
    for _ in range(200):
        psycopg2.connect(**s.dsn()).close()
    assert settle(lambda: client_side_fds() == base), (base, client_side_fds())

    def open_and_query(i):
        c = psycopg2.connect(**s.dsn())
        c.autocommit = True
        c.cursor().execute("SELECT %s", (i,))
        return c

    with concurrent.futures.ThreadPoolExecutor(20) as ex:
        conns = list(ex.map(open_and_query, range(200)))
    assert client_side_fds() >= base + 200, "all 200 clients were connected at once"
    for c in conns:
        c.close()
    assert settle(lambda: client_side_fds() == base), (base, client_side_fds())
    assert pg.server_connections() <= pool


def _parse(name, sql):
    return message(b"P", name.encode() + b"\0" + sql.encode() + b"\0\0\0")


def _bind_exec_sync(name):
    return (message(b"B", b"\0" + name.encode() + b"\0" + b"\0\0" + b"\0\0" + b"\0\0")
            + message(b"E", b"\0\0\0\0\0") + message(b"S"))


def test_close_by_one_client_keeps_shared_statement_for_others(sluice_factory):
    s = sluice_factory(default_pool_size=1)
    a, _ = raw_login(s.port)
    b, _ = raw_login(s.port)
    for sock, name in ((a, "x"), (b, "y")):
        sock.sendall(_parse(name, "SELECT 5") + message(b"S"))
        msgs, eof = read_messages(sock)
        assert [t for t, _ in msgs] == [b"1", b"Z"], msgs
    a.sendall(message(b"C", b"Sx\0") + message(b"S"))
    msgs, _ = read_messages(a)
    assert [t for t, _ in msgs] == [b"3", b"Z"], msgs
    b.sendall(_bind_exec_sync("y"))
    msgs, _ = read_messages(b)
    assert [t for t, _ in msgs] == [b"2", b"D", b"C", b"Z"], msgs
    a.sendall(_bind_exec_sync("x"))
    msgs, _ = read_messages(a)
    assert msgs[0][0] == b"E" and error_fields(msgs[0][1])["C"] == "26000", msgs
    a.close()
    b.close()


def test_pipelined_extended_protocol_with_error_in_the_middle(sluice_factory):
    s = sluice_factory(default_pool_size=1)
    a, _ = raw_login(s.port)
    a.sendall(_parse("ok", "SELECT 1") + _parse("broken", "SELEC 1") + _parse("after", "SELECT 2")
              + message(b"S") + _parse("after", "SELECT 2") + _bind_exec_sync("after"))
    msgs, _ = read_messages(a)
    assert [t for t, _ in msgs] == [b"1", b"E", b"Z"], msgs
    msgs, _ = read_messages(a)
    assert [t for t, _ in msgs] == [b"1", b"2", b"D", b"C", b"Z"], msgs
    a.sendall(_bind_exec_sync("ok"))
    msgs, _ = read_messages(a)
    assert [t for t, _ in msgs] == [b"2", b"D", b"C", b"Z"], msgs
    a.close()
