"""The systems under test: PostgreSQL, PgBouncer, Sluice and the MongoDB-wire test server. The
two databases are started here on free loopback ports unless the caller names running ones;
the two poolers are always started here, each with its own server-side role, so that
pg_stat_activity tells whose server connections are whose."""
import os
import re
import shlex
import shutil
import subprocess

from .procs import (Process, as_service_user, descendant_named, free_port, give_to_service_user,
                    wait_port)

DB = "sluice_bench"
# Each pooler logs in to PostgreSQL as its own role (the `user=` of its [databases] line).
POOLER_ROLE = {"pgbouncer": "bench_pgbouncer", "sluice": "bench_sluice"}
POOL_SIZE = 20
# Room for 5,000 idle clients plus connections still being torn down from the previous step.
MAX_CLIENT_CONN = 6000


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

        try:
            run([f"{bindir}/initdb", "-D", self.data, "-A", "trust", "-U", self.user,
                 "--no-sync"])
            opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                    "-c max_connections=1200 -c shared_buffers=256MB")
            run([f"{bindir}/pg_ctl", "-D", self.data, "-o", opts, "-l",
                 os.path.join(self.dir, "log"), "-w", "-t", "60", "start"])
        except subprocess.CalledProcessError as e:
            raise Unavailable(f"PostgreSQL did not start: {e.stderr.strip()[-300:]}") from e
        self.started = True

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


def sluice_config(pg, mongo_uri):
    port = free_port()
    text = (f"[sluice]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            f"pool_mode = transaction\ndefault_pool_size = {POOL_SIZE}\n"
            f"max_client_conn = {MAX_CLIENT_CONN}\nlog_level = warning\n\n"
            f"[databases]\n* = host={pg.host} port={pg.port} user={POOLER_ROLE['sluice']}\n")
    mport = None
    if mongo_uri:
        mport = free_port()
        text += f"\n[mongodb]\nmongo = listen_port={mport} uri={mongo_uri} pool_size=10\n"
    return text, port, mport


def start_sluice(binary, workdir, pg, mongo_uri):
    if not os.access(binary, os.X_OK):
        raise Unavailable(f"{binary} does not exist (build it: meson setup build && "
                          "ninja -C build)")
    text, port, mport = sluice_config(pg, mongo_uri)
    conf = os.path.join(workdir, "sluice.ini")
    with open(conf, "w") as f:
        f.write(text)
    proc = Process([binary, "-c", conf], os.path.join(workdir, "sluice.log"))
    try:
        wait_port(port, proc=proc)
        if mport:
            wait_port(mport, proc=proc)
    except RuntimeError as e:
        proc.stop()
        raise Unavailable(f"Sluice did not start: {e}") from e
    return Pooler("sluice", proc, port, text, mport)


def pgbouncer_version():
    exe = shutil.which("pgbouncer")
    if not exe:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    return tuple(int(x or 0) for x in m.groups()) if m else (0, 0, 0)


def start_pgbouncer(workdir, pg):
    """PgBouncer in transaction mode with the same pool size as Sluice. Returns None when it is
    not installed. It refuses to run as root, so as root it runs as the service user."""
    exe = shutil.which("pgbouncer")
    if not exe:
        return None
    port = free_port()
    d = os.path.join(workdir, "pgbouncer")
    os.makedirs(d)
    users = os.path.join(d, "users.txt")
    with open(users, "w") as f:  # trust still wants every user listed
        for u in (pg.user, POOLER_ROLE["pgbouncer"]):
            f.write(f'"{u}" ""\n')
    text = (f"[databases]\n* = host={pg.host} port={pg.port} user={POOLER_ROLE['pgbouncer']}\n\n"
            f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {users}\npool_mode = transaction\n"
            f"default_pool_size = {POOL_SIZE}\nmax_client_conn = {MAX_CLIENT_CONN}\n"
            # Logging 1,000s of logins per second would bill PgBouncer for our log file.
            f"log_connections = 0\nlog_disconnections = 0\nlogfile = {d}/pgbouncer.log\n")
    if pgbouncer_version() >= (1, 21):
        # From 1.21 it can keep protocol-level prepared statements in transaction mode.
        text += "max_prepared_statements = 200\n"
    conf = os.path.join(d, "pgbouncer.ini")
    with open(conf, "w") as f:
        f.write(text)
    give_to_service_user(d, conf, users)
    # With the default limit of 1,024 files it stops accepting long before 5,000 clients.
    args = ["bash", "-c", f"ulimit -n 20000 && exec {exe} {conf}"]
    proc = Process(as_service_user(args), os.path.join(d, "stdout.log"))
    try:
        wait_port(port, proc=proc)
    except RuntimeError as e:
        proc.stop()
        raise Unavailable(f"PgBouncer did not start: {e}") from e
    proc.pid = descendant_named(proc.proc.pid, "pgbouncer") or proc.proc.pid
    return Pooler("pgbouncer", proc, port, text)


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
