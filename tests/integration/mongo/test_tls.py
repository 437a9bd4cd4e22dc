"""TLS on both sides of the MongoDB front end. Clients: a [mongodb] line's client_tls_* keys,
direct TLS (the client begins with a ClientHello), cleartext refused with an error reply, client
certificates, a reload of the certificate, and hostile TLS clients. Servers: a URI with tls=true
to the MongoDB-wire test server behind stunnel, the certificate and host name verified.

The CA and certificates are made at test time with the openssl CLI (tests/integration/pg's
tlscerts, shared with the PostgreSQL TLS tests)."""
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pymongo
import pytest
from pymongo.errors import PyMongoError

from conftest import SLUICE_BIN, wait_port
from pgutil import free_port
from tlscerts import client_hello, make_pki
from wire import OP_MSG, OP_REPLY, is_closed, op_msg, op_query, read_reply

HANG = 20


@pytest.fixture(scope="module")
def certs():
    return make_pki("sluice-mongo-tls-", ["appclient"])


def tls_sluice(sluice_factory, certs, mode="require", cert="server", **keys):
    return sluice_factory(client_tls_sslmode=mode, client_tls_key_file=certs(cert + ".key"),
                          client_tls_cert_file=certs(cert + ".crt"),
                          client_tls_ca_file=certs("ca.crt"), **keys)


def tls_client(s, certs, host="127.0.0.1", **kw):
    uri = s.uri(tls="true", tlsCAFile=certs("ca.crt")).replace("127.0.0.1", host)
    return pymongo.MongoClient(uri, **kw)


