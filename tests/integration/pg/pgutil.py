"""Helpers shared by the PostgreSQL integration tests: clusters, ports, raw protocol, pgbench."""
import collections
import os
import pwd
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import weakref

import psycopg2

# Marks this harness's own connections to PostgreSQL, so counting Sluice's leaves them out.
PROBE_APP = "sluice-test-probe"

# Text that appears in a log only when a sanitizer found something.
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")

PG_BIN = sorted(d for d in (os.path.join("/usr/lib/postgresql", v, "bin")
                            for v in os.listdir("/usr/lib/postgresql"))
                if os.path.exists(os.path.join(d, "initdb")))[-1]

_used_ports = set()


def free_port():
    """A free loopback port outside the ephemeral range (clients cannot be holding it)."""
    for _ in range(1000):
        port = 20000 + int.from_bytes(os.urandom(2), "big") % 12000
        if port in _used_ports:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _used_ports.add(port)
        return port
    raise RuntimeError("no free port")


class PgCluster:
    """A throwaway PostgreSQL cluster; as root it runs as the `postgres` user."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="sluice-pg-")
        self.data = os.path.join(self.dir, "data")
        self.as_root = os.geteuid() == 0
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            os.chmod(self.dir, 0o755)

    def _run(self, args, **kw):
        if self.as_root:
            args = ["runuser", "-u", "postgres", "--"] + args
        return subprocess.run(args, check=True, capture_output=True, cwd="/", **kw)

    def start(self):
        if not os.path.exists(self.data):
            self._run([f"{PG_BIN}/initdb", "-D", self.data, "-A", "trust", "-U", "postgres",
                       "--no-sync"])
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        self._run([f"{PG_BIN}/pg_ctl", "-D", self.data, "-o", opts, "-l",
                   os.path.join(self.dir, "log"), "-w", "start"])

    def stop(self, mode="fast"):
        try:
            self._run([f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", mode, "-w", "stop"])
        except subprocess.CalledProcessError:
            pass

    def postmaster_pid(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return int(f.readline())

    def kill(self):
        """SIGKILLs the postmaster and every backend at once: PostgreSQL vanishes mid-work, as
        on a crash of the machine, without sending anything to its clients. start() then runs
        crash recovery."""
        pm = self.postmaster_pid()
        pids = [pm] + children(pm)
        for pid in pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        deadline = time.time() + 10
        while any(os.path.exists(f"/proc/{pid}") for pid in pids) and time.time() < deadline:
            time.sleep(0.05)
        os.unlink(os.path.join(self.data, "postmaster.pid"))

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def connect(self, **kw):
        return psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres",
                                dbname="postgres", application_name=PROBE_APP, **kw)

    def psql(self, sql):
        conn = self.connect()
        conn.autocommit = True
        try:
            cur = conn.cursor()
            cur.execute(sql)
            return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def server_connections(self, dbname="postgres"):
        """Client backends on PostgreSQL other than this probe: Sluice's server connections."""
        rows = self.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                         f"'client backend' AND application_name <> '{PROBE_APP}' "
                         f"AND datname = '{dbname}'")
        return rows[0][0]


def open_fds(pid, except_peer_port=None):
    """Number of open file descriptors of a process, leaving out its TCP sockets connected to
    `except_peer_port` (the server connections, however many descriptors each one uses)."""
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:  # closed since the listing
            pass
    if except_peer_port is None:
        return len(links)
    to_peer = set()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            next(f)
            for line in f:
                cols = line.split()  # sl local_address rem_address st ... uid timeout inode
                if int(cols[2].rsplit(":", 1)[1], 16) == except_peer_port:
                    to_peer.add(f"socket:[{cols[9]}]")
    return sum(1 for link in links if link not in to_peer)


def accepted_sockets(pid, port):
    """Number of the process's TCP sockets, other than listeners, whose local port is `port`:
    the client connections it holds."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            next(f)
            for line in f:
                cols = line.split()
                if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] != "0A":
                    inodes.add(f"socket:[{cols[9]}]")
    held = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            held += os.readlink(f"/proc/{pid}/fd/{fd}") in inodes
        except FileNotFoundError:
            pass
    return held


def children(pid):
    """Direct children of a process, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name in parentheses may contain spaces: the fields after it are fixed.
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            found.append(int(entry))
    return found


