"""A hostile MongoDB client against Sluice: it must not crash it, reach into another client's
cursors or sessions, grow its memory without bound, or read secrets from its log. Each test checks
that the victim's data or session is intact and that Sluice still serves a fresh client."""
import struct
import threading
import time
import uuid

import bson
import pymongo
import pytest

from recorder import Recorder
from wire import OP_MSG, OP_REPLY, connect, is_closed, op_msg, op_query, read_reply


def alive(sluice):
    """Sluice still runs and serves a new client."""
    assert sluice.proc.poll() is None, "sluice died:\n" + sluice.log()[-3000:]
    c = pymongo.MongoClient(sluice.uri(), serverSelectionTimeoutMS=5000)
    try:
        assert c.admin.command("ping")["ok"] == 1
    finally:
        c.close()


def round_trip(sock, doc, request_id=1, flags=0):
    sock.sendall(op_msg(doc, request_id=request_id, flags=flags))
    hdr, reply = read_reply(sock)
    assert hdr is not None, "the connection closed"
    assert hdr[2] == request_id
    return reply


def nested(depth):
    """Raw BSON {a: {a: ... {}}} with depth levels, built without recursion."""
    doc = b"\x05\x00\x00\x00\x00"
    for _ in range(depth - 1):
        doc = struct.pack("<i", len(doc) + 8) + b"\x03a\x00" + doc + b"\x00"
    return doc


def body_with(doc_bytes):
    """{ping: 1, $db: "admin", x: <raw document>} as raw BSON."""
    inner = (b"\x10ping\x00" + struct.pack("<i", 1) + b"\x02$db\x00" + struct.pack("<i", 6)
             + b"admin\x00" + b"\x03x\x00" + doc_bytes)
    return struct.pack("<i", len(inner) + 5) + inner + b"\x00"


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0


def sanitized(pid):
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()


@pytest.fixture()
def recorder():
    r = Recorder()
    yield r
    r.close()


# ---- 1. nesting depth ----

def test_deeply_nested_first_message_gets_overflow_not_a_crash(sluice):
    victim = pymongo.MongoClient(sluice.uri()).sluice_test.deep_victim
    victim.drop()
    victim.insert_one({"k": 1})
    s = connect(sluice.port)
    s.sendall(op_msg(None, request_id=5, raw_body=body_with(nested(20000))))
    hdr, doc = read_reply(s)
    assert hdr is not None, "Sluice closed (or crashed) instead of answering"
    assert hdr[2] == 5 and doc["ok"] == 0 and doc["code"] == 15 and doc["codeName"] == "Overflow"
    assert "nested too deep" in doc["errmsg"]
    # the message was well framed: the connection goes on
    assert round_trip(s, {"ping": 1, "$db": "admin"}, request_id=6)["ok"] == 1
    # at the limit it still passes (200 levels, the body being the first)
    s.sendall(op_msg(None, request_id=7, raw_body=body_with(nested(199))))
    hdr, doc = read_reply(s)
    assert doc["ok"] == 1, doc
    # in a document sequence, and in the legacy OP_QUERY handshake (which then closes)
    seq = b"documents\x00" + body_with(nested(5000))
    payload = (struct.pack("<I", 0) + b"\x00" + bson.encode({"insert": "deep_victim", "$db":
                                                             "sluice_test"})
               + b"\x01" + struct.pack("<i", 4 + len(seq)) + seq)
    s.sendall(struct.pack("<iiii", 16 + len(payload), 8, 0, OP_MSG) + payload)
    hdr, doc = read_reply(s)
    assert doc["code"] == 15, doc
    q = connect(sluice.port)
    raw = body_with(nested(20000))
    payload = struct.pack("<i", 0) + b"admin.$cmd\x00" + struct.pack("<ii", 0, -1) + raw
    q.sendall(struct.pack("<iiii", 16 + len(payload), 9, 0, 2004) + payload)
    hdr, doc = read_reply(q)
    assert hdr[3] == OP_REPLY and doc["code"] == 15
    assert victim.find_one({"k": 1}) is not None
    alive(sluice)


