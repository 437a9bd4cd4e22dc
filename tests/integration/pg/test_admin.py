"""The admin console: psql and psycopg2 against the virtual database `sluice` (alias `pgbouncer`),
columns checked by name and order against PgBouncer's, values against what the test did, every
control command, and what a hostile or unprivileged user gets."""
import socket
import struct
import subprocess
import threading

import psycopg2
import pytest

from pgutil import (error_fields, message, pgbench, raw_login, read_messages, read_to_eof,
                    startup_packet, wait_for)

ADMIN = dict(admin_users="admin", stats_users="stats")

SOCKET_COLS = ["type", "user", "database", "replication", "state", "addr", "port", "local_addr",
               "local_port", "connect_time", "request_time", "wait", "wait_us", "close_needed",
               "ptr", "link", "remote_pid", "tls", "application_name", "prepared_statements", "id",
               "protocol"]
STAT_KEYS = ["server_assignment_count", "xact_count", "query_count", "received", "sent",
             "xact_time", "query_time", "wait_time", "client_parse_count", "server_parse_count",
             "bind_count", "client_login_count"]
TOTALS_COLS = ["database", "server_assignment_count", "xact_count", "query_count",
               "bytes_received", "bytes_sent", "xact_time", "query_time", "wait_time",
               "client_parse_count", "server_parse_count", "bind_count", "client_login_count",
               "protocol"]
COLUMNS = {
    "POOLS": ["database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req",
              "cl_waiting_cancel_req", "sv_active", "sv_active_cancel", "sv_being_canceled",
              "sv_idle", "sv_used", "sv_tested", "sv_login", "maxwait", "maxwait_us", "pool_mode",
              "load_balance_hosts", "protocol"],
    "STATS": ["database"] + ["total_" + k for k in STAT_KEYS[:3]]
             + ["total_received", "total_sent"] + ["total_" + k for k in STAT_KEYS[5:]]
             + ["avg_server_assignment_count", "avg_xact_count", "avg_query_count", "avg_recv",
                "avg_sent", "avg_xact_time", "avg_query_time", "avg_wait_time",
                "avg_client_parse_count", "avg_server_parse_count", "avg_bind_count",
                "avg_client_login_count", "protocol", "total_server_connect_count",
                "total_server_connect_failures", "total_error_count",
                "total_mongo_command_count", "total_cursors_pinned", "total_txns_pinned",
                "total_killed_cursors", "total_aborted_txns"],
    "STATS_TOTALS": TOTALS_COLS,
    "STATS_AVERAGES": TOTALS_COLS[:9] + ["avg_client_parse_count", "avg_server_parse_count",
                                         "avg_bind_count", "avg_client_login_count", "protocol"],
    "TOTALS": ["name", "value"],
    "CLIENTS": SOCKET_COLS,
    "SERVERS": SOCKET_COLS,
    "DATABASES": ["name", "host", "port", "database", "force_user", "pool_size", "min_pool_size",
                  "reserve_pool_size", "server_lifetime", "pool_mode", "load_balance_hosts",
                  "max_connections", "current_connections", "max_client_connections",
                  "current_client_connections", "paused", "disabled", "protocol"],
    "USERS": ["name", "pool_size", "reserve_pool_size", "pool_mode", "max_user_connections",
              "current_connections", "max_user_client_connections", "current_client_connections"],
    "CONFIG": ["key", "value", "default", "changeable"],
    "LISTS": ["list", "items"],
    "MEM": ["name", "size", "used", "free", "memtotal", "allocs"],
    "STATE": ["key", "value"],
    "VERSION": ["version"],
}


def console(s, user="admin", dbname="sluice"):
    conn = psycopg2.connect(**s.dsn(dbname=dbname, user=user))
    conn.autocommit = True
    return conn


def show(conn, what):
    """SHOW what as a list of dicts by column name, and the column names in order."""
    cur = conn.cursor()
    cur.execute("SHOW " + what)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()], cols


