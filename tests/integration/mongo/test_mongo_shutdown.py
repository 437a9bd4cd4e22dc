"""Shutdown while the worker thread is stuck in libmongoc: SIGTERM must not wait for a server
selection or connect that only server_connect_timeout ends."""
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pg"))
from pgutil import free_port  # noqa: E402
from wire import connect, op_msg  # noqa: E402

CONNECT_TIMEOUT_S = 120  # how long the worker could sit in server selection


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
    # The fixture's teardown checks the log for sanitizer reports.
