"""Client authentication through Sluice: auth_type trust, plain, md5, scram-sha-256 and hba, with
an auth_file holding plaintext, md5 and SCRAM secrets, as real clients (psql, psycopg2, pgbench)
and raw sockets see it.

PostgreSQL itself stays on trust for Sluice's own logins (Sluice logs in to it with the
[databases] line's credentials); the roles below exist on it so those logins work, and their
stored secrets (pg_authid) are what an operator would copy into auth_file: an md5 hash for the
md5 users, a SCRAM verifier for the others (password_encryption = scram-sha-256).
"""
import base64
import hashlib
import hmac
import os
import socket
import struct
import subprocess
import tempfile

import psycopg2
import pytest

from conftest import SLUICE_BIN
from pgutil import error_fields, message, read_messages, read_to_eof, startup_packet, wait_for

PASSWORD = "s3cret pass"
HANG = 20


@pytest.fixture(scope="module")
def roles(pg):
    """Roles on the server, and their secrets as pg_authid holds them."""
    stmts = []
    for name, enc in (("alice", "scram-sha-256"), ("bob", "md5"), ("carol", "scram-sha-256"),
                      ("dave", "scram-sha-256"), ("erin", "scram-sha-256"),
                      ("frank", "scram-sha-256"), ("trusty", "md5"), ("nossl", "md5"),
                      ("sslonly", "md5"), ("rejected", "md5"), ("outsider", "md5")):
        stmts.append(f"DROP ROLE IF EXISTS {name}")
        stmts.append(f"SET password_encryption = '{enc}'")
        stmts.append(f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}'")
        stmts.append(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {name}")
    conn = pg.connect()
    conn.autocommit = True
    cur = conn.cursor()
    for s in stmts:
        cur.execute(s)
    cur.execute("SELECT rolname, rolpassword FROM pg_authid WHERE rolpassword IS NOT NULL")
    secrets = dict(cur.fetchall())
    conn.close()
    assert secrets["bob"].startswith("md5") and secrets["carol"].startswith("SCRAM-SHA-256$")
    return secrets


def users_file(path, entries):
    with open(path, "w") as f:
        f.write("; users for the test\n")
        for user, secret in entries.items():
            f.write('"%s" "%s"\n' % (user.replace('"', '""'), secret.replace('"', '""')))


def start(sluice_factory, auth_type, entries, **keys):
    """A Sluice with auth_type and an auth_file of entries (user -> secret)."""
    d = tempfile.mkdtemp(prefix="sluice-auth-")
    path = os.path.join(d, "users.txt")
    users_file(path, entries)
    s = sluice_factory(auth_type=auth_type, auth_file=path, **keys)
    s.users_path = path
    return s


def login(s, user, password=PASSWORD, host="127.0.0.1", **kw):
    """A psycopg2 connection through Sluice as user; runs a query to prove it is usable."""
    conn = psycopg2.connect(host=host, port=s.port, user=user, password=password,
                            dbname="postgres", connect_timeout=10, **kw)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT current_user")
    assert cur.fetchone() == (user,)
    return conn


def refused(s, user, password=PASSWORD, host="127.0.0.1"):
    """The text of the error a psycopg2 login gets."""
    with pytest.raises(psycopg2.OperationalError) as e:
        psycopg2.connect(host=host, port=s.port, user=user, password=password,
                         dbname="postgres", connect_timeout=10)
    return str(e.value)


def psql(s, user, password=PASSWORD, host="127.0.0.1", sql="SELECT current_user"):
    env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="10")
    return subprocess.run(["psql", "-X", "-At", "-h", host, "-p", str(s.port), "-U", user,
                           "-d", "postgres", "-c", sql],
                          capture_output=True, text=True, timeout=60, env=env)


