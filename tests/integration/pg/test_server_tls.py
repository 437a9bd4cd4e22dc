"""TLS between Sluice and PostgreSQL: the server_tls_* keys as libpq parameters, and the relay
carrying on in the TLS session libpq negotiated.

A second cluster runs with ssl = on and a server certificate from a test CA made at test time
(the same openssl CLI steps as test_tls.py); the run's shared cluster has ssl off. Encryption is
proved from the server's side: pg_stat_ssl says whether the backend serving a query through
Sluice talks TLS. Fake servers (Python's ssl module) play the hostile parts a real PostgreSQL
will not: cleartext injected into the TLS stream, and a TLS answer that is no TLS at all.
"""
import hashlib
import os
import socket
import ssl
import struct
import subprocess
import tempfile
import threading

import psycopg2
import psycopg2.extensions
import pytest

from pgutil import PgCluster, pgbench, wait_for
from tlscerts import make_ca, make_cert

HANG = 20
SSL_QUERY = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


@pytest.fixture(scope="module")
def certs():
    d = tempfile.mkdtemp(prefix="sluice-server-tls-")
    make_ca(d, "ca")
    make_ca(d, "otherca")
    make_cert(d, "server", "ca", "localhost", "DNS:localhost,IP:127.0.0.1")
    make_cert(d, "client", "ca", "postgres")
    return lambda name: os.path.join(d, name)


@pytest.fixture(scope="module")
def sslpg(certs):
    """A cluster with ssl = on, its certificate signed by the test CA, which it also trusts for
    client certificates (optional: hba does not ask for one)."""
    cluster = PgCluster()
    cluster.start()
    for name in ("server.crt", "server.key", "ca.crt"):
        dst = os.path.join(cluster.data, name)
        with open(certs(name), "rb") as src, open(dst, "wb") as out:
            out.write(src.read())
        os.chmod(dst, 0o600)
        if cluster.as_root:
            subprocess.run(["chown", "postgres", dst], check=True)
    cluster.psql("ALTER SYSTEM SET ssl = on")
    cluster.psql("ALTER SYSTEM SET ssl_ca_file = 'ca.crt'")  # asks for client certificates
    cluster.psql("SELECT pg_reload_conf()")
    assert wait_for(lambda: cluster.psql("SHOW ssl")[0][0] == "on", HANG)
    subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p",
                    str(cluster.port), "-U", "postgres", "postgres"],
                   check=True, capture_output=True)
    cluster.psql("CREATE TABLE IF NOT EXISTS tls_kv (k int PRIMARY KEY, v int)")
    # alice must prove her password (SCRAM): Sluice's own passthrough login, or libpq's.
    hba = os.path.join(cluster.data, "pg_hba.conf")
    with open(hba) as f:
        rules = f.read()
    with open(hba, "w") as f:
        f.write("host all alice 127.0.0.1/32 scram-sha-256\n" + rules)
    cluster.psql("SET password_encryption = 'scram-sha-256'; "
                 "CREATE ROLE alice LOGIN PASSWORD 'alice-pw'; SELECT pg_reload_conf()")
    yield cluster
    cluster.destroy()


def line(pg, host="127.0.0.1", **kw):
    extra = "".join(f" {k}={v}" for k, v in kw.items())
    return {"postgres": f"host={host} port={pg.port} dbname=postgres{extra}"}


def server_tls(sluice_factory, pg, mode, host="127.0.0.1", line_kw=None, **keys):
    return sluice_factory(databases=line(pg, host, **(line_kw or {})), server_tls_sslmode=mode,
                          **keys)


def connect(s, **kw):
    conn = psycopg2.connect(host="127.0.0.1", port=s.port, user="postgres", dbname="postgres",
                            connect_timeout=10, **kw)
    conn.autocommit = True
    return conn


def one(conn, sql):
    cur = conn.cursor()
    cur.execute(sql)
    return cur.fetchone()[0]


def refused(s):
    with pytest.raises(psycopg2.OperationalError) as e:
        connect(s).close()
    return str(e.value)


# ---- sslmode against real servers ----

def test_require_relays_through_the_servers_tls_session(sluice_factory, sslpg):
    s = server_tls(sluice_factory, sslpg, "require")
    conn = connect(s)
    assert one(conn, SSL_QUERY) is True
    for i in range(20):  # request after request in the same session
        assert one(conn, f"SELECT {i} + 1") == i + 1
    assert one(conn, "SELECT count(*) FROM pgbench_branches") == 1
    conn.close()
    assert "over TLSv1." in s.log()


