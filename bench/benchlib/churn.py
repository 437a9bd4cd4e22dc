"""Churning clients for bench/soak and the soak tests: many short sessions over asyncio sockets
speaking the PostgreSQL and MongoDB wire protocols themselves (a driver per client would cost
more than the pooler under test), a share of which vanish mid-work.

A session is one client connection: it connects, does a little work, and either leaves properly
(Terminate, or a plain close on MongoDB) or vanishes: mid-transaction, mid-COPY, in the middle of
a message, or without reading what it asked for. Vanishing kinds expect nothing back; any error
a well-behaved session meets is tallied by kind ("pg 08006", "mongo code 262", "pg eof", ...)."""
import asyncio
import collections
import os
import random
import resource
import socket
import struct
import time
import uuid

import bson

# (kind, weight): the share of sessions of each kind. Kinds starting with "vanish" or "no_read"
# leave without finishing.
PG_KINDS = (("simple", 25), ("extended", 20), ("copy", 15), ("vanish_txn", 10),
            ("vanish_copy", 10), ("vanish_half", 10), ("no_read", 10))
MONGO_KINDS = (("crud", 30), ("cursor", 20), ("txn", 15), ("vanish_cursor", 10),
               ("vanish_txn", 10), ("vanish_half", 8), ("no_read", 7))

SOAK_TABLE = "soak_kv"
PG_SETUP = f"CREATE TABLE IF NOT EXISTS {SOAK_TABLE} (k bigint, v text)"  # what sessions write
MONGO_DB = "soak"
CURSOR_DOCS = 20  # documents in the collection cursors walk, two at a time
BIG_DOCS = 64  # 32 kB each: what a no_read client asks for and never reads
# Connections libmongoc keeps to a server besides the pool: the monitor and, with the streaming
# protocol, its round-trip-time monitor.
MONGO_MONITORS = 2
SESSION_TIMEOUT = 120.0  # a session stuck longer than this is an error ("timeout")
OP_MSG = 2013


class SessionError(Exception):
    """A well-behaved session got something other than the answer it expected: `kind` is what
    errors are tallied by (an SQLSTATE, "code N", "wrong answer"), `detail` an example."""

    def __init__(self, kind, detail=""):
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


class Tally:
    """Sessions finished per (protocol, kind) and errors per kind."""

    def __init__(self):
        self.done = collections.Counter()
        self.errors = collections.Counter()
        self.first_errors = []  # a few examples, for the report

    def error(self, proto, kind, detail):
        self.errors[f"{proto} {kind}"] += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(f"{proto} {kind}: {detail}")

    def total(self, proto=None):
        return sum(n for (p, _), n in self.done.items() if proto in (None, p))


