"""Shutdown and the worker thread. Stuck in libmongoc, it must not hold SIGTERM up for a server
selection or connect that only server_connect_timeout ends; otherwise exit waits until it has
ended (the exit handlers free libmongoc's and OpenSSL's state, which it may still be using)."""
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pg"))
from pgutil import free_port  # noqa: E402
from wire import connect, op_msg, read_reply  # noqa: E402

CONNECT_TIMEOUT_S = 120  # how long the worker could sit in server selection
STILL_CONNECTING = "exiting while a MongoDB worker thread is still connecting"


def test_sigterm_does_not_wait_for_a_server_selection(sluice_factory):
    dead_port = free_port()  # nothing listens there: selection retries until the timeout
    s = sluice_factory(uri=f"mongodb://127.0.0.1:{dead_port}/?appname=sluice",
                       server_connect_timeout=CONNECT_TIMEOUT_S)
    sock = connect(s.port)
    sock.sendall(op_msg({"ping": 1, "$db": "admin"}))  # a client waiting for a connection
    try:
        sock.settimeout(1.0)
        sock.recv(1)  # no reply can come; gives the worker time to enter the selection
    except OSError:
        pass
    s.proc.send_signal(signal.SIGTERM)
    try:
        # Generous: a stop that waited for the selection would take CONNECT_TIMEOUT_S.
        rc = s.proc.wait(timeout=CONNECT_TIMEOUT_S / 2)
    except subprocess.TimeoutExpired:
        raise AssertionError("sluice waited for the worker's server selection on SIGTERM")
    finally:
        sock.close()
    assert rc == 0, s.log()[-3000:]
    # It left without running the exit handlers under the worker.
    assert STILL_CONNECTING in s.log(), s.log()[-3000:]
    # The fixture's teardown checks the log for sanitizer reports.


def test_sigterm_waits_for_a_worker_that_is_only_ending(sluice_factory):
    s = sluice_factory()
    sock = connect(s.port)
    for _ in range(3):  # the worker has connected a backend; it is idle when the stop comes
        sock.sendall(op_msg({"ping": 1, "$db": "admin"}))
        assert read_reply(sock)[1]["ok"] == 1
    sock.close()
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(timeout=30) == 0, s.log()[-3000:]
    # The worker was joined: exit ran the teardown of libmongoc, not the early way out.
    assert STILL_CONNECTING not in s.log(), s.log()[-3000:]