def stop_problems(instances):
    """Stops every Sluice a test started; lists what went wrong: no exit within 10 s of SIGTERM,
    a non-zero exit status (a shutdown that was not clean) or a sanitizer report in its log."""
    problems = []
    for s in instances:
        rc = s.stop()
        log = s.log()
        if rc is None:
            problems.append(f"sluice did not exit within 10 s of SIGTERM:\n{log[-3000:]}")
        elif rc != 0:
            problems.append(f"sluice exited with {rc}:\n{log[-3000:]}")
        if any(marker in log for marker in SANITIZER_MARKERS):
            problems.append(f"sanitizer report in the log:\n{log[-6000:]}")
    return problems


def run_psql(port, sql, db="postgres", extra=()):
    return subprocess.run(["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(port), "-U",
                           "postgres", "-d", db, *extra, "-c", sql],
                          capture_output=True, text=True, timeout=60)


Bench = collections.namedtuple("Bench", "processed failed tps out rc")


def pgbench(port, *args, db="postgres", host="127.0.0.1"):
    """Runs pgbench against a port; returns a Bench: transactions processed, failed transactions
    (-1 when pgbench did not get to print the count), tps (0.0 when absent), the combined output
    and the exit status."""
    p = subprocess.run(["pgbench", "-h", host, "-p", str(port), "-U", "postgres", "-n", *args, db],
                       capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    m = re.search(r"number of transactions actually processed: (\d+)", out)
    processed = int(m.group(1)) if m else 0
    m = re.search(r"number of failed transactions: (\d+)", out)
    failed = int(m.group(1)) if m else -1
    m = re.search(r"^tps = ([\d.]+)", out, re.M)
    tps = float(m.group(1)) if m else 0.0
    return Bench(processed, failed, tps, out, p.returncode)


# ---- raw protocol ----

def startup_packet(version=0x30000, **params):
    params.setdefault("user", "postgres")
    params.setdefault("database", "postgres")
    body = struct.pack("!I", version) + b"".join(
        k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0"
    return struct.pack("!I", len(body) + 4) + body


def message(t, body=b""):
    return t + struct.pack("!I", len(body) + 4) + body


# Bytes read past the last message returned, per socket (weak: a closed socket's number may be
# reused by the next one).
_pending = weakref.WeakKeyDictionary()


def read_messages(sock, until=b"Z", timeout=10):
    """Reads messages until one of type `until` (or EOF, or `timeout` seconds in all); returns
    ([(type, body)], eof). Bytes received beyond that message are kept for the next call on the
    same socket."""
    deadline = time.monotonic() + timeout
    buf = _pending.pop(sock, b"")
    msgs = []
    while True:
        while len(buf) >= 5:
            ln = struct.unpack("!I", buf[1:5])[0]
            assert ln >= 4, f"message {buf[:1]!r} with length {ln} from the server side"
            if len(buf) < ln + 1:
                break
            msgs.append((buf[:1], buf[5:ln + 1]))
            buf = buf[ln + 1:]
            if msgs[-1][0] == until:
                _pending[sock] = buf
                return msgs, False
        left = deadline - time.monotonic()
        if left <= 0:
            return msgs, False
        sock.settimeout(left)
        try:
            d = sock.recv(65536)
        except socket.timeout:
            return msgs, False
        except ConnectionResetError:
            return msgs, True
        if not d:
            return msgs, True
        buf += d


def read_to_eof(sock, timeout=10):
    """Every message until the peer closes; returns ([(type, body)], eof). eof is False when the
    connection was still open after `timeout` seconds."""
    return read_messages(sock, until=None, timeout=timeout)


def error_fields(body):
    """An ErrorResponse or NoticeResponse body as {field code: value}, e.g. {'C': '08P01'}."""
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[part[:1].decode()] = part[1:].decode(errors="replace")
    return fields


def raw_login(port, **params):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(startup_packet(**params))
    msgs, eof = read_messages(s)
    assert not eof and msgs[-1] == (b"Z", b"I"), msgs
    return s, msgs


def refused(port):
    """Whether nothing accepts TCP connections on the loopback port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


def wait_for(predicate, timeout=10):
    """Polls predicate until it holds or timeout seconds pass; returns its last value."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
