"""What the real-client tests share: a carbon-ledger binary started on a free loopback port with
its own data directory, and calls to its API. CARBON_LEDGER_BIN names the built binary."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, path, token, body=None, method=None, accept="application/json"):
    """One API call; JSON answers are decoded, others returned as bytes."""
    request = urllib.request.Request(
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Accept": accept, "Content-Type": "application/json"},
        method=method or ("GET" if body is None else "POST"),
    )
    with urllib.request.urlopen(request) as answer:
        data = answer.read()
    return json.loads(data or b"null") if accept == "application/json" else data


class Ledger:
    """The real server: started, killed with SIGKILL, restarted on the same port and data."""

    def __init__(self, data, token, args=(), env=None, log=None):
        """`log`: a file for the server's stderr (appended across restarts); else inherited."""
        self.data, self.token, self.args, self.env = data, token, list(args), dict(env or {})
        self.log = log
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.start()

    def start(self):
        env = {**os.environ, "CARBON_LEDGER_ADMIN_TOKEN": self.token, "RUST_LOG": "warn", **self.env}
        self.process = subprocess.Popen(
            [os.environ["CARBON_LEDGER_BIN"], "serve", *self.args, "--data-dir", self.data,
             "--bind", f"127.0.0.1:{self.port}"],
            env=env,
            stderr=open(self.log, "ab") if self.log else None,
        )
        for _ in range(600):
            try:
                urllib.request.urlopen(self.base + "/healthz")
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"carbon-ledger exited {self.process.returncode}")
                time.sleep(0.1)
        raise RuntimeError("carbon-ledger did not start")

    def call(self, path, body=None, method=None, token=None, accept="application/json"):
        return call(self.base, path, token or self.token, body, method, accept)

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
