"""TLS between clients and Sluice: client_tls_sslmode, certificates, cert authentication, hba
hostssl/hostnossl, PostgreSQL 17's direct TLS, reloads of the certificate, and hostile TLS
clients.

A test CA and every certificate and key are made at test time with the openssl CLI: a server
certificate for 127.0.0.1 and localhost, one for another name, client certificates whose CN is
a user, and a second CA nobody trusts.
"""
import os
import socket
import ssl
import struct
import subprocess

import psycopg2
import pytest

from pgutil import (accepted_sockets, error_fields, message,
                    read_messages, read_to_eof, startup_packet, wait_for)
from tlscerts import client_hello, make_pki

HANG = 20
SSL_REQUEST = struct.pack("!II", 8, 80877103)


@pytest.fixture(scope="module")
def certs():
    return make_pki("sluice-tls-", ["certuser", "intruder"])


@pytest.fixture(scope="module")
def roles(pg):
    conn = pg.connect()
    conn.autocommit = True
    cur = conn.cursor()
    # Created when missing, never dropped: other test files of the run share the server.
    for name in ("certuser", "intruder", "tls_sslonly", "tls_nossl"):
        cur.execute(f"DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') "
                    f"THEN CREATE ROLE {name} LOGIN; END IF; END$$")
    conn.close()


def tls_sluice(sluice_factory, certs, mode="require", cert="server", **keys):
    return sluice_factory(client_tls_sslmode=mode, client_tls_key_file=certs(cert + ".key"),
                          client_tls_cert_file=certs(cert + ".crt"),
                          client_tls_ca_file=certs("ca.crt"), **keys)


def connect(s, user="postgres", host="127.0.0.1", **kw):
    conn = psycopg2.connect(host=host, port=s.port, user=user, dbname="postgres",
                            connect_timeout=10, **kw)
    conn.autocommit = True
    return conn


def query(conn, sql="SELECT current_user"):
    cur = conn.cursor()
    cur.execute(sql)
    return cur.fetchone()[0]


def refused(s, **kw):
    with pytest.raises(psycopg2.OperationalError) as e:
        connect(s, **kw).close()
    return str(e.value)


def idle_fds(s, pg):
    """Sluice's descriptors once it holds no client connection (the start-up probe's included),
    not counting its server connections."""
    assert wait_for(lambda: accepted_sockets(s.pid, s.port) == 0, HANG)
    return s.fd_count(pg.port)


def fatal(msgs):
    errs = [error_fields(b) for t, b in msgs if t == b"E"]
    assert errs, msgs
    return errs[0]


