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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--on", required=True, help="sluice built with statistics (default build)")
    ap.add_argument("--off", required=True, help="sluice built with -Dstats=false")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--clients", type=int, default=50)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="sluice-stats-cost-")
    os.chmod(d, 0o755)
    pg_port = free_port()
    data = None
    procs = []
    try:
        data = start_pg(d, pg_port)
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