def raise_fd_limit(want):
    """Raises the soft RLIMIT_NOFILE towards `want` (at most the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def _pick(kinds, rng):
    return rng.choices([k for k, _ in kinds], weights=[w for _, w in kinds])[0]


async def _open(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    return reader, writer


def _vanish(writer, rng):
    """Leaves without a goodbye: half the time a plain close, half the time a reset (SO_LINGER
    0), as when a process is killed or a network path dies."""
    sock = writer.get_extra_info("socket")
    if sock is not None and rng.random() < 0.5:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# ---- PostgreSQL ----

def pg_msg(t, body=b""):
    return t + struct.pack("!I", len(body) + 4) + body


def pg_startup(user, database, application_name="sluice-soak"):
    body = struct.pack("!I", 196608) + (f"user\0{user}\0database\0{database}\0"
                                        f"application_name\0{application_name}\0\0").encode()
    return struct.pack("!I", len(body) + 4) + body


def pg_query(sql):
    return pg_msg(b"Q", sql.encode() + b"\0")


def _pg_error(body):
    fields = {p[:1]: p[1:] for p in body.split(b"\0") if p}
    return fields.get(b"C", b"?????").decode(), fields.get(b"M", b"").decode(errors="replace")


async def pg_read(reader, until=b"Z"):
    """Messages up to and including one of the types in `until`; an ErrorResponse raises."""
    msgs = []
    while True:
        hdr = await reader.readexactly(5)
        t, ln = hdr[:1], struct.unpack("!I", hdr[1:])[0]
        body = await reader.readexactly(ln - 4)
        if t == b"E":
            code, text = _pg_error(body)
            raise SessionError(code, text)
        msgs.append((t, body))
        if t in until:
            return msgs


def _int_param(n):
    s = str(n).encode()
    return struct.pack("!I", len(s)) + s


def pg_extended(stmt, sql, values):
    """Parse (once, named `stmt`) then Bind/Execute for each value, and one Sync."""
    out = pg_msg(b"P", stmt.encode() + b"\0" + sql.encode() + b"\0" + struct.pack("!H", 0))
    for v in values:
        out += pg_msg(b"B", b"\0" + stmt.encode() + b"\0" + struct.pack("!H", 0)
                      + struct.pack("!H", 1) + _int_param(v) + struct.pack("!H", 0))
        out += pg_msg(b"D", b"P\0") + pg_msg(b"E", b"\0" + struct.pack("!I", 0))
    return out + pg_msg(b"S")


async def pg_session(port, user, db, kind, n, rng):
    reader, writer = await _open(port)
    try:
        writer.write(pg_startup(user, db))
        await pg_read(reader)
        if kind == "vanish_half":
            whole = pg_query(f"SELECT {n}")
            if rng.random() < 0.5:  # inside a transaction, or not
                writer.write(pg_query("BEGIN"))
                await pg_read(reader)
            writer.write(whole[:rng.randrange(1, len(whole) - 1)])
            await writer.drain()
            _vanish(writer, rng)
            return
        if kind == "no_read":
            writer.write(pg_query("SELECT repeat('x', 1000) FROM generate_series(1, 2000)") * 2)
            await writer.drain()
            await asyncio.sleep(rng.random() * 0.2)
            _vanish(writer, rng)
            return
        writer.write(pg_query("BEGIN"))
        await pg_read(reader)
        if kind in ("simple", "vanish_txn"):
            writer.write(pg_query(f"SELECT {n}, now()") + pg_query(
                f"INSERT INTO {SOAK_TABLE} VALUES ({n}, 'simple')"))
            rows = await pg_read(reader)
            rows += await pg_read(reader)
            if not any(t == b"D" and str(n).encode() in b for t, b in rows):
                raise SessionError("wrong answer", kind)
            if kind == "vanish_txn":
                _vanish(writer, rng)
                return
        elif kind == "extended":
            stmt = rng.choice(("", "soak_add"))
            writer.write(pg_extended(stmt, "SELECT $1::bigint + 1", (n, n + 1, n + 2)))
            rows = [b for t, b in await pg_read(reader) if t == b"D"]
            if len(rows) != 3 or str(n + 1).encode() not in rows[0]:
                raise SessionError("wrong answer", kind)
        else:  # copy, vanish_copy
            writer.write(pg_query(f"COPY {SOAK_TABLE} FROM STDIN"))
            await pg_read(reader, until=b"G")
            rows = "".join(f"{n}\tcopy {i}\n" for i in range(20)).encode()
            if kind == "vanish_copy":
                writer.write(pg_msg(b"d", rows[:rng.randrange(1, len(rows))]))
                await writer.drain()
                _vanish(writer, rng)
                return
            writer.write(pg_msg(b"d", rows) + pg_msg(b"c"))
            done = await pg_read(reader)
            if not any(t == b"C" and b == b"COPY 20\0" for t, b in done):
                raise SessionError("wrong answer", kind)
        writer.write(pg_query("COMMIT"))
        await pg_read(reader)
        writer.write(pg_msg(b"X"))
        await writer.drain()
        writer.close()
    finally:
        writer.transport.abort()


# ---- MongoDB ----

def op_msg(doc, request_id):
    payload = struct.pack("<I", 0) + b"\0" + bson.encode(doc)
    return struct.pack("<iiii", 16 + len(payload), request_id, 0, OP_MSG) + payload


async def mongo_call(reader, writer, doc, request_id, check=True):
    """Sends one command and reads its reply document; with `check`, ok: 0 raises."""
    writer.write(op_msg(doc, request_id))
    hdr = await reader.readexactly(16)
    length, _, response_to, op = struct.unpack("<iiii", hdr)
    body = await reader.readexactly(length - 16)
    if op != OP_MSG or response_to != request_id:
        raise SessionError("bad reply", f"op {op} in response to {response_to}")
    flags = struct.unpack("<I", body[:4])[0]
    reply = bson.decode(body[5:len(body) - 4 if flags & 1 else len(body)])
    if check and reply.get("ok") != 1:
        raise SessionError(f"code {reply.get('code')}", reply.get("errmsg"))
    return reply


async def mongo_session(port, kind, n, rng):
    reader, writer = await _open(port)
    try:
        if kind == "vanish_half":
            whole = op_msg({"insert": "t", "documents": [{"n": n}], "$db": MONGO_DB}, 1)
            writer.write(whole[:rng.randrange(1, len(whole) - 1)])
            await writer.drain()
            _vanish(writer, rng)
            return
        if kind == "no_read":
            for i in range(3):
                writer.write(op_msg({"find": "big", "batchSize": BIG_DOCS, "$db": MONGO_DB}, i + 1))
            await writer.drain()
            await asyncio.sleep(rng.random() * 0.2)
            _vanish(writer, rng)
            return
        if kind in ("crud",):
            await mongo_call(reader, writer, {"insert": "t", "documents": [
                {"n": n, "i": i} for i in range(3)], "$db": MONGO_DB}, 1)
            got = await mongo_call(reader, writer, {"find": "t", "filter": {"n": n},
                                                    "$db": MONGO_DB}, 2)
            if len(got["cursor"]["firstBatch"]) != 3:
                raise SessionError("wrong answer", kind)
        elif kind in ("cursor", "vanish_cursor"):
            got = await mongo_call(reader, writer, {"find": "walk", "batchSize": 2,
                                                    "$db": MONGO_DB}, 1)
            cid = got["cursor"]["id"]
            if len(got["cursor"]["firstBatch"]) != 2 or not cid:
                raise SessionError("wrong answer", kind)
            if kind == "vanish_cursor":
                _vanish(writer, rng)
                return
            more = await mongo_call(reader, writer, {"getMore": cid, "collection": "walk",
                                                     "batchSize": 2, "$db": MONGO_DB}, 2)
            if len(more["cursor"]["nextBatch"]) != 2:
                raise SessionError("wrong answer", kind)
            await mongo_call(reader, writer, {"killCursors": "walk", "cursors": [cid],
                                              "$db": MONGO_DB}, 3)
        else:  # txn, vanish_txn
            lsid = {"id": uuid.uuid4()}
            txn = {"lsid": lsid, "txnNumber": bson.Int64(1), "autocommit": False}
            await mongo_call(reader, writer, {"insert": "t", "documents": [{"n": n, "txn": 1}],
                                              "startTransaction": True, **txn,
                                              "$db": MONGO_DB}, 1)
            if kind == "vanish_txn":
                _vanish(writer, rng)
                return
            await mongo_call(reader, writer, {"find": "t", "filter": {"n": n}, **txn,
                                              "$db": MONGO_DB}, 2)
            await mongo_call(reader, writer, {"commitTransaction": 1, **txn, "$db": "admin"}, 3)
        writer.close()
    finally:
        writer.transport.abort()


def mongo_prepare(port):
    """The collections the sessions read, made directly on the server (blocking)."""
    from pymongo import MongoClient
    c = MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true",
                    serverSelectionTimeoutMS=20000)
    try:
        db = c[MONGO_DB]
        for name in ("t", "walk", "big"):
            db.drop_collection(name)
        db.walk.insert_many([{"i": i} for i in range(CURSOR_DOCS)])
        db.big.insert_many([{"i": i, "pad": "x" * 32768} for i in range(BIG_DOCS)])
        db.t.insert_one({"n": -1})  # the collection exists before transactions write to it
    finally:
        c.close()


# ---- the churn ----

async def _one(proto, target, kind, n, rng, tally):
    try:
        if proto == "pg":
            coro = pg_session(target["pg_port"], target["pg_user"], target["pg_db"], kind, n, rng)
        else:
            coro = mongo_session(target["mongo_port"], kind, n, rng)
        await asyncio.wait_for(coro, SESSION_TIMEOUT)
    except SessionError as e:
        tally.error(proto, e.kind, f"{kind}: {e.detail}")
    except asyncio.TimeoutError:
        tally.error(proto, "timeout", kind)
    except asyncio.IncompleteReadError:
        tally.error(proto, "eof", kind)
    except ConnectionRefusedError:
        tally.error(proto, "refused", kind)
    except OSError as e:  # reset, broken pipe
        tally.error(proto, type(e).__name__, f"{kind}: {e}")
    tally.done[(proto, kind)] += 1


async def _churn(target, pg_sessions, mongo_sessions, concurrency, seconds, kinds, seed, tally,
                 progress):
    rng = random.Random(seed)
    left = {"pg": pg_sessions, "mongo": mongo_sessions}
    deadline = time.monotonic() + seconds

    def next_session():
        if left["pg"] <= 0 and left["mongo"] <= 0:
            if time.monotonic() >= deadline:
                return None
            # past the session counts but not the time: keep both protocols going
            proto = rng.choice([p for p in ("pg", "mongo") if target.get(f"{p}_port")])
        else:
            proto = rng.choices(("pg", "mongo"), weights=(max(left["pg"], 0),
                                                          max(left["mongo"], 0)))[0]
        left[proto] -= 1
        # a tag no other session of any run shares: what it writes is found by it alone
        return proto, _pick(kinds[proto], rng), rng.getrandbits(40)

    async def worker(wrng):
        while True:
            nxt = next_session()
            if nxt is None:
                return
            proto, kind, n = nxt
            await _one(proto, target, kind, n, wrng, tally)
            if progress:
                progress(tally)

    await asyncio.gather(*(worker(random.Random(rng.random())) for _ in range(concurrency)))


def churn(target, pg_sessions=0, mongo_sessions=0, concurrency=100, seconds=0.0, seed=1,
          kinds=None, progress=None):
    """Runs pg_sessions + mongo_sessions sessions, at most `concurrency` at once, and keeps
    churning until `seconds` have passed. target: {"pg_port", "pg_user", "pg_db",
    "mongo_port"} (a protocol's keys may be missing when it has no sessions). kinds overrides
    PG_KINDS / MONGO_KINDS per protocol. Returns the Tally."""
    kinds = dict({"pg": PG_KINDS, "mongo": MONGO_KINDS}, **(kinds or {}))
    raise_fd_limit(concurrency * 2 + 256)
    tally = Tally()
    asyncio.run(_churn(target, pg_sessions, mongo_sessions, concurrency, seconds, kinds, seed,
                       tally, progress))
    return tally


# ---- what a process holds, from /proc ----

def _socket_table(pid):
    """{'socket:[inode]': (local port, remote port, TCP state)} for the process's namespace."""
    table = {}
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}") as f:
                next(f)
                for line in f:
                    cols = line.split()
                    table[f"socket:[{cols[9]}]"] = (int(cols[1].rsplit(":", 1)[1], 16),
                                                    int(cols[2].rsplit(":", 1)[1], 16), cols[3])
        except FileNotFoundError:
            pass
    return table


