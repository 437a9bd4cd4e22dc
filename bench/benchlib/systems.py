"""The systems under test: PostgreSQL, PgBouncer, Sluice and the MongoDB-wire test server. The
two databases are started here on free loopback ports unless the caller names running ones;
the two poolers are always started here, each with its own server-side role, so that
pg_stat_activity tells whose server connections are whose."""
import os
import re
import shlex
import shutil
import socket
import subprocess

from .procs import (Process, as_service_user, descendant_named, free_port, give_to_service_user,
                    wait_port)

DB = "sluice_bench"
# Each pooler logs in to PostgreSQL as its own role (the `user=` of its [databases] line).
POOLER_ROLE = {"pgbouncer": "bench_pgbouncer", "sluice": "bench_sluice"}
# The logins scenarios: how the server stores the password of their roles (password_encryption)
# and asks for it (the hba method), by auth_type.
LOGIN_AUTH = {"scram-sha-256": "scram", "md5": "md5"}
LOGIN_TARGETS = ("direct", "pgbouncer", "sluice")
# Not a secret: a throwaway cluster's login roles. The server keeps it as a SCRAM verifier or an
# md5 hash, and the poolers' users file holds exactly that, never this.
LOGIN_PASSWORD = "bench-login"
POOL_SIZE = 20
# Room for 5,000 idle clients plus connections still being torn down from the previous step.
MAX_CLIENT_CONN = 6000


def login_role(auth, target):
    """The role `target`'s clients log in as in the logins scenario for `auth`. One role per
    target, with the same password, so that pg_stat_activity still tells whose server
    connections are whose."""
    return f"bench_{LOGIN_AUTH[auth]}_{target}"


def login_roles():
    """{role: auth_type} of every login role."""
    return {login_role(a, t): a for a in LOGIN_AUTH for t in LOGIN_TARGETS}


class Unavailable(Exception):
    """A system could not be started or reached; the message says why."""


def pg_bin_dir():
    root = "/usr/lib/postgresql"
    if os.path.isdir(root):
        versions = sorted((v for v in os.listdir(root) if v.isdigit()), key=int)
        if versions:
            return os.path.join(root, versions[-1], "bin")
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    raise Unavailable("PostgreSQL server binaries (initdb, pg_ctl) not found")


