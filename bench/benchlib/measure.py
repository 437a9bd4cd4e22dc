"""What one run measures: the load generators' own figures (pgbench, psql, mongo_load), server
connections held on the backend, and logins held by idle clients."""
import json
import math
import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import threading
import time

from .procs import status_bytes


def percentiles(values_us):
    """The mean and nearest-rank p50/p95/p99 in milliseconds of latencies in microseconds."""
    if not values_us:
        return {"mean_ms": None, "p50_ms": None, "p95_ms": None, "p99_ms": None}
    values_us.sort()
    n = len(values_us)

    def pick(p):
        rank = max(1, -(-round(p * 1000) * n // 1000))  # ceil(p * n) in integers
        return round(values_us[rank - 1] / 1000.0, 3)

    return {"mean_ms": round(sum(values_us) / n / 1000.0, 3), "p50_ms": pick(0.50),
            "p95_ms": pick(0.95), "p99_ms": pick(0.99)}


# ---- server connections during a run ----

class PgActivity:
    """Client backends per role from pg_stat_activity, over one psql session kept open for the
    whole benchmark: a fresh connection per sample would cost a backend fork each time and show
    up in the counts itself."""

    END = "--sample-end--"
    QUERY = ("SELECT usename, count(*), count(*) FILTER (WHERE state <> 'idle') "
             "FROM pg_stat_activity WHERE backend_type = 'client backend' "
             "AND pid <> pg_backend_pid() GROUP BY usename;\n\\echo " + END + "\n")

    def __init__(self, pg, db):
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(["psql", "-X", "-At", "-F", "|", *pg.conn_args(), "-d", db],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def sample(self):
        """{role: (connections, connections not idle)}."""
        counts = {}
        with self.lock:
            self.proc.stdin.write(self.QUERY)
            self.proc.stdin.flush()
            for line in self.proc.stdout:
                line = line.strip()
                if line == self.END:
                    return counts
                user, held, busy = line.split("|")
                counts[user] = (int(held), int(busy))
        raise RuntimeError("the pg_stat_activity session ended")

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(10)


def established_to(port, owner):
    """ESTABLISHED TCP connections to `port` whose owning process matches `owner` as ss prints
    it ('pid=123,' or '"mongo_load"'): the server connections one target holds, without those
    another target keeps open in its idle pool."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", "dport", f"= :{port}"],
                         capture_output=True, text=True, timeout=10).stdout
    return sum(1 for line in out.splitlines() if owner in line)


class PeakSampler:
    """Calls sample() every `interval` seconds in a thread while the with-block runs; keeps the
    largest (held, busy) pair seen. busy is None where the source cannot tell."""

    def __init__(self, sample, interval):
        self.sample, self.interval = sample, interval
        self.held, self.busy, self.failures = 0, None, 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def take(self):
        try:
            held, busy = self.sample()
            self.held = max(self.held, held)
            if busy is not None:
                self.busy = max(self.busy or 0, busy)
        except Exception:  # noqa: BLE001 - a lost sample only makes the peak less sure
            self.failures += 1

    def loop(self):
        while True:
            self.take()
            if self.stopping.wait(self.interval):
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        # A sample stuck on a server that stopped answering must not stall the benchmark: the
        # thread is a daemon, and the peak stays what was seen so far.
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            # A pooler keeps its server connections after the clients leave: a run shorter
            # than the interval still shows them.
            self.take()


# ---- load generators ----

def run_command(cmd, timeout, stdin=None, env=None):
    """(returncode, stdout, stderr); a run that exceeds its time is killed, and its returncode
    is None. `env`: variables added to ours."""
    return run_command_cpu(cmd, timeout, stdin, env)[:3]


def run_command_cpu(cmd, timeout, stdin=None, env=None):
    """As run_command, plus the CPU seconds (user and system) the command used: its own
    resource usage from wait4, which samplers running meanwhile do not add to."""
    p = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=dict(os.environ, **env) if env else None)
    # A pidfd names this process even after it is reaped, when a bare pid could be another's.
    pidfd = os.pidfd_open(p.pid)
    got = {}
    readers = [threading.Thread(target=lambda k, f: got.__setitem__(k, f.read()), args=(k, f))
               for k, f in (("out", p.stdout), ("err", p.stderr))]
    for t in readers:
        t.start()
    done, killed = threading.Event(), threading.Event()

    def expire():
        if not done.is_set():
            killed.set()
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it ended meanwhile

    timer = threading.Timer(timeout, expire)
    timer.start()
    _, status, usage = os.wait4(p.pid, 0)
    done.set()
    timer.cancel()
    timer.join()
    os.close(pidfd)
    p.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait
    for t in readers:
        t.join()
    p.stdout.close()
    p.stderr.close()
    out, err = got.get("out", ""), got.get("err", "")
    if killed.is_set():
        return None, out, err + f"\nkilled after {timeout} s", usage.ru_utime + usage.ru_stime
    return p.returncode, out, err, usage.ru_utime + usage.ru_stime


def _error_lines(text, limit=600):
    """The distinct error messages in a tool's output, most telling first. pgbench's threads
    write to stderr at once, so prefixes interleave: they are stripped before comparing."""
    seen = {}
    for line in text.splitlines():
        # The tools' own prefixes are lower case; the server's "ERROR:" stays.
        line = re.sub(r"^(?:\s*(?:pgbench|psql|error|fatal):)+\s*", "", line.strip())
        if line and re.search(r"error|fatal|abort|killed|refused|closed", line, re.I):
            seen.setdefault(line, None)
    # "client 3 script 0 aborted in command 1 query 0: ERROR: ..." names the cause and where.
    lines = sorted(seen, key=lambda l: "aborted in" not in l)
    if not lines:
        return " | ".join(text.strip().splitlines()[-4:])[:limit]
    return "\n".join(lines)[:limit]


def run_pgbench(conn_args, db, args, seconds, count, logdir, timeout, password=None):
    """One pgbench run with per-transaction logs (-l) for the percentiles. Errors are failed
    transactions plus aborted clients: pgbench stops a client at its first error, so an aborted
    client is one error however many transactions it would have run. `password` goes to
    libpq as PGPASSWORD."""
    os.makedirs(logdir, exist_ok=True)
    env = {"PGPASSWORD": password} if password else None
    duration = seconds
    rerun = None
    while True:
        limit = ["-t", str(count)] if count else ["-T", str(duration)]
        cmd = ["pgbench", *conn_args, "-n", *limit, "-l", "--log-prefix",
               os.path.join(logdir, "tx"), *args, db]
        t0 = time.time()
        rc, out, err, cpu = run_command_cpu(cmd, timeout + duration - seconds, env=env)
        elapsed = time.time() - t0
        text = out + err
        # pgbench counts -T from before its clients connect. Opening a thousand backends
        # directly can take longer than the whole duration (no transaction at all, and pgbench
        # then prints no connection time): once, give it that long on top and rerun. Its tps
        # leaves the connection time out.
        if (count or duration != seconds or rc != 0 or elapsed < 1.5 * seconds
                or not re.search(r"actually processed: 0\b", text)):
            break
        duration = seconds + math.ceil(elapsed)
        rerun = (f"no transaction within -T {seconds} (its clients took {elapsed:.0f} s to "
                 f"connect): rerun with -T {duration}; the server CPU includes both runs")
        for name in os.listdir(logdir):
            os.unlink(os.path.join(logdir, name))
    tps = re.search(r"tps = ([\d.]+) \((?:without|including)", text)
    failed = re.search(r"number of failed transactions: (\d+)", text)
    processed = re.search(r"actually processed: (\d+)", text)
    aborted = set(re.findall(r"client (\d+) (?:script \d+ )?aborted", text))
    lat = []
    for name in os.listdir(logdir):
        with open(os.path.join(logdir, name)) as f:
            for line in f:
                fields = line.split(None, 3)
                if len(fields) >= 3 and fields[2].isdigit():
                    lat.append(int(fields[2]))
        os.unlink(os.path.join(logdir, name))
    res = {"throughput": float(tps.group(1)) if tps else 0.0, "unit": "tx/s",
           "ops": int(processed.group(1)) if processed else 0,
           "failed_transactions": int(failed.group(1)) if failed else 0,
           "aborted_clients": len(aborted), "seconds": round(elapsed, 3),
           "client_cpu_s": round(cpu, 3),
           "command": shlex.join([f"{k}={v}" for k, v in (env or {}).items()] + cmd),
           "timed_out": rc is None}
    if rerun:
        res["rerun"] = rerun
    res["errors"] = res["failed_transactions"] + res["aborted_clients"]
    if rc != 0 and not res["errors"]:
        res["errors"] = 1  # it ended badly without saying which client: count the run
    if res["errors"]:
        res["error_text"] = _error_lines(text)
    elif not res["ops"]:
        res["errors"] = 1
        res["error_text"] = "no transaction completed: " + _error_lines(text)
    res.update(percentiles(lat))
    return res


def run_copy(conn_args, db, table, data_path, rows, timeout):
    """COPY of `rows` rows from a file through psql's stdin: the data crosses the proxy."""
    cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *conn_args, "-d", db,
           "-c", f"COPY {table} FROM STDIN"]
    with open(data_path) as data:
        t0 = time.time()
        rc, out, err, cpu = run_command_cpu(cmd, timeout, stdin=data)
        elapsed = time.time() - t0
    res = {"throughput": round(rows / elapsed, 1) if rc == 0 else 0.0, "unit": "rows/s",
           "ops": rows if rc == 0 else 0, "seconds": round(elapsed, 3),
           "client_cpu_s": round(cpu, 3),
           "errors": 0 if rc == 0 else 1, "p50_ms": None, "p95_ms": None, "p99_ms": None,
           "command": shlex.join(cmd) + " < " + os.path.basename(data_path),
           "timed_out": rc is None}
    if rc != 0:
        res["error_text"] = _error_lines(out + err)
    return res


def run_mongo_load(binary, uri, op, clients, seconds, docs, timeout, count=0):
    """mongo_load for `seconds`, or `count` operations per client when given."""
    limit = ["--count", str(count)] if count else ["--seconds", str(seconds)]
    cmd = [binary, "--uri", uri, "--op", op, "--clients", str(clients), *limit,
           "--docs", str(docs)]
    t0 = time.time()
    rc, out, err, cpu = run_command_cpu(cmd, timeout)
    elapsed = time.time() - t0
    res = {"unit": "ops/s", "command": shlex.join(cmd), "seconds": round(elapsed, 3),
           "timed_out": rc is None, "client_cpu_s": round(cpu, 3)}
    try:
        r = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        res.update({"throughput": 0.0, "ops": 0, "errors": 1, "p50_ms": None, "p95_ms": None,
                    "p99_ms": None, "error_text": f"mongo_load failed (status {rc}): "
                                                  + _error_lines(out + err)})
        return res
    res.update({"throughput": r["throughput"], "ops": r["ops"], "errors": r["errors"],
                "seconds": r["seconds"], "p50_ms": r["p50_us"] / 1000.0,
                # an older mongo_load says no mean
                "mean_ms": r["mean_us"] / 1000.0 if "mean_us" in r else None,
                "p95_ms": r["p95_us"] / 1000.0, "p99_ms": r["p99_us"] / 1000.0})
    if r["errors"]:
        res["error_text"] = r["last_error"]
    elif not r["ops"]:
        res["errors"] = 1
        res["error_text"] = "no operation completed"
    return res


# ---- memory per idle client ----

def pg_login(port, user, db):
    """A socket logged in (StartupMessage, trust) and idle at ReadyForQuery."""
    body = struct.pack("!I", 196608) + f"user\0{user}\0database\0{db}\0\0".encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(struct.pack("!I", len(body) + 4) + body)
    buf = b""
    while True:
        while len(buf) >= 5:
            kind, length = buf[:1], struct.unpack("!I", buf[1:5])[0]
            if len(buf) < 1 + length:
                break
            msg, buf = buf[5:1 + length], buf[1 + length:]
            if kind == b"Z":
                return s
            if kind == b"E":
                s.close()
                raise RuntimeError("login refused: " + msg.replace(b"\0", b" ").decode(
                    errors="replace").strip())
        chunk = s.recv(65536)
        if not chunk:
            s.close()
            raise RuntimeError("connection closed during login")
        buf += chunk


def idle_rss_per_client(port, pid, n, user, db):
    """RSS growth of the pooler per idle, logged-in client, over n clients."""
    pg_login(port, user, db).close()  # the first login may allocate once-only state
    time.sleep(0.3)
    before = status_bytes(pid, "VmRSS")
    socks = []
    try:
        for _ in range(n):
            socks.append(pg_login(port, user, db))
        time.sleep(0.5)
        after = status_bytes(pid, "VmRSS")
    finally:
        for s in socks:
            s.close()
    return {"clients": n, "rss_before": before, "rss_after": after,
            "bytes_per_client": round((after - before) / n)}