# ---- 2. cursors ----

def test_another_clients_cursor_is_cursor_not_found(sluice):
    coll = pymongo.MongoClient(sluice.uri()).sluice_test.cursor_victim
    coll.drop()
    coll.insert_many([{"k": i} for i in range(20)])
    owner, thief = connect(sluice.port), connect(sluice.port)
    doc = round_trip(owner, {"find": "cursor_victim", "batchSize": 5, "$db": "sluice_test"})
    seen = [d["k"] for d in doc["cursor"]["firstBatch"]]
    cid = doc["cursor"]["id"]
    assert cid
    got = round_trip(thief, {"getMore": bson.Int64(cid), "collection": "cursor_victim",
                             "batchSize": 5, "$db": "sluice_test"}, request_id=2)
    assert got["ok"] == 0 and got["code"] == 43 and got["codeName"] == "CursorNotFound"
    assert got["errmsg"] == f"cursor id {cid} not found"
    # its own cursor mixed with the victim's: refused whole
    own = round_trip(thief, {"find": "cursor_victim", "batchSize": 1, "$db": "sluice_test"},
                     request_id=3)["cursor"]["id"]
    got = round_trip(thief, {"killCursors": "cursor_victim",
                             "cursors": [bson.Int64(own), bson.Int64(cid)],
                             "$db": "sluice_test"}, request_id=4)
    assert got["code"] == 43
    got = round_trip(thief, {"killCursors": "cursor_victim", "cursors": [bson.Int64(cid)],
                             "$db": "sluice_test"}, request_id=5)
    assert got["code"] == 43
    thief.close()  # a refused getMore moved nothing: the thief leaving kills nothing of the owner
    time.sleep(0.3)
    while cid:
        doc = round_trip(owner, {"getMore": bson.Int64(cid), "collection": "cursor_victim",
                                 "batchSize": 5, "$db": "sluice_test"}, request_id=6)
        assert doc["ok"] == 1, doc
        seen += [d["k"] for d in doc["cursor"]["nextBatch"]]
        cid = doc["cursor"]["id"]
    assert sorted(seen) == list(range(20)), "the owner's cursor is intact"
    alive(sluice)


def test_foreign_cursor_commands_never_reach_the_server(sluice_factory, recorder):
    s = sluice_factory(server=recorder)
    owner, thief = connect(s.port), connect(s.port)
    cid = round_trip(owner, {"find": "c", "batchSize": 1, "$db": "db"})["cursor"]["id"]
    for cmd in ({"getMore": bson.Int64(cid), "collection": "c", "$db": "db"},
                {"killCursors": "c", "cursors": [bson.Int64(cid)], "$db": "db"}):
        assert round_trip(thief, cmd, request_id=2)["code"] == 43
    thief.close()
    time.sleep(0.5)
    assert not recorder.named("getMore") and not recorder.named("killCursors")
    assert round_trip(owner, {"getMore": bson.Int64(cid), "collection": "c", "$db": "db"},
                      request_id=3)["ok"] == 1
    owner.close()  # its owner leaving kills it
    deadline = time.time() + 10
    while time.time() < deadline and not recorder.named("killCursors"):
        time.sleep(0.05)
    assert [c["cursors"] for _, c in recorder.named("killCursors")] == [[cid]]


# ---- 3. sessions ----

def txn_doc(lsid, number, **extra):
    d = {"insert": "t", "documents": [{"x": 1}], "lsid": lsid, "txnNumber": bson.Int64(number),
         "autocommit": False, "$db": "db"}
    d.update(extra)
    return d


def test_another_clients_lsid_cannot_end_or_join_its_transaction(sluice_factory, recorder):
    s = sluice_factory(server=recorder)
    owner, thief = connect(s.port), connect(s.port)
    lsid = {"id": uuid.uuid4()}
    assert round_trip(owner, txn_doc(lsid, 7, startTransaction=True))["ok"] == 1
    attempts = [
        {"commitTransaction": 1, "lsid": lsid, "txnNumber": bson.Int64(7), "autocommit": False,
         "$db": "admin"},
        {"abortTransaction": 1, "lsid": lsid, "txnNumber": bson.Int64(7), "autocommit": False,
         "$db": "admin"},
        txn_doc(lsid, 7),                          # join the transaction
        txn_doc(lsid, 8, startTransaction=True),   # start another in the session
        {"find": "t", "lsid": lsid, "$db": "db"},  # use the session at all
        {"endSessions": [lsid], "$db": "admin"},
        {"killSessions": [lsid], "$db": "admin"},
        {"killAllSessions": [], "$db": "admin"},
    ]
    for i, cmd in enumerate(attempts):
        got = round_trip(thief, cmd, request_id=10 + i)
        assert got["ok"] == 0 and got["code"] in (251, 13), (cmd, got)
    thief.close()
    time.sleep(0.5)
    def carries(cmd):  # (another test's stray pymongo client may talk to a reused port)
        return cmd.get("lsid") == lsid or lsid in cmd.get("endSessions", []) + \
            cmd.get("killSessions", [])
    for name in ("commitTransaction", "abortTransaction", "find", "endSessions", "killSessions"):
        assert not [c for _, c in recorder.named(name) if carries(c)], \
            f"the thief's {name} reached the server"
    assert not recorder.named("killAllSessions")
    assert len(recorder.named("insert")) == 1, "only the owner's statement reached the server"
    # the owner's transaction goes on and commits
    assert round_trip(owner, txn_doc(lsid, 7), request_id=30)["ok"] == 1
    assert round_trip(owner, {"commitTransaction": 1, "lsid": lsid, "txnNumber": bson.Int64(7),
                              "autocommit": False, "$db": "admin"}, request_id=31)["ok"] == 1
    assert len(recorder.named("commitTransaction")) == 1
    owner.close()
    time.sleep(0.5)
    assert not recorder.named("abortTransaction"), "a committed transaction is not aborted"
    alive(s)


def test_transaction_left_open_by_the_owner_alone_is_aborted(sluice_factory, recorder):
    """The thief presenting the lsid and leaving aborts nothing; the owner leaving aborts it."""
    s = sluice_factory(server=recorder)
    owner, thief = connect(s.port), connect(s.port)
    lsid = {"id": uuid.uuid4()}
    round_trip(owner, txn_doc(lsid, 1, startTransaction=True))
    round_trip(thief, txn_doc(lsid, 1), request_id=2)
    thief.close()
    time.sleep(0.5)
    assert not recorder.named("abortTransaction")
    owner.close()
    deadline = time.time() + 10
    while time.time() < deadline and not recorder.named("abortTransaction"):
        time.sleep(0.05)
    aborts = recorder.named("abortTransaction")
    assert len(aborts) == 1 and aborts[0][1]["lsid"] == lsid


# ---- 4. memory ----

def test_clients_that_never_read_keep_memory_bounded(sluice_factory):
    s = sluice_factory(max_client_conn=24, pool_size=4)
    c = pymongo.MongoClient(s.uri(), maxPoolSize=1)
    big = c.sluice_test.flood
    big.drop()
    big.insert_many([{"k": i, "pad": "x" * 4000} for i in range(200)])  # ~800 kB a batch
    time.sleep(0.3)
    base = rss_mb(s.proc.pid)
    request = op_msg({"find": "flood", "batchSize": 200, "$db": "sluice_test"}) * 200
    flooders = []
    for _ in range(30):  # more than max_client_conn: the rest are closed at once
        f = connect(s.port)
        f.setblocking(False)
        flooders.append(f)
    peak = base
    # A fixed number of rounds, not a time budget: every round floods again and then needs
    # another client to be served, so the assertion does not depend on the machine's speed.
    for _ in range(100):
        for f in flooders:
            try:
                f.send(request)
            except (BlockingIOError, ConnectionError, OSError):
                pass
        peak = max(peak, rss_mb(s.proc.pid))
        assert c.sluice_test.flood.find_one({"k": 5})["k"] == 5, "another client is served"
        time.sleep(0.02)
    if not sanitized(s.proc.pid):  # ASan keeps freed memory in quarantine (256 MB by default)
        assert peak - base < 64, f"RSS grew by {peak - base:.0f} MB"
    assert "max_client_conn (24) reached" in s.log()
    for f in flooders:
        f.close()
    alive(s)


def test_max_client_conn_closes_extra_clients_at_once(sluice_factory):
    s = sluice_factory(max_client_conn=3)
    time.sleep(0.5)  # the start-up probe's connection is gone
    held = [connect(s.port) for _ in range(3)]
    for i, h in enumerate(held):
        assert round_trip(h, {"ping": 1, "$db": "admin"}, request_id=i + 1)["ok"] == 1
    extra = connect(s.port)
    t0 = time.time()
    assert is_closed(extra, timeout=5), "the client over the limit is closed"
    assert time.time() - t0 < 2, "at once, not at a timeout"
    held.pop().close()
    time.sleep(0.3)
    again = connect(s.port)
    assert round_trip(again, {"ping": 1, "$db": "admin"}, request_id=9)["ok"] == 1
    assert "max_client_conn (3) reached" in s.log()
    for h in held + [again]:
        h.close()
    time.sleep(0.3)
    alive(s)


# ---- 5. secrets ----

def test_uri_password_never_logged(sluice_factory, mongo_server):
    secret = "Sup3rSecretPw"
    s = sluice_factory(uri=f"mongodb://sluiceuser:{secret}@127.0.0.1:{mongo_server.port}/"
                           "?appname=sluice&authMechanismProperties=SERVICE_NAME:" + secret,
                       server_connect_timeout=2)
    sock = connect(s.port)
    sock.sendall(op_msg({"ping": 1, "$db": "admin"}))
    hdr, doc = read_reply(sock, timeout=30)  # the test server has no users: authentication fails
    time.sleep(0.5)
    assert doc is None or secret not in str(doc)
    log = s.log()
    assert "sluiceuser:****@" in log
    assert secret not in log, "the password is in the log"
    sock.close()


# ---- 6. siblings ----

def test_more_to_come_from_one_client_does_not_break_another(sluice_factory):
    """The test server answers moreToCome requests anyway; with a single server connection
    shared by both clients, a stray answer must not be taken for the victim's reply or make
    Sluice drop the connection under the victim's request."""
    s = sluice_factory(pool_size=1)
    victim = pymongo.MongoClient(s.uri(), retryReads=False, retryWrites=False)
    coll = victim.sluice_test.mtc_victim
    coll.drop()
    coll.insert_one({"k": 1})
    hostile = connect(s.port)
    stop = threading.Event()

    def spam():
        msg = op_msg({"insert": "mtc_junk", "documents": [{"x": 1}], "writeConcern": {"w": 0},
                      "$db": "sluice_test"}, flags=2)
        while not stop.is_set():
            try:
                hostile.sendall(msg * 2)
            except OSError:
                return
            time.sleep(0.01)

    t = threading.Thread(target=spam, daemon=True)
    t.start()
    try:
        for _ in range(100):
            assert coll.find_one({"k": 1})["k"] == 1
    finally:
        stop.set()
        t.join()
    assert "unexpected message from the server" not in s.log()
    hostile.close()
    alive(s)


def test_load_balanced_hello_gets_a_service_id(sluice):
    s = connect(sluice.port)
    doc = round_trip(s, {"hello": 1, "loadBalanced": True, "$db": "admin"})
    assert isinstance(doc["serviceId"], bson.ObjectId)
    assert "serviceId" not in round_trip(s, {"hello": 1, "$db": "admin"}, request_id=2)
