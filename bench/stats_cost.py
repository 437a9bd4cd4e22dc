#!/usr/bin/python3
"""What the per-message statistics cost: Sluice's CPU time per transaction with the counting
compiled in (the default build) and compiled out (meson setup -Dstats=false), in one run.

Both binaries run side by side against one PostgreSQL, and each round runs pgbench -S -c 50 (a
select by key, in transaction mode) through both at the same time, so whatever else loads the
machine loads both alike. Sluice's CPU time is read from /proc/<pid>/stat (user + system) before
and after each round.

Usage: bench/stats_cost.py --on build/sluice --off build-nostats/sluice [--rounds 4]
       [--seconds 10] [--clients 50]
Prints a Markdown table and the difference of the medians.

CPU time on a shared machine is noisy (two builds a few percent apart overlap from round to
round). --instructions counts instead: each build runs under valgrind's callgrind twice, once
for --short and once for --long transactions per client (pgbench -S -t), and the difference of
the instruction totals divided by the difference of the transactions is what one transaction
costs Sluice in instructions, start-up and shutdown cancelled out. Deterministic up to the
order in which the loop happens to see events, so it separates a 1% difference.
"""
import argparse
import os
import pwd
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

PG_BIN = sorted(d for d in (os.path.join("/usr/lib/postgresql", v, "bin")
                            for v in os.listdir("/usr/lib/postgresql"))
                if os.path.exists(os.path.join(d, "initdb")))[-1]
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def as_postgres(args):
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--"] + args
    subprocess.run(args, check=True, capture_output=True, cwd="/")


def start_pg(d, port):
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(d, pw.pw_uid, pw.pw_gid)
    data = os.path.join(d, "data")
    as_postgres([f"{PG_BIN}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"])
    opts = (f"-p {port} -k {d} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c synchronous_commit=off -c max_connections=200")
    as_postgres([f"{PG_BIN}/pg_ctl", "-D", data, "-o", opts, "-l", os.path.join(d, "pg.log"),
                 "-w", "start"])
    subprocess.run(["pgbench", "-i", "-q", "-s", "5", "-h", "127.0.0.1", "-p", str(port), "-U",
                    "postgres", "postgres"], check=True, capture_output=True)
    return data


def wait_port(port, proc):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("sluice did not start")
            time.sleep(0.05)
    raise RuntimeError("sluice did not start")


def start_sluice(binary, d, name, pg_port):
    port = free_port()
    conf = os.path.join(d, f"{name}.ini")
    with open(conf, "w") as f:
        f.write(f"""[sluice]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
pool_mode = transaction
default_pool_size = 20
max_client_conn = 1000
log_level = warning
[databases]
postgres = host=127.0.0.1 port={pg_port} dbname=postgres user=postgres
""")
    p = subprocess.Popen([binary, "-c", conf], stdout=open(os.path.join(d, f"{name}.log"), "w"),
                         stderr=subprocess.STDOUT)
    wait_port(port, p)
    return p, port


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def bench_args(port, clients, seconds):
    return ["pgbench", "-n", "-S", "-c", str(clients), "-j", "2", "-T", str(seconds), "-h",
            "127.0.0.1", "-p", str(port), "-U", "postgres", "postgres"]


