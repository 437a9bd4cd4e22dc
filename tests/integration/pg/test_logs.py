"""The log as operators read it: json lines that parse and carry the connection's context, the
logfile and its reopening, log_connections / log_disconnections / log_pooler_errors, the reason
each disconnection gives, and no password anywhere in the log of a run that handles many."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import psycopg2
import pymongo
import pytest

from pgutil import free_port, wait_for

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SLUICE_BIN = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "build", "sluice")


def json_lines(text):
    """Every line of Sluice's output as JSON (a line that does not parse fails the test)."""
    out = []
    for line in text.splitlines():
        if line.startswith("==") or not line.strip():
            continue  # a sanitizer's report is checked by the fixture, not here
        out.append(json.loads(line))
    return out


def lines_about(entries, client_id=None, reason=None, contains=None):
    return [e for e in entries
            if (client_id is None or e.get("client_id") == client_id)
            and (reason is None or e.get("reason") == reason)
            and (contains is None or contains in e["message"])]


def test_json_lines_parse_and_carry_the_connection(sluice_factory):
    s = sluice_factory(log_format="json")
    conn = psycopg2.connect(**s.dsn())
    cid = conn.get_backend_pid()  # the client id: the BackendKeyData pid Sluice issued
    conn.cursor().execute("SELECT 1")
    conn.close()
    assert wait_for(lambda: lines_about(json_lines(s.log()), cid, reason="client_left"))
    entries = json_lines(s.log())
    for e in entries:
        assert set(e) >= {"time", "level", "message"}, e
        assert e["level"] in ("error", "warning", "info", "debug"), e
        assert e["time"].endswith("Z") and "T" in e["time"], e
    login = lines_about(entries, cid, contains="login")
    assert len(login) == 1, login
    login = login[0]
    assert login["protocol"] == "pg"
    assert login["database"] == "postgres" and login["user"] == "postgres"
    host, port = login["address"].rsplit(":", 1)
    assert host == "127.0.0.1" and 0 < int(port) < 65536
    end = lines_about(entries, cid, reason="client_left")
    assert len(end) == 1 and end[0]["address"] == login["address"], end
    assert end[0]["message"].startswith("closing because client_left")
    # Lines about servers carry their id and pool too.
    servers = [e for e in entries if "server_id" in e]
    assert servers == [] or all(e["database"] == "postgres" for e in servers)


def test_hostile_names_cannot_forge_or_break_lines(sluice_factory):
    s = sluice_factory(log_format="json")
    evil = 'eve"}\n{"level":"error","message":"forged'
    with pytest.raises(psycopg2.Error):
        psycopg2.connect(**s.dsn(dbname="nope\n\x01", user=evil))
    entries = json_lines(s.log())  # every line still parses
    assert not [e for e in entries if e["message"] == "forged"]
    t = sluice_factory()  # text: the line end is escaped, so no line starts with the forgery
    with pytest.raises(psycopg2.Error):
        psycopg2.connect(**t.dsn(dbname="nope", user="eve\n2026-01-01 ERROR forged"))
    assert wait_for(lambda: "pooler error" in t.log())
    assert not [line for line in t.log().splitlines() if line.startswith("2026-01-01")]


def test_logfile_is_written_and_reopened_on_sighup(sluice_factory):
    tmp = tempfile.mkdtemp(prefix="sluice-logfile-")
    try:
        path = os.path.join(tmp, "sluice.log")
        s = sluice_factory(logfile=path)
        psycopg2.connect(**s.dsn()).close()
        assert wait_for(lambda: "closing because client_left" in open(path).read())
        os.rename(path, path + ".1")  # what logrotate does, then its postrotate kill -HUP
        s.reload()
        # The reload's own line may still reach the old file: the outputs are reopened for the
        # first line under the new configuration.
        assert wait_for(lambda: "configuration reloaded" in s.log())
        conn = psycopg2.connect(**s.dsn())
        cid = conn.get_backend_pid()
        conn.close()
        line = f"client {cid} postgres/postgres@127.0.0.1:"
        assert wait_for(lambda: os.path.exists(path) and line in open(path).read())
        rotated = open(path + ".1").read()
        assert "sluice started" in rotated and line not in rotated
        assert "sluice started" not in open(path).read()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("on", [True, False])
