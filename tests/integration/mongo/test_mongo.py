"""The MongoDB gateway against a real MongoDB-wire server, with pymongo and raw sockets.

The test server turns integer _id values into ObjectIds, so documents are found by a field of
their own ("k") and duplicate keys use explicit ObjectIds."""
import hashlib
import struct
import threading
import time

import bson
import pymongo
import pytest
from pymongo.errors import BulkWriteError, PyMongoError

from conftest import SLUICE_BIN
from wire import OP_COMPRESSED, OP_MSG, OP_REPLY, connect, is_closed, op_msg, op_query, read_reply


def client(uri, **kw):
    return pymongo.MongoClient(uri, **kw)


def test_hello_presents_a_mongos_with_backend_limits(sluice, mongo_server):
    direct = client(mongo_server.uri()).admin.command("hello")
    via = client(sluice.uri()).admin.command("hello")
    assert via["msg"] == "isdbgrid"
    for k in ("maxBsonObjectSize", "maxMessageSizeBytes", "maxWriteBatchSize",
              "logicalSessionTimeoutMinutes"):
        assert via[k] == direct[k], k
    assert via["maxWireVersion"] <= 21
    assert "compression" not in via and "topologyVersion" not in via
    s = connect(sluice.port)
    s.sendall(op_msg({"hello": 1, "helloOk": True, "$db": "admin"}, request_id=77))
    hdr, doc = read_reply(s)
    assert hdr[2] == 77 and hdr[3] == OP_MSG and doc["helloOk"] is True and doc["ok"] == 1
    s.sendall(op_query("admin.$cmd", {"isMaster": 1}, request_id=78))
    hdr, doc = read_reply(s)
    assert hdr[2] == 78 and hdr[3] == OP_REPLY and doc["ismaster"] is True


def test_crud(sluice):
    coll = client(sluice.uri()).sluice_test.crud
    coll.drop()
    coll.insert_one({"k": 1, "name": "a", "n": 1})
    coll.insert_many([{"k": i, "name": chr(97 + i % 26), "n": i} for i in range(2, 50)])
    assert coll.count_documents({}) == 49
    assert coll.find_one({"k": 1})["name"] == "a"
    coll.update_one({"k": 1}, {"$set": {"name": "z"}})
    assert coll.find_one({"k": 1})["name"] == "z"
    r = coll.update_many({"n": {"$gte": 40}}, {"$inc": {"n": 100}})
    assert r.modified_count == 10
    assert coll.delete_many({"n": {"$gte": 140}}).deleted_count == 10
    assert coll.count_documents({}) == 39


def test_cursor_walk_with_small_batches(sluice):
    coll = client(sluice.uri()).sluice_test.walk
    coll.drop()
    coll.insert_many([{"k": i} for i in range(3000)])
    seen = sorted(d["k"] for d in coll.find({}, batch_size=10))
    assert seen == list(range(3000))


def test_client_leaving_with_open_cursor_gets_it_killed(sluice, mongo_server):
    coll = client(sluice.uri()).sluice_test.opencur
    coll.drop()
    coll.insert_many([{"k": i} for i in range(500)])
    c = client(sluice.uri(), maxPoolSize=1)
    cur = c.sluice_test.opencur.find({}, batch_size=5)
    next(cur)
    cursor_id = cur.cursor_id
    assert cursor_id
    c.close()  # leaves the cursor open on the server
    direct = client(mongo_server.uri())
    deadline = time.time() + 10
    killed = False
    while time.time() < deadline and not killed:
        try:
            direct.sluice_test.command("getMore", cursor_id, collection="opencur", batchSize=1)
        except PyMongoError:
            killed = True  # CursorNotFound: Sluice sent killCursors
        else:
            time.sleep(0.1)
    assert killed, "the cursor left open by the client was killed"


def test_transactions_committed_and_aborted(sluice, mongo_server):
    results = {}
    for name, uri in (("direct", mongo_server.uri()), ("sluice", sluice.uri())):
        c = client(uri)
        coll = c.sluice_test[f"txn_{name}"]
        coll.drop()
        coll.insert_one({"k": 0})
        with c.start_session() as s:
            s.start_transaction()
            coll.insert_one({"k": 1}, session=s)
            s.commit_transaction()
        with c.start_session() as s:
            s.start_transaction()
            coll.insert_one({"k": 2}, session=s)
            s.abort_transaction()
        results[name] = sorted(d["k"] for d in coll.find())
    # The test server keeps an aborted transaction's writes (it does not isolate them), so the
    # check is that Sluice gives the same outcome as direct access, commit and abort included.
    assert results["sluice"] == results["direct"], results
    assert 1 in results["sluice"]


