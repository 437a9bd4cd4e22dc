"""Fixtures for the MongoDB integration tests: the MongoDB-wire test server (CongoDB, installed by
tests/mongo_server/install) on a free port, and a fresh Sluice per test with a [mongodb] line."""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pg"))
from pgutil import free_port  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SLUICE_BIN = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "build", "sluice")
SERVER_DIR = os.path.join(ROOT, "tests", "mongo_server")


def wait_port(port, proc=None, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                break
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class MongoServer:
    def __init__(self, port=None):
        self.port = port or free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="mongo-server-", suffix=".log", delete=False)
        self.proc = None

    def start(self):
        assert os.path.exists(os.path.join(SERVER_DIR, "congodb", "index.js")), \
            "the test server is not installed: run tests/mongo_server/install"
        self.proc = subprocess.Popen([os.path.join(SERVER_DIR, "run"), str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc)

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def uri(self):
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"


@pytest.fixture(scope="session")
def mongo_server():
    s = MongoServer()
    s.start()
    yield s
    s.stop()


@pytest.fixture()
def own_mongo():
    s = MongoServer()
    s.start()
    yield s
    s.resume() if s.proc and s.proc.poll() is None else None
    s.stop()


class Sluice:
    def __init__(self, backend_port, tmp, **opts):
        self.port = free_port()
        self.pg_port = free_port()
        self.conf = os.path.join(tmp, "sluice.ini")
        self.log_path = os.path.join(tmp, "sluice.log")
        # SIGTERM waits for open transactions: bounded for tests that leave one open.
        main = {"query_wait_timeout": opts.pop("query_wait_timeout", 120),
                "shutdown_timeout": opts.pop("shutdown_timeout", 5)}
        for key in ("server_connect_timeout", "auth_file", "metrics_port", "admin_users"):
            if key in opts:
                main[key] = opts.pop(key)
        line = {"listen_port": self.port, "pool_size": opts.pop("pool_size", 10),
                "uri": opts.pop("uri", f"mongodb://127.0.0.1:{backend_port}/?appname=sluice")}
        line.update(opts)
        with open(self.conf, "w") as f:
            f.write(f"[sluice]\nlisten_addr = 127.0.0.1\nlisten_port = {self.pg_port}\n"
                    "unix_socket_dir =\nlog_level = debug\n")
            for k, v in main.items():
                f.write(f"{k} = {v}\n")
            f.write("[mongodb]\nmongo = " + " ".join(f"{k}={v}" for k, v in line.items()) + "\n")
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen([SLUICE_BIN, "-c", self.conf], stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc)

    def uri(self, **opts):
        extra = "".join(f"&{k}={v}" for k, v in opts.items())
        return f"mongodb://127.0.0.1:{self.port}/?serverSelectionTimeoutMS=10000{extra}"

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def backend_connections(self, backend_port):
        """ESTABLISHED TCP connections from Sluice to the backend port."""
        out = subprocess.run(["ss", "-Htnp", "state", "established", "dport", f"= :{backend_port}"],
                             capture_output=True, text=True).stdout
        return sum(1 for line in out.splitlines() if f"pid={self.proc.pid}," in line)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("sluice did not stop on SIGTERM")
        self.logf.close()
        return self.proc.returncode


def stop_problems(instances):
    """Stops every Sluice a test started; lists a non-clean exit or a sanitizer report."""
    problems = []
    for s in instances:
        rc = s.stop()
        log = s.log()
        if rc != 0:
            problems.append(f"sluice exited with {rc}:\n{log[-3000:]}")
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            if marker in log:
                problems.append(f"sanitizer report in the log:\n{log[-6000:]}")
    return problems


@pytest.fixture()
def sluice_factory(mongo_server):
    started = []

    def make(server=None, **opts):
        tmp = tempfile.mkdtemp(prefix="sluice-mongo-")
        s = Sluice((server or mongo_server).port, tmp, **opts)
        started.append(s)
        return s

    yield make
    problems = stop_problems(started)
    assert not problems, "\n".join(problems)


@pytest.fixture()
def sluice(sluice_factory):
    return sluice_factory()