def test_log_connections_and_disconnections_switch_their_lines(sluice_factory, pg, on):
    flag = "1" if on else "0"
    only = {"postgres": f"host=127.0.0.1 port={pg.port} dbname=postgres"}  # no "*": nope fails
    s = sluice_factory(databases=only, log_connections=flag, log_disconnections=flag,
                       log_pooler_errors=flag)
    psycopg2.connect(**s.dsn()).close()
    with pytest.raises(psycopg2.Error):
        psycopg2.connect(**s.dsn(dbname="nope"))
    marker = psycopg2.connect(**s.dsn())  # the log is written in order: wait for this one's end
    marker.close()
    s.reload()
    assert wait_for(lambda: "configuration reloaded" in s.log())
    log = s.log()
    assert (": login" in log) == on
    assert ("closing because client_left" in log) == on
    assert ("closing because login_refused" in log) == on
    assert ('pooler error 3D000: database "nope" does not exist' in log) == on
    # A login refused before its exchange began still names what it asked for.
    named = [line for line in log.splitlines()
             if "pg nope/postgres@127.0.0.1:" in line and "pooler error 3D000" in line]
    assert bool(named) == on, named


def closing_reason(s, cid):
    entries = [e for e in json_lines(s.log()) if e.get("client_id") == cid and "reason" in e]
    return entries[-1]["reason"] if entries else None


def test_disconnect_reasons(sluice_factory):
    s = sluice_factory(log_format="json", idle_transaction_timeout="0.5")
    # A normal close.
    conn = psycopg2.connect(**s.dsn())
    cid = conn.get_backend_pid()
    conn.close()
    assert wait_for(lambda: closing_reason(s, cid) == "client_left"), s.log()[-2000:]

    # A client killed in the middle of a transaction (its process dies, the kernel closes).
    s2 = sluice_factory(log_format="json")
    code = ("import psycopg2, sys, time\n"
            f"c = psycopg2.connect(host='127.0.0.1', port={s2.port}, user='postgres',"
            " dbname='postgres')\n"
            "cur = c.cursor(); cur.execute('SELECT 1')\n"
            "print(c.get_backend_pid(), flush=True)\n"
            "time.sleep(60)\n")
    child = subprocess.Popen(["/usr/bin/python3", "-c", code], stdout=subprocess.PIPE, text=True)
    killed = int(child.stdout.readline())
    child.kill()
    child.wait()
    assert wait_for(lambda: closing_reason(s2, killed) == "client_left"), s2.log()[-2000:]
    assert [e for e in json_lines(s2.log()) if e.get("client_id") == killed
            and e.get("reason") == "client_left" and e["database"] == "postgres"]

    # idle_transaction_timeout.
    idle = psycopg2.connect(**s.dsn())
    iid = idle.get_backend_pid()
    idle.cursor().execute("SELECT 1")  # opens a transaction, then idles in it
    assert wait_for(lambda: closing_reason(s, iid) == "idle_transaction_timeout"), s.log()[-2000:]

    # query_wait_timeout: the only server is held by a transaction while another client waits.
    s3 = sluice_factory(log_format="json", query_wait_timeout="1", default_pool_size="1")
    holder = psycopg2.connect(**s3.dsn())
    holder.cursor().execute("SELECT 1")  # psycopg2 opened a transaction: the server is held
    waiter = psycopg2.connect(**s3.dsn())
    wid = waiter.get_backend_pid()
    with pytest.raises(psycopg2.Error):
        waiter.cursor().execute("SELECT 1")
    assert wait_for(lambda: closing_reason(s3, wid) == "wait_timeout"), s3.log()[-2000:]
    holder.close()


# ---- no password in the log ----

SECRETS = {
    "pg_line": "pgLineSecret-1a",        # [databases] password=
    "pg_quoted": "pg quoted;Secret-2b",   # a quoted password with a space and ;
    "mongo_uri": "mongoUriSecret-3c",    # [mongodb] uri user:password@
    "mongo_opt": "mongoOptSecret-4d",    # a URI option that holds a secret
    "users_file": "usersFileSecret-5e",  # auth_file's plaintext password
    "wrong": "wrongPassword-6f",         # what a failed login tries
}