def verifying(sluice_factory, sslpg, certs, mode, name, ca):
    """A Sluice whose line names the server `name` (connecting to 127.0.0.1 all the same) and
    checks its certificate against `ca`."""
    return server_tls(sluice_factory, sslpg, mode, host=name, line_kw={"hostaddr": "127.0.0.1"},
                      server_tls_ca_file=certs(ca))


def encrypted(s):
    conn = connect(s)
    try:
        return one(conn, SSL_QUERY)
    finally:
        conn.close()


def test_verify_full_with_the_right_ca(sluice_factory, sslpg, certs):
    assert encrypted(verifying(sluice_factory, sslpg, certs, "verify-full", "localhost",
                               "ca.crt")) is True


def test_verify_full_with_a_wrong_ca_is_refused(sluice_factory, sslpg, certs):
    s = verifying(sluice_factory, sslpg, certs, "verify-full", "localhost", "otherca.crt")
    assert "certificate verify failed" in refused(s)
    assert "certificate verify failed" in s.log()
    assert sslpg.server_connections() == 0


def test_verify_full_with_a_wrong_host_name_is_refused(sluice_factory, sslpg, certs):
    s = verifying(sluice_factory, sslpg, certs, "verify-full", "wrong.example", "ca.crt")
    assert "does not match host name" in refused(s)
    assert "does not match host name" in s.log()


def test_verify_ca_ignores_the_name(sluice_factory, sslpg, certs):
    assert encrypted(verifying(sluice_factory, sslpg, certs, "verify-ca", "wrong.example",
                               "ca.crt")) is True


def test_require_against_a_server_without_ssl_never_goes_cleartext(sluice_factory, pg):
    before = pg.server_connections()
    s = server_tls(sluice_factory, pg, "require")
    err = refused(s)
    assert "server does not support SSL" in err
    assert "server does not support SSL" in s.log()
    assert pg.server_connections() == before


def test_prefer_is_tls_when_the_server_offers_it(sluice_factory, sslpg):
    assert encrypted(server_tls(sluice_factory, sslpg, "prefer")) is True


def test_prefer_is_plain_when_the_server_has_no_ssl(sluice_factory, pg):
    assert encrypted(server_tls(sluice_factory, pg, "prefer")) is False


def test_default_is_prefer(sluice_factory, sslpg):
    assert encrypted(sluice_factory(databases=line(sslpg))) is True


def test_the_lines_own_sslmode_wins(sluice_factory, sslpg):
    assert encrypted(server_tls(sluice_factory, sslpg, "require",
                                line_kw={"sslmode": "disable"})) is False


def test_client_certificate_to_the_server(sluice_factory, sslpg, certs):
    """server_tls_cert_file and server_tls_key_file: the server sees Sluice's certificate."""
    s = server_tls(sluice_factory, sslpg, "require", server_tls_cert_file=certs("client.crt"),
                   server_tls_key_file=certs("client.key"))
    conn = connect(s)
    assert one(conn, "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()") \
        == "/CN=postgres"
    conn.close()


