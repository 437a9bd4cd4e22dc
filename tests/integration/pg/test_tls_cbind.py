"""SCRAM-SHA-256-PLUS: channel binding (tls-server-end-point) between clients and Sluice.

Real clients (psql, psycopg2 with channel_binding=require) and a hand-made SCRAM client over
Python's ssl module, which can send any gs2 flag, mechanism and binding data: the refusals must
be PostgreSQL's (auth-scram.c) and end only the connection that earned them.
"""
import base64
import hashlib
import hmac
import os
import socket
import struct
import subprocess

import psycopg2
import pytest

from pgutil import error_fields, message, read_messages, read_to_eof, startup_packet
from test_auth import auth_request, fatal_of, sasl_initial
from test_tls import certs, tls_sluice, tls_socket  # noqa: F401 (a fixture)
from tlscerts import openssl

PASSWORD = "bound pass"
USER = "cbind_user"
HANG = 20
CB_HEADER = b"p=tls-server-end-point,,"


@pytest.fixture(scope="module")
def verifier(pg):
    """USER on the server with a SCRAM secret; its verifier as pg_authid holds it (Sluice logs
    in to the server with it by SCRAM passthrough)."""
    conn = pg.connect()
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute(f"DROP ROLE IF EXISTS {USER}")
    cur.execute("SET password_encryption = 'scram-sha-256'")
    cur.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
    cur.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (USER,))
    v = cur.fetchone()[0]
    conn.close()
    return v


def scram_sluice(sluice_factory, certs, verifier, cert="server", **keys):  # noqa: F811
    path = os.path.join(certs(""), f"users-{cert}.txt")
    with open(path, "w") as f:
        f.write(f'"{USER}" "{verifier}"\n')
    return tls_sluice(sluice_factory, certs, mode="prefer", cert=cert,
                      auth_type="scram-sha-256", auth_file=path, **keys)


def libpq_env(**kw):
    env = dict(os.environ, PGPASSWORD=PASSWORD, PGCONNECT_TIMEOUT="10")
    env.update(kw)
    return env


def psql(s, **env):
    return subprocess.run(["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(s.port), "-U", USER,
                           "-d", "postgres", "-c", "SELECT current_user"],
                          capture_output=True, text=True, timeout=60, env=libpq_env(**env))


def connect(s, **kw):
    conn = psycopg2.connect(host="127.0.0.1", port=s.port, user=USER, password=PASSWORD,
                            dbname="postgres", connect_timeout=10, **kw)
    conn.autocommit = True
    return conn


def current_user(conn):
    cur = conn.cursor()
    cur.execute("SELECT current_user")
    return cur.fetchone()[0]


# ---- a hand-made client ----

def open_sock(s, tls):
    if tls:
        return tls_socket(s)
    return socket.create_connection(("127.0.0.1", s.port), timeout=HANG)


def end_point(sock):
    """tls-server-end-point of the certificate the server presented (signed with SHA-256)."""
    return hashlib.sha256(sock.getpeercert(binary_form=True)).digest()


def login(s, tls=True, mech="SCRAM-SHA-256-PLUS", gs2=CB_HEADER, cbind=None):
    """A raw SCRAM login: the mechanisms offered, then either the FATAL error fields or None
    when it got in (the server's signature checked). cbind: the binding data sent in c= after
    the gs2 header (None: the certificate's real end point when gs2 binds, nothing otherwise)."""
    sock = open_sock(s, tls)
    sock.sendall(startup_packet(user=USER))
    code, offered = auth_request(sock)
    assert code == 10, code
    if cbind is None:
        cbind = end_point(sock) if gs2.startswith(b"p=") else b""
    nonce = base64.b64encode(os.urandom(18)).decode()
    bare = f"n=,r={nonce}"
    sock.sendall(sasl_initial(mech, gs2 + bare.encode()))
    msgs, eof = read_messages(sock, until=b"R", timeout=HANG)
    if not msgs or msgs[-1][0] != b"R":
        return offered, fatal_of_msgs(msgs, eof, sock)
    sf = msgs[-1][1][4:].decode()
    attrs = dict(kv.split("=", 1) for kv in sf.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    ck = hmac.new(salted, b"Client Key", "sha256").digest()
    without_proof = f"c={base64.b64encode(gs2 + cbind).decode()},r={attrs['r']}"
    am = f"{bare},{sf},{without_proof}".encode()
    sig = hmac.new(hashlib.sha256(ck).digest(), am, "sha256").digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(ck, sig))).decode()
    sock.sendall(message(b"p", f"{without_proof},p={proof}".encode()))
    msgs, eof = read_messages(sock, until=b"Z", timeout=HANG)
    if not msgs or msgs[-1][0] != b"Z":
        return offered, fatal_of_msgs(msgs, eof, sock)
    sk = hmac.new(salted, b"Server Key", "sha256").digest()
    final = [b for t, b in msgs if t == b"R" and struct.unpack("!I", b[:4])[0] == 12]
    assert final and final[0][4:] == b"v=" + base64.b64encode(hmac.new(sk, am, "sha256").digest())
    sock.close()
    return offered, None


def fatal_of_msgs(msgs, eof, sock):
    errors = [error_fields(b) for t, b in msgs if t == b"E"]
    if not errors:
        return fatal_of(sock)
    more, eof = read_to_eof(sock, timeout=HANG)
    assert eof and not more, more
    assert len(errors) == 1 and errors[0]["S"] == "FATAL", msgs
    sock.close()
    return errors[0]