def stat(conn, what, db, col):
    rows, _ = show(conn, what)
    for r in rows:
        if r["database"] == db:
            return int(r[col])
    return 0


def pool(conn, db="postgres"):
    rows, _ = show(conn, "POOLS")
    return next((r for r in rows if r["database"] == db), None)


def sqlstate_of(fn):
    with pytest.raises(psycopg2.Error) as e:
        fn()
    return e.value.pgcode


def test_every_show_has_pgbouncers_columns_in_order(sluice_factory):
    s = sluice_factory(**ADMIN)
    work = psycopg2.connect(**s.dsn())
    work.cursor().execute("SELECT 1")
    adm = console(s)
    for what, expected in COLUMNS.items():
        rows, cols = show(adm, what)
        assert cols == expected, what
    rows, _ = show(adm, "VERSION")
    assert rows[0]["version"].startswith("Sluice ")
    pools, _ = show(adm, "POOLS")
    assert any(r["database"] == "postgres" and r["protocol"] == "postgresql" for r in pools)
    clients, _ = show(adm, "CLIENTS")
    assert {r["database"] for r in clients} >= {"postgres", "sluice"}
    assert all(r["type"] == "C" and r["addr"] == "127.0.0.1" for r in clients)
    servers, _ = show(adm, "SERVERS")
    assert servers and all(r["type"] == "S" and r["remote_pid"] > 0 for r in servers)
    dbs, _ = show(adm, "DATABASES")
    assert any(r["name"] == "postgres" and r["pool_size"] == 5 for r in dbs)
    config, _ = show(adm, "CONFIG")
    keys = {r["key"]: r for r in config}
    assert keys["admin_users"]["value"] == "admin"
    assert keys["listen_port"]["changeable"] == "no"
    assert keys["default_pool_size"]["changeable"] == "yes"
    state, _ = show(adm, "STATE")
    assert {r["key"]: r["value"] for r in state}["paused"] == "no"
    lists, _ = show(adm, "LISTS")
    assert {r["list"]: r["items"] for r in lists}["pools"] >= 1
    # pgbouncer is accepted as the console's name too.
    alias = console(s, dbname="pgbouncer")
    assert show(alias, "VERSION")[1] == ["version"]
    # psql, as operators use it: -At -F, gives name-by-position output tools parse.
    out = subprocess.run(["psql", "-X", "-At", "-F,", "-h", "127.0.0.1", "-p", str(s.port),
                          "-U", "admin", "-d", "sluice", "-c", "SHOW POOLS"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert any(line.split(",")[0] == "postgres" and line.split(",")[-1] == "postgresql"
               for line in out.stdout.splitlines())
    out = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(s.port), "-U", "admin",
                          "-d", "sluice", "-c", "SHOW HELP"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0 and "SHOW HELP|CONFIG" in out.stderr + out.stdout


def test_totals_move_by_what_the_client_did(sluice_factory):
    s = sluice_factory(**ADMIN)
    work = psycopg2.connect(**s.dsn())
    work.autocommit = True
    cur = work.cursor()
    cur.execute("SELECT 1")
    adm = console(s)
    x0 = stat(adm, "STATS_TOTALS", "postgres", "xact_count")
    q0 = stat(adm, "STATS_TOTALS", "postgres", "query_count")
    r0 = stat(adm, "STATS_TOTALS", "postgres", "bytes_received")
    n = 25
    for i in range(n):
        cur.execute("SELECT %s", (i,))
    # One explicit transaction of three queries: one transaction, three queries.
    work.autocommit = False
    for _ in range(3):
        cur.execute("SELECT 2")
    work.commit()
    assert stat(adm, "STATS_TOTALS", "postgres", "xact_count") - x0 == n + 1
    # BEGIN and COMMIT are queries too.
    assert stat(adm, "STATS_TOTALS", "postgres", "query_count") - q0 == n + 5
    assert stat(adm, "STATS_TOTALS", "postgres", "bytes_received") > r0
    assert stat(adm, "STATS", "postgres", "total_xact_time") > 0
    totals = {r["name"]: int(r["value"]) for r in show(adm, "TOTALS")[0]}
    assert totals["total_xact_count"] >= n + 1
    assert set(totals) == {p + k for p in ("total_", "avg_") for k in STAT_KEYS}


def test_waiting_client_shows_in_cl_waiting_and_maxwait(sluice_factory):
    s = sluice_factory(default_pool_size=1, **ADMIN)
    holder = psycopg2.connect(**s.dsn())
    holder.cursor().execute("SELECT 1")  # in a transaction: holds the only server
    waiter = psycopg2.connect(**s.dsn())
    waiter.autocommit = True
    t = threading.Thread(target=lambda: waiter.cursor().execute("SELECT 1"))
    t.start()
    adm = console(s)
    assert wait_for(lambda: pool(adm)["cl_waiting"] == 1)
    p = pool(adm)
    assert p["sv_active"] == 1 and p["cl_active"] == 1
    clients, _ = show(adm, "CLIENTS")
    assert sum(1 for r in clients if r["state"] == "waiting") == 1
    holder.commit()
    t.join(10)
    assert not t.is_alive()
    assert pool(adm)["cl_waiting"] == 0
    assert stat(adm, "STATS_TOTALS", "postgres", "wait_time") > 0


def test_pause_resume_under_pgbench_load_loses_no_transaction(sluice_factory):
    s = sluice_factory(**ADMIN)
    result = {}

    def bench():
        result["b"] = pgbench(s.port, "-c", "8", "-T", "8", "-S")

    t = threading.Thread(target=bench)
    t.start()
    adm = console(s)
    assert wait_for(lambda: stat(adm, "STATS_TOTALS", "postgres", "xact_count") > 100)
    adm.cursor().execute("PAUSE postgres")  # returns once no transaction runs
    p = pool(adm)
    assert p["sv_active"] == 0
    assert wait_for(lambda: pool(adm)["cl_waiting"] > 0)
    held = stat(adm, "STATS_TOTALS", "postgres", "xact_count")
    assert stat(adm, "STATS_TOTALS", "postgres", "xact_count") == held
    assert {r["name"]: r["paused"] for r in show(adm, "DATABASES")[0]}["postgres"] == 1
    assert sqlstate_of(lambda: adm.cursor().execute("PAUSE postgres")) == "55000"
    adm.cursor().execute("RESUME postgres")
    assert wait_for(lambda: stat(adm, "STATS_TOTALS", "postgres", "xact_count") > held)
    adm.cursor().execute("PAUSE")
    adm.cursor().execute("RESUME")
    t.join(60)
    b = result["b"]
    assert b.rc == 0 and b.failed == 0 and b.processed > 0, b.out


def test_kill_client_closes_that_client_only(sluice_factory):
    s = sluice_factory(**ADMIN)
    victim = psycopg2.connect(application_name="victim", **s.dsn())
    victim.autocommit = True
    other = psycopg2.connect(**s.dsn())
    other.autocommit = True
    adm = console(s)
    clients, _ = show(adm, "CLIENTS")
    vid = next(r["id"] for r in clients if r["application_name"] == "victim")
    adm.cursor().execute(f"KILL_CLIENT {vid}")
    with pytest.raises(psycopg2.Error):
        victim.cursor().execute("SELECT 1")
    other.cursor().execute("SELECT 1")
    assert sqlstate_of(lambda: adm.cursor().execute(f"KILL_CLIENT {vid}")) == "42704"
    assert sqlstate_of(lambda: adm.cursor().execute("KILL_CLIENT abc")) == "42601"
    # The console may end its own session.
    own = next(r["id"] for r in show(adm, "CLIENTS")[0] if r["database"] == "sluice")
    with pytest.raises(psycopg2.Error):
        adm.cursor().execute(f"KILL_CLIENT {own}")
        adm.cursor().execute("SHOW VERSION")
    other.cursor().execute("SELECT 1")
    assert s.running()


def test_disable_enable_kill_reconnect_wait_close(sluice_factory):
    s = sluice_factory(**ADMIN)
    adm = console(s)
    c = psycopg2.connect(**s.dsn())
    c.autocommit = True
    c.cursor().execute("SELECT 1")
    old = {r["id"] for r in show(adm, "SERVERS")[0]}
    adm.cursor().execute("RECONNECT postgres")
    adm.cursor().execute("WAIT_CLOSE postgres")
    c.cursor().execute("SELECT 1")
    new = {r["id"] for r in show(adm, "SERVERS")[0]}
    assert new and not (new & old)

    adm.cursor().execute("DISABLE postgres")
    with pytest.raises(psycopg2.OperationalError) as e:
        psycopg2.connect(**s.dsn())
    assert "does not allow connections" in str(e.value)
    c.cursor().execute("SELECT 1")  # clients already in stay
    adm.cursor().execute("ENABLE postgres")
    psycopg2.connect(**s.dsn()).close()

    adm.cursor().execute("KILL postgres")
    with pytest.raises(psycopg2.Error):
        c.cursor().execute("SELECT 1")
    assert pool(adm)["sv_idle"] + pool(adm)["sv_active"] == 0
    # Killed means paused: a new client waits until RESUME.
    late = psycopg2.connect(**s.dsn())
    late.autocommit = True
    done = threading.Event()
    t = threading.Thread(target=lambda: (late.cursor().execute("SELECT 1"), done.set()))
    t.start()
    assert wait_for(lambda: pool(adm)["cl_waiting"] == 1)
    assert not done.is_set()
    adm.cursor().execute("RESUME postgres")
    t.join(10)
    assert done.is_set()
    assert sqlstate_of(lambda: adm.cursor().execute("DISABLE")) == "42601"
    assert sqlstate_of(lambda: adm.cursor().execute("PAUSE nosuchdb")) == "3D000"


def test_set_reloadable_keys_only(sluice_factory):
    s = sluice_factory(**ADMIN)
    adm = console(s)
    adm.cursor().execute("SET default_pool_size = 3")
    config = {r["key"]: r["value"] for r in show(adm, "CONFIG")[0]}
    assert config["default_pool_size"] == "3"
    adm.cursor().execute("SET server_reset_query = 'DISCARD ALL'")
    assert sqlstate_of(lambda: adm.cursor().execute("SET listen_port = 1")) == "55P02"
    assert sqlstate_of(lambda: adm.cursor().execute("SET no_such_key = 1")) == "42704"
    assert sqlstate_of(lambda: adm.cursor().execute("SET default_pool_size = abc")) == "22023"
    assert sqlstate_of(lambda: adm.cursor().execute("SET default_pool_size")) == "42601"
    adm.cursor().execute("RELOAD")
    config = {r["key"]: r["value"] for r in show(adm, "CONFIG")[0]}
    assert config["default_pool_size"] == "5"  # the file's value again


def test_stats_user_may_only_look_and_others_get_28000(sluice_factory):
    s = sluice_factory(**ADMIN)
    st = console(s, user="stats")
    show(st, "POOLS")
    for cmd in ("PAUSE", "RESUME", "KILL postgres", "RELOAD", "SHUTDOWN", "SET log_level = info",
                "KILL_CLIENT 1", "RECONNECT"):
        assert sqlstate_of(lambda: st.cursor().execute(cmd)) == "42501", cmd
    with pytest.raises(psycopg2.OperationalError) as e:
        console(s, user="postgres")
    assert "not allowed" in str(e.value)
    sock = socket.create_connection(("127.0.0.1", s.port))
    sock.sendall(startup_packet(user="mallory", database="pgbouncer"))
    msgs, eof = read_to_eof(sock)
    assert error_fields(msgs[-1][1])["C"] == "28000"


def test_garbage_commands_get_errors_and_the_session_goes_on(sluice_factory):
    s = sluice_factory(**ADMIN)
    adm = console(s)
    for cmd, code in [("FOO", "42601"), ("SHOW", "42601"), ("SHOW NOTHING", "42601"),
                      ("SHOW POOLS EXTRA", "42601"), ("PAUSE a b", "42601"),
                      ("'unterminated", "42601"), ("SHOW POOLS; SHOW POOLS", "42601"),
                      ("\x01\x02", "42601"), ("SELECT 1", "42601"), ("x" * 5000, "42601"),
                      ("KILL_CLIENT 99999999999999999999999", "42704"),
                      ("SHUTDOWN NOW", "42601")]:
        assert sqlstate_of(lambda: adm.cursor().execute(cmd)) == code, cmd
    assert show(adm, "VERSION")[0]
    # An empty query, COPY data and a FunctionCall: answered, not a crash.
    sock, _ = raw_login(s.port, user="admin", database="sluice")
    sock.sendall(message(b"Q", b"\0"))
    msgs, _ = read_messages(sock)
    assert [m[0] for m in msgs] == [b"I", b"Z"]
    sock.sendall(message(b"F", b"\0\0\0\0") + message(b"S"))
    msgs, _ = read_messages(sock)
    assert error_fields(msgs[0][1])["C"] == "0A000" and msgs[-1][0] == b"Z"
    # A message longer than any console command: refused, the session closed.
    sock.sendall(message(b"Q", b"SHOW " + b"x" * 20000 + b"\0"))
    msgs, eof = read_to_eof(sock)
    assert eof and error_fields(msgs[-1][1])["C"] == "54000"
    assert s.running()


def test_extended_protocol_show(sluice_factory):
    s = sluice_factory(**ADMIN)
    sock, _ = raw_login(s.port, user="admin", database="sluice")
    sql = b"SHOW LISTS\0"
    sock.sendall(message(b"P", b"\0" + sql + b"\0\0")
                 + message(b"B", b"\0\0" + b"\0\0" + b"\0\0" + b"\0\0")
                 + message(b"D", b"P\0")
                 + message(b"E", b"\0" + struct.pack("!I", 0))
                 + message(b"S"))
    msgs, eof = read_messages(sock)
    types = [m[0] for m in msgs]
    assert not eof
    assert types[:3] == [b"1", b"2", b"T"] and types[-2:] == [b"C", b"Z"], types
    assert types.count(b"T") == 1 and types.count(b"D") == 14
    assert msgs[-2][1] == b"SHOW\0"
    # A Describe of the statement gives no parameters, then the row description.
    sock.sendall(message(b"P", b"\0SHOW VERSION\0\0\0") + message(b"D", b"S\0") + message(b"S"))
    msgs, _ = read_messages(sock)
    assert [m[0] for m in msgs] == [b"1", b"t", b"T", b"Z"]
    # A failing Execute: the error, then everything up to Sync is skipped.
    sock.sendall(message(b"P", b"\0BOGUS\0\0\0") + message(b"B", b"\0\0" + b"\0" * 6)
                 + message(b"E", b"\0" + struct.pack("!I", 0))
                 + message(b"E", b"\0" + struct.pack("!I", 0)) + message(b"S"))
    msgs, _ = read_messages(sock)
    assert [m[0] for m in msgs] == [b"1", b"2", b"E", b"Z"]
    assert error_fields(msgs[2][1])["C"] == "42601"
    # psycopg2's server-side cursor path is DECLARE, which the console refuses cleanly.
    adm = console(s)
    cur = adm.cursor("named")
    with pytest.raises(psycopg2.Error):
        cur.execute("SHOW POOLS")


def test_shutdown_from_the_console(sluice_factory):
    s = sluice_factory(**ADMIN)
    adm = console(s)
    c = psycopg2.connect(**s.dsn())
    c.cursor().execute("SELECT 1")
    # As with PgBouncer, the console may be closed before its CommandComplete is read.
    try:
        adm.cursor().execute("SHUTDOWN")
    except psycopg2.OperationalError:
        pass
    assert wait_for(lambda: not s.running())
    assert s.stop() == 0


def _mongo_server_class():
    """The MongoDB-wire test server of the mongo suite (its conftest, loaded under its own name
    so it does not shadow this directory's)."""
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "mongo", "conftest.py")
    spec = importlib.util.spec_from_file_location("mongo_fixtures", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.MongoServer, mod.wait_port


@pytest.fixture()
def mongo_backend():
    MongoServer, _ = _mongo_server_class()
    m = MongoServer()
    m.start()
    yield m
    m.stop()


def test_mongo_entries_show_in_the_same_views(sluice_factory, pg, mongo_backend):
    import pymongo
    from pgutil import free_port
    mport = free_port()
    # The [mongodb] section follows the last [databases] line.
    dbs = {"postgres": f"host=127.0.0.1 port={pg.port} dbname=postgres\n[mongodb]\n"
                       f"mdb = listen_port={mport} pool_size=3 "
                       f"uri=mongodb://127.0.0.1:{mongo_backend.port}/?appname=sluice"}
    s = sluice_factory(databases=dbs, **ADMIN)
    _, wait_port = _mongo_server_class()
    wait_port(mport)
    client = pymongo.MongoClient(f"mongodb://127.0.0.1:{mport}/?serverSelectionTimeoutMS=10000")
    coll = client.test.items
    coll.insert_many([{"i": i} for i in range(5)])
    assert coll.count_documents({}) >= 5
    for _ in range(3):
        list(coll.find({"i": {"$lt": 3}}))
    adm = console(s)
    p = pool(adm, "mdb")
    assert p is not None and p["protocol"] == "mongodb"
    assert p["cl_active"] >= 1 and p["sv_idle"] + p["sv_active"] >= 1
    rows, _ = show(adm, "STATS")
    m = next(r for r in rows if r["database"] == "mdb")
    assert m["protocol"] == "mongodb"
    assert int(m["total_query_count"]) >= 5 and int(m["total_mongo_command_count"]) >= 5
    cmds = {(r["database"], r["command"]): int(r["count"]) for r in show(adm, "MONGO_COMMANDS")[0]}
    assert cmds[("mdb", "insert")] == 1 and cmds[("mdb", "find")] == 3
    clients, _ = show(adm, "CLIENTS")
    assert any(r["database"] == "mdb" and r["protocol"] == "mongodb" for r in clients)
    servers, _ = show(adm, "SERVERS")
    assert any(r["database"] == "mdb" and r["protocol"] == "mongodb" for r in servers)
    dbrows, _ = show(adm, "DATABASES")
    assert any(r["name"] == "mdb" and r["protocol"] == "mongodb" and r["pool_size"] == 3
               for r in dbrows)
    # A Mongo client can be killed from the console too.
    mid = next(r["id"] for r in clients if r["database"] == "mdb")
    adm.cursor().execute(f"KILL_CLIENT {mid}")
    client.close()


def _sluice_with_mongo(sluice_factory, pg, mongo_backend, **opts):
    """A Sluice with the console, postgres and one [mongodb] entry `mdb`: (sluice, mongo port)."""
    from pgutil import free_port
    mport = free_port()
    dbs = {"postgres": f"host=127.0.0.1 port={pg.port} dbname=postgres\n[mongodb]\n"
                       f"mdb = listen_port={mport} pool_size=2 min_pool_size=1 "
                       f"uri=mongodb://127.0.0.1:{mongo_backend.port}/?appname=sluice"}
    s = sluice_factory(databases=dbs, **ADMIN, **opts)
    _mongo_server_class()[1](mport)
    return s, mport


def _mongo_client(mport, **opts):
    import pymongo
    opts.setdefault("serverSelectionTimeoutMS", 10000)
    return pymongo.MongoClient(f"mongodb://127.0.0.1:{mport}/", **opts)


def test_pause_resume_of_a_mongo_entry_holds_requests_without_errors(sluice_factory, pg,
                                                                      mongo_backend):
    s, mport = _sluice_with_mongo(sluice_factory, pg, mongo_backend)
    client = _mongo_client(mport, maxPoolSize=4)
    coll = client.test.paused
    coll.insert_one({"i": 0})
    done, stop, errors = [0], threading.Event(), []

    def traffic():
        while not stop.is_set():
            try:
                coll.find_one({"i": 0})
                done[0] += 1
            except Exception as e:  # every error fails the test
                errors.append(repr(e))

    workers = [threading.Thread(target=traffic) for _ in range(4)]
    for t in workers:
        t.start()
    adm = console(s)
    assert wait_for(lambda: done[0] > 50)
    adm.cursor().execute("PAUSE mdb")  # returns once no Mongo request runs
    assert wait_for(lambda: pool(adm, "mdb")["cl_waiting"] == 4)
    held = done[0]
    assert done[0] == held
    assert {r["name"]: r["paused"] for r in show(adm, "DATABASES")[0]}["mdb"] == 1
    assert sqlstate_of(lambda: adm.cursor().execute("PAUSE mdb")) == "55000"
    # PostgreSQL is not held by a pause of the Mongo entry.
    with psycopg2.connect(**s.dsn()) as c:
        c.cursor().execute("SELECT 1")
    # Hostile: a waiting client gives up (its socket times out and closes) during the pause.
    quitter = _mongo_client(mport, socketTimeoutMS=500)
    with pytest.raises(Exception):
        quitter.test.paused.find_one({"i": 0})
    quitter.close()
    adm.cursor().execute("RESUME mdb")
    assert wait_for(lambda: done[0] > held + 50)
    # PAUSE and RESUME of everything reach the Mongo entry too.
    adm.cursor().execute("PAUSE")
    assert wait_for(lambda: pool(adm, "mdb")["cl_waiting"] == 4)
    held = done[0]
    adm.cursor().execute("RESUME")
    assert wait_for(lambda: done[0] > held + 50)
    stop.set()
    for t in workers:
        t.join(30)
    assert errors == []
    client.close()


def test_disable_refuses_new_mongo_clients_until_enable(sluice_factory, pg, mongo_backend):
    import pymongo.errors
    s, mport = _sluice_with_mongo(sluice_factory, pg, mongo_backend)
    old = _mongo_client(mport)
    old.test.items.insert_one({"i": 1})
    adm = console(s)
    adm.cursor().execute("DISABLE mdb")
    assert {r["name"]: r["disabled"] for r in show(adm, "DATABASES")[0]}["mdb"] == 1
    new = _mongo_client(mport, serverSelectionTimeoutMS=1500)
    with pytest.raises(pymongo.errors.PyMongoError):
        new.admin.command("ping")
    new.close()
    assert "disabled by the admin (DISABLE)" in s.log()
    # A client already in keeps working on its open connection.
    assert old.test.items.find_one({"i": 1}) is not None
    adm.cursor().execute("ENABLE mdb")
    new = _mongo_client(mport)
    assert new.test.items.find_one({"i": 1}) is not None
    new.close()
    old.close()


class Psql:
    """An interactive psql on a pipe: one query in, its one-line answer out."""

    def __init__(self, port):
        self.proc = subprocess.Popen(["psql", "-X", "-q", "-At", "-h", "127.0.0.1", "-p", str(port),
                                      "-U", "postgres", "-d", "postgres"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)

    def query(self, sql):
        self.proc.stdin.write(sql + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def quit(self):
        self.proc.stdin.write("\\q\n")
        self.proc.stdin.flush()
        return self.proc.wait(timeout=30)


def _console_shutdown(s, mode):
    adm = console(s)
    # As with PgBouncer, the console may be closed before its CommandComplete is read.
    try:
        adm.cursor().execute("SHUTDOWN " + mode)
    except psycopg2.OperationalError:
        pass
    adm.close()


def test_shutdown_wait_for_clients_serves_a_psql_client_until_it_quits(sluice_factory, pg):
    from pgutil import refused
    s = sluice_factory(shutdown_timeout=120, **ADMIN)
    p = Psql(s.port)
    assert p.query("SELECT 40 + 1;") == "41"
    _console_shutdown(s, "WAIT_FOR_CLIENTS")
    assert wait_for(lambda: refused(s.port)), "new clients still accepted"
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(**s.dsn(), connect_timeout=5)
    # The client that was in keeps being served, transactions included, for as long as it stays.
    assert p.query("SELECT 40 + 2;") == "42"
    assert p.query("BEGIN; SELECT 43; COMMIT;") == "43"
    assert s.running()
    assert p.quit() == 0
    assert s.proc.wait(timeout=30) == 0, s.log()[-3000:]
    assert "every client has left" in s.log()


def test_shutdown_wait_for_servers_lets_an_open_transaction_commit(sluice_factory, pg):
    s = sluice_factory(shutdown_timeout=120, **ADMIN)
    pg.psql("CREATE TABLE IF NOT EXISTS admin_shut (v int)")
    pg.psql("DELETE FROM admin_shut")
    c = psycopg2.connect(**s.dsn())
    cur = c.cursor()
    cur.execute("INSERT INTO admin_shut VALUES (1)")  # the transaction stays open
    _console_shutdown(s, "WAIT_FOR_SERVERS")
    assert wait_for(lambda: "shutdown requested" in s.log())
    assert s.running(), "exited with a transaction open"
    cur.execute("INSERT INTO admin_shut VALUES (2)")
    c.commit()
    assert s.proc.wait(timeout=30) == 0, s.log()[-3000:]
    assert pg.psql("SELECT count(*) FROM admin_shut")[0][0] == 2
    assert "every transaction has ended" in s.log()
    # Once its transaction ended the client was closed: nothing more runs on it.
    with pytest.raises(psycopg2.Error):
        cur.execute("SELECT 1")
    c.close()


def test_shutdown_with_a_bad_mode_changes_nothing(sluice_factory, pg):
    s = sluice_factory(**ADMIN)
    adm = console(s)
    for bad in ("SHUTDOWN WAIT_FOR_NOTHING", "SHUTDOWN WAIT_FOR_CLIENTS now",
                "SHUTDOWN 'WAIT_FOR_CLIENTS'; SELECT 1"):
        assert sqlstate_of(lambda: adm.cursor().execute(bad)) in ("42601", "42000")
    # Only admin_users may shut down.
    st = console(s, user="stats")
    assert sqlstate_of(lambda: st.cursor().execute("SHUTDOWN WAIT_FOR_CLIENTS")) == "42501"
    assert s.running()
    with psycopg2.connect(**s.dsn()) as c:
        c.cursor().execute("SELECT 1")


def test_show_databases_reports_reserve_pool_and_server_lifetime(sluice_factory, pg, mongo_backend):
    s, _ = _sluice_with_mongo(sluice_factory, pg, mongo_backend, reserve_pool_size=3,
                              server_lifetime=1800)
    adm = console(s)
    config = {r["key"]: r["value"] for r in show(adm, "CONFIG")[0]}
    assert config["reserve_pool_size"] == "3" and config["server_lifetime"] == "1800"
    dbs = {r["name"]: r for r in show(adm, "DATABASES")[0]}
    assert dbs["postgres"]["reserve_pool_size"] == 3
    assert dbs["postgres"]["server_lifetime"] == 1800
    # What SET changes shows at once; the Mongo entry has neither (no reserve, no lifetime).
    adm.cursor().execute("SET server_lifetime = 900")
    adm.cursor().execute("SET reserve_pool_size = 0")
    dbs = {r["name"]: r for r in show(adm, "DATABASES")[0]}
    assert dbs["postgres"]["server_lifetime"] == 900 and dbs["postgres"]["reserve_pool_size"] == 0
    assert dbs["mdb"]["reserve_pool_size"] == 0 and dbs["mdb"]["server_lifetime"] == 0
    assert dbs["mdb"]["min_pool_size"] == 1 and dbs["mdb"]["pool_size"] == 2
