#!/usr/bin/python3
"""TLS figures: direct (PostgreSQL with ssl=on) vs PgBouncer vs Sluice, the clients
using sslmode=require against each, in one run on loopback.

  - pgbench -S -c 100 -T 10 (simple protocol, a select by key)
  - a 40 MB result (SELECT repeat('x', 40000000)) fetched with psql, best of 3
  - both of these also with the poolers' server connections in TLS (server_tls_sslmode=require,
    checked through pg_stat_ssl)
  - bytes per idle logged-in client, plaintext and TLS (growth of the pooler's RSS over N
    clients)
  - new TLS logins per second (pgbench -C -S -c 20, sslmode=require) with SCRAM-SHA-256 and
    with trust, --rounds times per target, interleaved; the best round and the spread are shown.
    With SCRAM, libpq binds the exchange (channel_binding=prefer) wherever -PLUS is offered:
    PostgreSQL and Sluice offer it, PgBouncer 1.18 does not.

Usage: bench/tls_figures.py [--sluice build/sluice] [--clients 3000] [--seconds 10]
                            [--only throughput,idle,logins] [--rounds 3]
The certificates are made for the run with the openssl CLI. Prints Markdown tables.

The SCRAM logins: one role, bench_scram, with a SCRAM verifier on the server, which asks it
for the verifier over TLS (hostssl ... scram-sha-256; every other role stays trusted). A second
Sluice and a second PgBouncer run with auth_type = scram-sha-256 and a users file holding the
verifier as pg_authid stores it, and log in to the server as the client's user by SCRAM
passthrough.
"""
import argparse
import os
import pwd
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

PG_BIN = "/usr/lib/postgresql/15/bin"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def run(args, **kw):
    return subprocess.run(args, check=True, capture_output=True, **kw)


def make_certs(d):
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=bench CA"],
        cwd=d)
    run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"], cwd=d)
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName = DNS:localhost,IP:127.0.0.1\n")
    run(["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-days", "2", "-out", "server.crt", "-extfile", "ext"], cwd=d)
    os.chmod(os.path.join(d, "server.key"), 0o600)


def as_postgres(args, **kw):
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--"] + args
    return run(args, cwd="/", **kw)


def start_pg(d, port):
    data = os.path.join(d, "data")
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(d, pw.pw_uid, pw.pw_gid)
        for f in ("server.key", "server.crt"):
            os.chown(os.path.join(d, f), pw.pw_uid, pw.pw_gid)
    as_postgres([f"{PG_BIN}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"])
    opts = (f"-p {port} -k {d} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c synchronous_commit=off -c max_connections=400 -c ssl=on "
            f"-c ssl_cert_file={d}/server.crt -c ssl_key_file={d}/server.key")
    as_postgres([f"{PG_BIN}/pg_ctl", "-D", data, "-o", opts, "-l", os.path.join(d, "pg.log"),
                 "-w", "start"])
    return data


def wait_port(port, proc):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("did not start")
            time.sleep(0.05)
    raise RuntimeError("did not start")


def common_keys(d, port, server_mode="disable"):
    """The settings both poolers share (same names in both): TLS when the client asks, and
    server_mode to the server."""
    return f"""listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
pool_mode = transaction
default_pool_size = 20
max_client_conn = 10000
client_tls_sslmode = prefer
client_tls_key_file = {d}/server.key
client_tls_cert_file = {d}/server.crt
server_tls_sslmode = {server_mode}
"""


SCRAM_USER, SCRAM_PASSWORD = "bench_scram", "bench pass"


def start_sluice(binary, d, pg_port, port, scram=False, server_mode="disable"):
    conf = os.path.join(d, f"sluice-{server_mode}{'-scram' if scram else ''}.ini")
    auth = f"auth_type = scram-sha-256\nauth_file = {d}/scram-users.txt\n" if scram else ""
    db = "" if scram else " user=postgres"
    with open(conf, "w") as f:
        f.write(f"""[sluice]
{common_keys(d, port, server_mode)}log_level = warning
{auth}[databases]
postgres = host=127.0.0.1 port={pg_port} dbname=postgres{db}
""")
    p = subprocess.Popen([binary, "-c", conf], stdout=open(os.path.join(d, "sluice.log"), "w"),
                         stderr=subprocess.STDOUT)
    wait_port(port, p)
    return p


