"""[mongodb] entries on reload (added, removed, changed) under pymongo traffic, and SIGTERM with
a command in flight and a pinned transaction open."""
import os
import signal
import socket
import sys
import threading
import time

import pymongo

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pg"))
from pgutil import free_port, refused, wait_for  # noqa: E402


def set_entries(s, entries):
    """Rewrites the [mongodb] section of s's config: name -> dict of the line's keys."""
    with open(s.conf) as f:
        head = f.read().split("[mongodb]\n")[0]
    with open(s.conf, "w") as f:
        f.write(head + "[mongodb]\n")
        for name, line in entries.items():
            f.write(f"{name} = " + " ".join(f"{k}={v}" for k, v in line.items()) + "\n")


def reload(s):
    before = s.log().count("configuration reloaded")
    s.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: s.log().count("configuration reloaded") > before), s.log()[-3000:]


def entry(s, mongo_server, port=None, **extra):
    line = {"listen_port": port or s.port, "pool_size": 10,
            "uri": f"mongodb://127.0.0.1:{mongo_server.port}/?appname=sluice"}
    line.update(extra)
    return line


def uri(port):
    return f"mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=10000"


def stored(mongo_server, name):
    """The k values of collection name, read from the server itself."""
    direct = pymongo.MongoClient(mongo_server.uri())
    try:
        return sorted(d["k"] for d in direct.sluice_test[name].find())
    finally:
        direct.close()


class Traffic:
    """pymongo inserts in a loop on a thread; counts successes and keeps the errors."""

    def __init__(self, port, name):
        self.client = pymongo.MongoClient(uri(port), retryWrites=True)
        self.coll = self.client.sluice_test[name]
        self.coll.drop()
        self.ok, self.errors, self.stop = 0, [], False
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                self.coll.insert_one({"k": self.ok})
                self.coll.find_one({"k": self.ok})
                self.ok += 1
            except pymongo.errors.PyMongoError as e:
                self.errors.append(repr(e))

    def finish(self):
        self.stop = True
        self.thread.join(30)
        assert not self.thread.is_alive(), "the traffic thread is stuck"
        self.client.close()


def test_entry_added_without_touching_the_other(sluice_factory, mongo_server):
    s = sluice_factory()
    t = Traffic(s.port, "reload_add")
    second = free_port()
    set_entries(s, {"mongo": entry(s, mongo_server), "second": entry(s, mongo_server, second)})
    reload(s)
    assert "mongo second: added" in s.log()
    c = pymongo.MongoClient(uri(second))
    assert c.admin.command("ping")["ok"] == 1
    c.close()
    time.sleep(0.5)
    t.finish()
    assert t.ok > 0 and not t.errors, t.errors[:3]


def test_entry_removed_lets_its_transaction_commit(sluice_factory, mongo_server):
    s = sluice_factory()
    other = free_port()
    set_entries(s, {"mongo": entry(s, mongo_server), "other": entry(s, mongo_server, other)})
    reload(s)
    t = Traffic(other, "reload_keep")
    c = pymongo.MongoClient(uri(s.port))
    coll = c.sluice_test.reload_rm
    coll.drop()
    with c.start_session() as sess:
        sess.start_transaction()
        coll.insert_one({"k": 1}, session=sess)
        set_entries(s, {"other": entry(s, mongo_server, other)})
        reload(s)
        assert "mongo mongo: removed" in s.log()
        assert wait_for(lambda: refused(s.port)), "the removed entry stops listening"
        coll.insert_one({"k": 2}, session=sess)
        sess.commit_transaction()
    c.close()
    assert wait_for(lambda: "mongo mongo: retired front closed" in s.log()), s.log()[-3000:]
    assert stored(mongo_server, "reload_rm") == [1, 2]
    t.finish()
    assert t.ok > 0 and not t.errors, t.errors[:3]


def test_entry_changed_under_traffic(sluice_factory, mongo_server):
    """A new uri and pool_size: a new front takes over the same listening socket; the traffic
    sees no error (a connection the old front closes between commands is retried)."""
    s = sluice_factory()
    t = Traffic(s.port, "reload_change")
    time.sleep(0.5)
    set_entries(s, {"mongo": entry(s, mongo_server, pool_size=3,
                                   uri=f"mongodb://127.0.0.1:{mongo_server.port}/"
                                       "?appname=sluice2")})
    reload(s)
    assert "mongo mongo: uri or listener changed" in s.log()
    assert wait_for(lambda: "mongo mongo: retired front closed" in s.log()), s.log()[-3000:]
    n = t.ok
    assert wait_for(lambda: t.ok > n + 10), (t.errors[:3], s.log()[-5000:])
    t.finish()
    assert t.ok > 0 and not t.errors, t.errors[:3]
    assert "pool_size 3" in s.log()


def test_sigterm_lets_a_pinned_transaction_commit(sluice_factory, mongo_server):
    s = sluice_factory(shutdown_timeout=60)
    c = pymongo.MongoClient(uri(s.port))
    coll = c.sluice_test.shut_txn
    coll.drop()
    with c.start_session() as sess:
        sess.start_transaction()
        coll.insert_one({"k": 1}, session=sess)
        s.proc.send_signal(signal.SIGTERM)
        assert wait_for(lambda: refused(s.port))
        assert s.proc.poll() is None, "the transaction is open"
        coll.insert_one({"k": 2}, session=sess)
        sess.commit_transaction()
    assert s.proc.wait(timeout=15) == 0
    c.close()
    assert stored(mongo_server, "shut_txn") == [1, 2]
