"""The metrics and probe endpoint (metrics_addr / metrics_port): what it answers, that its values
follow real traffic, and that nothing a stranger sends to it hurts Sluice or its SQL clients.

Scrapes go through Python's urllib as any HTTP client would; the exposition is checked by
`promtool check metrics` (Prometheus's own linter) and parsed by python3-prometheus-client's
text parser. Hostile cases use raw sockets. Time limits are hang guards only: no test passes or
fails on how fast something happened. The endpoint's limits (gateway/metrics.c): 8 kB of
request, 5 s to send it, 16 connections at once.
"""
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pgutil import free_port, run_psql, wait_for

MAX_CONNS = 16  # gateway/metrics.c's cap
HANG_GUARD = 60


def start(sluice_factory, pg_port=None, pg=None):
    port = free_port()
    dbs = None
    if pg_port is not None:
        dbs = {"postgres": f"host=127.0.0.1 port={pg_port} dbname=postgres"}
    s = sluice_factory(dbs, metrics_port=port)
    s.metrics_port = port
    return s


def get(s, path, method="GET"):
    """(status, content type, body text) of one request."""
    req = urllib.request.Request(f"http://127.0.0.1:{s.metrics_port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=HANG_GUARD) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def scrape(s):
    status, ctype, body = get(s, "/metrics")
    assert status == 200, body
    assert ctype.startswith("text/plain; version=0.0.4")
    return body


def samples(body):
    """{(name, frozenset(labels)): value} through prometheus_client's parser."""
    out = {}
    for fam in text_string_to_metric_families(body):
        for smp in fam.samples:
            out[(smp.name, frozenset(smp.labels.items()))] = smp.value
    return out


def value(body, name, **labels):
    return samples(body).get((name, frozenset(labels.items())))


def promtool(body):
    p = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                       text=True, timeout=HANG_GUARD)
    assert p.returncode == 0, p.stdout + p.stderr


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def raw(s, data, read=True):
    """Sends data on a fresh connection and returns everything the endpoint answers (b"" when
    it closed without a word)."""
    c = socket.create_connection(("127.0.0.1", s.metrics_port), timeout=HANG_GUARD)
    try:
        c.sendall(data)
        out = b""
        while read:
            chunk = c.recv(65536)
            if not chunk:
                break
            out += chunk
        return out
    except ConnectionResetError:
        return out if read else b""
    finally:
        c.close()


def psql_ok(s):
    r = run_psql(s.port, "SELECT 41 + 1")
    assert r.returncode == 0 and r.stdout.strip() == "42", r.stderr


# ---- what it answers ----

def test_health_ready_and_errors(sluice_factory):
    s = start(sluice_factory)
    assert get(s, "/health")[0::2] == (200, "ok\n")
    assert get(s, "/ready")[0::2] == (200, "ready\n")
    assert get(s, "/health?verbose=1")[0] == 200  # the query string is not part of the path
    assert get(s, "/nothing")[0] == 404
    assert get(s, "/metrics", method="POST")[0] == 405
    assert get(s, "/metrics", method="DELETE")[0] == 405


def test_metrics_pass_promtool_and_the_client_parser(sluice_factory):
    s = start(sluice_factory)
    psql_ok(s)  # at least one pool
    body = scrape(s)
    promtool(body)
    names = {fam.name for fam in text_string_to_metric_families(body)}
    for want in ("sluice_up", "sluice_pools", "sluice_pools_client_active_connections",
                 "sluice_pools_server_idle_connections", "sluice_pools_client_maxwait_seconds",
                 "sluice_stats_sql_transactions_pooled", "sluice_stats_queries_pooled",
                 "sluice_client_wait_seconds", "sluice_transaction_duration_seconds",
                 "sluice_query_duration_seconds", "sluice_errors", "process_cpu_seconds",
                 "process_resident_memory_bytes", "process_open_fds"):
        assert want in names, want
    assert value(body, "sluice_up") == 1
    assert value(body, "process_resident_memory_bytes") > 0
    assert value(body, "process_open_fds") > 0