def pgbench(s, user, password=PASSWORD, host="127.0.0.1"):
    """pgbench -C (a new login per transaction) through Sluice; returns (exit status, output)."""
    env = dict(os.environ, PGPASSWORD=password)
    p = subprocess.run(["pgbench", "-n", "-C", "-S", "-c", "2", "-t", "5", "-h", host,
                        "-p", str(s.port), "-U", user, "postgres"],
                       capture_output=True, text=True, timeout=120, env=env)
    return p.returncode, p.stdout + p.stderr


# ---- raw protocol: the login exchange as a hostile client can drive it ----

def raw_start(s, user):
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=HANG)
    sock.sendall(startup_packet(user=user))
    return sock


def auth_request(sock):
    """The next message, which must be an authentication request: (code, data)."""
    msgs, eof = read_messages(sock, until=b"R", timeout=HANG)
    assert msgs and msgs[-1][0] == b"R", (msgs, eof)
    body = msgs[-1][1]
    return struct.unpack("!I", body[:4])[0], body[4:]


def sasl_initial(mech, data):
    body = mech.encode() + b"\0"
    body += struct.pack("!i", -1 if data is None else len(data)) + (data or b"")
    return message(b"p", body)


class ScramClient:
    """The client end of SCRAM-SHA-256 as libpq speaks it (no channel binding)."""

    def __init__(self, password):
        self.password = password
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.bare = f"n=,r={self.nonce}"

    def first(self):
        return ("n,," + self.bare).encode()

    def final(self, server_first):
        sf = server_first.decode()
        attrs = dict(kv.split("=", 1) for kv in sf.split(","))
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), base64.b64decode(attrs["s"]),
                                     int(attrs["i"]))
        ck = hmac.new(salted, b"Client Key", "sha256").digest()
        sig = hmac.new(hashlib.sha256(ck).digest(),
                       f"{self.bare},{sf},c=biws,r={attrs['r']}".encode(), "sha256").digest()
        self.nonce_full = attrs["r"]
        self.without_proof = f"c=biws,r={attrs['r']}"
        self.proof = base64.b64encode(bytes(a ^ b for a, b in zip(ck, sig))).decode()
        return f"{self.without_proof},p={self.proof}".encode()


def scram_until_final(s, user, password=PASSWORD):
    """A raw SCRAM login taken to the point where the client-final is due."""
    sock = raw_start(s, user)
    code, data = auth_request(sock)
    assert code == 10 and data == b"SCRAM-SHA-256\0\0", (code, data)
    sc = ScramClient(password)
    sock.sendall(sasl_initial("SCRAM-SHA-256", sc.first()))
    code, data = auth_request(sock)
    assert code == 11, code
    final = sc.final(data)
    return sock, sc, final


def fatal_of(sock):
    """The FATAL error a connection ends with: its fields. The connection must then close."""
    msgs, eof = read_to_eof(sock, timeout=HANG)
    assert eof, f"the connection stayed open: {msgs}"
    errors = [error_fields(b) for t, b in msgs if t == b"E"]
    assert len(errors) == 1, msgs
    assert errors[0]["S"] == "FATAL"
    return errors[0]


def raw_md5(s, user, password):
    """A raw md5 login: the ErrorResponse fields, or None when it succeeded."""
    sock = raw_start(s, user)
    code, salt = auth_request(sock)
    assert code == 5 and len(salt) == 4, (code, salt)
    inner = hashlib.md5((password + user).encode()).hexdigest()
    resp = "md5" + hashlib.md5(inner.encode() + salt).hexdigest()
    sock.sendall(message(b"p", resp.encode() + b"\0"))
    msgs, eof = read_messages(sock, timeout=HANG)
    sock.close()
    errors = [error_fields(b) for t, b in msgs if t == b"E"]
    return errors[0] if errors else None


# ---- plain ----

