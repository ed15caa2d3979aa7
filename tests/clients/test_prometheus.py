"""A real Prometheus (Debian's package) scrapes a Kepler-format exposition whose counters advance by
known joules, and remote-writes to carbon-ledger, which is killed with SIGKILL and restarted in the
middle of the stream; the counter is reset once. The footprint report must then hold exactly the
energy of the samples served (Prometheus' `increase` semantics), once. Run by .ci/run:
CARBON_LEDGER_BIN names the built binary."""

import http.server
import math
import os
import shutil
import subprocess
import tempfile
import threading
import time

import pytest
from ledger import Ledger, free_port

ADMIN = "prometheus-test-admin-token"
PACKAGE_W = 40.0  # the package zone's power, in watts
DRAM_W = 5.0  # another RAPL zone: the mapping takes package only (zones overlap)
LABELS = 'container_id="c0ffee",container_name="api",node_name="fra1-n1",pod_id="p1",runtime="containerd",state="running"'


class Exposition:
    """Kepler's exposition format, with explicit timestamps so each value is exact at its time."""

    def __init__(self):
        self.started_ms = int(time.time() * 1000)
        self.reset_ms = None
        self.serving = True
        self.served = []  # (timestamp ms, package joules) as scraped
        exposition = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if not exposition.serving:
                    self.send_error(503)
                    return
                now = int(time.time() * 1000)
                since = exposition.reset_ms if exposition.reset_ms is not None else exposition.started_ms
                offset = 0.0 if exposition.reset_ms is not None else 1000.0
                package = offset + PACKAGE_W * (now - since) / 1000
                dram = DRAM_W * (now - exposition.started_ms) / 1000
                exposition.served.append((now, package))
                body = (
                    "# HELP kepler_container_cpu_joules_total Energy consumption of cpu at container level in joules\n"
                    "# TYPE kepler_container_cpu_joules_total counter\n"
                    f'kepler_container_cpu_joules_total{{{LABELS},zone="dram"}} {dram!r} {now}\n'
                    f'kepler_container_cpu_joules_total{{{LABELS},zone="package"}} {package!r} {now}\n'
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def expected_joules(self):
        """The energy of what was served: each increase, and after a drop the new value."""
        total = 0.0
        for (_, before), (_, after) in zip(self.served, self.served[1:]):
            total += after - before if after >= before else after
        return total


@pytest.fixture
def stack():
    work = tempfile.mkdtemp()
    config = os.path.join(work, "carbon-ledger.toml")
    with open(config, "w") as f:
        # Windows wait for a later sample, or 2 s once the counter stops being served.
        f.write("[telemetry]\nwindow_s = 5\nmax_gap_s = 600\nflush_after_s = 2\n")
    ledger = Ledger(os.path.join(work, "data"), ADMIN, ["--config", config])
    ledger.call("/v1/sites/fra1", {"name": "Frankfurt 1", "zone": "DE", "pue": 1.5}, "PUT")
    ledger.call("/v1/customers/acme", {"name": "Acme"}, "PUT")
    ledger.call("/v1/telemetry/mappings/kepler-fra1", {"preset": "kepler", "site": "fra1", "customer": "acme"}, "PUT")
    exposition = Exposition()
    prometheus_port = free_port()
    with open(os.path.join(work, "prometheus.yml"), "w") as f:
        f.write(f"""
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
  - job_name: kepler
    static_configs:
      - targets: ["127.0.0.1:{exposition.port}"]
remote_write:
  - url: {ledger.base}/api/v1/write
    authorization:
      credentials: {ADMIN}
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
""")
    prometheus = subprocess.Popen(
        [shutil.which("prometheus") or "/usr/bin/prometheus", f"--config.file={work}/prometheus.yml",
         f"--storage.tsdb.path={work}/tsdb", f"--web.listen-address=127.0.0.1:{prometheus_port}"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "prometheus.log"), "w"),
    )
    yield ledger, exposition
    prometheus.kill()
    prometheus.wait()
    exposition.server.shutdown()
    ledger.stop()
    shutil.rmtree(work, ignore_errors=True)


def footprint_joules(ledger):
    report = ledger.call("/v1/customers/acme/footprint?from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z&granularity=month")
    return report["totals"]["it_energy_kwh"] * 3.6e6


def test_prometheus_remote_writes_kepler_counters_into_exactly_their_energy(stack):
    ledger, exposition = stack
    deadline = time.monotonic() + 30
    while len(exposition.served) < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(exposition.served) >= 4, "Prometheus never scraped the exposition"
    ledger.kill()  # SIGKILL in the middle of the stream; Prometheus retries what failed
    time.sleep(1.5)
    ledger.start()
    time.sleep(3)
    exposition.reset_ms = int(time.time() * 1000)  # the container restarted: the counter resets
    time.sleep(4)
    # Scrapes now fail. (For samples with explicit timestamps Prometheus sends no stale markers;
    # the receiver's handling of them is tested with recorded bodies in tests/api.)
    exposition.serving = False
    served = len(exposition.served)
    expected = exposition.expected_joules()
    # Everything served arrives, whatever was retried; then nothing more changes. Answers carry
    # 9 decimals of kWh: 3.6 mJ.
    exact = lambda joules: math.isclose(joules, expected, abs_tol=0.0036 + 1e-9 * expected)
    deadline = time.monotonic() + 60
    got = footprint_joules(ledger)
    while not exact(got) and time.monotonic() < deadline:
        time.sleep(0.5)
        got = footprint_joules(ledger)
    print(f"\n{served} samples served; expected {expected:.6f} J, the footprint holds {got:.6f} J")
    assert exact(got), (got, expected)
    assert expected > PACKAGE_W * 5  # the run covered several 5-second windows
    time.sleep(3)
    assert footprint_joules(ledger) == got, "failed scrapes added nothing"

    sources = {s["source"]: s for s in ledger.call("/v1/telemetry/sources")}
    remote = sources["remote_write"]
    assert remote["samples_unmapped"] > 0, "the dram zone and Prometheus' own series are counted"
    assert remote["readings_written"] > 0 and remote["last_error"] is None, remote
    unmapped = {(u["metric"], u["labels"].get("zone")) for u in ledger.call("/v1/telemetry/unmapped")}
    assert ("kepler_container_cpu_joules_total", "dram") in unmapped
    assert ("up", None) in unmapped