def tls_socket(s, certs=None, **ctx_kw):
    """A raw TLS connection to Sluice with Python's ssl module (verifying its certificate when
    certs is given)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if certs:
        ctx.load_verify_locations(certs("ca.crt"))
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    for k, v in ctx_kw.items():
        setattr(ctx, k, v)
    raw = socket.create_connection(("127.0.0.1", s.port), timeout=HANG)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def mongoc_client():
    exe = os.environ.get("MONGOC_CLIENT") or os.path.join(
        os.path.dirname(SLUICE_BIN), "tests", "integration", "mongo", "mongoc_client")
    if not os.path.exists(exe):
        pytest.skip("the libmongoc test client is not built (meson builds it with the suite)")
    return exe


def crud_cursor_txn(c, name):
    coll = c.sluice_test[name]
    coll.drop()
    coll.insert_many([{"k": i, "pad": "x" * 500} for i in range(300)])
    assert coll.count_documents({}) == 300
    # Small batches: the cursor's getMores come back over the same TLS connection.
    assert [d["k"] for d in coll.find({}, {"k": 1}).sort("k", 1).batch_size(7)] == list(range(300))
    coll.update_one({"k": 5}, {"$set": {"v": 1}})
    assert coll.find_one({"k": 5})["v"] == 1
    with c.start_session() as s:
        s.start_transaction()
        coll.insert_one({"k": 1000}, session=s)
        s.commit_transaction()
    assert coll.find_one({"k": 1000}) is not None


# ---- real clients ----

def test_pymongo_over_tls_crud_cursors_transactions(sluice_factory, certs):
    s = tls_sluice(sluice_factory, certs)
    for host in ("127.0.0.1", "localhost"):  # the host name is verified against the certificate
        c = tls_client(s, certs, host=host)
        crud_cursor_txn(c, "tls_crud")
        c.close()
    assert "TLS established (TLSv1.3)" in s.log()


def test_libmongoc_client_over_tls(sluice_factory, certs):
    s = tls_sluice(sluice_factory, certs)
    uri = f"mongodb://127.0.0.1:{s.port}/?tls=true&tlsCAFile={certs('ca.crt')}"
    r = subprocess.run([mongoc_client(), uri], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.stdout, r.stderr)


def test_wrong_ca_on_the_client_fails_its_handshake(sluice_factory, certs):
    s = tls_sluice(sluice_factory, certs)
    c = pymongo.MongoClient(s.uri(tls="true", tlsCAFile=certs("otherca.crt"),
                                  serverSelectionTimeoutMS=2000))
    with pytest.raises(PyMongoError) as e:
        c.admin.command("ping")
    assert "certificate verify failed" in str(e.value), e.value


def test_require_answers_a_cleartext_client_with_an_error(sluice_factory, certs):
    s = tls_sluice(sluice_factory, certs)
    # What a driver shows: the reason, not a bare network error.
    c = pymongo.MongoClient(s.uri(serverSelectionTimeoutMS=2000))
    with pytest.raises(PyMongoError) as e:
        c.admin.command("ping")
    assert "TLS is required on this port" in str(e.value), e.value
    # On the wire: an OP_MSG error for OP_MSG, an OP_REPLY with $err for a legacy OP_QUERY, and
    # the connection closes after it.
    for msg, opcode in ((op_msg({"hello": 1, "$db": "admin"}, request_id=7), OP_MSG),
                        (op_query("admin.$cmd", {"isMaster": 1}, request_id=7), OP_REPLY)):
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=HANG)
        sock.sendall(msg)
        header, doc = read_reply(sock)
        assert header[2] == 7 and header[3] == opcode, header
        assert doc["ok"] == 0 and doc["code"] == 13 and "TLS is required" in doc["errmsg"], doc
        assert is_closed(sock)
        sock.close()
    assert "refused: TLS is required on this port" in s.log()


def test_prefer_takes_both_on_one_port(sluice_factory, certs):
    s = tls_sluice(sluice_factory, certs, mode="prefer")
    plain = pymongo.MongoClient(s.uri())
    tls = tls_client(s, certs)
    plain.sluice_test.both.insert_one({"via": "plain"})
    tls.sluice_test.both.insert_one({"via": "tls"})
    assert tls.sluice_test.both.count_documents({"via": "plain"}) >= 1
    assert plain.sluice_test.both.count_documents({"via": "tls"}) >= 1


def test_disable_is_the_default_and_plain_clients_work(sluice, certs):
    c = pymongo.MongoClient(sluice.uri())
    assert c.admin.command("ping")["ok"] == 1


def test_verify_full_requires_a_client_certificate(sluice_factory, certs):
    s = tls_sluice(sluice_factory, certs, mode="verify-full")
    good = tls_client(s, certs, tlsCertificateKeyFile=certs("appclient.pem"))
    crud_cursor_txn(good, "tls_verify")
    for kw in ({}, {"tlsCertificateKeyFile": certs("stranger.pem")}):
        bad = tls_client(s, certs, serverSelectionTimeoutMS=2000, **kw)
        with pytest.raises(PyMongoError):
            bad.admin.command("ping")
    log = s.log()
    assert "TLS handshake failed" in log or "TLS failed" in log, log[-3000:]
    # A cleartext client is answered with the stricter reason.
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=HANG)
    sock.sendall(op_msg({"hello": 1, "$db": "admin"}))
    _, doc = read_reply(sock)
    assert doc["code"] == 13 and "client certificate" in doc["errmsg"], doc
    sock.close()


def test_reload_swaps_the_certificate_for_new_connections(sluice_factory, certs):
    s = tls_sluice(sluice_factory, certs)
    first = tls_socket(s, certs)
    serial1 = first.getpeercert()["serialNumber"]
    with open(s.conf) as f:
        text = f.read()
    with open(s.conf, "w") as f:
        f.write(text.replace(certs("server.key"), certs("server2.key"))
                    .replace(certs("server.crt"), certs("server2.crt")))
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + HANG
    serial2 = serial1
    while serial2 == serial1 and time.time() < deadline:
        time.sleep(0.1)
        # A connection's input is what makes its line take the new settings.
        probe = tls_socket(s, certs)
        serial2 = probe.getpeercert()["serialNumber"]
        probe.close()
    assert serial2 != serial1
    # The connection made before the reload goes on, on its own context.
    first.sendall(op_msg({"ping": 1, "$db": "admin"}))
    _, doc = read_reply(first)
    assert doc["ok"] == 1
    first.close()


def test_a_bad_certificate_fails_the_check_and_a_reload(sluice_factory, certs, tmp_path):
    conf = tmp_path / "sluice.ini"
    conf.write_text("[sluice]\nlisten_port = 6999\nunix_socket_dir =\n[mongodb]\n"
                    f"m = listen_port=27999 uri=mongodb://127.0.0.1:1/ "
                    f"client_tls_sslmode=require client_tls_key_file={certs('server2.key')} "
                    f"client_tls_cert_file={certs('server.crt')}\n")
    r = subprocess.run([SLUICE_BIN, "--check", str(conf)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0
    assert "mongodb entry 'm': client TLS: cannot load private key" in r.stderr, r.stderr
    # The same at a reload: it is refused, and the running settings stay.
    s = tls_sluice(sluice_factory, certs)
    with open(s.conf) as f:
        text = f.read()
    with open(s.conf, "w") as f:
        f.write(text.replace(certs("server.key"), certs("server2.key")))
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + HANG
    while "client TLS: cannot load private key" not in s.log() and time.time() < deadline:
        time.sleep(0.1)
    assert "client TLS: cannot load private key" in s.log()
    working(s, certs)


# ---- hostile clients ----

def in_threads(work, n):
    """Runs work(0) ... work(n - 1) at once; the failures, as text."""
    errors = []

    def run(i):
        try:
            work(i)
        except Exception as e:  # noqa: BLE001 - every failure is reported
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def ends(sock, timeout=HANG):
    """Whether Sluice closes sock (after a TLS alert, perhaps) within timeout."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def working(s, certs):
    c = tls_client(s, certs)
    assert c.admin.command("ping")["ok"] == 1
    c.close()


