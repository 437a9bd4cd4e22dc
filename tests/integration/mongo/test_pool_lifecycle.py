"""Backend pool lifecycle of a [mongodb] line: min_pool_size, max_idle_time and
max_db_connections (MongoDB's minPoolSize and maxIdleTimeMS, PgBouncer's max_db_connections)."""
import re
import threading
import time

import pymongo

from pgutil import wait_for


def open_backends(s):
    """Data connections open now, from the log: each open says how many there are then, each
    close is logged once."""
    log = s.log()
    return (len(re.findall(r"backend connection to \S+ ready \(", log)) -
            len(re.findall(r"backend connection to \S+ closing: ", log)))


def peak_backends(s):
    return max((int(n) for n in re.findall(r" ready \((\d+) open\)", s.log())), default=0)


def busy_clients(s, n, ops=20):
    errors = []

    def work(i):
        try:
            c = pymongo.MongoClient(s.uri(), maxPoolSize=1)
            coll = c.sluice_test.lifecycle
            for j in range(ops):
                coll.insert_one({"k": i * 1000 + j})
                coll.find_one({"k": i * 1000 + j})
            c.close()
        except Exception as e:  # noqa: BLE001 - every failure is reported
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_idle_backends_close_after_max_idle_time_down_to_min_pool_size(sluice_factory):
    s = sluice_factory(pool_size=6, min_pool_size=1, max_idle_time=0.5)
    assert wait_for(lambda: open_backends(s) == 1), "min_pool_size opens one ahead of clients"
    assert not busy_clients(s, 12)
    assert peak_backends(s) > 1, "the load needed more than one connection"
    assert wait_for(lambda: open_backends(s) == 1), s.log()[-3000:]
    assert "closing: max_idle_time" in s.log()
    time.sleep(1)  # more sweeps: min_pool_size stays open
    assert open_backends(s) == 1
    # The pool grows again on demand.
    assert not busy_clients(s, 4, ops=5)


def test_idle_backends_stay_without_max_idle_time(sluice_factory):
    s = sluice_factory(pool_size=6)
    assert not busy_clients(s, 12)
    opened = open_backends(s)
    assert opened > 1
    time.sleep(1)
    assert open_backends(s) == opened
    assert "max_idle_time" not in s.log()


def test_max_db_connections_bounds_the_backend_pool(sluice_factory):
    s = sluice_factory(pool_size=10, max_db_connections=2)
    assert not busy_clients(s, 16)
    assert 0 < peak_backends(s) <= 2