def test_protocols_are_passed_to_libpq(sluice_factory, sslpg):
    s = server_tls(sluice_factory, sslpg, "require", server_tls_protocols="tlsv1.2")
    conn = connect(s)
    assert one(conn, "SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == "TLSv1.2"
    conn.close()


def test_a_tls12_cipher_outside_server_tls_ciphers_is_refused(sluice_factory, sslpg):
    s = server_tls(sluice_factory, sslpg, "require", server_tls_protocols="tlsv1.2",
                   server_tls_ciphers="ECDHE-ECDSA-CHACHA20-POLY1305")
    # libpq offers OpenSSL's default list and the server picks by its own preference (AES-GCM
    # first): whatever it picks, no query may run over a cipher outside the list.
    try:
        conn = connect(s)
    except psycopg2.OperationalError as e:
        assert "server_tls_ciphers" in str(e)
        assert "does not allow" in s.log()
        return
    assert one(conn, "SELECT cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()") \
        == "ECDHE-ECDSA-CHACHA20-POLY1305"
    conn.close()


def test_unusable_server_tls_values_fail_the_start(sluice_factory, sslpg):
    for keys in ({"server_tls_protocols": "sslv3"}, {"server_tls_ciphers": "NO-SUCH-CIPHER"}):
        with pytest.raises(RuntimeError) as e:
            server_tls(sluice_factory, sslpg, "require", **keys)
        assert next(iter(keys)) in str(e.value)


def test_reload_applies_to_new_server_connections(sluice_factory, sslpg):
    s = server_tls(sluice_factory, sslpg, "disable", pool_mode="session")
    first = connect(s)
    assert one(first, SSL_QUERY) is False
    with open(s.conf) as f:
        text = f.read()
    with open(s.conf, "w") as f:
        f.write(text.replace("server_tls_sslmode = disable", "server_tls_sslmode = require"))
    s.reload()
    assert wait_for(lambda: "configuration reloaded" in s.log(), HANG)
    second = connect(s)  # the first still holds its server: a new one is opened
    assert one(second, SSL_QUERY) is True
    assert one(first, SSL_QUERY) is False
    first.close()
    second.close()


# ---- volume, pooling, cancel ----

def test_40mb_result_through_server_tls_is_intact(sluice_factory, sslpg):
    s = server_tls(sluice_factory, sslpg, "require")
    conn = connect(s)
    cur = conn.cursor()
    cur.execute("SELECT i, md5(i::text) || repeat(chr(65 + i % 26), 1048576) "
                "FROM generate_series(1, 40) i")
    rows = cur.fetchall()
    assert len(rows) == 40
    for i, v in rows:
        assert len(v) == 32 + 1048576
        assert v[:32] == hashlib.md5(str(i).encode()).hexdigest()
        assert v[32:] == chr(65 + i % 26) * 1048576
    assert one(conn, SSL_QUERY) is True
    conn.close()


def test_transaction_pooling_many_clients_over_tls(sluice_factory, sslpg):
    s = server_tls(sluice_factory, sslpg, "require", pool_mode="transaction",
                   default_pool_size=4)
    sslpg.psql("TRUNCATE tls_kv")
    errors, n_clients, n_tx = [], 24, 15

    def client(c):
        try:
            conn = psycopg2.connect(host="127.0.0.1", port=s.port, user="postgres",
                                    dbname="postgres", connect_timeout=10)
            for t in range(n_tx):
                cur = conn.cursor()
                cur.execute("INSERT INTO tls_kv VALUES (%s, 0)", (c * 1000 + t,))
                cur.execute(SSL_QUERY)
                if cur.fetchone()[0] is not True:
                    errors.append("a transaction ran on a cleartext server connection")
                cur.execute("UPDATE tls_kv SET v = v + 1 WHERE k = %s", (c * 1000 + t,))
                conn.commit()
            conn.close()
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(c,)) for c in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sslpg.psql("SELECT count(*), sum(v) FROM tls_kv")[0] == (n_clients * n_tx,
                                                                  n_clients * n_tx)
    assert sslpg.server_connections() <= 4


def test_pgbench_through_server_tls(sluice_factory, sslpg):
    s = server_tls(sluice_factory, sslpg, "require", default_pool_size=10)
    b = pgbench(s.port, "-c", "20", "-j", "2", "-t", "50")
    assert b.rc == 0, b.out
    assert b.processed == 20 * 50
    assert b.failed in (0, -1)


def test_cancel_with_a_tls_server_connection(sluice_factory, sslpg):
    s = server_tls(sluice_factory, sslpg, "require")
    conn = connect(s)
    assert one(conn, SSL_QUERY) is True
    timer = threading.Timer(1.0, conn.cancel)
    timer.start()
    with pytest.raises(psycopg2.extensions.QueryCanceledError):
        one(conn, "SELECT pg_sleep(30)")
    timer.join()
    assert one(conn, "SELECT 7") == 7  # the server connection is still usable
    conn.close()


# ---- hostile servers ----

