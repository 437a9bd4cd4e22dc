#!/usr/bin/python3
"""CPU per transaction with the poolers' server connections in cleartext and in TLS.

Throughput on a shared, loaded machine says little; the CPU a fixed amount of work costs is
steadier. For each pooler (Sluice, PgBouncer) and server_tls_sslmode (disable, require), a fixed
pgbench -S run (the clients with sslmode=require, or --client-sslmode) is measured by the
pooler's utime+stime from /proc/PID/stat, and PostgreSQL's (postmaster and its children) the
same way. The targets are interleaved, --rounds times; the median is shown.

Usage: bench/tls_cpu.py [--sluice build/sluice] [--clients 20] [--transactions 2000]
                        [--rounds 5] [--client-sslmode require]
Prints a Markdown table: microseconds of CPU per transaction.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tls_figures as tf  # noqa: E402

HZ = os.sysconf("SC_CLK_TCK")


def stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_ticks(pid):
    f = stat_fields(pid)
    return int(f[11]) + int(f[12])


def postgres_ticks(postmaster):
    total = cpu_ticks(postmaster)
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            f = stat_fields(p)
        except OSError:
            continue
        if int(f[1]) == postmaster:
            total += int(f[11]) + int(f[12])
    return total


def daemon_pid(proc):
    """The pooler's own pid: PgBouncer runs under runuser when we are root."""
    with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
        kids = f.read().split()
    return int(kids[0]) if kids else proc.pid


def pgbench(port, clients, transactions, env):
    subprocess.run(["pgbench", "-n", "-S", "-c", str(clients), "-j", "2", "-t", str(transactions),
                    "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "postgres"],
                   env=env, check=True, capture_output=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", default="build/sluice")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--transactions", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--client-sslmode", default="require")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="sluice-tlscpu-")
    os.chmod(d, 0o755)
    tf.make_certs(d)
    pg_port = tf.free_port()
    data = tf.start_pg(d, pg_port)
    with open(os.path.join(data, "postmaster.pid")) as f:
        postmaster = int(f.readline())
    env = dict(os.environ, PGSSLMODE=a.client_sslmode)
    procs, targets = [], []
    try:
        tf.run(["pgbench", "-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p", str(pg_port), "-U",
                "postgres", "postgres"])
        for mode in ("disable", "require"):
            for name, start in (("Sluice", tf.start_sluice), ("PgBouncer", tf.start_pgbouncer)):
                port = tf.free_port()
                if start is tf.start_sluice:
                    p = start(os.path.abspath(a.sluice), d, pg_port, port, server_mode=mode)
                else:
                    p = start(d, pg_port, port, server_mode=mode)
                procs.append(p)
                assert tf.server_side_tls(port) == (mode == "require"), f"{name}: server TLS"
                pgbench(port, a.clients, 200, env)  # the pool fills before measuring
                targets.append((name, mode, port, daemon_pid(p), [], []))
        tx = a.clients * a.transactions
        for _ in range(a.rounds):
            for name, mode, port, pid, pooler, server in targets:
                t0, g0 = cpu_ticks(pid), postgres_ticks(postmaster)
                pgbench(port, a.clients, a.transactions, env)
                t1, g1 = cpu_ticks(pid), postgres_ticks(postmaster)
                pooler.append((t1 - t0) * 1e6 / HZ / tx)
                server.append((g1 - g0) * 1e6 / HZ / tx)
        print(f"pgbench -S -c {a.clients} -t {a.transactions}, clients sslmode="
              f"{a.client_sslmode}, median of {a.rounds} rounds\n")
        print("| pooler | server TLS | pooler CPU µs/tx | PostgreSQL CPU µs/tx |")
        print("|---|---|---|---|")
        for name, mode, _, _, pooler, server in targets:
            print(f"| {name} | {mode} | {statistics.median(pooler):.1f} |"
                  f" {statistics.median(server):.1f} |")
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        tf.as_postgres([f"{tf.PG_BIN}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"])


if __name__ == "__main__":
    main()
