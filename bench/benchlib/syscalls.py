"""Counting a running process's system calls with `strace -c -f -p PID`, and sorting them into
the kinds a pooler's hot path makes: reads, writes, the poller's wait and its interest list."""
import os
import shutil
import signal
import subprocess
import time

# Each kind and the calls that do it; whatever is not named here is "other".
KINDS = (
    ("read", ("read", "recvfrom", "recvmsg", "readv", "recvmmsg")),
    ("write", ("write", "sendto", "sendmsg", "writev", "sendmmsg")),
    ("epoll_wait", ("epoll_wait", "epoll_pwait", "epoll_pwait2", "poll", "ppoll", "select",
                    "pselect6")),
    ("epoll_ctl", ("epoll_ctl",)),
)
KIND_NAMES = tuple(k for k, _ in KINDS) + ("other",)
_KIND_OF = {call: kind for kind, calls in KINDS for call in calls}


class Unavailable(Exception):
    """strace is missing or cannot attach; the message says why."""


def parse_summary(text):
    """{syscall: (calls, errors)} from strace -c's table. Its numbers are right-aligned under
    the header's words, and a column is blank where there is nothing to say (no errors), so
    each is read from where the header puts it rather than by counting fields."""
    counts, columns = {}, None
    for line in text.splitlines():
        if columns is None:
            if "calls" in line and "syscall" in line:
                columns = {w: line.index(w) + len(w) for w in ("usecs/call", "calls", "errors")}
            continue
        name = line[columns["errors"]:].strip()
        calls = line[columns["usecs/call"]:columns["calls"]].strip()
        errors = line[columns["calls"]:columns["errors"]].strip()
        if not calls.isdigit() or not name or name == "total" or " " in name:
            continue  # the rules, the total, anything else
        counts[name] = (int(calls), int(errors) if errors.isdigit() else 0)
    return counts


def by_kind(counts):
    """{kind: calls} over KIND_NAMES, plus "failed": the calls that returned an error (a read
    that finds nothing, EAGAIN, is a wasted trip into the kernel)."""
    out = dict.fromkeys(KIND_NAMES, 0)
    out["failed"] = 0
    for call, (n, errors) in counts.items():
        out[_KIND_OF.get(call, "other")] += n
        out["failed"] += errors
    return out


class Tracer:
    """strace -c -f attached to `pid` (every thread) while the with-block runs. strace writes its
    table when it detaches, on SIGINT; `counts` holds it afterwards. The traced process runs
    several times slower meanwhile: what it does per transaction is what is measured here, never
    how fast."""

    ATTACH_TIMEOUT = 10

    def __init__(self, pid, out_path):
        if not shutil.which("strace"):
            raise Unavailable("strace is not installed (apt package strace)")
        self.pid, self.out_path = pid, out_path
        self.counts = None
        self.proc = None
        self.command = ["strace", "-c", "-f", "-p", str(pid), "-o", out_path]

    def __enter__(self):
        self.proc = subprocess.Popen(self.command, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        # strace says "Process N attached" once it traces N; calls before that go uncounted.
        deadline = time.time() + self.ATTACH_TIMEOUT
        seen = []
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            seen.append(line.strip())
            if f"Process {self.pid} attached" in line:
                return self
        self._end()
        raise Unavailable(f"strace did not attach to {self.pid}: {' | '.join(seen)[-300:]}")

    def __exit__(self, *exc):
        self._end()
        try:
            with open(self.out_path) as f:
                self.counts = parse_summary(f.read())
        except OSError:
            self.counts = None
        finally:
            if os.path.exists(self.out_path):
                os.unlink(self.out_path)

    def _end(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()
