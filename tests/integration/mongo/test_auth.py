"""Clients logging in to Sluice's MongoDB front end (auth_type=scram-sha-256 on the [mongodb]
line) with real drivers, pymongo and libmongoc, over SCRAM-SHA-256 and SCRAM-SHA-1, with users
from the same auth_file the PostgreSQL front end reads; and what a client that has not logged in
can and cannot do. Sluice's own connections to the server use the URI's credentials (none here)."""
import base64
import hashlib
import hmac
import os
import socket
import subprocess
import tempfile

import bson
import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from conftest import SLUICE_BIN
from recorder import Recorder
from wire import connect, is_closed, op_msg, read_reply


def scram_verifier(password, salt, iterations=4096):
    """A SCRAM-SHA-256 verifier in PostgreSQL's format (pg_authid.rolpassword)."""
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return (f"SCRAM-SHA-256${iterations}:{b64(salt)}$"
            f"{b64(hashlib.sha256(client_key).digest())}:{b64(server_key)}")


USERS = {
    "alice": "secret",  # plaintext: SCRAM-SHA-256 and SCRAM-SHA-1
    # A verifier serves SCRAM-SHA-256 only. vera's has a 28-byte salt, as MongoDB makes them
    # (libmongoc refuses any other length); pete's a 16-byte one, PostgreSQL's default, which
    # pymongo takes.
    "vera": scram_verifier("pencil", b"sluice-test-salt-of-28-bytes"),
    "pete": scram_verifier("pencil", b"sluice-test-salt"),
    "mark": "md5" + hashlib.md5(b"pwmark").hexdigest(),  # md5: cannot log in to MongoDB
}