PLUS_OFFER = b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"
PLAIN_OFFER = b"SCRAM-SHA-256\0\0"


# ---- real clients ----

def test_libpq_and_psycopg2_with_channel_binding_require(sluice_factory, certs, verifier):
    s = scram_sluice(sluice_factory, certs, verifier)
    p = psql(s, PGSSLMODE="require", PGCHANNELBINDING="require")
    assert p.returncode == 0 and p.stdout.strip() == USER, p.stderr
    conn = connect(s, sslmode="require", channel_binding="require")
    assert conn.info.ssl_in_use and current_user(conn) == USER
    conn.close()
    # libpq's default (prefer) binds over TLS too, and plain SCRAM still works without TLS
    assert psql(s, PGSSLMODE="require").returncode == 0
    p = psql(s, PGSSLMODE="disable")
    assert p.returncode == 0 and p.stdout.strip() == USER, p.stderr


def test_channel_binding_require_without_tls_fails_on_the_client(sluice_factory, certs,
                                                                 verifier):
    s = scram_sluice(sluice_factory, certs, verifier)
    p = psql(s, PGSSLMODE="disable", PGCHANNELBINDING="require")
    assert p.returncode != 0 and "channel binding" in p.stderr, p.stderr
    with pytest.raises(psycopg2.OperationalError) as e:
        connect(s, sslmode="disable", channel_binding="require").close()
    assert "channel binding" in str(e.value)


def test_a_certificate_without_a_defined_end_point_offers_no_plus(sluice_factory, certs,
                                                                  verifier):
    """Ed25519 signatures hash nothing (RFC 5929 leaves the end point undefined): no -PLUS is
    offered, so channel_binding=require fails on the client and prefer logs in unbound."""
    d = certs("")
    openssl("req", "-x509", "-newkey", "ed25519", "-nodes", "-keyout", "ed.key", "-out",
            "ed.crt", "-days", "2", "-subj", "/CN=localhost", cwd=d)
    s = scram_sluice(sluice_factory, certs, verifier, cert="ed")
    offered, err = login(s, mech="SCRAM-SHA-256", gs2=b"y,,")
    assert offered == PLAIN_OFFER and err is None, err
    p = psql(s, PGSSLMODE="require", PGCHANNELBINDING="require")
    assert p.returncode != 0 and "channel binding" in p.stderr, p.stderr
    assert psql(s, PGSSLMODE="require").returncode == 0


# ---- the hand-made client: offers, and what PostgreSQL refuses ----

def test_offer_and_a_correct_binding(sluice_factory, certs, verifier):
    s = scram_sluice(sluice_factory, certs, verifier)
    assert login(s) == (PLUS_OFFER, None)
    # plain SCRAM over TLS, "n": the client cannot bind; fine
    assert login(s, mech="SCRAM-SHA-256", gs2=b"n,,") == (PLUS_OFFER, None)
    # without TLS: no -PLUS offered, "y" is honest
    assert login(s, tls=False, mech="SCRAM-SHA-256", gs2=b"y,,") == (PLAIN_OFFER, None)


@pytest.mark.parametrize("case,tls,mech,gs2,cbind,code,text", [
    ("wrong binding data", True, "SCRAM-SHA-256-PLUS", CB_HEADER, b"\0" * 32, "28000",
     "SCRAM channel binding check failed"),
    ("binding data of another length", True, "SCRAM-SHA-256-PLUS", CB_HEADER, b"\0" * 48,
     "28000", "SCRAM channel binding check failed"),
    ("no binding data", True, "SCRAM-SHA-256-PLUS", CB_HEADER, b"", "28000",
     "SCRAM channel binding check failed"),
    ("downgrade: y where the server binds", True, "SCRAM-SHA-256", b"y,,", b"", "28000",
     "SCRAM channel binding negotiation error"),
    ("-PLUS without TLS", False, "SCRAM-SHA-256-PLUS", CB_HEADER, b"", "08P01",
     "client selected an invalid SASL authentication mechanism"),
    ("-PLUS with n", True, "SCRAM-SHA-256-PLUS", b"n,,", b"", "08P01",
     "does not include channel binding data"),
    ("-PLUS with y", True, "SCRAM-SHA-256-PLUS", b"y,,", b"", "08P01",
     "does not include channel binding data"),
    ("p under plain SCRAM", True, "SCRAM-SHA-256", CB_HEADER, None, "08P01",
     "includes channel binding data"),
    ("another binding type", True, "SCRAM-SHA-256-PLUS", b"p=tls-unique,,", b"", "08P01",
     "unsupported SCRAM channel-binding type"),
])
def test_refusals_are_postgres_and_leave_others_alone(sluice_factory, certs, verifier, case, tls,
                                                      mech, gs2, cbind, code, text):
    s = scram_sluice(sluice_factory, certs, verifier)
    bystander = connect(s, sslmode="require", channel_binding="require")
    _, err = login(s, tls=tls, mech=mech, gs2=gs2, cbind=cbind)
    assert err is not None, case
    assert err["C"] == code and text in err["M"], (case, err)
    assert "password" not in err["M"], (case, err)  # the proof was never the question
    assert current_user(bystander) == USER
    bystander.close()
    assert login(s) == (PLUS_OFFER, None)
    assert s.running()