class Postgres:
    """Our own throwaway cluster (fsync off, max_connections 1200 for 1,000 direct clients), or
    a running server given by host and port. Either way the benchmark works in database DB,
    which it creates and fills; an existing server must let `user` create databases and roles,
    and let the pooler roles log in from 127.0.0.1 without a password."""

    def __init__(self, workdir, host=None, port=None, user="postgres"):
        self.external = port is not None
        self.host = host or "127.0.0.1"
        self.port = int(port) if port else free_port()
        self.user = user
        self.dir = os.path.join(workdir, "pg")
        self.data = os.path.join(self.dir, "data")
        self.started = False
        self.commands = []  # how the server was set up, for results.json

    def start(self):
        if self.external:
            self.psql("SELECT 1", db="postgres")
            return
        bindir = pg_bin_dir()
        os.makedirs(self.dir)
        give_to_service_user(self.dir)

        def run(args):
            self.commands.append(shlex.join(args))
            subprocess.run(as_service_user(args), check=True, capture_output=True, text=True,
                           timeout=120)

        hba = os.path.join(self.dir, "pg_hba.conf")
        with open(hba, "w") as f:
            f.write(hba_text())
        give_to_service_user(hba)
        try:
            run([f"{bindir}/initdb", "-D", self.data, "-A", "trust", "-U", self.user,
                 "--no-sync"])
            opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                    "-c max_connections=1200 -c shared_buffers=256MB "
                    f"-c hba_file={hba}")
            run([f"{bindir}/pg_ctl", "-D", self.data, "-o", opts, "-l",
                 os.path.join(self.dir, "log"), "-w", "-t", "60", "start"])
        except subprocess.CalledProcessError as e:
            raise Unavailable(f"PostgreSQL did not start: {e.stderr.strip()[-300:]}") from e
        self.started = True

    def postmaster_pid(self):
        """The server's main process (its first line of postmaster.pid), or None when the
        server is not ours."""
        if not self.started:
            return None
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return int(f.readline())

    def stop(self):
        if self.started:
            subprocess.run(as_service_user([f"{pg_bin_dir()}/pg_ctl", "-D", self.data, "-m",
                                            "fast", "stop"]), capture_output=True, timeout=60)
            self.started = False

    def conn_args(self, port=None, user=None):
        return ["-h", self.host, "-p", str(port or self.port), "-U", user or self.user]

    def psql(self, sql, db=DB):
        try:
            p = subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", *self.conn_args(),
                                "-d", db, "-c", sql], capture_output=True, text=True,
                               timeout=300)
        except subprocess.TimeoutExpired as e:
            raise Unavailable(f"psql took over 300 s on {sql[:60]!r}") from e
        if p.returncode != 0:
            raise Unavailable(f"psql failed on {sql[:60]!r}: {p.stderr.strip()[:300]}")
        return p.stdout.strip()

    def version(self):
        return self.psql("SHOW server_version", db="postgres")

    def prepare(self, scale):
        """Creates DB afresh with pgbench's tables at `scale` and the batch-load tables, and
        the pooler roles with the rights the scenarios need."""
        self.psql(f"DROP DATABASE IF EXISTS {DB}", db="postgres")
        self.psql(f"CREATE DATABASE {DB}", db="postgres")
        cmd = ["pgbench", "-i", "-q", "-s", str(scale), *self.conn_args(), DB]
        self.commands.append(shlex.join(cmd))
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise Unavailable(f"pgbench -i failed: {p.stderr.strip()[-300:]}")
        self.psql("CREATE TABLE bench_copy (i int, s text); "
                  "CREATE TABLE bench_batch (i int, s text); "
                  "CREATE TABLE bench_insert (id bigserial, v int, t text)")
        for role in POOLER_ROLE.values():
            self.psql(f"DO $$ BEGIN CREATE ROLE {role} LOGIN; "
                      "EXCEPTION WHEN duplicate_object THEN NULL; END $$", db="postgres")
            self.psql(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}; "
                      f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
        for role, auth in login_roles().items():
            # ALTER as well as CREATE: on a running server the role may exist with a password
            # stored the other way.
            self.psql(f"SET password_encryption = '{auth}'; "
                      f"DO $$ BEGIN CREATE ROLE {role} LOGIN; "
                      "EXCEPTION WHEN duplicate_object THEN NULL; END $$; "
                      f"ALTER ROLE {role} LOGIN PASSWORD '{LOGIN_PASSWORD}'", db="postgres")
            self.psql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")

    def login_secrets(self):
        """{role: secret} of the login roles exactly as the server stores them (a SCRAM verifier
        or an md5 hash): what the poolers' users file holds, so that both log in to the server
        by passthrough and neither is given a plaintext password."""
        roles = ",".join(f"'{r}'" for r in login_roles())
        out = self.psql("SELECT rolname || ' ' || rolpassword FROM pg_authid "
                        f"WHERE rolname IN ({roles})", db="postgres")
        secrets = dict(line.split(" ", 1) for line in out.splitlines())
        for role, auth in login_roles().items():
            want = "SCRAM-SHA-256$" if auth == "scram-sha-256" else "md5"
            if not secrets.get(role, "").startswith(want):
                raise Unavailable(f"the server keeps {role}'s password as "
                                  f"{secrets.get(role, 'nothing')[:14]!r}, not {want}...")
        return secrets


