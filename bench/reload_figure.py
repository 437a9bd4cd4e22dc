#!/usr/bin/python3
"""Reload time with many databases: a Sluice with N [databases] lines (default 100), each with a
pool and an idle server connection, is sent SIGHUP repeatedly; the time is what Sluice logs for
the whole reload (load and check the file, apply the key table, refresh every pool), median and
maximum over the runs, for an unchanged file and for a file whose every line moved to another
server address (every pool rebuilt, its idle server closed).

Usage: bench/reload_figure.py [--sluice build/sluice] [--dbs 100] [--runs 20]
Starts its own PostgreSQL (Debian's, as the tests do). Prints a Markdown table.
"""
import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration", "pg"))
from pgutil import PgCluster, free_port, run_psql  # noqa: E402

TOOK = re.compile(r"configuration reloaded from \S+ in ([\d.]+) ms")


def write_conf(path, port, tmp, pg, n, via_socket):
    host = pg.dir if via_socket else "127.0.0.1"
    with open(path, "w") as f:
        f.write(f"[sluice]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n"
                f"unix_socket_dir = {tmp}\nlog_level = info\nmin_pool_size = 1\n[databases]\n")
        for i in range(n):
            f.write(f"db{i} = host={host} port={pg.port} dbname=postgres pool_size=2\n")


def reload_times(proc, log_path, runs):
    times = []
    for _ in range(runs):
        before = len(TOOK.findall(open(log_path).read()))
        proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 30
        while time.time() < deadline:
            found = TOOK.findall(open(log_path).read())
            if len(found) > before:
                times.append(float(found[-1]))
                break
            time.sleep(0.01)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", default=os.path.join(os.path.dirname(__file__), "..", "build",
                                                     "sluice"))
    ap.add_argument("--dbs", type=int, default=100)
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    pg = PgCluster()
    pg.start()
    tmp = tempfile.mkdtemp(prefix="sluice-reload-")
    port = free_port()
    conf, log_path = os.path.join(tmp, "sluice.ini"), os.path.join(tmp, "sluice.log")
    write_conf(conf, port, tmp, pg, a.dbs, False)
    proc = subprocess.Popen([a.sluice, "-c", conf], stdout=open(log_path, "w"),
                            stderr=subprocess.STDOUT)
    try:
        time.sleep(0.5)
        for i in range(a.dbs):  # a pool per database, with its idle server
            r = run_psql(port, "SELECT 1", db=f"db{i}")
            assert r.returncode == 0, r.stderr
        same = reload_times(proc, log_path, a.runs)
        moved = []
        for k in range(a.runs):
            write_conf(conf, port, tmp, pg, a.dbs, k % 2 == 0)
            moved += reload_times(proc, log_path, 1)
        print(f"| reload with {a.dbs} databases ({a.runs} runs) | median ms | max ms |")
        print("|---|---|---|")
        for name, t in (("file unchanged", same), ("every line's address changed", moved)):
            print(f"| {name} | {statistics.median(t):.2f} | {max(t):.2f} |")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        pg.destroy()


if __name__ == "__main__":
    main()
