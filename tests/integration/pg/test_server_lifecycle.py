"""Server lifecycle and client limits, PgBouncer's keys: server_lifetime, server_idle_timeout,
server_check_query, server_reset_query_always, client_idle_timeout, the reserve pool,
max_user_connections and max_db_connections under load, autodb_idle_timeout."""
import re
import subprocess
import threading
import time
import uuid

import psycopg2
import pytest

from pgutil import PROBE_APP, error_fields, pgbench, raw_login, read_to_eof, wait_for


def backend_pid(s, **kw):
    conn = psycopg2.connect(**s.dsn(**kw))
    conn.autocommit = True
    try:
        cur = conn.cursor()
        cur.execute("SELECT pg_backend_pid()")
        return cur.fetchone()[0]
    finally:
        conn.close()


def alive(pg, pid):
    return pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}")[0][0] == 1


class Sampler:
    """Polls a count on PostgreSQL while a load runs and keeps the largest value seen."""

    def __init__(self, pg, sql):
        self.pg, self.sql, self.max, self.samples = pg, sql, 0, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self):
        while not self.stop.is_set():
            self.max = max(self.max, self.pg.psql(self.sql)[0][0])
            self.samples += 1
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


# Sluice's servers take their clients' application_name: every backend but the probe's counts.
def servers_of_user(user):
    return ("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            f"AND usename = '{user}' AND application_name <> '{PROBE_APP}'")


def servers_of_db(db):
    return ("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            f"AND datname = '{db}' AND application_name <> '{PROBE_APP}'")


def ensure_database(pg, name):
    if not pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
        pg.psql(f"CREATE DATABASE {name}")


def ensure_role(pg, name):
    pg.psql(f"DO $$ BEGIN CREATE ROLE {name} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; "
            "END $$")
    pg.psql(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {name}")


# ---- server_lifetime ----

def test_server_lifetime_rotates_servers_under_pgbench_load(sluice_factory, pg):
    s = sluice_factory(default_pool_size=4, server_lifetime=1)
    first = backend_pid(s)
    b = pgbench(s.port, "-S", "-c", "8", "-j", "2", "-T", "5")
    assert b.rc == 0 and b.failed == 0 and b.processed > 0, b.out
    log = s.log()
    rotated = log.count("(server_lifetime)")
    connected = len(re.findall(r"server \d+ connected to postgres/postgres", log))
    assert rotated >= 4, "servers were closed when their lifetime was over"
    assert connected > 4, "new servers replaced them: more logins than the pool holds"
    assert wait_for(lambda: not alive(pg, first)), "the first backend is gone"
    assert backend_pid(s) != first


def test_server_lifetime_zero_serves_one_client_each(sluice_factory, pg):
    s = sluice_factory(default_pool_size=1, server_lifetime=0)
    pids = [backend_pid(s) for _ in range(3)]
    assert len(set(pids)) == 3, pids
    assert wait_for(lambda: pg.server_connections() == 0)


# ---- server_idle_timeout ----

def test_server_idle_timeout_closes_idle_servers(sluice_factory, pg):
    s = sluice_factory(default_pool_size=3, server_idle_timeout=0.5)
    conns = [psycopg2.connect(**s.dsn()) for _ in range(3)]
    for c in conns:
        c.cursor().execute("SELECT 1")  # three open transactions: three servers
    assert pg.server_connections() == 3
    for c in conns:
        c.commit()
    assert wait_for(lambda: pg.server_connections() == 0)
    assert s.log().count("(server_idle_timeout)") == 3
    for c in conns:  # the clients stay; the next transaction gets a new server
        cur = c.cursor()
        cur.execute("SELECT 2")
        assert cur.fetchone() == (2,)
        c.commit()


def test_server_idle_timeout_keeps_min_pool_size(sluice_factory, pg):
    s = sluice_factory(default_pool_size=3, min_pool_size=1, server_idle_timeout=0.3)
    conns = [psycopg2.connect(**s.dsn()) for _ in range(3)]
    for c in conns:
        c.cursor().execute("SELECT 1")
    for c in conns:
        c.commit()
    assert wait_for(lambda: pg.server_connections() == 1)
    assert wait_for(lambda: s.log().count("(server_idle_timeout)") == 2)
    time.sleep(1)  # several more sweeps: the last one stays
    assert pg.server_connections() == 1


# ---- server_check_query ----

def test_failed_check_gives_the_client_a_fresh_server(sluice_factory, pg):
    pg.psql("CREATE TABLE IF NOT EXISTS lifecycle_check (x int)")
    s = sluice_factory(default_pool_size=2, server_check_delay=0,
                       server_check_query="SELECT count(*) FROM lifecycle_check")
    first = backend_pid(s)
    second = backend_pid(s)
    assert second == first, "the check passed: the same server was reused"
    pg.psql("DROP TABLE lifecycle_check")
    third = backend_pid(s)  # no error: the failed check closed the server, a new one served
    assert third != first
    assert "server_check_query failed" in s.log()
    assert wait_for(lambda: not alive(pg, first))


def test_terminated_idle_servers_are_replaced_without_error(sluice_factory, pg):
    s = sluice_factory(default_pool_size=3, server_check_delay=0)
    conns = [psycopg2.connect(**s.dsn()) for _ in range(3)]
    for c in conns:
        c.cursor().execute("SELECT 1")
    before = set()
    for c in conns:
        cur = c.cursor()
        cur.execute("SELECT pg_backend_pid()")
        before.add(cur.fetchone()[0])
        c.commit()
    pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE pid IN ({','.join(map(str, before))})")
    for c in conns:  # every client carries on, on new servers
        cur = c.cursor()
        cur.execute("SELECT pg_backend_pid()")
        assert cur.fetchone()[0] not in before
        c.commit()


def test_backend_restart_then_next_client_gets_a_fresh_server(sluice_factory, own_pg):
    s = sluice_factory(default_pool_size=2, server_check_delay=0,
                       databases={"postgres": f"host=127.0.0.1 port={own_pg.port}"})
    conn = psycopg2.connect(**s.dsn())
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    first = cur.fetchone()[0]
    own_pg.stop()
    own_pg.start()
    cur.execute("SELECT pg_backend_pid()")  # the same client, no error
    assert cur.fetchone()[0] != first
    conn.close()


def test_check_is_skipped_for_a_recently_used_server(sluice_factory, pg):
    s = sluice_factory(default_pool_size=1, server_check_delay=60,
                       server_check_query="SELECT 1/0")
    assert backend_pid(s) == backend_pid(s), "reused without a check within the delay"
    assert "checking it" not in s.log()


# ---- server_reset_query_always ----

def test_server_reset_query_always_in_transaction_mode(sluice_factory, pg):
    # currval() is session state Sluice does not pin for: only a reset clears it.
    pg.psql("CREATE SEQUENCE IF NOT EXISTS lifecycle_seq")
    for always, leaks in ((0, True), (1, False)):
        s = sluice_factory(default_pool_size=1, server_reset_query_always=always)
        a = psycopg2.connect(**s.dsn())
        a.autocommit = True
        a.cursor().execute("SELECT nextval('lifecycle_seq')")
        b = psycopg2.connect(**s.dsn())
        b.autocommit = True
        cur = b.cursor()
        if leaks:
            cur.execute("SELECT currval('lifecycle_seq')")  # the same server, not reset
        else:
            with pytest.raises(psycopg2.errors.ObjectNotInPrerequisiteState):
                cur.execute("SELECT currval('lifecycle_seq')")
        a.close()
        b.close()


# ---- client_idle_timeout ----

def test_client_idle_timeout_closes_an_idle_client_with_pgbouncers_error(sluice_factory):
    s = sluice_factory(client_idle_timeout=0.3)
    sock, _ = raw_login(s.port)
    msgs, eof = read_to_eof(sock)
    assert eof, "the connection was closed"
    errors = [error_fields(body) for t, body in msgs if t == b"E"]
    assert len(errors) == 1, msgs
    assert errors[0]["S"] == "FATAL" and errors[0]["C"] == "08P01", errors
    assert errors[0]["M"].startswith("client_idle_timeout"), errors
    sock.close()


def test_client_idle_timeout_spares_a_client_inside_a_transaction(sluice_factory):
    s = sluice_factory(client_idle_timeout=0.3)
    held = psycopg2.connect(**s.dsn())
    held.cursor().execute("SELECT 1")  # holds its server: PgBouncer leaves such clients alone
    idle = psycopg2.connect(**s.dsn())
    assert wait_for(lambda: "client_idle_timeout" in s.log())
    cur = held.cursor()
    cur.execute("SELECT 2")
    assert cur.fetchone() == (2,)
    held.commit()
    # libpq may report the FATAL that came while it was idle, or only the close.
    with pytest.raises(psycopg2.OperationalError):
        idle.cursor().execute("SELECT 1")


def test_client_idle_timeout_off_by_default(sluice):
    conn = psycopg2.connect(**sluice.dsn())
    time.sleep(0.5)
    conn.cursor().execute("SELECT 1")
    assert "client_idle_timeout" not in sluice.log()


# ---- reserve pool ----

def run_sleepers(s, n, seconds):
    errors = []

    def one():
        try:
            c = psycopg2.connect(**s.dsn())
            c.cursor().execute(f"SELECT pg_sleep({seconds})")
            c.close()
        except Exception as e:  # noqa: BLE001 - reported by the assertion
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    return threads, errors


def test_reserve_pool_serves_clients_that_waited(sluice_factory, pg):
    s = sluice_factory(default_pool_size=1, reserve_pool_size=2, reserve_pool_timeout=0.2)
    assert wait_for(lambda: pg.server_connections() == 0)  # earlier tests' servers gone
    with Sampler(pg, servers_of_db("postgres")) as seen:
        threads, errors = run_sleepers(s, 3, 1.5)
        for t in threads:
            t.join()
    assert not errors, errors
    assert seen.max == 3, "the two waiting clients got reserve servers"
    assert wait_for(lambda: pg.server_connections() == 1), "reserve servers close when unused"
    assert "reserve server no longer needed" in s.log()


def test_without_reserve_clients_wait_for_the_pool(sluice_factory, pg):
    s = sluice_factory(default_pool_size=1)
    assert wait_for(lambda: pg.server_connections() == 0)  # earlier tests' servers gone
    with Sampler(pg, servers_of_db("postgres")) as seen:
        threads, errors = run_sleepers(s, 3, 0.5)
        for t in threads:
            t.join()
    assert not errors, errors
    assert seen.max == 1


# ---- max_user_connections, max_db_connections ----

def run_bench_script(port, db, user, script, clients=6, seconds=4):
    p = subprocess.run(["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-n", "-c",
                        str(clients), "-j", "2", "-T", str(seconds), "-f", "/dev/stdin", db],
                       input=script, capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    m = re.search(r"number of transactions actually processed: (\d+)", out)
    f = re.search(r"number of failed transactions: (\d+)", out)
    return p.returncode, int(m.group(1)) if m else 0, int(f.group(1)) if f else -1, out


def two_loads_under_a_bound(s, pg, count_sql, pools):
    """Runs pgbench on two pools at once; each must finish with no failed transaction (neither
    starves), and the servers PostgreSQL sees are returned at their peak."""
    # Backends of earlier tests' Sluices may still be on their way out.
    assert wait_for(lambda: pg.psql(count_sql)[0][0] == 0)
    results = {}
    script = "SELECT pg_sleep(0.005);\n"
    with Sampler(pg, count_sql) as seen:
        threads = [threading.Thread(target=lambda db=db, user=user: results.__setitem__(
            (db, user), run_bench_script(s.port, db, user, script))) for db, user in pools]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for pool, (rc, processed, failed, out) in results.items():
        assert rc == 0 and failed == 0 and processed > 0, (pool, out)
    return seen.max


@pytest.mark.parametrize("bound", ["max_user_connections", "max_db_connections"])
def test_shared_bound_holds_under_load(sluice_factory, pg, bound):
    """max_user_connections over two databases of one user, max_db_connections over two users
    of one database."""
    ensure_database(pg, "lifecycle_b")
    ensure_role(pg, "lifecycle_u")
    if bound == "max_user_connections":
        count, other = servers_of_user("postgres"), ("lifecycle_b", "postgres")
    else:
        count, other = servers_of_db("postgres"), ("postgres", "lifecycle_u")
    s = sluice_factory(default_pool_size=5, query_wait_timeout=60, **{bound: 3})
    peak = two_loads_under_a_bound(s, pg, count, [("postgres", "postgres"), other])
    assert 0 < peak <= 3, peak


def test_idle_server_of_another_pool_makes_room(sluice_factory, pg):
    ensure_role(pg, "lifecycle_u")
    s = sluice_factory(default_pool_size=5, max_db_connections=2, query_wait_timeout=10)
    conns = [psycopg2.connect(**s.dsn()) for _ in range(2)]
    for c in conns:
        c.cursor().execute("SELECT 1")
    for c in conns:
        c.commit()  # two idle servers of postgres/postgres fill the database's bound
    other = psycopg2.connect(**s.dsn(user="lifecycle_u"))
    other.autocommit = True
    cur = other.cursor()
    cur.execute("SELECT current_user")  # served at once: an idle server made room
    assert cur.fetchone() == ("lifecycle_u",)
    assert pg.server_connections() <= 2
    assert "(make_room)" in s.log()


# ---- autodb_idle_timeout ----

def test_autodb_pools_are_freed_when_unused(sluice_factory, pg):
    ensure_database(pg, "lifecycle_b")
    s = sluice_factory(autodb_idle_timeout=0.3)
    assert backend_pid(s, dbname="lifecycle_b")
    # A client naming databases that do not exist makes a pool for each: they go too.
    names = [f"nope_{uuid.uuid4().hex[:12]}" for _ in range(20)]
    for name in names:
        with pytest.raises(psycopg2.OperationalError, match="does not exist"):
            psycopg2.connect(**s.dsn(dbname=name))
    wanted = [f"pool {n}/postgres freed (autodb_idle_timeout)" for n in names + ["lifecycle_b"]]
    assert wait_for(lambda: all(w in s.log() for w in wanted), timeout=30), s.log()
    assert wait_for(lambda: pg.server_connections("lifecycle_b") == 0)
    # A named [databases] entry's pool is never freed: its server is still the same one.
    first = backend_pid(s)
    time.sleep(0.6)
    assert backend_pid(s) == first
    assert "pool postgres/postgres freed" not in s.log()
    # The freed database can be used again: a new pool.
    assert backend_pid(s, dbname="lifecycle_b")


def test_autodb_pool_in_use_is_kept(sluice_factory, pg):
    ensure_database(pg, "lifecycle_b")
    s = sluice_factory(autodb_idle_timeout=0.3)
    conn = psycopg2.connect(**s.dsn(dbname="lifecycle_b"))
    conn.autocommit = True
    for _ in range(5):
        time.sleep(0.2)
        conn.cursor().execute("SELECT 1")
    assert "freed (autodb_idle_timeout)" not in s.log()
    conn.close()
    assert wait_for(lambda: "pool lifecycle_b/postgres freed" in s.log())
