#!/usr/bin/env python3
"""The round-trip time of a raw OP_MSG {ping: 1, $db: "admin"}, direct to a MongoDB server and
through Sluice, and through bench/floor_relay (the least any proxy can do): one client, one
socket per target, each ping written and its reply read before the next, COUNT times per target
after a warm-up. Prints one JSON object per target (median, p99, mean in µs) and, with direct
among them, one per other target with what it adds to the median and p99.

usage: bench/mongo_ping_rtt.py [--direct HOST:PORT] [--through HOST:PORT] [--relay HOST:PORT]
                               [--count N]

Any of the targets may be left out. The pings alternate between the targets in blocks of 1,000,
so drift on a busy machine hits them alike."""
import argparse
import json
import socket
import statistics
import struct
import time

OP_MSG = 2013
# {ping: 1, $db: "admin"} as BSON
BODY = (b"\x00\x00\x00\x00"  # length, patched below
        b"\x10ping\x00\x01\x00\x00\x00"
        b"\x02$db\x00\x06\x00\x00\x00admin\x00"
        b"\x00")
BODY = struct.pack("<i", len(BODY)) + BODY[4:]
BLOCK = 1000


def ping_msg(request_id):
    payload = struct.pack("<I", 0) + b"\x00" + BODY
    return struct.pack("<iiii", 16 + len(payload), request_id, 0, OP_MSG) + payload


def read_exact(sock, n, buf):
    while len(buf) < n:
        d = sock.recv(65536)
        if not d:
            raise ConnectionError("the connection closed")
        buf += d
    return buf


def connect(target):
    host, port = target.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def run(sock, n, samples, next_id):
    clock = time.perf_counter_ns
    for _ in range(n):
        msg = ping_msg(next_id)
        next_id += 1
        t0 = clock()
        sock.sendall(msg)
        buf = read_exact(sock, 4, b"")
        buf = read_exact(sock, struct.unpack("<i", buf[:4])[0], buf)
        samples.append((clock() - t0) / 1000.0)
        if b"ok" not in buf:
            raise RuntimeError("not a ping reply")
    return next_id


def summary(name, samples):
    s = sorted(samples)
    return {"target": name, "count": len(s), "median_us": round(statistics.median(s), 1),
            "p99_us": round(s[int(len(s) * 0.99) - 1], 1), "mean_us": round(statistics.fmean(s), 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--direct")
    ap.add_argument("--through", help="Sluice's MongoDB listener")
    ap.add_argument("--relay", help="a floor_relay in front of the same server")
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--warmup", type=int, default=1000)
    a = ap.parse_args()
    targets = [(k, t) for k, t in (("direct", a.direct), ("relay", a.relay),
                                   ("sluice", a.through)) if t]
    if not targets:
        ap.error("give at least one of --direct, --through and --relay")
    socks = {k: connect(t) for k, t in targets}
    samples = {k: [] for k, _ in targets}
    next_id = 1
    for k, _ in targets:
        next_id = run(socks[k], a.warmup, [], next_id)
    done = 0
    while done < a.count:
        n = min(BLOCK, a.count - done)
        for k, _ in targets:
            next_id = run(socks[k], n, samples[k], next_id)
        done += n
    out = [summary(k, samples[k]) for k, _ in targets]
    for o in out:
        print(json.dumps(o))
    if a.direct:
        base = out[0]
        for o in out[1:]:
            print(json.dumps({"added_by": o["target"],
                              "added_median_us": round(o["median_us"] - base["median_us"], 1),
                              "added_p99_us": round(o["p99_us"] - base["p99_us"], 1)}))


if __name__ == "__main__":
    main()