def fake_server(certs, behaviour):
    """A listener that answers the SSLRequest with 'S' and then runs behaviour(sock, ctx) for
    each connection; returns its port."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs("server.crt"), certs("server.key"))

    def serve():
        while True:
            try:
                sock, _ = lsock.accept()
            except OSError:
                return
            sock.settimeout(HANG)
            threading.Thread(target=run, args=(sock,), daemon=True).start()

    def run(sock):
        try:
            if sock.recv(8) != struct.pack("!II", 8, 80877103):
                return
            behaviour(sock, ctx)
        except (OSError, ssl.SSLError):
            pass
        finally:
            sock.close()

    threading.Thread(target=serve, daemon=True).start()
    return lsock


def via_fake(sluice_factory, lsock, mode="require"):
    port = lsock.getsockname()[1]
    return sluice_factory(databases={"postgres": f"host=127.0.0.1 port={port} dbname=postgres"},
                          server_tls_sslmode=mode)


def msg(t, body=b""):
    return t + struct.pack("!I", len(body) + 4) + body


def login(tls):
    """Reads the startup packet and logs the client in (trust)."""
    n = struct.unpack("!I", tls.recv(4))[0]
    got = b""
    while len(got) < n - 4:
        got += tls.recv(n - 4 - len(got))
    tls.sendall(msg(b"R", struct.pack("!I", 0)) +
                msg(b"S", b"server_version\x0015.0\x00") +
                msg(b"S", b"client_encoding\x00UTF8\x00") +
                msg(b"S", b"standard_conforming_strings\x00on\x00") +
                msg(b"S", b"integer_datetimes\x00on\x00") +
                msg(b"S", b"DateStyle\x00ISO, MDY\x00") +
                msg(b"K", struct.pack("!II", 1234, 5678)) + msg(b"Z", b"I"))


def test_cleartext_injected_into_the_tls_stream_ends_the_server_connection(sluice_factory,
                                                                            certs):
    def behaviour(sock, ctx):
        sock.sendall(b"S")
        raw = sock.dup()  # wrap_socket detaches sock
        tls = ctx.wrap_socket(sock, server_side=True)
        login(tls)
        tls.recv(65536)  # the client's first query
        # Bytes outside any TLS record on the raw socket: an attacker on the path.
        raw.sendall(msg(b"T", b"\x00\x00") + msg(b"C", b"SELECT 1\x00") + msg(b"Z", b"I"))
        threading.Event().wait(HANG)

    lsock = fake_server(certs, behaviour)
    try:
        s = via_fake(sluice_factory, lsock, "require")
        conn = connect(s)
        with pytest.raises(psycopg2.Error):
            one(conn, "SELECT 1")
        conn.close()
        assert "server: TLS failed: wrong version number" in s.log()
    finally:
        lsock.close()


def test_a_server_that_answers_s_but_speaks_no_tls_is_refused(sluice_factory, certs):
    def behaviour(sock, ctx):
        sock.sendall(b"S")
        sock.recv(4096)  # the ClientHello
        sock.sendall(msg(b"R", struct.pack("!I", 0)) + msg(b"Z", b"I"))

    lsock = fake_server(certs, behaviour)
    try:
        s = via_fake(sluice_factory, lsock, "prefer")
        err = refused(s)
        assert "SSL" in err or "TLS" in err
    finally:
        lsock.close()


def test_the_fake_server_works_when_honest(sluice_factory, certs):
    """The fake server's login is good enough for Sluice: the hostile cases above fail for the
    reason they claim."""
    def behaviour(sock, ctx):
        sock.sendall(b"S")
        tls = ctx.wrap_socket(sock, server_side=True)
        login(tls)
        tls.recv(65536)
        tls.sendall(msg(b"T", struct.pack("!H", 1) + b"x\x00" + struct.pack("!IhIhih", 0, 0, 23,
                                                                            4, -1, 0)) +
                    msg(b"D", struct.pack("!HI", 1, 1) + b"1") +
                    msg(b"C", b"SELECT 1\x00") + msg(b"Z", b"I"))
        threading.Event().wait(HANG)

    lsock = fake_server(certs, behaviour)
    try:
        s = via_fake(sluice_factory, lsock, "require")
        conn = connect(s)
        assert one(conn, "SELECT 1") == 1
        conn.close()
    finally:
        lsock.close()


# ---- Sluice's own login (md5/SCRAM passthrough): its own TLS ----

def alice_secret(sslpg):
    return sslpg.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'alice'")[0][0]


def passthrough(sluice_factory, pg, tmp_path, mode, secret, user="alice", host="127.0.0.1",
                line_kw=None, **keys):
    users = tmp_path / "users.txt"
    users.write_text(f'"{user}" "{secret}"\n')
    return server_tls(sluice_factory, pg, mode, host=host, line_kw=line_kw,
                      auth_type="scram-sha-256", auth_file=str(users), **keys)


def alice(s, user="alice"):
    conn = psycopg2.connect(host="127.0.0.1", port=s.port, user=user, password="alice-pw",
                            dbname="postgres", connect_timeout=10)
    conn.autocommit = True
    return conn


@pytest.mark.parametrize("mode", ["require", "prefer"])
def test_scram_passthrough_over_tls(sluice_factory, sslpg, tmp_path, mode):
    s = passthrough(sluice_factory, sslpg, tmp_path, mode, alice_secret(sslpg))
    conns = [alice(s) for _ in range(3)]
    for c in conns:
        assert one(c, SSL_QUERY) is True
        assert one(c, "SELECT current_user") == "alice"
    for c in conns:
        c.close()
    log = s.log()
    assert "itself (SCRAM passthrough)" in log
    assert "server: TLS established" in log


def test_passthrough_verify_full(sluice_factory, sslpg, tmp_path, certs):
    s = passthrough(sluice_factory, sslpg, tmp_path, "verify-full", alice_secret(sslpg),
                    host="localhost", line_kw={"hostaddr": "127.0.0.1"},
                    server_tls_ca_file=certs("ca.crt"))
    conn = alice(s)
    assert one(conn, SSL_QUERY) is True
    conn.close()


@pytest.mark.parametrize("name,ca,reason", [
    ("localhost", "otherca.crt", "TLS handshake with the server failed: self-signed certificate"),
    ("wrong.example", "ca.crt", "TLS handshake with the server failed: hostname mismatch"),
])
def test_passthrough_verify_full_refusals(sluice_factory, sslpg, tmp_path, certs, name, ca,
                                          reason):
    s = passthrough(sluice_factory, sslpg, tmp_path, "verify-full", alice_secret(sslpg),
                    host=name, line_kw={"hostaddr": "127.0.0.1"}, server_tls_ca_file=certs(ca))
    with pytest.raises(psycopg2.OperationalError) as e:
        alice(s).close()
    assert reason in str(e.value)
    assert reason in s.log()


def test_passthrough_require_against_a_server_without_ssl(sluice_factory, pg, sslpg, tmp_path):
    """The shared cluster trusts everyone and has no SSL: the own login asks for TLS, gets 'N'
    and stops there."""
    s = passthrough(sluice_factory, pg, tmp_path, "require", alice_secret(sslpg),
                    user="postgres")
    with pytest.raises(psycopg2.OperationalError) as e:
        alice(s, user="postgres").close()
    assert "server does not support SSL, but SSL was required" in str(e.value)


def test_passthrough_prefer_against_a_server_without_ssl(sluice_factory, pg, sslpg, tmp_path):
    s = passthrough(sluice_factory, pg, tmp_path, "prefer", alice_secret(sslpg), user="postgres")
    conn = alice(s, user="postgres")
    assert one(conn, SSL_QUERY) is False
    conn.close()


def test_passthrough_refuses_cleartext_after_the_ssl_answer(sluice_factory, sslpg, tmp_path,
                                                            certs):
    """'S' and a forged AuthenticationOk in one packet: the forged bytes must not be taken as
    the server's (CVE-2021-23222 in libpq)."""
    lsock = fake_server(certs, lambda sock, ctx: (
        sock.sendall(b"S" + msg(b"R", struct.pack("!I", 0)) + msg(b"Z", b"I")),
        sock.recv(4096)))
    try:
        users = tmp_path / "users.txt"
        users.write_text(f'"alice" "{alice_secret(sslpg)}"\n')
        port = lsock.getsockname()[1]
        s = sluice_factory(databases={"postgres": f"host=127.0.0.1 port={port} dbname=postgres"},
                           server_tls_sslmode="require", auth_type="scram-sha-256",
                           auth_file=str(users))
        with pytest.raises(psycopg2.OperationalError) as e:
            alice(s).close()
        assert "unencrypted data after its SSL answer" in str(e.value)
    finally:
        lsock.close()


def test_a_password_in_the_users_file_logs_in_through_libpq_over_tls(sluice_factory, sslpg,
                                                                     tmp_path):
    s = passthrough(sluice_factory, sslpg, tmp_path, "require", "alice-pw")
    conn = alice(s)
    assert one(conn, SSL_QUERY) is True
    conn.close()
    assert "passthrough" not in s.log()