def hba_text():
    """Our cluster's pg_hba.conf: the login roles must prove their password the way their
    scenario says (so a pooler's passthrough is exercised too); everyone else is trusted."""
    lines = ["# TYPE DATABASE USER ADDRESS METHOD"]
    for auth in LOGIN_AUTH:
        roles = ",".join(login_role(auth, t) for t in LOGIN_TARGETS)
        lines.append(f"host all {roles} 127.0.0.1/32 {auth}")
    lines += ["local all all trust", "host all all 127.0.0.1/32 trust",
              "host all all ::1/128 trust"]
    return "\n".join(lines) + "\n"


def write_users_file(path, secrets):
    """PgBouncer's userlist format; both poolers read this one file."""
    with open(path, "w") as f:
        for role, secret in sorted(secrets.items()):
            f.write(f'"{role}" "{secret}"\n')
    give_to_service_user(path)


class Pooler:
    """A pooler we started: where clients connect, and the process to measure."""

    def __init__(self, name, process, port, config, mongo_port=None):
        self.name, self.process, self.port = name, process, port
        self.config, self.mongo_port = config, mongo_port

    @property
    def pid(self):
        return self.process.pid

    def stop(self):
        self.process.stop()


def sluice_config(pg, mongo_uri, auth=None, users=None):
    """Sluice's configuration: trusting every client and logging in to the server as its own
    role; or, with `auth`, asking clients for their password that way (secrets from the users
    file `users`) and logging in as the client's user, with the same secret (passthrough)."""
    port = free_port()
    text = (f"[sluice]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            f"pool_mode = transaction\ndefault_pool_size = {POOL_SIZE}\n"
            f"max_client_conn = {MAX_CLIENT_CONN}\nlog_level = warning\n")
    db_line = f"* = host={pg.host} port={pg.port}"
    if auth:
        text += f"auth_type = {auth}\nauth_file = {users}\n"
    else:
        db_line += f" user={POOLER_ROLE['sluice']}"
    text += f"\n[databases]\n{db_line}\n"
    mport = None
    if mongo_uri:
        mport = free_port()
        text += f"\n[mongodb]\nmongo = listen_port={mport} uri={mongo_uri} pool_size=10\n"
    return text, port, mport


def start_sluice(binary, workdir, pg, mongo_uri, auth=None, users=None):
    """Sluice as sluice_config describes it; its files are named after `auth` when given, so
    several instances can share workdir."""
    if not os.access(binary, os.X_OK):
        raise Unavailable(f"{binary} does not exist (build it: meson setup build && "
                          "ninja -C build)")
    name = f"sluice-{auth}" if auth else "sluice"
    text, port, mport = sluice_config(pg, mongo_uri, auth, users)
    conf = os.path.join(workdir, f"{name}.ini")
    with open(conf, "w") as f:
        f.write(text)
    proc = Process([binary, "-c", conf], os.path.join(workdir, f"{name}.log"))
    try:
        wait_port(port, proc=proc)
        if mport:
            wait_port(mport, proc=proc)
    except RuntimeError as e:
        proc.stop()
        raise Unavailable(f"Sluice did not start: {e}") from e
    return Pooler(name, proc, port, text, mport)


def start_relay(binary, workdir, name, upstream_host, upstream_port):
    """bench/floor_relay in front of the server at upstream_host:upstream_port: the reference
    hop."""
    if not os.access(binary, os.X_OK):
        raise Unavailable(f"{binary} does not exist (build it: ninja -C build)")
    try:
        addr = socket.gethostbyname(upstream_host)  # the relay takes an IPv4 address
    except OSError as e:
        raise Unavailable(f"floor_relay cannot reach {upstream_host}: {e}") from e
    port = free_port()
    proc = Process([binary, str(port), addr, str(upstream_port)],
                   os.path.join(workdir, f"{name}.log"))
    try:
        wait_port(port, proc=proc)
    except RuntimeError as e:
        proc.stop()
        raise Unavailable(f"floor_relay did not start: {e}") from e
    return Pooler(name, proc, port, f"floor_relay {port} {addr} {upstream_port}")


