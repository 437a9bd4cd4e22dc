"""A short soak (bench/soak is the long one): a few hundred PostgreSQL sessions churn through
Sluice, a share of them vanishing mid-transaction, mid-COPY, half-way through a message or
without reading their results; afterwards Sluice holds no client connection, no more other
descriptors than before, only idle server connections within the pool size, and serves a
fresh client."""
import os
import resource
import sys

import psycopg2
import pytest

sys.dont_write_bytecode = True  # no __pycache__ in bench/ from a test run
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "bench"))
from benchlib import churn, measure  # noqa: E402

POOL = 4
# RSS growth per idle logged-in client (bench/run's idle measure, over IDLE_CLIENTS): the client
# object (pg_io_client: the libuv handle, transport and pg_client) in its malloc chunk, plus its
# share of libuv's and the cancel-key table's per-descriptor arrays. 578 bytes when this bound
# was set (the object is 552 bytes, a 560-byte chunk); a new field, or anything an idle client
# keeps allocated, shows here. The bound is the performance goal's: under 600.
IDLE_CLIENTS = 2000
IDLE_BYTES_BOUND = 600
SETTLE = 30  # seconds allowed for closed connections to be reaped (a hang guard)


def settled(s, pg, baseline=None):
    return churn.settled(s.pid, (s.port,), (pg.port,), baseline, SETTLE)


def server_states(pg):
    """{state: count} of the server connections Sluice holds (the sessions' application_name
    rides on them while they are linked; the probe's own connection is left out)."""
    rows = pg.psql("SELECT coalesce(state, '?'), count(*) FROM pg_stat_activity WHERE "
                   "backend_type = 'client backend' AND datname = 'postgres' AND "
                   "application_name <> 'sluice-test-probe' GROUP BY 1")
    return dict(rows)


def test_churning_clients_leave_nothing_behind(sluice_factory, pg):
    pg.psql(churn.PG_SETUP)
    s = sluice_factory(default_pool_size=POOL, max_client_conn=1000)
    target = {"pg_port": s.port, "pg_user": "postgres", "pg_db": "postgres"}
    warm = churn.churn(target, pg_sessions=40, concurrency=20, kinds={"pg": churn.PG_KINDS[:3]})
    assert not warm.errors, warm.first_errors
    baseline = settled(s, pg)["fds_other"]

    tally = churn.churn(target, pg_sessions=400, concurrency=100, seed=8)
    assert not tally.errors, (dict(tally.errors), tally.first_errors)
    assert {kind for _, kind in tally.done} == {kind for kind, _ in churn.PG_KINDS}
    assert s.running(), "Sluice is still running"

    end = settled(s, pg, baseline)
    assert end["clients"][s.port] == 0, "every client connection is closed"
    assert end["fds_other"] == baseline, "no descriptor leaked"
    states = server_states(pg)
    assert set(states) <= {"idle"}, f"server connections left busy: {states}"
    assert sum(states.values()) == end["servers"][pg.port] <= POOL, (states, end)

    conn = psycopg2.connect(**s.dsn())
    cur = conn.cursor()
    cur.execute("SELECT count(*) > 0 FROM soak_kv")
    assert cur.fetchone() == (True,), "a fresh client is served, and sees committed rows"
    conn.close()


def sanitized(pid):
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()


def test_idle_clients_cost_a_bounded_number_of_bytes(sluice_factory):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * IDLE_CLIENTS + 500  # this process's sockets, Sluice's, and their other files
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
    # Raised before Sluice starts, which inherits it.
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    try:
        s = sluice_factory(max_client_conn=IDLE_CLIENTS + 100, log_level="warning")
        r = measure.idle_rss_per_client(s.port, s.pid, IDLE_CLIENTS, "postgres", "postgres")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    print(f"\nidle clients: {r}", file=sys.stderr)
    # Under ASan every allocation has redzones and a header of its own: the figure means
    # nothing there, but the logins and their ends must still be clean (the teardown checks
    # the log for reports).
    if not sanitized(s.pid):
        assert r["bytes_per_client"] < IDLE_BYTES_BOUND, r
