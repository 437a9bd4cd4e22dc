"""The metrics endpoint with a [mongodb] entry: pymongo's commands appear under
protocol="mongodb" by name, the exposition stays valid, and /ready turns 503 while the entry's
server is down. (The endpoint itself is tested in tests/integration/pg/test_metrics.py.)"""
import subprocess
import time
import urllib.error
import urllib.request

import pymongo
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port

HANG_GUARD = 60


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=HANG_GUARD) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def mongo_samples(body, name, **labels):
    """Values of name's samples whose labels include labels, over every mongodb pool."""
    out = []
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            if s.name == name and s.labels.get("protocol") == "mongodb" and \
                    all(s.labels.get(k) == v for k, v in labels.items()):
                out.append(s.value)
    return out


def test_commands_show_up_by_name_under_mongodb(sluice_factory):
    mport = free_port()
    s = sluice_factory(metrics_port=mport)
    c = pymongo.MongoClient(s.uri(), serverSelectionTimeoutMS=10000)
    coll = c.metricsdb.things
    coll.insert_one({"_id": 1, "v": "x"})
    n = 12
    for _ in range(n):
        coll.find_one({"_id": 1})
    status, body = get(mport, "/metrics")
    assert status == 200
    p = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                       text=True, timeout=HANG_GUARD)
    assert p.returncode == 0, p.stdout + p.stderr
    finds = mongo_samples(body, "sluice_mongodb_commands_total", database="mongo",
                          command="find")
    assert finds and finds[0] >= n, body
    assert mongo_samples(body, "sluice_mongodb_commands_total", command="insert")[0] >= 1
    assert mongo_samples(body, "sluice_stats_queries_pooled_total", database="mongo")[0] >= n
    assert get(mport, "/ready")[0] == 200
    c.close()


def test_ready_turns_503_while_the_mongo_server_is_down(sluice_factory, own_mongo):
    mport = free_port()
    s = sluice_factory(server=own_mongo, metrics_port=mport, pool_size=1)
    c = pymongo.MongoClient(s.uri(), serverSelectionTimeoutMS=10000)
    c.metricsdb.things.insert_one({"v": 1})
    assert get(mport, "/ready")[0] == 200
    own_mongo.stop()
    # The pooled connection dies with the server; the next command needs a new one, which fails.
    deadline = time.time() + HANG_GUARD
    while time.time() < deadline and get(mport, "/ready")[0] != 503:
        try:
            pymongo.MongoClient(s.uri(), serverSelectionTimeoutMS=2000,
                                socketTimeoutMS=5000).metricsdb.things.find_one({})
        except pymongo.errors.PyMongoError:
            pass
        time.sleep(0.2)
    status, body = get(mport, "/ready")
    assert status == 503 and "mongo" in body, body
    assert get(mport, "/health")[0] == 200
    c.close()


def test_a_client_leaving_before_its_reply_still_has_its_cursor_killed(sluice_factory):
    """Sluice keeps reading a client while its request is under way (no epoll_ctl per request):
    a client that sends a find and leaves before the reply must still be closed only after the
    reply registered the cursor it opens, so the close kills that cursor on the server. Also a
    client that pipelines two requests gets both answers, in order."""
    from wire import connect, op_msg, read_reply
    mport = free_port()
    s = sluice_factory(metrics_port=mport)
    c = pymongo.MongoClient(s.uri(), serverSelectionTimeoutMS=10000)
    c.leavedb.docs.insert_many([{"k": i} for i in range(50)])
    for i in range(3):
        sock = connect(s.port)
        sock.sendall(op_msg({"find": "docs", "batchSize": 2, "$db": "leavedb"}, request_id=9))
        sock.close()  # before the reply: its cursor stays open on the server
    deadline = time.time() + HANG_GUARD
    killed = 0
    while time.time() < deadline:
        _, body = get(mport, "/metrics")
        killed = sum(mongo_samples(body, "sluice_mongodb_killed_cursors_total"))
        if killed >= 3:
            break
        time.sleep(0.1)
    assert killed >= 3, body
    sock = connect(s.port)
    sock.sendall(op_msg({"find": "docs", "filter": {"k": 1}, "$db": "leavedb"}, request_id=21) +
                 op_msg({"find": "docs", "filter": {"k": 2}, "$db": "leavedb"}, request_id=22))
    for rid, k in ((21, 1), (22, 2)):
        hdr, doc = read_reply(sock)
        assert hdr[2] == rid and doc["ok"] == 1, doc
        assert [d["k"] for d in doc["cursor"]["firstBatch"]] == [k]
    sock.close()
    assert c.leavedb.docs.count_documents({}) == 50
    c.close()
