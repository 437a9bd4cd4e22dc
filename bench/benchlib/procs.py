"""Child processes, free ports, and what /proc says about a process."""
import os
import pwd
import signal
import socket
import subprocess
import time

AS_ROOT = os.geteuid() == 0


def service_user():
    """The account PostgreSQL tools and PgBouncer run as when we are root (both refuse root)."""
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root, but there is neither a postgres nor a nobody account")


def as_service_user(args):
    return (["runuser", "-u", service_user().pw_name, "--"] + args) if AS_ROOT else args


def give_to_service_user(*paths):
    if AS_ROOT:
        pw = service_user()
        for p in paths:
            os.chown(p, pw.pw_uid, pw.pw_gid)


def free_port():
    """A port nothing listens on now. Random rather than kernel-assigned so that two runs side by
    side do not keep picking neighbours of each other's ports."""
    while True:
        port = 20000 + int.from_bytes(os.urandom(2), "big") % 12000
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


def wait_port(port, host="127.0.0.1", timeout=30, proc=None):
    """Waits until something accepts on host:port; raises if it does not in time, or if proc
    (a Process) exits first, so a daemon that dies at start fails fast with its log."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"exited with status {proc.proc.returncode} at start: "
                               f"{proc.log_tail()}")
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing accepts connections on {host}:{port} after {timeout} s")


class Process:
    """A daemon we started, its output going to a log file.

    Each runs in a session of its own, as a service does. With the kernel's autogroup
    scheduling (sched_autogroup_enabled, on by default on Debian) a process that shares the
    benchmark's session also shares one CPU share with pgbench, while PostgreSQL (pg_ctl starts
    it in a new session) has one to itself: a pooler left in our session is preempted by the
    load it serves, and how much depends on how the run happens to be laid out."""

    def __init__(self, args, log_path, env=None):
        self.args = args
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        # The process to measure and signal; differs from proc.pid behind runuser.
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, n=5):
        self.log.flush()
        try:
            with open(self.log_path, errors="replace") as f:
                return " | ".join(line.strip() for line in f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def descendant_named(pid, name):
    """The pid of the process called name among pid and its descendants (runuser forks), or
    None."""
    stack, seen = [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/comm") as f:
                if f.read().strip() == name:
                    return p
            with open(f"/proc/{p}/task/{p}/children") as f:
                stack += [int(x) for x in f.read().split()]
        except OSError:
            continue
    return None


def cpu_split(pid):
    """(user, system) CPU time the process has used so far: its own code's, and the kernel's
    on its behalf (system calls, wake-ups, the network stack)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tck, int(fields[12]) / tck


def cpu_seconds(pid):
    """User plus system CPU time the process has used so far."""
    return sum(cpu_split(pid))


def tree_cpu_seconds(pid):
    """CPU time used so far by a server that forks a process per connection (PostgreSQL): its
    own, its children's that it has reaped (the kernel adds them to its count when it waits for
    them) and its live children's. The difference of two readings is what the server spent in
    between, connections opened or closed meanwhile included."""
    tck = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    total = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile: its time is in the parent's reaped count
        if int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / tck


def status_bytes(pid, key):
    """A kB figure from /proc/PID/status (VmRSS, VmHWM, ...) in bytes; 0 if absent."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak_rss(pid):
    """Restarts VmHWM from the current RSS (Linux clear_refs 5) so each run gets its own peak.
    Returns False where the kernel does not allow it; the peak then covers the whole life."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