def tls_socket(s, alpn=None, direct=False, **ctx_kw):
    """A TLS connection to Sluice with Python's ssl module: after an SSLRequest, or direct."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for k, v in ctx_kw.items():
        setattr(ctx, k, v)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    raw = socket.create_connection(("127.0.0.1", s.port), timeout=HANG)
    if not direct:
        raw.sendall(SSL_REQUEST)
        assert raw.recv(1) == b"S"
    return ctx.wrap_socket(raw)


# ---- real clients ----

def test_psql_psycopg2_pgbench_with_require_and_verify_full(sluice_factory, certs):
    s = tls_sluice(sluice_factory, certs)
    conn = connect(s, sslmode="require")
    assert conn.info.ssl_in_use and conn.info.ssl_attribute("protocol") in ("TLSv1.2", "TLSv1.3")
    assert query(conn) == "postgres"
    for host in ("127.0.0.1", "localhost"):
        c = connect(s, host=host, sslmode="verify-full", sslrootcert=certs("ca.crt"))
        assert c.info.ssl_in_use and query(c, "SELECT 40 + 2") == 42
        c.close()
    env = dict(os.environ, PGSSLMODE="verify-full", PGSSLROOTCERT=certs("ca.crt"),
               PGCONNECT_TIMEOUT="10")
    p = subprocess.run(["psql", "-X", "-At", "-h", "localhost", "-p", str(s.port), "-U",
                        "postgres", "-d", "postgres", "-c", "SELECT 'through tls'"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0 and p.stdout.strip() == "through tls", p.stderr
    p = subprocess.run(["pgbench", "-n", "-S", "-c", "4", "-t", "50", "-h", "127.0.0.1", "-p",
                        str(s.port), "-U", "postgres", "postgres"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0 and "number of failed transactions: 0" in p.stdout, p.stdout + p.stderr
    p = subprocess.run(["pgbench", "-n", "-C", "-S", "-c", "2", "-t", "20", "-h", "127.0.0.1",
                        "-p", str(s.port), "-U", "postgres", "postgres"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    # A large result crosses TLS records whole.
    assert query(conn, "SELECT length(repeat('x', 5000000))") == 5000000
    assert query(conn, "SELECT md5(string_agg(g::text, ',')) FROM generate_series(1, 100000) g") \
        == query(conn, "SELECT md5(string_agg(g::text, ',')) FROM generate_series(1, 100000) g")
    cur = conn.cursor()
    cur.execute("SELECT repeat('y', 3000000)")
    assert cur.fetchone()[0] == "y" * 3000000
    conn.close()


def test_wrong_name_and_unknown_ca_fail_on_the_client(sluice_factory, certs):
    s = tls_sluice(sluice_factory, certs, cert="wrongname")
    err = refused(s, sslmode="verify-full", sslrootcert=certs("ca.crt"))
    assert "does not match host name" in err, err
    c = connect(s, sslmode="verify-ca", sslrootcert=certs("ca.crt"))  # the CA alone is right
    assert query(c) == "postgres"
    c.close()
    err = refused(s, sslmode="verify-ca", sslrootcert=certs("otherca.crt"))
    assert "certificate verify failed" in err, err
    assert s.running()


def test_require_refuses_a_cleartext_client_with_28000(sluice_factory, certs):
    s = tls_sluice(sluice_factory, certs)
    err = refused(s, sslmode="disable")
    assert "SSL required" in err, err
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=HANG)
    sock.sendall(startup_packet())
    msgs, eof = read_to_eof(sock, timeout=HANG)
    assert eof and fatal(msgs)["C"] == "28000", msgs
    assert not any(t == b"R" for t, _ in msgs), "no credential asked"
    # The Unix socket does not cross the network (libpq never asks for TLS there).
    c = connect(s, host=s.dir)
    assert query(c) == "postgres"
    c.close()


def test_prefer_serves_both_and_disable_answers_n(sluice_factory, certs):
    s = tls_sluice(sluice_factory, certs, mode="prefer")
    a, b = connect(s, sslmode="require"), connect(s, sslmode="disable")
    assert a.info.ssl_in_use and not b.info.ssl_in_use
    assert query(a) == query(b) == "postgres"
    plain = sluice_factory()
    err = refused(plain, sslmode="require")
    assert "does not support SSL" in err, err
    c = connect(plain, sslmode="prefer")
    assert not c.info.ssl_in_use and query(c) == "postgres"


def test_gssencrequest_still_gets_n(sluice_factory, certs):
    s = tls_sluice(sluice_factory, certs)
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=HANG)
    sock.sendall(struct.pack("!II", 8, 80877104))
    assert sock.recv(1) == b"N"
    # The client may then ask for TLS on the same connection, as libpq does.
    sock.sendall(SSL_REQUEST)
    assert sock.recv(1) == b"S"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    t = ctx.wrap_socket(sock)
    t.sendall(startup_packet())
    msgs, eof = read_messages(t, timeout=HANG)
    assert not eof and msgs[-1] == (b"Z", b"I"), msgs


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_old_protocol_versions_are_refused(sluice_factory, certs):
    s = tls_sluice(sluice_factory, certs)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        tls_socket(s, maximum_version=ssl.TLSVersion.TLSv1_1,
                   minimum_version=ssl.TLSVersion.TLSv1)
    c = connect(s, sslmode="require")
    assert query(c) == "postgres"


# ---- certificates as credentials ----

def test_cert_authentication(sluice_factory, certs, roles):
    s = tls_sluice(sluice_factory, certs, auth_type="cert")
    c = connect(s, user="certuser", sslmode="require", sslcert=certs("certuser.crt"),
                sslkey=certs("certuser.key"))
    assert query(c) == "certuser"
    c.close()
    err = refused(s, user="certuser", sslmode="require", sslcert=certs("intruder.crt"),
                  sslkey=certs("intruder.key"))
    assert 'certificate authentication failed for user "certuser"' in err, err
    err = refused(s, user="certuser", sslmode="require", sslcert=certs("nonexistent.crt"))
    assert "connection requires a valid client certificate" in err, err
    # A certificate of an untrusted CA fails the handshake, whatever its CN.
    err = refused(s, user="certuser", sslmode="require", sslcert=certs("stranger.crt"),
                  sslkey=certs("stranger.key"))
    assert "SSL" in err or "certificate" in err, err
    assert s.running()


def test_verify_full_requires_a_client_certificate(sluice_factory, certs, roles):
    s = tls_sluice(sluice_factory, certs, mode="verify-full")
    err = refused(s, sslmode="require", sslcert=certs("nonexistent.crt"))
    assert "certificate" in err.lower() or "SSL" in err, err
    c = connect(s, user="intruder", sslmode="require", sslcert=certs("intruder.crt"),
                sslkey=certs("intruder.key"))
    assert query(c) == "intruder"  # trust: any verified certificate gets in


def test_hba_hostssl_hostnossl_and_cert(sluice_factory, certs, roles, tmp_path):
    hba = tmp_path / "hba.conf"
    hba.write_text("hostssl   all tls_sslonly 127.0.0.1/32 trust\n"
                   "hostnossl all tls_nossl   127.0.0.1/32 trust\n"
                   "hostssl   all certuser 127.0.0.1/32 cert\n"
                   "host      all postgres 127.0.0.1/32 trust\n")
    s = tls_sluice(sluice_factory, certs, mode="prefer", auth_type="hba",
                   auth_hba_file=str(hba))
    assert query(connect(s, user="tls_sslonly", sslmode="require")) == "tls_sslonly"
    err = refused(s, user="tls_sslonly", sslmode="disable")
    assert 'no pg_hba.conf entry for host "127.0.0.1", user "tls_sslonly"' in err, err
    assert "no encryption" in err
    assert query(connect(s, user="tls_nossl", sslmode="disable")) == "tls_nossl"
    err = refused(s, user="tls_nossl", sslmode="require")
    assert 'user "tls_nossl"' in err and "SSL encryption" in err, err
    c = connect(s, user="certuser", sslmode="require", sslcert=certs("certuser.crt"),
                sslkey=certs("certuser.key"))
    assert query(c) == "certuser"
    err = refused(s, user="certuser", sslmode="require", sslcert=certs("intruder.crt"),
                  sslkey=certs("intruder.key"))
    assert 'certificate authentication failed for user "certuser"' in err, err


# ---- PostgreSQL 17's direct TLS ----

def test_direct_tls_with_alpn_logs_in(sluice_factory, certs):
    s = tls_sluice(sluice_factory, certs)
    t = tls_socket(s, alpn=["postgresql"], direct=True)
    assert t.selected_alpn_protocol() == "postgresql"
    t.sendall(startup_packet())
    msgs, eof = read_messages(t, timeout=HANG)
    assert not eof and msgs[-1] == (b"Z", b"I"), msgs
    t.sendall(message(b"Q", b"SELECT 'direct'\0"))
    msgs, eof = read_messages(t, timeout=HANG)
    assert any(m[0] == b"D" and b"direct" in m[1] for m in msgs), msgs
    t.close()


def test_direct_tls_without_alpn_is_refused(sluice_factory, certs):
    s = tls_sluice(sluice_factory, certs)
    t = tls_socket(s, direct=True)
    msgs, eof = read_to_eof(t, timeout=HANG)
    err = fatal(msgs)
    assert err["C"] == "08P01" and "ALPN" in err["M"], err
    # Another protocol named in ALPN: the handshake itself fails.
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        tls_socket(s, alpn=["http/1.1"], direct=True)
    c = connect(s, sslmode="require")
    assert query(c) == "postgres"


# ---- reload ----

def peer_cert(s):
    t = tls_socket(s)
    der = t.getpeercert(binary_form=True)
    t.close()
    return der


def der_of(path):
    return ssl.PEM_cert_to_DER_cert(open(path).read())


def test_sighup_loads_a_new_certificate_for_new_connections(sluice_factory, certs, tmp_path):
    key, cert = tmp_path / "tls.key", tmp_path / "tls.crt"
    key.write_bytes(open(certs("server.key"), "rb").read())
    cert.write_bytes(open(certs("server.crt"), "rb").read())
    s = sluice_factory(client_tls_sslmode="require", client_tls_key_file=str(key),
                       client_tls_cert_file=str(cert))
    held = connect(s, sslmode="require")
    assert peer_cert(s) == der_of(certs("server.crt"))
    key.write_bytes(open(certs("server2.key"), "rb").read())
    cert.write_bytes(open(certs("server2.crt"), "rb").read())
    s.reload()
    assert wait_for(lambda: "configuration reloaded" in s.log(), HANG)
    assert peer_cert(s) == der_of(certs("server2.crt"))
    assert query(held, "SELECT repeat('z', 100000)") == "z" * 100000  # the old session goes on
    # A key that does not match its certificate: the reload is refused, the old context stays.
    key.write_bytes(open(certs("server.key"), "rb").read())
    s.reload()
    assert wait_for(lambda: "refused: client TLS" in s.log(), HANG), s.log()[-2000:]
    assert peer_cert(s) == der_of(certs("server2.crt"))
    assert query(held) == "postgres"
    # --check validates the files too.
    p = subprocess.run([os.environ.get("SLUICE_BIN", "build/sluice"), "--check", s.conf],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "client TLS" in p.stderr, p.stderr


# ---- hostile clients ----

def test_client_hello_to_a_listener_without_tls(sluice_factory):
    s = sluice_factory()
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=HANG)
    sock.sendall(client_hello())
    msgs, eof = read_to_eof(sock, timeout=HANG)
    assert eof and fatal(msgs)["C"] == "08P01", msgs
    assert query(connect(s)) == "postgres"


def test_hostile_tls_clients_leave_nothing_behind(sluice_factory, certs, pg):
    s = tls_sluice(sluice_factory, certs)
    base = idle_fds(s, pg)
    # Garbage after 'S'.
    g = socket.create_connection(("127.0.0.1", s.port), timeout=HANG)
    g.sendall(SSL_REQUEST)
    assert g.recv(1) == b"S"
    g.sendall(b"\x16\x03\x01\xff\xff" + os.urandom(3000))
    _, eof = read_to_eof(g, timeout=HANG)
    assert eof
    g.close()
    # Plain PostgreSQL after 'S' (a client that ignores the answer).
    g = socket.create_connection(("127.0.0.1", s.port), timeout=HANG)
    g.sendall(SSL_REQUEST)
    assert g.recv(1) == b"S"
    g.sendall(startup_packet())
    _, eof = read_to_eof(g, timeout=HANG)
    assert eof
    g.close()
    # Bytes pipelined behind the SSLRequest: refused in clear, before any 'S'.
    p = socket.create_connection(("127.0.0.1", s.port), timeout=HANG)
    p.sendall(SSL_REQUEST + startup_packet())
    msgs, eof = read_to_eof(p, timeout=HANG)
    err = fatal(msgs)
    assert eof and err["C"] == "08P01" and "unencrypted data after SSL request" in err["M"], msgs
    p.close()
    # Handshakes abandoned halfway: half a ClientHello then silence, and then a close.
    hello = client_hello()
    halves = []
    for _ in range(3):
        h = socket.create_connection(("127.0.0.1", s.port), timeout=HANG)
        h.sendall(SSL_REQUEST)
        assert h.recv(1) == b"S"
        h.sendall(hello[:len(hello) // 2])
        halves.append(h)
    d = socket.create_connection(("127.0.0.1", s.port), timeout=HANG)
    d.sendall(hello[:40])  # direct TLS, cut short
    halves.append(d)
    c = connect(s, sslmode="require")  # others unaffected meanwhile
    assert query(c) == "postgres"
    c.close()
    for h in halves:
        h.close()
    assert wait_for(lambda: idle_fds(s, pg) == base, HANG), (s.fd_count(pg.port), base)
    assert s.running()
    assert "client: TLS failed" in s.log()


def test_tls_client_that_stops_reading_mid_result(sluice_factory, certs, pg):
    s = tls_sluice(sluice_factory, certs)
    base = idle_fds(s, pg)
    t = tls_socket(s, alpn=["postgresql"], direct=True)
    t.sendall(startup_packet())
    msgs, _ = read_messages(t, timeout=HANG)
    assert msgs[-1] == (b"Z", b"I")
    t.sendall(message(b"Q", b"SELECT repeat('x', 1000000) FROM generate_series(1, 60)\0"))
    t.recv(100)  # the result has begun; nothing more is read
    others = [connect(s, sslmode="require") for _ in range(3)]
    for i in range(20):
        for o in others:
            assert query(o, f"SELECT {i}") == i
    c = connect(s, sslmode="require")
    assert query(c, "SELECT length(repeat('q', 2000000))") == 2000000
    for o in others + [c]:
        o.close()
    t.close()
    assert wait_for(lambda: idle_fds(s, pg) == base, HANG), (s.fd_count(pg.port), base)
    assert query(connect(s, sslmode="require")) == "postgres"