@pytest.fixture()
def users_file():
    fd, path = tempfile.mkstemp(prefix="sluice-users-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        for user, secret in USERS.items():
            f.write(f'"{user}" "{secret}"\n')
    yield path
    os.unlink(path)


@pytest.fixture()
def auth_sluice(sluice_factory, users_file):
    return sluice_factory(auth_file=users_file, auth_type="scram-sha-256")


@pytest.fixture()
def recorder():
    r = Recorder()
    yield r
    r.close()


def client(s, **kw):
    return MongoClient(s.uri(), serverSelectionTimeoutMS=10000, **kw)


def crud(c, db="authtest"):
    coll = c[db]["people"]
    coll.drop()
    coll.insert_many([{"k": i} for i in range(10)])
    assert coll.count_documents({}) == 10
    assert sorted(d["k"] for d in coll.find({"k": {"$lt": 3}})) == [0, 1, 2]


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1"])
@pytest.mark.parametrize("source", ["admin", "inventory"])
def test_pymongo_logs_in_with_each_mechanism_and_auth_source(auth_sluice, mech, source):
    with client(auth_sluice, username="alice", password="secret", authMechanism=mech,
                authSource=source) as c:
        crud(c)
    assert f'logged in as "alice" ({mech})' in auth_sluice.log()


def test_pymongo_negotiates_the_mechanism_and_authenticates_speculatively(auth_sluice):
    """No authMechanism: pymongo asks hello for the user's mechanisms and sends its saslStart
    inside that hello (speculativeAuthenticate)."""
    for user, password in (("vera", "pencil"), ("pete", "pencil"), ("alice", "secret")):
        with client(auth_sluice, username=user, password=password) as c:
            crud(c)
    log = auth_sluice.log()
    assert 'logged in as "vera" (SCRAM-SHA-256)' in log
    assert 'logged in as "pete" (SCRAM-SHA-256)' in log
    assert "a login inside hello (speculativeAuthenticate)" in log
    assert 'logged in as "alice" (SCRAM-SHA-256)' in log


def test_hello_offers_each_users_mechanisms(auth_sluice):
    s = connect(auth_sluice.port)
    for user, want in (("alice", ["SCRAM-SHA-1", "SCRAM-SHA-256"]), ("vera", ["SCRAM-SHA-256"]),
                       ("nobody", None), ("mark", None)):
        s.sendall(op_msg({"hello": 1, "saslSupportedMechs": f"admin.{user}", "$db": "admin"}))
        _, doc = read_reply(s)
        assert doc["ok"] == 1
        assert doc.get("saslSupportedMechs") == want, user


@pytest.mark.parametrize("user,password,mech", [
    ("alice", "wrong", "SCRAM-SHA-256"),
    ("alice", "wrong", "SCRAM-SHA-1"),
    ("nobody", "secret", "SCRAM-SHA-256"),
    ("vera", "pencil", "SCRAM-SHA-1"),   # a verifier holds no SCRAM-SHA-1 credentials
    ("mark", "pw", "SCRAM-SHA-256"),     # an md5 secret holds no SCRAM credentials at all
])
def test_failed_logins_get_code_18_alike(auth_sluice, user, password, mech):
    with client(auth_sluice, username=user, password=password, authMechanism=mech) as c:
        with pytest.raises(OperationFailure) as e:
            c.admin.command("ping")
    assert e.value.code == 18
    assert e.value.details["errmsg"] == "Authentication failed."


def test_an_unauthenticated_command_gets_13_and_never_reaches_the_server(
        sluice_factory, users_file, recorder):
    s = sluice_factory(server=recorder, auth_file=users_file, auth_type="scram-sha-256")
    with client(s) as c:
        for cmd in ({"find": "people"}, {"insert": "people", "documents": [{"x": 1}]},
                    {"listDatabases": 1}):
            with pytest.raises(OperationFailure) as e:
                c["db"].command(cmd)
            assert e.value.code == 13
            assert e.value.details["codeName"] == "Unauthorized"
            assert "requires authentication" in e.value.details["errmsg"]
        assert c.admin.command("ping")["ok"] == 1
    assert not recorder.named("find") and not recorder.named("insert")
    assert not recorder.named("listDatabases")
    assert recorder.named("ping"), "the recorder sees what does get through"
    with client(s, username="alice", password="secret") as c:
        assert c["db"].command({"find": "people"})["ok"] == 1
    assert len(recorder.named("find")) == 1
    assert not recorder.named("saslStart") and not recorder.named("saslContinue")


def test_logout_closes_the_gate(auth_sluice):
    """As on mongos: after logout the connection needs a new login (pymongo keeps the one
    socket it logged in on with maxPoolSize=1, and does not log in again by itself)."""
    with client(auth_sluice, username="alice", password="secret", maxPoolSize=1) as c:
        assert c["db"].command({"find": "people"})["ok"] == 1
        assert c.admin.command("logout")["ok"] == 1
        with pytest.raises(OperationFailure) as e:
            c["db"].command({"find": "people"})
        assert e.value.code == 13


def test_libmongoc_with_credentials_in_the_uri(auth_sluice):
    exe = os.environ.get("MONGOC_CLIENT") or os.path.join(
        os.path.dirname(SLUICE_BIN), "tests", "integration", "mongo", "mongoc_client")
    if not os.path.exists(exe):
        pytest.skip("the libmongoc test client is not built (meson builds it with the suite)")
    base = f"127.0.0.1:{auth_sluice.port}"
    for uri in (f"mongodb://alice:secret@{base}/?authMechanism=SCRAM-SHA-256",
                f"mongodb://alice:secret@{base}/?authMechanism=SCRAM-SHA-1&authSource=inventory",
                f"mongodb://vera:pencil@{base}/"):
        r = subprocess.run([exe, uri], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stdout.strip() == "ok", (uri, r.stdout, r.stderr)
    r = subprocess.run([exe, f"mongodb://alice:wrong@{base}/"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and "Authentication failed" in r.stderr, r.stderr


def test_a_reload_of_auth_file_takes_effect_without_dropping_clients(auth_sluice, users_file):
    import signal
    import time
    kept = client(auth_sluice, username="alice", password="secret", maxPoolSize=1)
    crud(kept)
    with open(users_file, "a") as f:
        f.write('"alice" "changed"\n')  # the later line wins
    auth_sluice.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while "configuration reloaded" not in auth_sluice.log() and time.time() < deadline:
        time.sleep(0.05)
    assert "configuration reloaded" in auth_sluice.log()
    with client(auth_sluice, username="alice", password="secret") as c:
        with pytest.raises(OperationFailure) as e:
            c.admin.command("ping")
        assert e.value.code == 18
    with client(auth_sluice, username="alice", password="changed") as c:
        crud(c)
    crud(kept)  # logged in before the reload: still in
    kept.close()


# ---- hostile clients ----

def command(sock, doc, request_id=1):
    sock.sendall(op_msg(doc, request_id=request_id))
    hdr, reply = read_reply(sock)
    assert hdr is not None, "the connection closed"
    return reply


def sasl_start(sock, payload, mech="SCRAM-SHA-256"):
    return command(sock, {"saslStart": 1, "mechanism": mech, "payload": bson.Binary(payload),
                          "options": {"skipEmptyExchange": True}, "$db": "admin"})


def sasl_continue(sock, payload, conversation=1):
    return command(sock, {"saslContinue": 1, "conversationId": conversation,
                          "payload": bson.Binary(payload), "$db": "admin"})


def assert_error(reply, code):
    assert reply["ok"] == 0 and reply["code"] == code, reply
    assert reply["errmsg"]


def test_hostile_conversations_get_errors_and_others_are_unaffected(auth_sluice):
    bystander = client(auth_sluice, username="alice", password="secret", maxPoolSize=1)
    bystander["db"].command({"find": "people"})
    s = connect(auth_sluice.port)
    assert_error(sasl_continue(s, b"c=biws,r=abc,p=AAAA"), 17)  # before saslStart
    first = sasl_start(s, b"n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL")
    assert first["ok"] == 1 and first["done"] is False and first["conversationId"] == 1
    server_first = bytes(first["payload"]).decode()
    nonce = server_first.split(",")[0][2:]
    assert_error(sasl_continue(s, f"c=biws,r={nonce},p=AAAA".encode(), conversation=7), 17)
    for final in (b"c=biws,r=wrongnonce,p=" + base64.b64encode(b"x" * 32),  # wrong nonce
                  f"c=biws,r={nonce}".encode(),                            # truncated
                  f"c=biws,r={nonce},p=!!notbase64!!".encode(),            # bad base64
                  f"c=biws,r={nonce},p=".encode() + base64.b64encode(b"x" * 7),  # short proof
                  b"\xff\xfe garbage"):
        assert sasl_start(s, b"n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL")["ok"] == 1
        assert_error(sasl_continue(s, final), 18)
    assert_error(sasl_start(s, b"not scram at all"), 18)
    assert_error(command(s, {"find": "people", "$db": "db"}), 13)
    assert bystander["db"].command({"find": "people"})["ok"] == 1
    bystander.close()


def test_a_megabyte_user_name_closes_the_connection(auth_sluice):
    s = connect(auth_sluice.port)
    big = b"n,,n=" + b"u" * (1 << 20) + b",r=abc"
    msg = op_msg({"saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": bson.Binary(big),
                  "$db": "admin"})
    # The declared length decides: Sluice answers before the rest is sent (sending it all
    # would race the close, and a reset could swallow the reply).
    s.sendall(msg[:4096])
    hdr, reply = read_reply(s)
    assert reply["ok"] == 0 and reply["code"] == 10334, reply
    assert is_closed(s)
    # Ten kilobytes fit the pre-login bound and are refused by the exchange.
    s = connect(auth_sluice.port)
    assert_error(sasl_start(s, b"n,,n=" + b"u" * 10000 + b",r=abc"), 18)
    with client(auth_sluice, username="alice", password="secret") as c:
        crud(c)


def test_ten_failed_logins_close_the_connection(auth_sluice):
    s = connect(auth_sluice.port)
    for i in range(10):
        s.sendall(op_msg({"saslStart": 1, "mechanism": "SCRAM-SHA-256",
                          "payload": bson.Binary(b"garbage"), "$db": "admin"}, request_id=i + 1))
        hdr, reply = read_reply(s)
        assert reply["code"] == 18, (i, reply)
    assert is_closed(s)
    assert "10 failed logins: closing the connection" in auth_sluice.log()
    with client(auth_sluice, username="alice", password="secret") as c:
        crud(c)


def test_a_client_vanishing_mid_conversation(auth_sluice):
    for _ in range(20):
        s = connect(auth_sluice.port)
        s.sendall(op_msg({"saslStart": 1, "mechanism": "SCRAM-SHA-1",
                          "payload": bson.Binary(b"n,,n=alice,r=abcdef"), "$db": "admin"}))
        s.close()
    s = socket.create_connection(("127.0.0.1", auth_sluice.port))
    s.sendall(op_msg({"saslStart": 1, "mechanism": "SCRAM-SHA-256",
                      "payload": bson.Binary(b"n,,n=alice,r=abcdef"), "$db": "admin"})[:30])
    s.close()
    with client(auth_sluice, username="alice", password="secret") as c:
        crud(c)
