"""MongoDB under churn and backend faults: a few hundred sessions (insert / find / getMore /
killCursors, transactions, and clients vanishing with a cursor or a transaction open, half-way
through a message or without reading) leave nothing behind; the test server restarted or frozen
(SIGSTOP) under load gives clients error replies with codes, Sluice keeps answering meanwhile
and serves again once the server is back. bench/soak is the long version.

Time limits are hang guards only; nothing passes or fails on how fast it happened."""
import os
import sys
import threading
import time

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from wire import connect, op_msg, read_reply

sys.dont_write_bytecode = True  # no __pycache__ in bench/ from a test run
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "bench"))
from benchlib import churn  # noqa: E402

POOL = 4
SETTLE = 30  # seconds allowed for closed connections to be reaped (a hang guard)
CLEAN = {"mongo": churn.MONGO_KINDS[:3]}  # sessions that finish what they start


def held(s, backend_port):
    return churn.holdings(s.proc.pid, (s.port,), (backend_port,))


def settled(s, backend_port, baseline=None):
    return churn.settled(s.proc.pid, (s.port,), (backend_port,), baseline, SETTLE)


def serves(s):
    c = MongoClient(s.uri(), serverSelectionTimeoutMS=5000, retryWrites=False)
    try:
        c[churn.MONGO_DB].probe.insert_one({"probe": 1})
        return c[churn.MONGO_DB].probe.find_one({"probe": 1})["probe"] == 1
    finally:
        c.close()


def serves_quietly(s):
    try:
        return serves(s)
    except PyMongoError:
        return False


def wait_until(what, predicate, timeout=60):
    t0 = time.monotonic()
    while not predicate():
        assert time.monotonic() - t0 < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - t0


def assert_nothing_left(s, backend_port, baseline):
    end = settled(s, backend_port, baseline)
    assert end["clients"][s.port] == 0, "every client connection is closed"
    assert end["fds_other"] == baseline, "no descriptor leaked"
    assert end["servers"][backend_port] <= POOL + churn.MONGO_MONITORS, end


def in_background(fn):
    box = {}
    t = threading.Thread(target=lambda: box.update(result=fn()), daemon=True)
    t.start()
    return t, box


def test_churning_clients_leave_nothing_behind(sluice_factory, mongo_server):
    churn.mongo_prepare(mongo_server.port)
    s = sluice_factory(pool_size=POOL, max_client_conn=1000)
    target = {"mongo_port": s.port}
    warm = churn.churn(target, mongo_sessions=40, concurrency=20, kinds=CLEAN)
    assert not warm.errors, warm.first_errors
    baseline = settled(s, mongo_server.port)["fds_other"]

    tally = churn.churn(target, mongo_sessions=400, concurrency=100, seed=8)
    assert not tally.errors, (dict(tally.errors), tally.first_errors)
    assert {kind for _, kind in tally.done} == {kind for kind, _ in churn.MONGO_KINDS}
    assert s.proc.poll() is None, "Sluice is still running"
    assert_nothing_left(s, mongo_server.port, baseline)
    assert serves(s), "a fresh client is served"


def churn_through_a_fault(s, fault, undo, seconds=5):
    """Well-behaved sessions churn for `seconds` while fault() runs a second in and undo() two
    seconds later; returns the tally and the seconds from undo() until a new client was served
    (a figure to print, not a check)."""
    load, box = in_background(lambda: churn.churn({"mongo_port": s.port}, concurrency=20,
                                                  seconds=seconds, kinds=CLEAN, seed=3))
    time.sleep(1)
    fault()
    try:
        time.sleep(2)
    finally:
        undo()
    recovery = wait_until("Sluice serves again", lambda: serves_quietly(s))
    load.join(churn.SESSION_TIMEOUT + seconds)
    assert not load.is_alive(), "sessions left hanging"
    return box["result"], recovery


def check_after_fault(s, server, outcome, baseline, what, expected=()):
    """Errors are replies with a code (or one of `expected`); afterwards new sessions work and
    nothing is left behind."""
    tally, recovery = outcome
    assert s.proc.poll() is None, "Sluice is still running"
    assert tally.errors, f"sessions broken by the {what} got errors"
    uncoded = {k: n for k, n in tally.errors.items()
               if not k.startswith("mongo code ") and k not in expected}
    assert not uncoded, f"errors without a reply carrying a code: {uncoded} {tally.first_errors}"
    print(f"\nMongoDB {what} under load: errors {dict(tally.errors)}; served again "
          f"{recovery:.3f} s after the server was back")
    churn.mongo_prepare(server.port)  # a restarted test server starts empty
    after = churn.churn({"mongo_port": s.port}, mongo_sessions=100, concurrency=20, seed=4)
    assert not after.errors, (dict(after.errors), after.first_errors)
    assert_nothing_left(s, server.port, baseline)


def test_server_restarted_under_load(sluice_factory, own_mongo):
    churn.mongo_prepare(own_mongo.port)
    s = sluice_factory(server=own_mongo, pool_size=POOL, max_client_conn=1000)
    assert not churn.churn({"mongo_port": s.port}, mongo_sessions=20, kinds=CLEAN).errors
    baseline = settled(s, own_mongo.port)["fds_other"]
    outcome = churn_through_a_fault(s, own_mongo.stop, own_mongo.start)
    # The test server keeps its data in memory: a session that wrote before the restart and
    # reads after it finds nothing.
    check_after_fault(s, own_mongo, outcome, baseline, "restart",
                      expected=("mongo wrong answer",))


def test_server_frozen_under_load(sluice_factory, own_mongo):
    churn.mongo_prepare(own_mongo.port)
    s = sluice_factory(server=own_mongo, pool_size=POOL, max_client_conn=1000, query_timeout=1,
                       query_wait_timeout=1)
    assert not churn.churn({"mongo_port": s.port}, mongo_sessions=20, kinds=CLEAN).errors
    baseline = settled(s, own_mongo.port)["fds_other"]
    answered = []

    def freeze():
        own_mongo.pause()
        # Meanwhile Sluice answers what it can answer itself: a new connection's handshake.
        time.sleep(0.5)
        sock = connect(s.port)
        sock.sendall(op_msg({"hello": 1, "$db": "admin"}, request_id=77))
        hdr, doc = read_reply(sock, timeout=30)
        answered.append((hdr and hdr[2], doc and doc.get("ok")))
        sock.close()

    outcome = churn_through_a_fault(s, freeze, own_mongo.resume)
    assert answered == [(77, 1.0)], "a handshake is answered while the server is frozen"
    check_after_fault(s, own_mongo, outcome, baseline, "freeze")