def test_handshake_abandoned_halfway_and_garbage(sluice_factory, certs):
    s = tls_sluice(sluice_factory, certs, mode="prefer")
    # A ClientHello cut short, the socket left open: others are served meanwhile.
    hello = client_hello()
    halfway = socket.create_connection(("127.0.0.1", s.port), timeout=HANG)
    halfway.sendall(hello[: len(hello) // 2])
    working(s, certs)
    # The whole ClientHello, then nothing more: the server's answer comes, the client stays.
    stalled = socket.create_connection(("127.0.0.1", s.port), timeout=HANG)
    stalled.sendall(hello)
    assert stalled.recv(5)[:1] == b"\x16"  # the ServerHello's record
    working(s, certs)
    # The first byte of a handshake record, then garbage.
    junk = socket.create_connection(("127.0.0.1", s.port), timeout=HANG)
    junk.sendall(b"\x16" + os.urandom(64) + b"\x00" * 512)
    assert ends(junk)
    # A ClientHello byte alone, then the client leaves.
    lone = socket.create_connection(("127.0.0.1", s.port), timeout=HANG)
    lone.sendall(b"\x16")
    lone.close()
    # A TLS record that is no handshake at all.
    junk2 = socket.create_connection(("127.0.0.1", s.port), timeout=HANG)
    junk2.sendall(b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00")  # a ClientHello of one byte
    assert ends(junk2)
    for sock in (halfway, stalled, junk, junk2):
        sock.close()
    working(s, certs)
    assert "TLS handshake failed" in s.log() or "TLS failed" in s.log()


def test_tls_client_that_stops_reading_mid_result(sluice_factory, certs):
    s = tls_sluice(sluice_factory, certs)
    c = tls_client(s, certs)
    coll = c.sluice_test.tls_big
    coll.drop()
    coll.insert_many([{"k": i, "pad": "y" * 4000} for i in range(2000)])  # about 8 MB
    sock = tls_socket(s, certs)
    sock.sendall(op_msg({"find": "tls_big", "batchSize": 2000, "$db": "sluice_test"}))
    time.sleep(0.5)  # lets Sluice fill the socket; the outcome does not depend on it
    # Others go on while that one does not read.
    def work(i):
        w = tls_client(s, certs)
        w.sluice_test.tls_others.insert_one({"i": i})
        assert w.sluice_test.tls_big.count_documents({}) == 2000
        w.close()

    errors = in_threads(work, 10)
    assert not errors, errors
    sock.close()  # it leaves with its result unread: nothing of it stays behind
    working(s, certs)


def test_many_tls_clients_at_once(sluice_factory, certs):
    s = tls_sluice(sluice_factory, certs, pool_size=5)

    def work(i):
        w = tls_client(s, certs, maxPoolSize=1)
        coll = w.sluice_test.tls_many
        coll.insert_one({"i": i})
        assert coll.find_one({"i": i})["i"] == i
        w.close()

    errors = in_threads(work, 30)
    assert not errors, errors[:3]


def test_refused_client_cannot_send_a_large_message(sluice_factory, certs):
    """A cleartext client under require cannot make Sluice hold a large message."""
    s = tls_sluice(sluice_factory, certs)
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=HANG)
    sock.sendall(op_msg({"insert": "x", "$db": "t", "pad": "z" * (200 * 1024)}))
    header, doc = read_reply(sock)
    assert doc["ok"] == 0 and "out of bounds" in doc["errmsg"], doc
    assert is_closed(sock)


# ---- TLS to the servers ----

class Stunnel:
    """stunnel in front of the test server: TLS on its own port, cleartext to the server."""

    def __init__(self, certs, backend_port, cert="server", verify_client=False):
        self.port = free_port()
        d = tempfile.mkdtemp(prefix="sluice-stunnel-")
        conf = os.path.join(d, "stunnel.conf")
        extra = f"CAfile = {certs('ca.crt')}\nverifyChain = yes\n" if verify_client else ""
        with open(conf, "w") as f:
            f.write(f"foreground = yes\npid =\ndebug = 4\n[mongo]\n"
                    f"accept = 127.0.0.1:{self.port}\nconnect = 127.0.0.1:{backend_port}\n"
                    f"cert = {certs(cert + '.crt')}\nkey = {certs(cert + '.key')}\n{extra}")
        self.log = open(os.path.join(d, "stunnel.log"), "w")
        self.proc = subprocess.Popen(["/usr/bin/stunnel4", conf], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture()
def stunnel(certs, mongo_server):
    started = []

    def make(**kw):
        t = Stunnel(certs, mongo_server.port, **kw)
        started.append(t)
        return t

    yield make
    for t in started:
        t.stop()


def tls_backend(sluice_factory, tunnel, uri_opts, host="127.0.0.1", **line):
    """A Sluice whose [mongodb] line reaches the server through tunnel with tls=true and
    uri_opts."""
    query = "".join(f"&{k}={v}" for k, v in uri_opts.items())
    return sluice_factory(uri=f"'mongodb://{host}:{tunnel.port}/?appname=sluice&tls=true{query}'",
                          **line)


def test_backend_over_tls_crud_cursors_transactions(sluice_factory, stunnel, certs):
    t = stunnel()
    for host in ("127.0.0.1", "localhost"):  # an address and a name, both in the certificate
        s = tls_backend(sluice_factory, t, {"tlsCAFile": certs("ca.crt")}, host=host)
        c = pymongo.MongoClient(s.uri())
        crud_cursor_txn(c, "tls_backend")
        c.close()
        r = subprocess.run([mongoc_client(), f"mongodb://127.0.0.1:{s.port}/"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stdout.strip() == "ok", (r.stdout, r.stderr)
        assert "backend connection to" in s.log()


def test_backend_tls_and_client_tls_together(sluice_factory, stunnel, certs):
    t = stunnel()
    s = tls_backend(sluice_factory, t, {"tlsCAFile": certs("ca.crt")}, client_tls_sslmode="require",
                    client_tls_key_file=certs("server.key"),
                    client_tls_cert_file=certs("server.crt"))
    c = tls_client(s, certs)
    crud_cursor_txn(c, "tls_both")


def backend_error(s):
    c = pymongo.MongoClient(s.uri(serverSelectionTimeoutMS=15000, socketTimeoutMS=30000))
    with pytest.raises(PyMongoError) as e:
        c.sluice_test.x.insert_one({"a": 1})
    return str(e.value)


def test_backend_with_the_wrong_ca_is_a_clear_error(sluice_factory, stunnel, certs):
    t = stunnel()
    s = tls_backend(sluice_factory, t, {"tlsCAFile": certs("otherca.crt")},
                    server_connect_timeout=3)
    err = backend_error(s)
    assert "certificate" in err, err
    assert "certificate" in s.log(), s.log()[-3000:]


def test_backend_with_the_wrong_host_name_and_allow_invalid_hostnames(sluice_factory, stunnel,
                                                                     certs):
    t = stunnel(cert="wrongname")
    s = tls_backend(sluice_factory, t, {"tlsCAFile": certs("ca.crt")}, server_connect_timeout=3)
    err = backend_error(s)
    assert "certificate" in err or "hostname" in err.lower(), err
    s2 = tls_backend(sluice_factory, t, {"tlsCAFile": certs("ca.crt"),
                                       "tlsAllowInvalidHostnames": "true"})
    c = pymongo.MongoClient(s2.uri())
    crud_cursor_txn(c, "tls_anyhost")


def test_backend_with_a_client_certificate(sluice_factory, stunnel, certs):
    t = stunnel(verify_client=True)
    s = tls_backend(sluice_factory, t, {"tlsCAFile": certs("ca.crt"),
                                      "tlsCertificateKeyFile": certs("appclient.pem")})
    c = pymongo.MongoClient(s.uri())
    assert c.admin.command("ping")["ok"] == 1


def test_uri_tls_options_sluice_cannot_honour_fail_the_check(certs, tmp_path):
    for opts, why in (("tlsCertificateKeyFilePassword=secret",
                       "TLS option tlscertificatekeyfilepassword is not supported"),
                      (f"tlsCAFile={certs('missing.crt')}", "cannot load CA file")):
        conf = tmp_path / "sluice.ini"
        conf.write_text("[sluice]\nlisten_port = 6999\nunix_socket_dir =\n[mongodb]\n"
                        f"m = listen_port=27999 uri='mongodb://127.0.0.1:1/?tls=true&{opts}'\n")
        r = subprocess.run([SLUICE_BIN, "--check", str(conf)], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode != 0 and why in r.stderr, r.stderr
