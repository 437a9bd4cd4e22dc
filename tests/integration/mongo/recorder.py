"""A MongoDB-wire server that records every command it gets, for what the real test server cannot
show: what Sluice itself sends (abortTransaction and killCursors for a leaving client, maxTimeMS,
rewritten request ids). It speaks just enough of the protocol for libmongoc's handshake."""
import socket
import struct
import threading

import bson

OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013

HELLO = {"ismaster": True, "isWritablePrimary": True, "maxBsonObjectSize": 16777216,
         "maxMessageSizeBytes": 48000000, "maxWriteBatchSize": 100000,
         "logicalSessionTimeoutMinutes": 30, "minWireVersion": 0, "maxWireVersion": 17, "ok": 1.0}


class Recorder:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.commands = []  # (request header tuple, command document) in arrival order
        self.cursor_ids = iter(range(1000, 10**9))
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def uri(self):
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def named(self, name):
        with self.lock:
            return [(h, c) for h, c in self.commands if next(iter(c), None) == name]

    def close(self):
        self.closed = True
        self.sock.close()

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _answer(self, cmd):
        name = next(iter(cmd))
        if name.lower() in ("hello", "ismaster"):
            return HELLO
        if name in ("find", "aggregate"):
            coll = cmd[name] if isinstance(cmd[name], str) else "agg"
            return {"cursor": {"id": bson.Int64(next(self.cursor_ids)), "ns": f"{cmd['$db']}.{coll}",
                               "firstBatch": [{"x": 1}]}, "ok": 1.0}
        if name == "getMore":
            return {"cursor": {"id": cmd["getMore"], "ns": f"{cmd['$db']}.{cmd['collection']}",
                               "nextBatch": [{"x": 2}]}, "ok": 1.0}
        return {"ok": 1.0}

    def _serve(self, conn):
        buf = b""
        with conn:
            while True:
                while len(buf) < 4 or len(buf) < struct.unpack("<i", buf[:4])[0]:
                    try:
                        d = conn.recv(65536)
                    except OSError:
                        return
                    if not d:
                        return
                    buf += d
                length = struct.unpack("<i", buf[:4])[0]
                msg, buf = buf[:length], buf[length:]
                hdr = struct.unpack("<iiii", msg[:16])
                if hdr[3] == OP_QUERY:
                    end = msg.index(b"\0", 20) + 1 + 8
                    cmd = bson.decode(msg[end:])
                    body = bson.encode(self._answer(cmd))
                    payload = struct.pack("<iqii", 0, 0, 0, 1) + body
                    conn.sendall(struct.pack("<iiii", 16 + len(payload), 1, hdr[1], OP_REPLY)
                                 + payload)
                    continue
                flags = struct.unpack("<I", msg[16:20])[0]
                cmd = bson.decode(msg[21:21 + struct.unpack("<i", msg[21:25])[0]])
                if next(iter(cmd)).lower() not in ("hello", "ismaster"):
                    with self.lock:
                        self.commands.append((hdr, cmd))
                if flags & 2:
                    continue  # moreToCome: no reply
                payload = struct.pack("<I", 0) + b"\0" + bson.encode(self._answer(cmd))
                conn.sendall(struct.pack("<iiii", 16 + len(payload), 1, hdr[1], OP_MSG) + payload)
