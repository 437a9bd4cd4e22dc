#!/usr/bin/python3
"""The /metrics figure: how long a scrape takes with 10,000 logged-in clients spread over 1,000
pools (1,000 [databases] lines, db0 ... db999, each a pool with user postgres, 10 clients each,
idle at ReadyForQuery).

Usage: bench/metrics_figures.py [--sluice build/sluice] [--pools 1000] [--clients 10000]
                               [--scrapes 20]
Starts its own PostgreSQL (max_connections 1200; one server connection per pool) and Sluice on
free loopback ports, logs the clients in, then scrapes /metrics with urllib. Prints a Markdown
table: wall time per scrape (min / median / max, client side, over loopback), Sluice's CPU per
scrape, the exposition's size, and whether `promtool check metrics` accepts it.
"""
import argparse
import concurrent.futures
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib.churn import raise_fd_limit  # noqa: E402
from benchlib.measure import pg_login  # noqa: E402
from benchlib.procs import Process, cpu_seconds, free_port, status_bytes, wait_port  # noqa: E402
from benchlib.systems import Postgres  # noqa: E402


def sluice_config(path, port, metrics_port, pg_port, pools, clients):
    with open(path, "w") as f:
        f.write(f"[sluice]\nlisten_port = {port}\nunix_socket_dir =\nmetrics_port = "
                f"{metrics_port}\nmax_client_conn = {clients + 100}\ndefault_pool_size = 1\n"
                "log_level = warning\n[databases]\n")
        for i in range(pools):
            f.write(f"db{i} = host=127.0.0.1 port={pg_port} dbname=postgres\n")


def scrape(url):
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:
        body = r.read()
    return time.perf_counter() - t0, body


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sluice", default="build/sluice")
    ap.add_argument("--pools", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=10000)
    ap.add_argument("--scrapes", type=int, default=20)
    a = ap.parse_args()
    raise_fd_limit(a.clients + 1000)
    work = tempfile.mkdtemp(prefix="sluice-metrics-bench-")
    os.chmod(work, 0o755)  # PostgreSQL runs as its own user below it
    pg = Postgres(work)
    pg.start()
    sluice = None
    socks = []
    try:
        port, mport = free_port(), free_port()
        conf = os.path.join(work, "sluice.ini")
        sluice_config(conf, port, mport, pg.port, a.pools, a.clients)
        sluice = Process([os.path.abspath(a.sluice), "-c", conf], os.path.join(work, "sluice.log"))
        wait_port(port, proc=sluice)
        url = f"http://127.0.0.1:{mport}/metrics"
        empty_s, _ = scrape(url)

        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            futs = [ex.submit(pg_login, port, "postgres", f"db{i % a.pools}")
                    for i in range(a.clients)]
            socks = [f.result() for f in futs]
        login_s = time.time() - t0

        times = []
        cpu0 = cpu_seconds(sluice.pid)
        for _ in range(a.scrapes):
            t, body = scrape(url)
            times.append(t)
        cpu = (cpu_seconds(sluice.pid) - cpu0) / a.scrapes
        text = body.decode()
        check = subprocess.run(["promtool", "check", "metrics"], input=body,
                               capture_output=True, timeout=300)
        pools_line = next(ln for ln in text.splitlines()
                          if ln.startswith('sluice_pools{protocol="postgresql"}'))
        active = sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
                     if ln.startswith("sluice_pools_client_active_connections{"))
        print(f"| pools | clients | scrape min / median / max | Sluice CPU per scrape "
              f"| exposition | promtool |")
        print("|---|---|---|---|---|---|")
        print(f"| {pools_line.rsplit(' ', 1)[1]} | {int(active)} | {min(times) * 1e3:.1f} / "
              f"{statistics.median(times) * 1e3:.1f} / {max(times) * 1e3:.1f} ms "
              f"| {cpu * 1e3:.1f} ms | {len(body) / 1e6:.2f} MB, {text.count(chr(10))} lines "
              f"| {'ok' if check.returncode == 0 else check.stdout.decode()[:200]} |")
        print(f"\n(empty scrape before the clients: {empty_s * 1e3:.1f} ms; {a.clients} logins "
              f"in {login_s:.1f} s; Sluice RSS {status_bytes(sluice.pid, 'VmRSS') / 1e6:.0f} MB; "
              f"{a.scrapes} scrapes)")
    finally:
        for s in socks:
            s.close()
        if sluice:
            sluice.stop()
        pg.stop()


if __name__ == "__main__":
    main()