def round_(targets, clients, seconds):
    """One round through every (proc, port) at once: [(CPU µs per transaction, tps)]."""
    before = [cpu_seconds(proc.pid) for proc, _ in targets]
    runs = [subprocess.Popen(bench_args(port, clients, seconds), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for _, port in targets]
    outs = [r.communicate(timeout=seconds + 120)[0] for r in runs]
    res = []
    for (proc, _), b, r, out in zip(targets, before, runs, outs):
        cpu = cpu_seconds(proc.pid) - b
        m = re.search(r"number of transactions actually processed: (\d+)", out)
        failed = re.search(r"number of failed transactions: (\d+)", out)
        if r.returncode != 0 or not m or (failed and int(failed.group(1))):
            raise RuntimeError(out)
        xacts = int(m.group(1))
        res.append((cpu * 1e6 / xacts, xacts / seconds))
    return res


def callgrind_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def instructions_run(binary, d, name, pg_port, clients, per_client):
    """Sluice under callgrind through one pgbench -S -t run: total instructions, transactions."""
    out = os.path.join(d, f"callgrind.{name}.{per_client}")
    port = free_port()
    conf = os.path.join(d, f"{name}-cg.ini")
    with open(conf, "w") as f:
        f.write(f"""[sluice]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
pool_mode = transaction
default_pool_size = {clients}
min_pool_size = {clients}
log_level = warning
[databases]
postgres = host=127.0.0.1 port={pg_port} dbname=postgres user=postgres
""")
    p = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary,
                          "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    r = subprocess.run(["pgbench", "-n", "-S", "-c", str(clients), "-j", "1", "-t",
                        str(per_client), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                        "postgres"], capture_output=True, text=True, timeout=1800)
    m = re.search(r"number of transactions actually processed: (\d+)", r.stdout)
    p.terminate()
    p.wait(timeout=300)
    if r.returncode != 0 or not m:
        raise RuntimeError(r.stdout + r.stderr)
    return callgrind_total(out), int(m.group(1))


def instructions(a, d, pg_port):
    print(f"pgbench -S -c {a.clients} -t {a.short} and -t {a.long} through Sluice under "
          "callgrind; instructions per transaction = difference of totals / difference of "
          "transactions\n")
    print("| build | instructions per transaction |")
    print("|---|---|")
    per = {}
    for name, binary in (("on", a.on), ("off", a.off)):
        i1, t1 = instructions_run(os.path.abspath(binary), d, name, pg_port, a.clients, a.short)
        i2, t2 = instructions_run(os.path.abspath(binary), d, name, pg_port, a.clients, a.long)
        per[name] = (i2 - i1) / (t2 - t1)
        print(f"| stats {name} | {per[name]:,.0f} |")
    print(f"\ndifference: {(per['on'] - per['off']) / per['off'] * 100:+.2f}%")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--on", required=True, help="sluice built with statistics (default build)")
    ap.add_argument("--off", required=True, help="sluice built with -Dstats=false")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--instructions", action="store_true",
                    help="count instructions under callgrind instead of CPU time")
    ap.add_argument("--short", type=int, default=200, help="--instructions: -t of the short run")
    ap.add_argument("--long", type=int, default=1200, help="--instructions: -t of the long run")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="sluice-stats-cost-")
    os.chmod(d, 0o755)
    pg_port = free_port()
    data = None
    procs = []
    try:
        data = start_pg(d, pg_port)
        if a.instructions:
            instructions(a, d, pg_port)
            return
        on = start_sluice(os.path.abspath(a.on), d, "on", pg_port)
        off = start_sluice(os.path.abspath(a.off), d, "off", pg_port)
        procs = [on[0], off[0]]
        res = {"on": [], "off": []}
        for _ in range(a.rounds):
            r_on, r_off = round_([on, off], a.clients, a.seconds)
            res["on"].append(r_on)
            res["off"].append(r_off)
        print(f"pgbench -S -c {a.clients} -j 2 -T {a.seconds} through both at once, {a.rounds} "
              "rounds; Sluice CPU (user+sys) per transaction\n")
        print("| build | CPU µs/transaction (median) | per round | tps (median) |")
        print("|---|---|---|---|")
        med = {}
        for name in ("on", "off"):
            cpu = [r[0] for r in res[name]]
            tps = [r[1] for r in res[name]]
            med[name] = statistics.median(cpu)
            print(f"| stats {name} | {med[name]:.2f} | {', '.join(f'{c:.2f}' for c in cpu)} | "
                  f"{statistics.median(tps):.0f} |")
        print(f"\ndifference: {(med['on'] - med['off']) / med['off'] * 100:+.2f}%")
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        if data:
            try:
                as_postgres([f"{PG_BIN}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"])
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
