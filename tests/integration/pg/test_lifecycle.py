"""Reload, session-mode reset, min_pool_size, max_db_connections, leaving mid-transaction."""
import re
import threading
import time

import psycopg2
import pytest

from pgutil import wait_for


def test_reload_applies_new_settings_without_dropping_clients(sluice_factory, pg):
    s = sluice_factory(default_pool_size=2)
    held = [psycopg2.connect(**s.dsn()) for _ in range(2)]
    for c in held:
        c.cursor().execute("SELECT 1")  # each holds a server in an open transaction
    assert pg.server_connections() == 2
    with open(s.conf) as f:
        text = f.read()
    text = re.sub(r"default_pool_size = \d+", "default_pool_size = 4", text)
    text = text.replace("[sluice]\n", "[sluice]\nquery_timeout = 1\n")
    with open(s.conf, "w") as f:
        f.write(text)
    s.reload()
    assert wait_for(lambda: "configuration reloaded" in s.log())
    third = psycopg2.connect(**s.dsn())
    third.autocommit = True
    cur = third.cursor()
    cur.execute("SELECT 3")  # served by a third server: the pool grew
    assert cur.fetchone() == (3,)
    with pytest.raises(psycopg2.errors.QueryCanceled):
        cur.execute("SELECT pg_sleep(10)")  # query_timeout now applies
    for c in held:  # the clients from before the reload are still connected
        cur = c.cursor()
        cur.execute("SELECT 2")
        assert cur.fetchone() == (2,)
        c.commit()


def test_reload_with_a_broken_file_keeps_running(sluice):
    with open(sluice.conf, "a") as f:
        f.write("bogus_key = 1\n")
    sluice.reload()
    assert wait_for(lambda: "keeping the running configuration" in sluice.log())
    assert re.search(r"sluice\.ini:\d+: database 'bogus_key'", sluice.log()), sluice.log()
    conn = psycopg2.connect(**sluice.dsn())
    conn.close()


def test_session_mode_resets_the_server_between_clients(sluice_factory):
    s = sluice_factory(pool_mode="session", default_pool_size=1)
    a = psycopg2.connect(**s.dsn())
    a.autocommit = True
    cur = a.cursor()
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    cur.execute("SET TimeZone = 'Asia/Tokyo'")
    cur.execute("CREATE TEMP TABLE mine (x int)")
    cur.execute("PREPARE p AS SELECT 1")
    a.close()
    b = psycopg2.connect(**s.dsn())
    b.autocommit = True
    cur = b.cursor()
    cur.execute("SELECT pg_backend_pid(), current_setting('TimeZone'), "
                "to_regclass('pg_temp.mine'), (SELECT count(*) FROM pg_prepared_statements)")
    got_pid, tz, table, prepared = cur.fetchone()
    assert got_pid == pid, "the same server connection was reused"
    assert tz != "Asia/Tokyo" and table is None and prepared == 0, (tz, table, prepared)


def test_client_leaving_mid_transaction_is_rolled_back(sluice_factory, pg):
    pg.psql("CREATE TABLE IF NOT EXISTS left_behind (x int)")
    pg.psql("TRUNCATE left_behind")
    s = sluice_factory(default_pool_size=1)
    a = psycopg2.connect(**s.dsn())
    cur = a.cursor()
    cur.execute("INSERT INTO left_behind VALUES (1)")
    a.close()  # leaves inside the transaction
    b = psycopg2.connect(**s.dsn())
    cur = b.cursor()
    cur.execute("SELECT count(*) FROM left_behind")
    assert cur.fetchone() == (0,)
    assert pg.server_connections() == 1


def test_min_pool_size_opens_connections_ahead(sluice_factory, pg):
    s = sluice_factory(min_pool_size=3, default_pool_size=5)
    psycopg2.connect(**s.dsn()).close()  # the pool exists once a client has logged in
    assert wait_for(lambda: pg.server_connections() == 3)


def test_max_db_connections_across_users(sluice_factory, pg):
    pg.psql("DO $$ BEGIN CREATE ROLE alice LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; "
            "END $$")
    s = sluice_factory(default_pool_size=5, max_db_connections=2, query_wait_timeout=30)
    conns = [psycopg2.connect(**s.dsn(user=u)) for u in ("postgres", "alice", "alice")]
    for c in conns[:2]:
        c.cursor().execute("SELECT 1")  # two transactions hold the database's two servers
    done = []

    def third():
        conns[2].cursor().execute("SELECT 3")
        done.append(True)

    t = threading.Thread(target=third)
    t.start()
    time.sleep(0.5)
    assert not done, "the third transaction waits: the database is at max_db_connections"
    assert pg.server_connections() == 2
    conns[1].commit()  # alice's server is free again
    t.join(10)
    assert done
    for c in conns:
        c.rollback()
        c.close()