def test_counters_follow_psql_transactions(sluice_factory):
    s = start(sluice_factory)
    psql_ok(s)
    pool = dict(database="postgres", user="postgres", protocol="postgresql")
    before = scrape(s)
    xacts0 = value(before, "sluice_stats_sql_transactions_pooled_total", **pool)
    queries0 = value(before, "sluice_stats_queries_pooled_total", **pool)
    hist0 = value(before, "sluice_transaction_duration_seconds_count", **pool) or 0
    assert xacts0 is not None, "no series for the postgres/postgres pool:\n" + before
    n = 25
    r = subprocess.run(["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(s.port), "-U",
                        "postgres", "-d", "postgres"] + ["-c", "SELECT 1"] * n,
                       capture_output=True, text=True, timeout=HANG_GUARD)
    assert r.returncode == 0, r.stderr
    after = scrape(s)
    promtool(after)
    assert value(after, "sluice_stats_sql_transactions_pooled_total", **pool) >= xacts0 + n
    assert value(after, "sluice_stats_queries_pooled_total", **pool) >= queries0 + n
    assert value(after, "sluice_transaction_duration_seconds_count", **pool) >= hist0 + n
    assert value(after, "sluice_stats_received_bytes_total", **pool) > 0
    assert value(after, "sluice_stats_sent_bytes_total", **pool) > 0
    assert value(after, "sluice_transaction_duration_seconds_bucket", le="+Inf", **pool) == \
        value(after, "sluice_transaction_duration_seconds_count", **pool)


def test_errors_are_counted_by_sqlstate_class(sluice_factory):
    s = start(sluice_factory)
    psql_ok(s)
    assert run_psql(s.port, "SELECT * FROM no_such_table").returncode != 0
    body = scrape(s)
    assert value(body, "sluice_errors_total", database="postgres", user="postgres",
                 protocol="postgresql", code="42") >= 1


def test_hostile_database_name_is_escaped(sluice_factory):
    """A client picks the label values (a database asked for through `*`): quotes, backslashes,
    a line feed and a malformed UTF-8 byte must leave a valid exposition."""
    s = start(sluice_factory)
    name = 'evil"} 1\nsluice_up{x="\\\xff'
    r = subprocess.run(["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(s.port), "-U",
                        "postgres", "-d", name.encode("utf-8", "surrogateescape"), "-c",
                        "SELECT 1"],
                       capture_output=True, timeout=HANG_GUARD)
    assert r.returncode != 0  # no such database on the server; the pool exists all the same
    body = scrape(s)
    promtool(body)
    samples(body)  # parses
    assert body.count("\nsluice_up ") == 1


def test_ready_turns_503_while_the_server_is_down(sluice_factory, own_pg):
    s = start(sluice_factory, pg_port=own_pg.port)
    psql_ok(s)
    assert get(s, "/ready")[0] == 200
    own_pg.stop("immediate")
    # A client needs a new server connection, which fails: the pool has seen its server gone.
    run_psql(s.port, "SELECT 1", extra=("-v", "ON_ERROR_STOP=1"))
    assert wait_for(lambda: run_psql(s.port, "SELECT 1").returncode != 0 and
                    get(s, "/ready")[0] == 503, HANG_GUARD)
    status, _, body = get(s, "/ready")
    assert status == 503 and "postgres/postgres" in body, body
    assert get(s, "/health")[0] == 200  # alive all the same
    own_pg.start()
    assert wait_for(lambda: run_psql(s.port, "SELECT 1").returncode == 0, HANG_GUARD)
    assert get(s, "/ready")[0] == 200


def test_shutdown_with_requests_in_flight_is_clean(sluice_factory):
    """SIGTERM while a request is half sent: /ready says 503 "shutting down" for as long as the
    front ends drain (or the port is already gone), and the endpoint, which never keeps the loop
    alive, is closed with its connections; the exit is clean (the fixture checks the sanitizer
    log of an ASan build)."""
    s = start(sluice_factory)
    half = socket.create_connection(("127.0.0.1", s.metrics_port), timeout=HANG_GUARD)
    half.sendall(b"GET /metr")
    assert get(s, "/ready")[0] == 200
    s.proc.send_signal(15)
    try:
        status, _, body = get(s, "/ready")
        assert status == 503 and "shutting down" in body or status == 200, body
    except (urllib.error.URLError, ConnectionError):
        pass
    assert s.proc.wait(timeout=HANG_GUARD) == 0
    half.close()


# ---- hostile ----