def start_mongo_server():
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="mongo-server-", suffix=".log", delete=False)
    proc = subprocess.Popen([os.path.join(ROOT, "tests", "mongo_server", "run"), str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    pytest.fail("the MongoDB test server did not start")


def test_no_password_reaches_the_log(pg):
    mongo_proc, mongo_port = start_mongo_server()
    tmp = tempfile.mkdtemp(prefix="sluice-secrets-")
    proc = None
    try:
        port, mport, mport2 = free_port(), free_port(), free_port()
        users = os.path.join(tmp, "users.txt")
        with open(users, "w") as f:
            f.write(f'"postgres" "{SECRETS["users_file"]}"\n')
        conf = os.path.join(tmp, "sluice.ini")
        q = SECRETS["pg_quoted"]
        with open(conf, "w") as f:
            f.write(f"[sluice]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n"
                    f"unix_socket_dir =\nlog_level = debug\nauth_type = scram-sha-256\n"
                    f"auth_file = {users}\nlogfile = {tmp}/file.log\n"
                    "[databases]\n"
                    f"postgres = host=127.0.0.1 port={pg.port} dbname=postgres "
                    f"password={SECRETS['pg_line']}\n"
                    f"quoted = host=127.0.0.1 port={pg.port} dbname=postgres password='{q}'\n"
                    f"gone = host=127.0.0.1 port={free_port()} dbname=postgres "
                    f"password={SECRETS['pg_line']} connect_timeout=2\n"
                    "[mongodb]\n"
                    f"mongo = listen_port={mport} auth_type=scram-sha-256 "
                    f"uri=mongodb://127.0.0.1:{mongo_port}/?directConnection=true\n"
                    f"creds = listen_port={mport2} "
                    f"uri='mongodb://sluiceuser:{SECRETS['mongo_uri']}@127.0.0.1:{mongo_port}/"
                    f"?authMechanismProperties=AWS_SESSION_TOKEN:{SECRETS['mongo_opt']}"
                    "&directConnection=true&serverSelectionTimeoutMS=2000'\n")
        out_path = os.path.join(tmp, "stderr.log")
        out = open(out_path, "w")
        proc = subprocess.Popen([SLUICE_BIN, "-c", conf], stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 10)

        def pg_login(dbname, password):
            try:
                psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname=dbname,
                                 password=password, connect_timeout=10).close()
                return True
            except psycopg2.Error:
                return False

        assert pg_login("postgres", SECRETS["users_file"])
        assert pg_login("quoted", SECRETS["users_file"])
        assert not pg_login("postgres", SECRETS["wrong"])
        pg_login("gone", SECRETS["users_file"])  # the server is unreachable: its error is logged
        def mongo_find(uri):
            c = pymongo.MongoClient(uri + "serverSelectionTimeoutMS=3000&connectTimeoutMS=3000")
            try:
                c.test.things.find_one()
                return True
            except pymongo.errors.PyMongoError:
                return False
            finally:
                c.close()

        base = f"127.0.0.1:{mport}/?authMechanism=SCRAM-SHA-256&"
        assert mongo_find(f"mongodb://postgres:{SECRETS['users_file']}@{base}")
        assert not mongo_find(f"mongodb://postgres:{SECRETS['wrong']}@{base}")
        # The server refuses Sluice's URI credentials: the failures are logged.
        assert not mongo_find(f"mongodb://127.0.0.1:{mport2}/?")
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "configuration reloaded" in open(out_path).read())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        out.close()
        logs = {"stderr": open(out_path).read(), "logfile": open(f"{tmp}/file.log").read()}
        for name, text in logs.items():
            assert "password authentication failed" in text, name
            assert 'logged in as "postgres"' in text and "authentication failed" in text, name
            assert "mongodb://sluiceuser:****@" in text, name
            assert "AddressSanitizer" not in text and "runtime error:" not in text, name
            for what, secret in SECRETS.items():
                for needle in {secret, secret.split("-")[0]}:
                    assert needle not in text, f"{what} password in the {name}"
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        mongo_proc.terminate()
        mongo_proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
