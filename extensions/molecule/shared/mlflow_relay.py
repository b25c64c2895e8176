"""Reach MLflow on a target's loopback from the controller, the way a tunnel does.

MLflow listens on the target's 127.0.0.1 only. Each connection to a controller
port is relayed by `docker exec -i <target> python3 -c RELAY` to the target's
127.0.0.1:<port>, so the real mlflow client talks to localhost and MLflow sees
loopback. A connection made while MLflow is down fails, as through a tunnel.

Import it from a scenario's conftest.py:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
    from mlflow_relay import Relay
"""

import socket
import subprocess
import threading

RELAY = """
import os, socket, sys, threading
upstream = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
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
        try:
            done()
        except OSError:
            pass  # already closed by the other pump


class Relay:
    """A controller port relayed to <container>'s 127.0.0.1:<port> (the role's default 500);
    `uri` is http://127.0.0.1:<local port>."""

    def __init__(self, container, port=500):
        self.container = container
        self.port = port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.uri = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _address = self.listener.accept()
            except OSError:
                return
            relay = subprocess.Popen(
                ["docker", "exec", "-i", self.container, "python3", "-c", RELAY, str(self.port)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                bufsize=0,
            )
            threading.Thread(target=_pump, args=(conn.recv, relay.stdin.write, relay.stdin.close), daemon=True).start()
            threading.Thread(target=_pump, args=(relay.stdout.read, conn.sendall, conn.close), daemon=True).start()
            threading.Thread(target=relay.wait, daemon=True).start()  # reap it when it ends

    def close(self):
        self.listener.close()
