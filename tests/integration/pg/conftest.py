"""PostgreSQL integration fixtures: one real PostgreSQL per run, a fresh Sluice per test.

PostgreSQL is Debian's; initdb refuses to run as root, so as root the cluster belongs to the
`postgres` user. Ports are taken below the kernel's ephemeral range so a client socket cannot
hold the port Sluice is about to bind.

SLUICE_BIN names the binary (meson passes it; default build/sluice). SLUICE_DIRECT=1 hands the
tests PostgreSQL itself instead of a Sluice, to check the harness and the tests' expectations
of plain PostgreSQL behaviour: pass-through tests must then pass, while tests of what only a
pooler does (pool sizes, its timeouts, max_client_conn) fail.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from pgutil import PgCluster, free_port, open_fds, stop_problems, wait_for

SLUICE_BIN = os.environ.get("SLUICE_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "..", "build", "sluice")
DIRECT = os.environ.get("SLUICE_DIRECT") == "1"


@pytest.fixture(scope="session")
def pg():
    cluster = PgCluster()
    cluster.start()
    cluster.psql("CREATE TABLE IF NOT EXISTS kv (k int PRIMARY KEY, v text)")
    subprocess.run(["pgbench", "-i", "-q", "-s", "2", "-h", "127.0.0.1", "-p", str(cluster.port),
                    "-U", "postgres", "postgres"], check=True, capture_output=True)
    yield cluster
    cluster.destroy()


@pytest.fixture()
def own_pg():
    """A cluster of the test's own, for tests that stop or kill PostgreSQL."""
    cluster = PgCluster()
    cluster.start()
    yield cluster
    cluster.destroy()


class Sluice:
    """One running Sluice with its own config file, Unix socket directory and log."""

    def __init__(self, pg, overrides, databases, tmp):
        # A listen_port of the test's own: another Sluice may share it (so_reuseport).
        self.port = int(overrides.get("listen_port") or free_port())
        self.dir = tmp
        self.conf = os.path.join(tmp, "sluice.ini")
        self.log_path = os.path.join(tmp, "sluice.log")
        main = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": tmp,
            "log_level": "debug",
            "default_pool_size": "5",
            # SIGTERM waits for open transactions: a test that leaves one open must not make
            # the teardown wait the default minute.
            "shutdown_timeout": "5",
        }
        main.update({k: str(v) for k, v in overrides.items()})
        dbs = databases or {
            "postgres": f"host=127.0.0.1 port={pg.port} dbname=postgres",
            "*": f"host=127.0.0.1 port={pg.port}",
        }
        self.main = main
        self._write(dbs)
        self.logf = open(self.log_path, "w")
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
                   UBSAN_OPTIONS="print_stacktrace=1")
        self.proc = subprocess.Popen([SLUICE_BIN, "-c", self.conf], stdout=self.logf,
                                     stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.logf.close()
        raise RuntimeError(f"sluice did not start (exit status {self.proc.returncode}):\n"
                           + self.log())

    @property
    def pid(self):
        return self.proc.pid

    @property
    def socket_path(self):
        return os.path.join(self.dir, f".s.PGSQL.{self.port}")

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def dsn(self, dbname="postgres", **kw):
        d = dict(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname)
        d.update(kw)
        return d

    def fd_count(self, except_peer_port=None):
        """Sluice's open descriptors; with a port, not counting connections to that port."""
        return open_fds(self.proc.pid, except_peer_port)

    def running(self):
        return self.proc.poll() is None

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def _write(self, databases):
        with open(self.conf, "w") as f:
            f.write("[sluice]\n")
            for k, v in self.main.items():
                f.write(f"{k} = {v}\n")
            f.write("[databases]\n")
            for k, v in databases.items():
                f.write(f"{k} = {v}\n")

    def rewrite(self, databases, **overrides):
        """Writes the config again with these [databases] lines and [sluice] changes (the
        ports and directories stay), for a reload."""
        self.main.update({k: str(v) for k, v in overrides.items()})
        self._write(databases)

    def reload_and_wait(self):
        """SIGHUP, then waits for the log line that ends the reload (applied or refused)."""
        done = ("configuration reloaded", "keeping the running configuration")
        before = sum(self.log().count(d) for d in done)
        self.reload()
        assert wait_for(lambda: sum(self.log().count(d) for d in done) > before), self.log()

    def stop(self):
        """SIGTERM, then up to 10 s for the exit; returns the exit status, or None when Sluice
        did not exit in time (it is then killed)."""
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                rc = None
        self.logf.close()
        return rc


class Direct:
    """Stands in for a Sluice under SLUICE_DIRECT=1: the same interface, PostgreSQL behind it."""

    def __init__(self, pg, databases):
        self.port = pg.port
        if databases:  # the server the test meant Sluice to use
            m = re.search(r"port=(\d+)", next(iter(databases.values())))
            self.port = int(m.group(1)) if m else pg.port
        self.dir = pg.dir
        self.conf = None
        self.pid = None
        self.socket_path = os.path.join(self.dir, f".s.PGSQL.{self.port}")

    def log(self):
        return ""

    def dsn(self, dbname="postgres", **kw):
        d = dict(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname)
        d.update(kw)
        return d

    def fd_count(self, except_peer_port=None):
        return 0

    def running(self):
        return True

    def reload(self):
        pass

    def stop(self):
        return 0


@pytest.fixture()
def sluice_factory(pg):
    started = []
    tmp = tempfile.mkdtemp(prefix="sluice-test-")

    def make(databases=None, **overrides):
        if DIRECT:
            s = Direct(pg, databases)
        else:
            s = Sluice(pg, overrides, databases, tempfile.mkdtemp(dir=tmp))
        started.append(s)
        return s

    yield make
    problems = stop_problems(started)
    shutil.rmtree(tmp, ignore_errors=True)
    assert not problems, "\n".join(problems)


@pytest.fixture()
def sluice(sluice_factory):
    return sluice_factory()