def test_insert_many_100k_same_as_direct(sluice, mongo_server):
    digests = {}
    for name, uri in (("direct", mongo_server.uri()), ("sluice", sluice.uri())):
        docs = [{"_id": bson.ObjectId(b"%012d" % i), "k": i, "s": f"doc-{i}"}
                for i in range(100000)]
        coll = client(uri).sluice_test[f"bulk_{name}"]
        coll.drop()
        r = coll.insert_many(docs)
        assert len(r.inserted_ids) == 100000
        h = hashlib.sha256()
        count = 0
        for d in sorted(coll.find({}, batch_size=5000), key=lambda d: d["k"]):
            h.update(bson.encode(d))
            count += 1
        digests[name] = (count, h.hexdigest())
    assert digests["sluice"] == digests["direct"]
    assert digests["sluice"][0] == 100000


@pytest.mark.parametrize("ordered", [True, False])
def test_duplicate_keys_in_batches_same_as_direct(sluice, mongo_server, ordered):
    outcome = {}
    ids = [bson.ObjectId(b"%012d" % i) for i in range(5)]
    for name, uri in (("direct", mongo_server.uri()), ("sluice", sluice.uri())):
        docs = [{"_id": ids[i]} for i in (1, 2, 1, 3, 2, 4)]
        coll = client(uri).sluice_test[f"dup_{name}_{ordered}"]
        coll.drop()
        try:
            coll.insert_many(docs, ordered=ordered)
            outcome[name] = ("no error", coll.count_documents({}))
        except BulkWriteError as e:
            outcome[name] = (e.details["nInserted"],
                             [w["index"] for w in e.details["writeErrors"]],
                             [w["code"] for w in e.details["writeErrors"]])
    assert outcome["sluice"] == outcome["direct"], outcome
    assert outcome["sluice"][0] != "no error", "the batch has duplicate keys"


def test_200_clients_over_a_pool_of_10(sluice_factory, mongo_server):
    s = sluice_factory(pool_size=10)
    seed = client(s.uri()).sluice_test.many
    seed.drop()
    time.sleep(0.5)
    # libmongoc's topology scanner keeps a connection of its own to the server; with one data
    # connection in the pool so far, the rest are the scanner's.
    monitors = s.backend_connections(mongo_server.port) - 1
    errors = []
    peak = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak.append(s.backend_connections(mongo_server.port))
            time.sleep(0.05)

    def work(i):
        try:
            c = client(s.uri(), maxPoolSize=1)
            coll = c.sluice_test.many
            for j in range(5):
                coll.insert_one({"k": i * 100 + j, "c": i})
            docs = sorted(d["k"] for d in coll.find({"c": i}))
            if docs != [i * 100 + j for j in range(5)]:
                errors.append((i, docs))
            c.close()
        except Exception as e:  # noqa: BLE001 - every failure is reported
            errors.append((i, repr(e)))

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    sampler.join()
    assert not errors, errors[:5]
    assert client(s.uri()).sluice_test.many.count_documents({}) == 1000
    assert 0 < max(peak) - monitors <= 10, (max(peak), monitors)


def test_query_wait_timeout_and_query_timeout(sluice_factory, own_mongo):
    s = sluice_factory(server=own_mongo, pool_size=1, query_wait_timeout=1, query_timeout=1)
    c = client(s.uri(), maxPoolSize=2)
    c.sluice_test.t.insert_one({"x": 1})
    own_mongo.pause()  # the server stops answering: the one backend connection stays busy
    try:
        first, second = connect(s.port), connect(s.port)
        first.sendall(op_msg({"find": "t", "$db": "sluice_test"}, request_id=5))
        time.sleep(0.3)
        second.sendall(op_msg({"find": "t", "$db": "sluice_test"}, request_id=6))
        hdr, doc = read_reply(second)
        assert hdr[2] == 6 and doc["ok"] == 0 and doc["code"] == 262, doc
        assert "query_wait_timeout" in doc["errmsg"]
        hdr, doc = read_reply(first)
        assert hdr[2] == 5 and doc["ok"] == 0 and doc["code"] == 50, doc
        assert "query_timeout" in doc["errmsg"]
    finally:
        own_mongo.resume()
    assert c.sluice_test.t.count_documents({}) == 1, "a new backend connection serves again"


def test_backend_that_never_answers(sluice_factory):
    import socket
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    s = sluice_factory(uri=f"mongodb://127.0.0.1:{port}/", server_connect_timeout=1,
                       query_wait_timeout=5)
    sock = connect(s.port)
    sock.sendall(op_msg({"ping": 1, "$db": "admin"}, request_id=9))
    hdr, doc = read_reply(sock, timeout=20)
    assert hdr[2] == 9 and doc["ok"] == 0 and doc["code"] in (6, 262), doc
    silent.close()