def start_pgbouncer(d, pg_port, port, scram=False, server_mode="disable"):
    conf = os.path.join(d, f"pgbouncer-{server_mode}{'-scram' if scram else ''}.ini")
    with open(os.path.join(d, "users.txt"), "w") as f:
        f.write('"postgres" ""\n')
    auth, users = ("scram-sha-256", "scram-users.txt") if scram else ("trust", "users.txt")
    db = "" if scram else " user=postgres"
    with open(conf, "w") as f:
        f.write(f"""[databases]
postgres = host=127.0.0.1 port={pg_port} dbname=postgres{db}
[pgbouncer]
{common_keys(d, port, server_mode)}auth_type = {auth}
auth_file = {d}/{users}
logfile = {d}/pgbouncer-{server_mode}{"-scram" if scram else ""}.log
""")
    args = ["bash", "-c", f"ulimit -n 20000 && exec pgbouncer {conf}"]
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        for f in os.listdir(d):
            if not f.startswith("data"):
                os.chown(os.path.join(d, f), pw.pw_uid, pw.pw_gid)
        args = ["runuser", "-u", "postgres", "--"] + args
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, p)
    return p


def pgbench(port, clients, seconds):
    env = dict(os.environ, PGSSLMODE="require")
    p = subprocess.run(["pgbench", "-n", "-S", "-c", str(clients), "-j", "2", "-T", str(seconds),
                        "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "postgres"],
                       capture_output=True, text=True, env=env, timeout=seconds + 120)
    for line in p.stdout.splitlines():
        if line.startswith("tps ="):
            return float(line.split()[2])
    raise RuntimeError(f"port {port}: " + p.stdout + p.stderr)


def scram_role(d, pg_port, data):
    """bench_scram with a SCRAM verifier, asked for it over TLS; its verifier in a users file."""
    def sql(q):
        return run(["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres",
                    "-d", "postgres", "-c", q], text=True).stdout.strip()
    sql(f"SET password_encryption = 'scram-sha-256'; DROP ROLE IF EXISTS {SCRAM_USER}; "
        f"CREATE ROLE {SCRAM_USER} LOGIN PASSWORD '{SCRAM_PASSWORD}'; "
        f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {SCRAM_USER}")
    verifier = sql(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{SCRAM_USER}'")
    with open(os.path.join(d, "scram-users.txt"), "w") as f:
        f.write(f'"{SCRAM_USER}" "{verifier}"\n')
    hba = os.path.join(data, "pg_hba.conf")
    as_postgres(["sh", "-c", f"{{ echo 'hostssl all {SCRAM_USER} 127.0.0.1/32 scram-sha-256'; "
                             f"cat {hba}; }} > {hba}.new && mv {hba}.new {hba}"])
    sql("SELECT pg_reload_conf()")


def logins(port, user, seconds):
    """New TLS logins per second: pgbench -C -S -c 20 with sslmode=require."""
    env = dict(os.environ, PGSSLMODE="require", PGPASSWORD=SCRAM_PASSWORD)
    p = subprocess.run(["pgbench", "-n", "-C", "-S", "-c", "20", "-j", "2", "-T", str(seconds),
                        "-h", "127.0.0.1", "-p", str(port), "-U", user, "postgres"],
                       capture_output=True, text=True, env=env, timeout=seconds + 120)
    for line in p.stdout.splitlines():
        if line.startswith("tps =") and "including" in line:
            return float(line.split()[2])
    raise RuntimeError(f"port {port}: " + p.stdout + p.stderr)


def fetch_40mb(port):
    env = dict(os.environ, PGSSLMODE="require")
    best = None
    for _ in range(3):
        t = time.monotonic()
        p = subprocess.run(["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(port), "-U",
                            "postgres", "-d", "postgres", "-c",
                            "SELECT repeat('x', 40000000)"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=300)
        dt = time.monotonic() - t
        assert p.returncode == 0 and len(p.stdout) >= 40000000, p.stderr
        best = dt if best is None else min(best, dt)
    return best


def server_side_tls(port):
    """Whether the server connection behind a client through port is in TLS."""
    env = dict(os.environ, PGSSLMODE="require")
    p = subprocess.run(["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                        "-d", "postgres", "-c",
                        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"],
                       capture_output=True, text=True, env=env, timeout=60)
    return p.stdout.strip() == "t"


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def login(port, tls):
    body = struct.pack("!I", 196608) + b"user\0postgres\0database\0postgres\0\0"
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    if tls:
        s.sendall(struct.pack("!II", 8, 80877103))
        assert s.recv(1) == b"S"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s)
    s.sendall(struct.pack("!I", len(body) + 4) + body)
    buf = b""
    while not buf.endswith(b"Z\0\0\0\x05I"):
        chunk = s.recv(65536)
        assert chunk, "closed during login"
        buf += chunk
    return s


def idle_bytes(port, pid, n, tls):
    login(port, tls).close()
    time.sleep(0.3)
    before = rss(pid)
    socks = [login(port, tls) for _ in range(n)]
    time.sleep(1)
    after = rss(pid)
    for s in socks:
        s.close()
    time.sleep(1)
    return round((after - before) / n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", default="build/sluice")
    ap.add_argument("--clients", type=int, default=3000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--debug-dir", default=None)
    ap.add_argument("--only", default="throughput,idle,logins")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="sluice-tlsbench-")
    os.chmod(d, 0o755)
    make_certs(d)
    pg_port, sl_port, pb_port = free_port(), free_port(), free_port()
    data = start_pg(d, pg_port)
    procs = []
    try:
        run(["pgbench", "-i", "-q", "-s", "10", "-h", "127.0.0.1", "-p", str(pg_port), "-U",
             "postgres", "postgres"])
        procs.append(start_sluice(os.path.abspath(a.sluice), d, pg_port, sl_port))
        procs.append(start_pgbouncer(d, pg_port, pb_port))
        targets = [("direct", pg_port, None), ("PgBouncer 1.18", pb_port, procs[1].pid),
                   ("Sluice", sl_port, procs[0].pid)]
        if "throughput" in a.only:
            # The poolers once more with their server connections in TLS too (checked).
            sl2_port, pb2_port = free_port(), free_port()
            procs.append(start_sluice(os.path.abspath(a.sluice), d, pg_port, sl2_port,
                                      server_mode="require"))
            procs.append(start_pgbouncer(d, pg_port, pb2_port, server_mode="require"))
            runs = [(name, port, False if pid else None) for name, port, pid in targets]
            runs += [("PgBouncer 1.18, server TLS", pb2_port, True),
                     ("Sluice, server TLS", sl2_port, True)]
            rows = []
            for name, port, server_tls in runs:
                if server_tls is not None:
                    assert server_side_tls(port) == server_tls, f"{name}: server side TLS is wrong"
                rows.append((name, pgbench(port, 100, a.seconds), fetch_40mb(port)))
            print("| target (clients: sslmode=require) | pgbench -S -c 100 TPS | "
                  "40 MB fetch, s (best of 3) |")
            print("|---|---|---|")
            for name, tps, fetch in rows:
                print(f"| {name} | {tps:.0f} | {fetch:.3f} |")
            print()
        if "idle" in a.only:
            print(f"| pooler | bytes per idle client, plaintext | bytes per idle client, TLS "
                  f"({a.clients} clients) |")
            print("|---|---|---|")
            for name, port, pid in targets[1:]:
                if os.geteuid() == 0 and name.startswith("PgBouncer"):  # runuser's child
                    pid = int(subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                             text=True).stdout.split()[0])
                plain = idle_bytes(port, pid, a.clients, False)
                tls = idle_bytes(port, pid, a.clients, True)
                print(f"| {name} | {plain} | {tls} |")
            print()
        if "logins" in a.only:
            scram_role(d, pg_port, data)
            slp, pbp = free_port(), free_port()
            procs.append(start_sluice(os.path.abspath(a.sluice), d, pg_port, slp, scram=True))
            procs.append(start_pgbouncer(d, pg_port, pbp, scram=True))
            runs = [(m, name, port, user) for m, user, ports in
                    (("SCRAM-SHA-256", SCRAM_USER, (pg_port, pbp, slp)),
                     ("trust", "postgres", (pg_port, pb_port, sl_port)))
                    for (name, _, _), port in zip(targets, ports)]
            got = {}
            for _ in range(a.rounds):  # interleaved: drift hits every target alike
                for m, name, port, user in runs:
                    got.setdefault((m, name), []).append(logins(port, user, a.seconds))
            print(f"| auth | target | TLS logins/s, best of {a.rounds} | spread |")
            print("|---|---|---|---|")
            for (m, name), v in got.items():
                print(f"| {m} | {name} | {max(v):.0f} | {min(v):.0f}-{max(v):.0f} |")
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        as_postgres([f"{PG_BIN}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"])
        if a.debug_dir:
            shutil.copytree(d, a.debug_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns("data"))
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
