"""Raw MongoDB wire messages for the bad-input tests."""
import socket
import struct

import bson

OP_REPLY, OP_QUERY, OP_COMPRESSED, OP_MSG = 1, 2004, 2012, 2013


def op_msg(doc, request_id=1, flags=0, raw_body=None):
    body = raw_body if raw_body is not None else bson.encode(doc)
    payload = struct.pack("<I", flags) + b"\0" + body
    return struct.pack("<iiii", 16 + len(payload), request_id, 0, OP_MSG) + payload


def op_query(collection, doc, request_id=1):
    payload = (struct.pack("<i", 0) + collection.encode() + b"\0" + struct.pack("<ii", 0, -1)
               + bson.encode(doc))
    return struct.pack("<iiii", 16 + len(payload), request_id, 0, OP_QUERY) + payload


def read_reply(sock, timeout=10):
    """One whole reply: (header tuple, document), or (None, None) at EOF."""
    sock.settimeout(timeout)
    buf = b""
    # Never past this reply: a reply behind it (pipelined requests) is the next call's, and a
    # recv of "whatever is there" would swallow it when both have arrived.
    while len(buf) < 16 or len(buf) < struct.unpack("<i", buf[:4])[0]:
        want = (16 if len(buf) < 16 else struct.unpack("<i", buf[:4])[0]) - len(buf)
        d = sock.recv(want)
        if not d:
            return None, None
        buf += d
    length, req, resp, op = struct.unpack("<iiii", buf[:16])
    if op == OP_MSG:
        flags = struct.unpack("<I", buf[16:20])[0]
        doc = bson.decode(buf[21:length - 4 if flags & 1 else length])
    elif op == OP_REPLY:
        doc = bson.decode(buf[36:length])
    else:
        doc = None
    return (length, req, resp, op), doc


def is_closed(sock, timeout=5):
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def connect(port):
    return socket.create_connection(("127.0.0.1", port))