BAD = {
    "legacy query that is not a handshake": lambda: op_query("db.coll", {"find": "x"}),
    "compressed": lambda: struct.pack("<iiii", 25, 1, 0, OP_COMPRESSED) + b"\0" * 9,
    "unknown opcode": lambda: struct.pack("<iiii", 20, 1, 0, 4242) + b"\0" * 4,
    "invalid bson": lambda: op_msg(None, raw_body=b"\x10\0\0\0\x02a\0\xff\xff\xff\x7fxx\0\0"),
    "length that lies": lambda: struct.pack("<iiii", 8, 1, 0, OP_MSG),
    "oversized": lambda: struct.pack("<iiii", 60000000, 1, 0, OP_MSG),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_gets_an_error_then_close(sluice, name):
    good = client(sluice.uri(), maxPoolSize=1)
    good.admin.command("ping")
    s = connect(sluice.port)
    s.sendall(BAD[name]())
    hdr, doc = read_reply(s)
    assert doc is not None and doc.get("ok") == 0 and doc.get("code"), (hdr, doc)
    assert is_closed(s), "the offending connection is closed"
    assert good.admin.command("ping")["ok"] == 1, "other clients are unaffected"


def test_backend_killed_and_restarted(sluice_factory, own_mongo):
    s = sluice_factory(server=own_mongo, pool_size=2)
    c = client(s.uri(), maxPoolSize=1, retryWrites=False, retryReads=False)
    c.sluice_test.k.insert_one({"k": 1})
    own_mongo.stop(sig=9)
    with pytest.raises(PyMongoError):
        c.sluice_test.k.find_one({"k": 1})
    own_mongo.start()  # same port
    deadline = time.time() + 15
    while True:
        try:
            c.sluice_test.k.insert_one({"k": 2})
            break
        except PyMongoError:
            if time.time() > deadline:
                raise
            time.sleep(0.3)
    assert c.sluice_test.k.find_one({"k": 2})["k"] == 2
    assert s.proc.poll() is None, "the same Sluice process carried on"


def _crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def test_checksum_is_verified_and_produced(sluice):
    s = connect(sluice.port)
    msg = op_msg({"hello": 1, "$db": "admin"}, request_id=3, flags=1)
    msg = struct.pack("<i", len(msg) + 4) + msg[4:]
    msg += struct.pack("<I", _crc32c(msg))
    s.sendall(msg)
    s.settimeout(10)
    raw = b""
    while len(raw) < 16 or len(raw) < struct.unpack("<i", raw[:4])[0]:
        raw += s.recv(65536)
    flags = struct.unpack("<I", raw[16:20])[0]
    assert flags & 1, "the reply to a checksummed request carries a checksum"
    assert struct.unpack("<I", raw[-4:])[0] == _crc32c(raw[:-4])
    bad = bytearray(msg)
    bad[-1] ^= 0xFF  # wrong checksum
    s2 = connect(sluice.port)
    s2.sendall(bytes(bad))
    hdr, doc = read_reply(s2)
    assert doc["ok"] == 0 and "checksum" in doc["errmsg"]
    assert is_closed(s2)


def test_more_to_come_gets_no_reply_and_is_applied(sluice):
    coll = client(sluice.uri()).sluice_test.fire
    coll.drop()
    s = connect(sluice.port)
    s.sendall(op_msg({"insert": "fire", "documents": [{"k": 42}], "writeConcern": {"w": 0},
                      "$db": "sluice_test"}, request_id=11, flags=2))
    s.sendall(op_msg({"ping": 1, "$db": "admin"}, request_id=12))
    hdr, doc = read_reply(s)
    assert hdr[2] == 12, "the first reply answers the ping: the insert got none"
    deadline = time.time() + 5
    while coll.count_documents({"k": 42}) == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert coll.count_documents({"k": 42}) == 1


def test_exhaust_is_refused_and_the_connection_stays(sluice):
    s = connect(sluice.port)
    s.sendall(op_msg({"ping": 1, "$db": "admin"}, request_id=21, flags=1 << 16))
    hdr, doc = read_reply(s)
    assert hdr[2] == 21 and doc["ok"] == 0 and "exhaust" in doc["errmsg"]
    s.sendall(op_msg({"ping": 1, "$db": "admin"}, request_id=22))
    hdr, doc = read_reply(s)
    assert hdr[2] == 22 and doc["ok"] == 1


def test_libmongoc_client(sluice, mongo_server):
    import os
    import subprocess
    exe = os.environ.get("MONGOC_CLIENT") or os.path.join(
        os.path.dirname(SLUICE_BIN), "tests", "integration", "mongo", "mongoc_client")
    if not os.path.exists(exe):
        pytest.skip("the libmongoc test client is not built (meson builds it with the suite)")
    for uri in (mongo_server.uri(), f"mongodb://127.0.0.1:{sluice.port}/"):
        r = subprocess.run([exe, uri], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stdout.strip() == "ok", (uri, r.stdout, r.stderr)


def test_load_balanced_libmongoc_client(sluice):
    """In load-balanced mode a driver keeps each cursor and transaction on one connection, as
    Sluice requires (a cursor or transaction belongs to the connection that opened it)."""
    import os
    import subprocess
    exe = os.environ.get("MONGOC_CLIENT") or os.path.join(
        os.path.dirname(SLUICE_BIN), "tests", "integration", "mongo", "mongoc_client")
    if not os.path.exists(exe):
        pytest.skip("the libmongoc test client is not built (meson builds it with the suite)")
    r = subprocess.run([exe, f"mongodb://127.0.0.1:{sluice.port}/?loadBalanced=true"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.stdout, r.stderr)


def test_server_killed_mid_request_labels_the_error(sluice_factory, own_mongo):
    import uuid
    s = sluice_factory(server=own_mongo, pool_size=2)
    in_txn, retryable = connect(s.port), connect(s.port)
    for sock in (in_txn, retryable):
        sock.sendall(op_msg({"ping": 1, "$db": "admin"}, request_id=1))
        assert read_reply(sock)[1]["ok"] == 1
    own_mongo.pause()  # the requests below stay in flight
    in_txn.sendall(op_msg({"insert": "k", "documents": [{"k": 1}], "lsid": {"id": uuid.uuid4()},
                           "txnNumber": bson.Int64(1), "startTransaction": True,
                           "autocommit": False, "$db": "sluice_test"}, request_id=2))
    retryable.sendall(op_msg({"insert": "k", "documents": [{"k": 2}],
                              "lsid": {"id": uuid.uuid4()}, "txnNumber": bson.Int64(1),
                              "$db": "sluice_test"}, request_id=3))
    time.sleep(0.5)
    own_mongo.stop(sig=9)
    hdr, doc = read_reply(in_txn)
    assert hdr[2] == 2 and doc["ok"] == 0 and doc["code"] == 6, doc
    assert doc["errorLabels"] == ["TransientTransactionError"]
    hdr, doc = read_reply(retryable)
    assert hdr[2] == 3 and doc["ok"] == 0 and doc["code"] == 6, doc
    assert doc["errorLabels"] == ["RetryableWriteError"]
    own_mongo.start()
    deadline = time.time() + 15
    while True:
        in_txn.sendall(op_msg({"ping": 1, "$db": "admin"}, request_id=4))
        hdr, doc = read_reply(in_txn)
        if doc["ok"] == 1 or time.time() > deadline:
            break
        time.sleep(0.3)
    assert doc["ok"] == 1, "the same client connection works once the server is back"


def test_messages_near_the_size_limit_pass_whole(sluice, mongo_server):
    digests = {}
    blob = "x" * (1 << 20)
    for name, uri in (("direct", mongo_server.uri()), ("sluice", sluice.uri())):
        coll = client(uri).sluice_test[f"big_{name}"]
        coll.drop()
        # 60 documents of 1 MiB: the driver splits them into messages of up to 48 MB
        coll.insert_many([{"k": i, "blob": blob + str(i)} for i in range(60)])
        h = hashlib.sha256()
        for d in coll.find({}, {"_id": 0}, batch_size=8).sort("k", 1):
            h.update(bson.encode(d))
        digests[name] = (coll.count_documents({}), h.hexdigest())
    assert digests["sluice"] == digests["direct"] and digests["sluice"][0] == 60
    with open(f"/proc/{sluice.proc.pid}/maps") as f:
        sanitized = "libasan" in f.read()  # ASan's quarantine keeps freed memory resident
    if not sanitized:
        with open(f"/proc/{sluice.proc.pid}/status") as f:
            peak_kb = int(next(ln for ln in f if ln.startswith("VmHWM")).split()[1])
        # one message in hand at a time (measured: about 60 MB with 48 MB messages)
        assert peak_kb < 3 * 48000, f"peak RSS {peak_kb} kB"


def test_listen_port_in_use_fails_cleanly(mongo_server, tmp_path):
    import subprocess
    from conftest import free_port
    taken = socket_listening()
    conf = tmp_path / "sluice.ini"
    conf.write_text(f"[sluice]\nlisten_addr = 127.0.0.1\nlisten_port = {free_port()}\n"
                    "unix_socket_dir =\n[mongodb]\n"
                    f"a = listen_port={free_port()} uri=mongodb://127.0.0.1:{mongo_server.port}/\n"
                    f"b = listen_port={taken.getsockname()[1]} "
                    f"uri=mongodb://127.0.0.1:{mongo_server.port}/\n")
    r = subprocess.run([SLUICE_BIN, "-c", str(conf)], capture_output=True, text=True, timeout=60)
    taken.close()
    assert r.returncode == 1, r.stderr
    assert "could not listen" in r.stderr
    for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert marker not in r.stderr, r.stderr


def socket_listening():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s
