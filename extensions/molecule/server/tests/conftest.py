"""Reach MLflow inside a target from the controller, the way a tunnel does.

MLflow listens on the target's loopback only. Each connection to a controller
port is relayed by `docker exec -i <target> python3 -c RELAY` to the target's
127.0.0.1:5000, so the client talks to localhost and MLflow sees loopback."""

import socket
import subprocess
import threading

import pytest

RELAY = """
import os, socket, sys, threading
upstream = socket.create_connection(("127.0.0.1", 5000))
def down():
    while data := upstream.recv(65536):
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    os._exit(0)  # MLflow closed the connection: close the client's too
threading.Thread(target=down, daemon=True).start()
while data := sys.stdin.buffer.read1(65536):
    upstream.sendall(data)
"""


def _pump(read, write, done):
    try:
        while data := read(65536):
            write(data)
    except OSError:
        pass  # the other side went away; closing below is all that is left
    finally:
        done()


def _serve(listener, container):
    while True:
        try:
            conn = listener.accept()[0]
        except OSError:
            return
        relay = subprocess.Popen(
            ["docker", "exec", "-i", container, "python3", "-c", RELAY],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        threading.Thread(target=_pump, args=(conn.recv, relay.stdin.write, relay.stdin.close), daemon=True).start()
        threading.Thread(target=_pump, args=(relay.stdout.read, conn.sendall, conn.close), daemon=True).start()


@pytest.fixture(scope="module")
def tracking_uri(host):
    """http://localhost:<port>, relayed to MLflow on the target's 127.0.0.1:5000."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    threading.Thread(target=_serve, args=(listener, host.backend.get_hostname()), daemon=True).start()
    yield f"http://localhost:{listener.getsockname()[1]}"
    listener.close()


@pytest.fixture
def mlflow(tracking_uri, monkeypatch):
    """The real mlflow client, pointed at the target."""
    import mlflow

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow
