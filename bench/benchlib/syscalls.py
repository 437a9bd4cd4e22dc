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
    """{syscall: (calls, errors)} from strace -c's table. A row is "% time, seconds,
    usecs/call, calls, [errors], syscall": the errors column is blank when there were none."""
    counts = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or fields[-1] == "total" or not fields[3].isdigit():
            continue
        errors = int(fields[4]) if len(fields) >= 6 and fields[4].isdigit() else 0
        counts[fields[-1]] = (int(fields[3]), errors)
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