def pgbouncer_version():
    exe = shutil.which("pgbouncer")
    if not exe:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    return tuple(int(x or 0) for x in m.groups()) if m else (0, 0, 0)


def start_pgbouncer(workdir, pg, auth=None, users=None):
    """PgBouncer in transaction mode with the same pool size as Sluice. Returns None when it is
    not installed. It refuses to run as root, so as root it runs as the service user. Without
    `auth` it trusts every client and logs in to the server as its own role; with `auth` it
    asks clients for their password that way, with the secrets of the users file `users`, and
    logs in as the client's user (its SCRAM passthrough needs a [databases] line without a
    user)."""
    exe = shutil.which("pgbouncer")
    if not exe:
        return None
    port = free_port()
    name = f"pgbouncer-{auth}" if auth else "pgbouncer"
    d = os.path.join(workdir, name)
    os.makedirs(d)
    if auth:
        db_line = f"* = host={pg.host} port={pg.port}"
    else:
        db_line = f"* = host={pg.host} port={pg.port} user={POOLER_ROLE['pgbouncer']}"
        auth, users = "trust", os.path.join(d, "users.txt")
        with open(users, "w") as f:  # trust still wants every user listed
            for u in (pg.user, POOLER_ROLE["pgbouncer"]):
                f.write(f'"{u}" ""\n')
        give_to_service_user(users)
    text = (f"[databases]\n{db_line}\n\n"
            f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            f"auth_type = {auth}\nauth_file = {users}\npool_mode = transaction\n"
            f"default_pool_size = {POOL_SIZE}\nmax_client_conn = {MAX_CLIENT_CONN}\n"
            # Logging 1,000s of logins per second would bill PgBouncer for our log file.
            f"log_connections = 0\nlog_disconnections = 0\nlogfile = {d}/pgbouncer.log\n")
    if pgbouncer_version() >= (1, 21):
        # From 1.21 it can keep protocol-level prepared statements in transaction mode.
        text += "max_prepared_statements = 200\n"
    conf = os.path.join(d, "pgbouncer.ini")
    with open(conf, "w") as f:
        f.write(text)
    give_to_service_user(d, conf)
    # With the default limit of 1,024 files it stops accepting long before 5,000 clients.
    args = ["bash", "-c", f"ulimit -n 20000 && exec {exe} {conf}"]
    proc = Process(as_service_user(args), os.path.join(d, "stdout.log"))
    try:
        wait_port(port, proc=proc)
    except RuntimeError as e:
        proc.stop()
        raise Unavailable(f"PgBouncer did not start: {e}") from e
    proc.pid = descendant_named(proc.proc.pid, "pgbouncer") or proc.proc.pid
    return Pooler(name, proc, port, text)


def mongo_host_port(uri):
    """The first host:port of a mongodb:// URI, for counting connections to it."""
    rest = uri.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0]
    host = rest.rsplit("@", 1)[-1].split(",")[0]
    if host.startswith("["):
        h, _, p = host[1:].partition("]")
        return h, int(p.lstrip(":") or 27017)
    h, _, p = host.partition(":")
    return h, int(p or 27017)


def start_mongo_server(root, workdir):
    """The MongoDB-wire test server from tests/mongo_server (installed on first use)."""
    d = os.path.join(root, "tests", "mongo_server")
    run, install = os.path.join(d, "run"), os.path.join(d, "install")
    if not os.access(run, os.X_OK):
        raise Unavailable(f"{run} does not exist: no MongoDB-wire test server")
    if os.access(install, os.X_OK):
        p = subprocess.run([install], capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise Unavailable(f"{install} failed: {(p.stdout + p.stderr).strip()[-300:]}")
    port = free_port()
    proc = Process([run, str(port)], os.path.join(workdir, "mongo.log"))
    try:
        wait_port(port, proc=proc, timeout=60)
    except RuntimeError as e:
        proc.stop()
        raise Unavailable(f"MongoDB-wire test server did not start: {e}") from e
    return proc, port
