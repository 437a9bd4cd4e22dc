"""Pass-through behaviour: what a client sees through Sluice is what PostgreSQL sends."""
import io
import os
import socket
import stat
import struct

import psycopg2
import pytest

from pgutil import error_fields, message, raw_login, read_messages, run_psql, startup_packet


def test_psql_simple_and_multi_statement(sluice):
    r = run_psql(sluice.port, "SELECT 1; SELECT 'two'")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "two"]


def test_unix_socket(sluice):
    assert stat.S_ISSOCK(os.stat(sluice.socket_path).st_mode)
    r = run_psql(sluice.port, "SELECT current_database()", extra=("-h", sluice.dir))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "postgres"
    conn = psycopg2.connect(**sluice.dsn(host=sluice.dir))
    cur = conn.cursor()
    cur.execute("SELECT 1")
    assert cur.fetchone() == (1,)
    conn.close()


def test_psql_copy_in_and_out(sluice, tmp_path):
    src = tmp_path / "in.tsv"
    src.write_text("".join(f"{i}\tline {i}\n" for i in range(1000)))
    out = tmp_path / "out.tsv"
    # psql runs the -c options in order; one transaction keeps the temporary table on one server
    r = run_psql(sluice.port, "COMMIT", extra=(
        "-q", "-c", "BEGIN", "-c", "CREATE TEMP TABLE cp (i int, s text)",
        "-c", f"\\copy cp FROM '{src}'",
        "-c", "SELECT count(*), sum(i) FROM cp",
        "-c", f"\\copy (SELECT * FROM cp ORDER BY i) TO '{out}'"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [f"1000|{sum(range(1000))}"], r.stdout
    assert out.read_text() == src.read_text()


def test_login_reports_server_parameters_and_sluice_key(sluice, pg):
    s, msgs = raw_login(sluice.port, application_name="probe-app")
    types = [t for t, _ in msgs]
    assert types[0] == b"R" and msgs[0][1] == b"\0\0\0\0"
    params = dict(tuple(b.rstrip(b"\0").split(b"\0")) for t, b in msgs if t == b"S")
    real = pg.psql("SHOW server_version")[0][0]
    assert params[b"server_version"].decode() == real
    assert params[b"application_name"] == b"probe-app"
    keys = [b for t, b in msgs if t == b"K"]
    assert len(keys) == 1 and len(keys[0]) == 8
    # The key is Sluice's own: it names no server process (a cancel goes through Sluice).
    s.sendall(message(b"Q", b"SELECT pg_backend_pid()\0"))
    rows, _ = read_messages(s)
    server_pid = int(rows[1][1][6:])  # DataRow: 1 column, its length, the text
    assert struct.unpack("!I", keys[0][:4])[0] != server_pid
    s.close()


def test_unknown_database_is_3D000(sluice_factory, pg):
    s = sluice_factory(databases={"postgres": f"host=127.0.0.1 port={pg.port}"})
    with pytest.raises(psycopg2.OperationalError) as e:
        psycopg2.connect(**s.dsn(dbname="nosuchdb"))
    assert "nosuchdb" in str(e.value)
    sock = socket.create_connection(("127.0.0.1", s.port))
    sock.sendall(startup_packet(database="nosuchdb"))
    msgs, eof = read_messages(sock, until=b"E")
    assert error_fields(msgs[-1][1])["C"] == "3D000"


@pytest.mark.parametrize("param, value, code", [("database", "not_on_the_server", "3D000"),
                                                ("user", "no_such_role", "28000")])
def test_login_refused_by_the_server_keeps_its_sqlstate(sluice, param, value, code):
    # The `*` entry sends any name on to PostgreSQL; its refusal reaches the client as it is,
    # so a tool that checks for 3D000 (and creates the database) still works.
    sock = socket.create_connection(("127.0.0.1", sluice.port))
    sock.sendall(startup_packet(**{param: value}))
    msgs, eof = read_messages(sock, until=b"E")
    assert msgs and msgs[-1][0] == b"E", msgs
    fields = error_fields(msgs[-1][1])
    assert fields["C"] == code and value in fields["M"], fields
    sock.close()


def test_ssl_and_gss_requests_answered_no(sluice):
    for code in (80877103, 80877104):
        s = socket.create_connection(("127.0.0.1", sluice.port))
        s.sendall(struct.pack("!II", 8, code))
        assert s.recv(1) == b"N"
        s.sendall(startup_packet())
        msgs, eof = read_messages(s)
        assert msgs[-1] == (b"Z", b"I")
        s.close()
    # libpq's default sslmode=prefer falls back to plain text
    conn = psycopg2.connect(**sluice.dsn(sslmode="prefer"))
    conn.close()


def test_parameters_types_rollback_and_errors_in_transactions(sluice):
    conn = psycopg2.connect(**sluice.dsn())
    cur = conn.cursor()
    cur.execute("SELECT %s::int, %s::text, %s::float8, %s::bool, %s::bytea, %s::date, %s::jsonb",
                (42, "héllo", 1.5, True, psycopg2.Binary(b"\x00\x01"), "2024-02-29", '{"a": 1}'))
    row = cur.fetchone()
    assert row[0] == 42 and row[1] == "héllo" and row[2] == 1.5 and row[3] is True
    assert bytes(row[4]) == b"\x00\x01" and str(row[5]) == "2024-02-29" and row[6] == {"a": 1}
    conn.commit()
    cur.execute("CREATE TEMP TABLE t (x int)")
    cur.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(psycopg2.errors.DivisionByZero):
        cur.execute("SELECT 1/0")
    with pytest.raises(psycopg2.errors.InFailedSqlTransaction):
        cur.execute("SELECT 1")
    conn.rollback()
    cur.execute("SELECT to_regclass('pg_temp.t')")
    assert cur.fetchone()[0] is None, "the transaction was rolled back"
    conn.close()


def test_empty_query_notice_and_multi_statement(sluice):
    conn = psycopg2.connect(**sluice.dsn())
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("DO $$ BEGIN RAISE NOTICE 'hello from %', 'plpgsql'; END $$")
    assert any("hello from plpgsql" in n for n in conn.notices)
    cur.execute("SELECT 1; SELECT 2; SELECT 3")
    assert cur.fetchall() == [(3,)]
    conn.close()
    raw, _ = raw_login(sluice.port)
    raw.sendall(message(b"Q", b"\0"))
    msgs, _ = read_messages(raw)
    assert [t for t, _ in msgs] == [b"I", b"Z"], "EmptyQueryResponse, then ReadyForQuery"
    raw.close()


def test_copy_in_and_out_100k_rows(sluice):
    conn = psycopg2.connect(**sluice.dsn())
    cur = conn.cursor()
    cur.execute("CREATE TEMP TABLE c (i int, s text)")
    data = "".join(f"{i}\trow {i}\n" for i in range(100000))
    cur.copy_from(io.StringIO(data), "c")
    cur.execute("SELECT count(*), sum(i), md5(string_agg(s, ',' ORDER BY i)) FROM c")
    count, total, digest = cur.fetchone()
    assert count == 100000 and total == sum(range(100000))
    out = io.StringIO()
    cur.copy_to(out, "c")
    assert out.getvalue() == data
    conn.rollback()
    conn.close()


def test_large_result_streams_intact(sluice):
    conn = psycopg2.connect(**sluice.dsn())
    cur = conn.cursor()
    cur.execute("SELECT i, repeat(chr(65 + i % 26), 1000000) FROM generate_series(0, 49) i")
    rows = cur.fetchall()
    assert len(rows) == 50
    for i, s in rows:
        assert len(s) == 1000000 and s == chr(65 + i % 26) * 1000000
    conn.close()


def test_server_side_cursor_and_function_call(sluice):
    conn = psycopg2.connect(**sluice.dsn())
    cur = conn.cursor(name="walk")
    cur.itersize = 100
    cur.execute("SELECT g FROM generate_series(1, 5000) g")
    assert sum(r[0] for r in cur) == 5000 * 5001 // 2
    conn.commit()
    conn.close()