def _readlink(path):
    try:
        return os.readlink(path)
    except FileNotFoundError:  # a descriptor closed since the listing
        return None


def holdings(pid, listen_ports, backend_ports):
    """What a pooler holds: {"fds": all descriptors, "fds_other": descriptors that are neither
    client nor backend sockets, "clients": {listen port: accepted connections}, "servers":
    {backend port: connections to it}}."""
    table = _socket_table(pid)
    fd_dir = f"/proc/{pid}/fd"
    links = [link for link in (_readlink(os.path.join(fd_dir, fd)) for fd in os.listdir(fd_dir))
             if link]
    clients = {port: set() for port in listen_ports}
    servers = {port: set() for port in backend_ports}
    other = 0
    for link in links:
        local, remote, state = table.get(link, (None, None, None))
        if local in clients and state != "0A":  # 0A: the listener itself
            clients[local].add(link)
        elif remote in servers:  # a server connection may use more than one descriptor
            servers[remote].add(link)
        else:
            other += 1
    return {"fds": len(links), "fds_other": other,
            "clients": {port: len(socks) for port, socks in clients.items()},
            "servers": {port: len(socks) for port, socks in servers.items()}}


def settled(pid, listen_ports, backend_ports, baseline=None, timeout=30.0):
    """Waits until the process holds no client connection and its other descriptors number
    `baseline` (None: any number), or `timeout` seconds pass; returns its holdings() then."""
    deadline = time.monotonic() + timeout
    while True:
        now = holdings(pid, listen_ports, backend_ports)
        if not any(now["clients"].values()) and baseline in (None, now["fds_other"]):
            return now
        if time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def mongo_server_connections(port):
    """connections.current from the server's serverStatus, less the asking connection."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(op_msg({"serverStatus": 1, "$db": "admin"}, 1))
        buf = b""
        while len(buf) < 16 or len(buf) < struct.unpack("<i", buf[:4])[0]:
            d = s.recv(65536)
            if not d:
                raise RuntimeError("the server closed the serverStatus connection")
            buf += d
        doc = bson.decode(buf[21:struct.unpack("<i", buf[:4])[0]])
        return doc["connections"]["current"] - 1
    finally:
        s.close()