def test_plain_over_the_unix_socket(sluice_factory, roles):
    s = start(sluice_factory, "plain", {"alice": PASSWORD, "bob": roles["bob"],
                                        "carol": roles["carol"]})
    for user in ("alice", "bob", "carol"):  # plaintext, md5 and SCRAM secrets all check
        login(s, user, host=s.dir).close()
    p = psql(s, "alice", host=s.dir)
    assert p.returncode == 0 and p.stdout.strip() == "alice", p.stderr
    assert "password authentication failed for user \"alice\"" in refused(s, "alice", "nope",
                                                                          host=s.dir)
    rc, out = pgbench(s, "bob", host=s.dir)
    assert rc == 0, out


def test_plain_over_tcp_is_refused_unless_allowed(sluice_factory, roles):
    s = start(sluice_factory, "plain", {"alice": PASSWORD})
    sock = raw_start(s, "alice")
    err = fatal_of(sock)  # refused before the client could send its password
    assert err["C"] == "28000", err
    s2 = start(sluice_factory, "plain", {"alice": PASSWORD}, auth_plain_without_tls=1)
    login(s2, "alice").close()


# ---- md5 ----

def test_md5_with_md5_plaintext_and_scram_entries(sluice_factory, roles):
    s = start(sluice_factory, "md5", {"bob": roles["bob"], "alice": PASSWORD,
                                      "carol": roles["carol"]})
    assert raw_md5(s, "bob", PASSWORD) is None
    assert raw_md5(s, "alice", PASSWORD) is None
    for user in ("bob", "alice", "carol"):
        login(s, user).close()
        p = psql(s, user)
        assert p.returncode == 0 and p.stdout.strip() == user, p.stderr
    # A user with a SCRAM verifier is asked for SCRAM, as PostgreSQL and PgBouncer do.
    sock = raw_start(s, "carol")
    assert auth_request(sock)[0] == 10
    sock.close()
    rc, out = pgbench(s, "bob")
    assert rc == 0, out


# ---- scram-sha-256 ----

