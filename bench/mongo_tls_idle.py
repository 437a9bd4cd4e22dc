#!/usr/bin/python3
"""Bytes per idle MongoDB client of Sluice, plaintext and TLS: N raw sockets each make their
handshake (TLS, for the TLS run) and one hello round trip, then stay idle; the figure is the
growth of Sluice's RSS over the N clients divided by N. The MongoDB-wire test server
(tests/mongo_server, installed by its install script) serves the hello's limits.

Usage: bench/mongo_tls_idle.py [--sluice build/sluice] [--clients 1000]
Prints a Markdown table.
"""
import argparse
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

import bson

from benchlib.churn import rss_kb
from benchlib.procs import wait_port
from tls_figures import free_port, make_certs

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def hello(sock):
    body = struct.pack("<I", 0) + b"\0" + bson.encode({"hello": 1, "$db": "admin"})
    sock.sendall(struct.pack("<iiii", 16 + len(body), 1, 0, 2013) + body)
    buf = b""
    while len(buf) < 4 or len(buf) < struct.unpack("<i", buf[:4])[0]:
        d = sock.recv(65536)
        if not d:
            sys.exit("Sluice closed a client")
        buf += d


def measure(sluice_pid, port, n, ctx):
    time.sleep(1)
    before = rss_kb(sluice_pid)
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        if ctx:
            s = ctx.wrap_socket(s, server_hostname="localhost")
        hello(s)
        socks.append(s)
    time.sleep(2)
    after = rss_kb(sluice_pid)
    for s in socks:
        s.close()
    return (after - before) * 1024 / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", default=os.path.join(ROOT, "build", "sluice"))
    ap.add_argument("--clients", type=int, default=1000)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="sluice-bench-")
    make_certs(d)
    mport, port, pg_port = free_port(), free_port(), free_port()
    server = subprocess.Popen([os.path.join(ROOT, "tests", "mongo_server", "run"), str(mport)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    conf = os.path.join(d, "sluice.ini")
    with open(conf, "w") as f:
        f.write(f"[sluice]\nlisten_addr = 127.0.0.1\nlisten_port = {pg_port}\n"
                "unix_socket_dir =\nlog_level = warning\n[mongodb]\n"
                f"m = listen_port={port} uri=mongodb://127.0.0.1:{mport}/ pool_size=2 "
                f"max_client_conn={a.clients * 2} client_tls_sslmode=prefer "
                f"client_tls_key_file={d}/server.key client_tls_cert_file={d}/server.crt\n")
    try:
        wait_port(mport)
        sluice = subprocess.Popen([a.sluice, "-c", conf])
        wait_port(port)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(os.path.join(d, "ca.crt"))
        plain = measure(sluice.pid, port, a.clients, None)
        tls = measure(sluice.pid, port, a.clients, ctx)
        print(f"| idle MongoDB clients ({a.clients}) | bytes per client |\n|---|---|")
        print(f"| plaintext | {plain:,.0f} |\n| TLS 1.3 | {tls:,.0f} |")
        sluice.terminate()
        sluice.wait(30)
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