def test_garbage_gets_400_and_sql_is_unaffected(sluice_factory):
    s = start(sluice_factory)
    for junk in (b"\x00\xff\xfe garbage\r\n\r\n", b"GET /metrics HTTP/1.1\r\nHost\r\n\r\n",
                 b"GET /metrics HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                 b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(200)):
        out = raw(s, junk)
        assert out.startswith(b"HTTP/1.1 400 ") or out == b"", out[:200]
    # Nothing outside the three paths: no files, no proxying.
    for target in (b"/../../etc/passwd", b"http://127.0.0.1:1/metrics", b"//etc/passwd",
                   b"/metrics/../health", b"*"):
        out = raw(s, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert out.split(b"\r\n")[0] in (b"HTTP/1.1 404 Not Found", b"HTTP/1.1 400 Bad Request"), \
            (target, out[:200])
    assert raw(s, b"CONNECT 127.0.0.1:22 HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    assert raw(s, b"GET /" + b"a" * 1000 + b" HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 414 ")
    # Pipelined requests: the first is answered, the connection then closed.
    out = raw(s, b"GET /health HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n")
    assert out.count(b"HTTP/1.1 ") == 1 and out.endswith(b"ok\n")
    psql_ok(s)
    assert get(s, "/health")[0] == 200


def test_slowloris_is_closed_by_the_deadline(sluice_factory):
    s = start(sluice_factory)
    c = socket.create_connection(("127.0.0.1", s.metrics_port), timeout=HANG_GUARD)
    c.sendall(b"GET /metrics HTTP/1.1\r\n")
    closed = threading.Event()
    answer = []

    def drip():
        try:
            for _ in range(HANG_GUARD):
                c.sendall(b"X")
                time.sleep(1)
        except OSError:
            pass
        finally:
            closed.set()

    def read():
        try:
            while True:
                chunk = c.recv(4096)
                if not chunk:
                    break
                answer.append(chunk)
        except OSError:
            pass
        closed.set()

    threading.Thread(target=drip, daemon=True).start()
    threading.Thread(target=read, daemon=True).start()
    time.sleep(1)
    body = scrape(s)  # served while the slow one is still dripping
    promtool(body)
    psql_ok(s)
    assert closed.wait(HANG_GUARD), "the slow request was never cut off"
    c.close()
    got = b"".join(answer)
    assert got == b"" or got.startswith(b"HTTP/1.1 408 "), got[:200]


def test_huge_header_is_refused_early_and_memory_stays_bounded(sluice_factory):
    s = start(sluice_factory)
    scrape(s)
    before = rss(s.pid)
    c = socket.create_connection(("127.0.0.1", s.metrics_port), timeout=HANG_GUARD)
    head = b"GET /metrics HTTP/1.1\r\nX-Big: "
    sent = 0
    try:
        c.sendall(head)
        chunk = b"a" * 65536
        while sent < 10 * 1024 * 1024:
            c.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass  # the endpoint closed on us: refused early
    out = b""
    try:
        while True:
            d = c.recv(4096)
            if not d:
                break
            out += d
    except OSError:
        pass
    c.close()
    assert sent < 10 * 1024 * 1024 or out.startswith(b"HTTP/1.1 431 "), out[:200]
    assert out == b"" or out.startswith(b"HTTP/1.1 431 "), out[:200]
    grown = rss(s.pid) - before
    print(f"RSS before {before}, grown by {grown} after a 10 MB header")
    assert grown < 4 * 1024 * 1024
    psql_ok(s)
    scrape(s)


def test_connections_over_the_cap_are_refused_and_sql_goes_on(sluice_factory):
    s = start(sluice_factory)
    held = []
    try:
        for _ in range(MAX_CONNS * 3):
            c = socket.create_connection(("127.0.0.1", s.metrics_port), timeout=HANG_GUARD)
            held.append(c)
        # The server takes them in order: the first MAX_CONNS wait for a request, the rest are
        # told 503 and closed.
        refused = 0
        for c in held[MAX_CONNS:]:
            try:
                out = c.recv(4096)
            except ConnectionResetError:
                out = b""
            refused += out.startswith(b"HTTP/1.1 503 ") or out == b""
        assert refused == len(held) - MAX_CONNS
        psql_ok(s)
    finally:
        for c in held:
            c.close()
    # Their slots come back as the endpoint sees them closed.
    assert wait_for(lambda: get(s, "/health")[0] == 200, HANG_GUARD)
    promtool(scrape(s))


def test_metrics_port_off_by_default(sluice_factory):
    s = sluice_factory()
    assert "metrics on" not in s.log()
    psql_ok(s)


def test_port_in_use_refuses_to_start(sluice_factory):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(RuntimeError, match="could not listen for metrics"):
            sluice_factory(metrics_port=taken.getsockname()[1])
    finally:
        taken.close()