def make_verifier(user, password):
    p = subprocess.run([SLUICE_BIN, "--make-verifier", user], input=password + "\n",
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_make_verifier_line_logs_in(sluice_factory, roles, tmp_path):
    line = make_verifier("frank", PASSWORD)
    assert line.startswith('"frank" "SCRAM-SHA-256$4096:') and line.endswith('"\n'), line
    path = tmp_path / "users.txt"
    path.write_text(line)
    s = sluice_factory(auth_type="scram-sha-256", auth_file=str(path))
    p = psql(s, "frank")
    assert p.returncode == 0 and p.stdout.strip() == "frank", p.stderr
    assert 'password authentication failed for user "frank"' in refused(s, "frank", "wrong")
    quoted = make_verifier('we"ird', "x")
    assert quoted.startswith('"we""ird" "SCRAM-SHA-256$'), quoted


def test_scram_with_plaintext_and_verifier_entries(sluice_factory, roles):
    s = start(sluice_factory, "scram-sha-256", {
        "alice": PASSWORD,                        # plaintext
        "carol": roles["carol"],                  # copied from pg_authid
        "dave": make_verifier("dave", PASSWORD).split('" "')[1].rstrip('"\n'),
        "bob": roles["bob"],                      # md5: cannot do SCRAM
    })
    for user in ("alice", "carol", "dave"):
        login(s, user).close()
        p = psql(s, user)
        assert p.returncode == 0 and p.stdout.strip() == user, p.stderr
    rc, out = pgbench(s, "carol")
    assert rc == 0, out
    assert 'password authentication failed for user "bob"' in refused(s, "bob")


def test_wrong_password_and_unknown_user_get_the_same_answer(sluice_factory, roles):
    s = start(sluice_factory, "scram-sha-256", {"carol": roles["carol"]})
    wrong = refused(s, "carol", "wrong")
    unknown = refused(s, "carol2", PASSWORD)
    assert 'password authentication failed for user "carol"' in wrong
    assert wrong.replace('"carol"', '"carol2"') == unknown
    # Raw: both go through the whole SCRAM exchange and end with 28P01.
    for user, pw in (("carol", "wrong"), ("nosuchuser", PASSWORD)):
        sock, sc, final = scram_until_final(s, user, pw)
        sock.sendall(message(b"p", final))
        err = fatal_of(sock)
        assert err["C"] == "28P01" and err["M"] == f'password authentication failed for user "{user}"'
    s2 = start(sluice_factory, "md5", {"bob": roles["bob"]})
    a, b = raw_md5(s2, "bob", "wrong"), raw_md5(s2, "nobody", PASSWORD)
    assert a["C"] == b["C"] == "28P01"
    assert a["M"].replace('"bob"', '"nobody"') == b["M"]


# ---- hba ----

HBA = """
local   all  dave      password
local   all  all       trust
host    all  trusty    127.0.0.1/32  trust
host    all  rejected  127.0.0.1/32  reject
hostssl all  sslonly   127.0.0.1/32  trust
hostnossl all nossl    127.0.0.1/32  trust
host    all  bob       127.0.0.1/32  md5
host    all  carol     127.0.0.1/32  scram-sha-256
host    all  dave      127.0.0.1/32  password
host    all  outsider  10.0.0.0/8    trust
"""


def test_hba_lines(sluice_factory, roles, tmp_path):
    hba = tmp_path / "hba.conf"
    hba.write_text(HBA)
    s = start(sluice_factory, "hba", {"bob": roles["bob"], "carol": roles["carol"],
                                      "dave": PASSWORD}, auth_hba_file=str(hba))
    login(s, "trusty", password="anything").close()
    login(s, "nossl", password="anything").close()
    login(s, "erin", password="anything", host=s.dir).close()  # local trust
    login(s, "bob").close()
    login(s, "carol").close()
    login(s, "dave", host=s.dir).close()  # local password
    for user in ("bob", "carol"):
        rc, out = pgbench(s, user)
        assert rc == 0, out
        p = psql(s, user)
        assert p.returncode == 0 and p.stdout.strip() == user, p.stderr
    assert 'password authentication failed for user "dave"' in refused(s, "dave", "x",
                                                                       host=s.dir)
    for user, text in (("rejected", 'pg_hba.conf rejects connection for host "127.0.0.1", '
                                    'user "rejected", database "postgres"'),
                       ("sslonly", 'no pg_hba.conf entry for host "127.0.0.1", user "sslonly", '
                                   'database "postgres"'),
                       ("outsider", 'no pg_hba.conf entry for host "127.0.0.1", '
                                    'user "outsider"')):
        err = fatal_of(raw_start(s, user))
        assert err["C"] == "28000" and err["M"].startswith(text), err
        assert text in refused(s, user)
    err = fatal_of(raw_start(s, "dave"))  # a password line over TCP without TLS
    assert err["C"] == "28000", err


# ---- reload ----

def test_reload_of_auth_file(sluice_factory, roles):
    s = start(sluice_factory, "md5", {"alice": PASSWORD})
    held = login(s, "alice")
    users_file(s.users_path, {"alice": "new password", "bob": roles["bob"]})
    s.reload()
    assert wait_for(lambda: "configuration reloaded" in s.log(), HANG)
    login(s, "bob").close()  # added
    login(s, "alice", password="new password").close()  # changed
    assert 'password authentication failed for user "alice"' in refused(s, "alice")
    cur = held.cursor()  # connected before the reload: still there
    cur.execute("SELECT 2")
    assert cur.fetchone() == (2,)
    # A broken users file fails the reload and keeps the running users.
    with open(s.users_path, "a") as f:
        f.write('"broken\n')
    s.reload()
    assert wait_for(lambda: "keeping the running configuration" in s.log(), HANG)
    assert "users.txt:" in s.log()
    login(s, "bob").close()
    held.close()


# ---- hostile exchanges ----

def other_nonce(nonce):
    """The client's nonce with its first character changed: always a different nonce (a fixed
    replacement character would leave one nonce in 64 unchanged and the login valid)."""
    first = "A" if nonce[0] != "A" else "B"
    return (first + nonce[1:]).encode()


def hostile_cases(sc, final):
    proof_at = final.index(b",p=")
    return {
        "second SASLInitialResponse": sasl_initial("SCRAM-SHA-256", sc.first()),
        "bad base64": message(b"p", final[:proof_at] + b",p=!!notbase64!!"),
        "wrong nonce": message(b"p", final.replace(b"r=" + sc.nonce.encode(),
                                                   b"r=" + other_nonce(sc.nonce))),
        "truncated client-final": message(b"p", final[:len(final) // 2]),
        "proof of the wrong length": message(b"p", final[:proof_at] + b",p=AAAAAAAAAAA="),
        "oversize SASLResponse": message(b"p", b"x" * 3000),
        "a Query": message(b"Q", b"SELECT 1\0"),
        "oversize message": message(b"p", b"x" * 9000),
    }


def test_hostile_sasl_inputs_close_only_their_own_connection(sluice_factory, roles):
    s = start(sluice_factory, "scram-sha-256", {"carol": roles["carol"]})
    bystander = login(s, "carol")
    sock, sc, final = scram_until_final(s, "carol")
    sock.close()
    for name in hostile_cases(sc, final):
        sock, sc, final = scram_until_final(s, "carol")
        sock.sendall(hostile_cases(sc, final)[name])
        err = fatal_of(sock)
        assert err["C"] in ("08P01", "28P01"), (name, err)
        cur = bystander.cursor()
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,), name
    # Out of order from the start: a SASLResponse-shaped message with no mechanism, another
    # mechanism, no initial response, a client vanishing mid-exchange.
    for payload in (message(b"p", b"n,,n=,r=abc"), sasl_initial("SCRAM-SHA-256-PLUS", b"p=x,,"),
                    sasl_initial("SCRAM-SHA-256", None), sasl_initial("SCRAM-SHA-256", b"junk")):
        sock = raw_start(s, "carol")
        assert auth_request(sock)[0] == 10
        sock.sendall(payload)
        assert fatal_of(sock)["C"] == "08P01", payload
    sock, sc, final = scram_until_final(s, "carol")
    sock.close()
    # A 1 MB user name in the startup packet: judged by its declared length, so only the start
    # is sent (the rest would meet a closed socket and could reset the error away).
    big = socket.create_connection(("127.0.0.1", s.port), timeout=HANG)
    big.sendall(startup_packet(user="u" * (1 << 20))[:4096])
    assert fatal_of(big)["C"] == "08P01"
    cur = bystander.cursor()
    cur.execute("SELECT current_user")
    assert cur.fetchone() == ("carol",)
    login(s, "carol").close()
    bystander.close()


def test_password_message_under_trust_is_a_protocol_error(sluice):
    sock = socket.create_connection(("127.0.0.1", sluice.port), timeout=HANG)
    sock.sendall(startup_packet())
    msgs, eof = read_messages(sock, timeout=HANG)
    assert msgs[-1] == (b"Z", b"I")
    sock.sendall(message(b"p", b"secret\0"))
    assert fatal_of(sock)["C"] == "08P01"


def test_check_validates_the_users_file(tmp_path, roles):
    users = tmp_path / "users.txt"
    users.write_text('"alice" "x"\n"broken\n')
    conf = tmp_path / "sluice.ini"
    conf.write_text(f"[sluice]\nauth_type = md5\nauth_file = {users}\n")
    p = subprocess.run([SLUICE_BIN, "--check", str(conf)], capture_output=True, text=True)
    assert p.returncode == 1
    assert f"{users}:2:" in p.stderr, p.stderr
    users.write_text('"alice" "x"\n')
    p = subprocess.run([SLUICE_BIN, "--check", str(conf)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
