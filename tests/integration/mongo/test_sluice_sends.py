"""What Sluice sends to the server on its own or changes in a request, checked against a recording
MongoDB-wire server (recorder.py): the CongoDB test server acknowledges abortTransaction without
keeping transactions and ignores maxTimeMS, so neither is observable there."""
import time
import uuid

import bson
import pytest

from recorder import Recorder
from wire import connect, op_msg, read_reply


@pytest.fixture()
def recorder():
    r = Recorder()
    yield r
    r.close()


def new_lsid():
    return {"id": uuid.uuid4()}


def round_trip(sock, doc, request_id):
    sock.sendall(op_msg(doc, request_id=request_id))
    hdr, reply = read_reply(sock)
    assert hdr is not None, "the connection closed"
    assert hdr[2] == request_id, "responseTo is the client's own requestID"
    return reply


def wait_for(fn, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.05)
    return fn()


def test_leaving_inside_a_transaction_aborts_it(sluice_factory, recorder):
    s = sluice_factory(server=recorder)
    a = connect(s.port)
    left_open, committed = new_lsid(), new_lsid()
    for lsid, number, rid in ((left_open, 3, 1), (committed, 1, 2)):
        reply = round_trip(a, {"insert": "t", "documents": [{"x": rid}], "lsid": lsid,
                               "txnNumber": bson.Int64(number), "startTransaction": True,
                               "autocommit": False, "$db": "db"}, rid)
        assert reply["ok"] == 1
    round_trip(a, {"commitTransaction": 1, "lsid": committed, "txnNumber": bson.Int64(1),
                   "autocommit": False, "$db": "admin"}, 3)
    sent = recorder.named("insert")
    assert [c["lsid"] for _, c in sent] == [left_open, committed], "lsid passes through"
    assert [c["txnNumber"] for _, c in sent] == [3, 1], "txnNumber passes through"
    a.close()
    aborts = wait_for(lambda: recorder.named("abortTransaction"))
    time.sleep(0.5)  # room for a wrong second abort to arrive
    aborts = recorder.named("abortTransaction")
    assert len(aborts) == 1, "only the transaction left open is aborted"
    cmd = aborts[0][1]
    assert cmd["lsid"] == left_open and cmd["txnNumber"] == 3 and cmd["autocommit"] is False


def test_cursor_the_client_killed_or_exhausted_is_not_killed_again(sluice_factory, recorder):
    s = sluice_factory(server=recorder)
    a = connect(s.port)
    first = round_trip(a, {"find": "c", "batchSize": 1, "$db": "db"}, 1)["cursor"]["id"]
    round_trip(a, {"killCursors": "c", "cursors": [bson.Int64(first)], "$db": "db"}, 2)
    a.close()
    time.sleep(0.5)
    assert len(recorder.named("killCursors")) == 1, "only the client's own killCursors"


def test_query_timeout_adds_max_time_only_where_missing(sluice_factory, recorder):
    s = sluice_factory(server=recorder, query_timeout=5)
    a = connect(s.port)
    cursor_id = round_trip(a, {"find": "c", "$db": "db"}, 1)["cursor"]["id"]
    round_trip(a, {"find": "c", "maxTimeMS": 77, "$db": "db"}, 2)
    round_trip(a, {"getMore": bson.Int64(cursor_id), "collection": "c", "$db": "db"}, 3)
    finds = [c for _, c in recorder.named("find")]
    assert finds[0]["maxTimeMS"] == 5000 and finds[1]["maxTimeMS"] == 77
    assert "maxTimeMS" not in recorder.named("getMore")[0][1]


def test_request_ids_are_unique_towards_the_server(sluice_factory, recorder):
    s = sluice_factory(server=recorder)
    socks = [connect(s.port) for _ in range(3)]
    for sock in socks:
        assert round_trip(sock, {"ping": 1, "$db": "admin"}, 1)["ok"] == 1
    ids = [h[1] for h, _ in recorder.named("ping")]
    assert len(ids) == 3 and len(set(ids)) == 3, ids


def test_authentication_commands_are_refused(sluice_factory, recorder):
    s = sluice_factory(server=recorder)
    a = connect(s.port)
    reply = round_trip(a, {"saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": b"",
                           "$db": "admin"}, 1)
    assert reply["ok"] == 0 and reply["code"] == 18
    assert not recorder.named("saslStart"), "never reaches a shared server connection"
    assert round_trip(a, {"ping": 1, "$db": "admin"}, 2)["ok"] == 1


def test_reload_applies_new_timeouts(sluice_factory, recorder):
    import signal
    s = sluice_factory(server=recorder, query_timeout=5)
    a = connect(s.port)
    round_trip(a, {"find": "c", "$db": "db"}, 1)
    with open(s.conf) as f:
        text = f.read()
    with open(s.conf, "w") as f:
        f.write(text.replace("query_timeout=5", "query_timeout=7"))
    s.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "configuration reloaded" in s.log())
    round_trip(a, {"find": "c", "$db": "db"}, 2)
    assert [c["maxTimeMS"] for _, c in recorder.named("find")] == [5000, 7000]
