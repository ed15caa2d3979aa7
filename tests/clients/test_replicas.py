"""Three carbon-ledger replicas on one bucket of a real S3 server (SeaweedFS), each with its own
write-ahead log. Writers post to all three at once; one replica is killed with SIGKILL and
restarted, another stopped with SIGTERM and restarted, and the S3 server is down for 20 s in the
middle. Then every acknowledged reading is in the table, none twice, every replica's report agrees
with the hand-computed total, a reader outside the service (Python deltalake) computes the same
total from the bucket, and a key revoked on one replica is refused by another within the poll.
Run by .ci/run: CARBON_LEDGER_BIN names the built binary."""

import datetime
import json
import os
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest
from ledger import Ledger, call
from seaweed import BUCKET, Seaweed

ADMIN = "replica-test-admin-token"
T0 = datetime.datetime(2026, 3, 1, tzinfo=datetime.timezone.utc)
BATCHES = 30
PER_BATCH = 50
POLL_S = 1


def reading(writer, index):
    """A reading no other writer sends: its identity is (workload, start)."""
    start = T0 + datetime.timedelta(minutes=index)
    return {"site": "fra1", "customer": "acme", "workload": f"w{writer}",
            "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "duration_s": 60,
            "energy_j": 1000 + 10 * writer + index % 7}


def post(base, batch, token=ADMIN):
    request = urllib.request.Request(
        base + "/v1/readings", data=json.dumps(batch).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status


class Writer(threading.Thread):
    """Posts its batches to one replica in order; a failed post (replica down, 5xx) is sent again
    until acknowledged, as an agent would."""

    def __init__(self, number, replica):
        super().__init__(daemon=True)
        self.number, self.replica = number, replica
        self.acknowledged, self.attempts, self.done_batches = [], 0, 0
        self.error = None

    def run(self):
        try:
            for b in range(BATCHES):
                batch = [reading(self.number, b * PER_BATCH + i) for i in range(PER_BATCH)]
                deadline = time.time() + 120
                while True:
                    self.attempts += 1
                    try:
                        if post(self.replica.base, batch) in (200, 201, 202):
                            break
                    except (OSError, urllib.error.HTTPError):
                        pass
                    if time.time() > deadline:
                        raise RuntimeError(f"writer {self.number}: batch {b} never acknowledged")
                    time.sleep(0.2)
                self.acknowledged.extend(batch)
                self.done_batches = b + 1
                time.sleep(0.05)
        except Exception as error:  # reported by the test
            self.error = error


def metric(ledger, name, table="readings"):
    text = urllib.request.urlopen(ledger.base + "/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name + "{") and f'table="{table}"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def wait_for(condition, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if condition():
                return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def retrying(call, timeout=15):
    """A registry write as a client makes it: a 503 (the shared store did not answer) is retried."""
    deadline = time.time() + timeout
    while True:
        try:
            return call()
        except urllib.error.HTTPError as error:
            if error.code != 503 or time.time() > deadline:
                raise
        time.sleep(0.2)


def it_energy_kwh(ledger):
    report = ledger.call("/v1/customers/acme/footprint?from=2026-02-28T00:00:00Z&to=2026-03-10T00:00:00Z"
                         "&granularity=month")
    return report["totals"]["it_energy_kwh"]


@pytest.fixture
def cluster():
    work = tempfile.mkdtemp(prefix="cl-replicas-")
    s3 = Seaweed(os.path.join(work, "s3")).start()
    s3.race_probe(rounds=5)
    config = os.path.join(work, "replica.toml")
    with open(config, "w") as f:
        f.write(f"flush_interval_s = 1\nregistry_poll_s = {POLL_S}\ntable_poll_s = {POLL_S}\n"
                "compaction_interval_s = 3\n")
    prefix = f"s3://{BUCKET}/replicas-{os.getpid()}"
    # Their logs (the outage makes them loud) go to files, kept for reading after a failure.
    logs = tempfile.mkdtemp(prefix="cl-replica-logs-")
    replicas = [Ledger(os.path.join(work, f"r{i}"), ADMIN,
                       ["--config", config, "--storage-url", prefix], env=s3.env(),
                       log=os.path.join(logs, f"r{i}.log"))
                for i in (1, 2, 3)]
    print(f"replica logs: {logs}")
    yield s3, replicas, prefix
    for replica in replicas:
        if replica.process.poll() is None:
            replica.kill()
    s3.stop()
    shutil.rmtree(work, ignore_errors=True)


def test_three_replicas_survive_kill_sigterm_and_an_s3_outage_and_agree(cluster):
    s3, (r1, r2, r3), prefix = cluster
    retrying(lambda: r1.call("/v1/sites/fra1", {"name": "Frankfurt 1", "zone": "DE", "pue": 1.5}, "PUT"))
    retrying(lambda: r1.call("/v1/customers/acme", {"name": "Acme"}, "PUT"))
    for replica in (r2, r3):
        wait_for(lambda: replica.call("/v1/sites/fra1")["pue"] == 1.5, 10, "the site on every replica")

    writers = [Writer(n, replica) for n, replica in enumerate((r1, r2, r3))]
    for writer in writers:
        writer.start()
    wait_for(lambda: writers[1].done_batches >= 5, 60, "writer 2 under way")
    r2.kill()  # SIGKILL: what it acknowledged is only in its log
    r2.start()
    wait_for(lambda: writers[2].done_batches >= 8, 60, "writer 3 under way")
    r3.stop()  # SIGTERM: drains and flushes
    r3.start()

    # The store goes away; acknowledgements go on from the logs, and the backlog shows.
    acknowledged_before = sum(len(w.acknowledged) for w in writers)
    s3.stop()
    outage_started = time.time()
    wait_for(lambda: metric(r1, "storage_flush_failures_total") > 0, 15, "a failed flush")
    time.sleep(max(0.0, 20 - (time.time() - outage_started)))
    assert sum(len(w.acknowledged) for w in writers) > acknowledged_before, "ingest stopped with S3"
    # Whichever replicas took writes during the outage hold them as a backlog (a writer may have
    # finished before the outage began, so not necessarily replica 1).
    backlogged = [r for r in (r1, r2, r3) if metric(r, "storage_buffered_rows") > 0]
    assert backlogged, "no replica shows the outage's backlog"
    assert max(metric(r, "storage_oldest_unflushed_seconds") for r in backlogged) > 5
    s3.start()

    for writer in writers:
        writer.join(timeout=180)
        assert writer.error is None, writer.error
        assert len(writer.acknowledged) == BATCHES * PER_BATCH
    for replica in (r1, r2, r3):
        wait_for(lambda: metric(replica, "storage_buffered_rows") == 0, 60, "the backlog flushed")

    # Compaction runs on whichever replica holds the lease, one at a time.
    owners = lambda: [metric(replica, "storage_compaction_owner") for replica in (r1, r2, r3)]
    wait_for(lambda: sum(owners()) == 1, 15, "one compaction owner")
    assert max(metric(replica, "storage_table_version") for replica in (r1, r2, r3)) > 0

    sent = [r for w in writers for r in w.acknowledged]
    expected_kwh = sum(r["energy_j"] for r in sent) / 3.6e6  # every reading once, IT energy
    time.sleep(2 * POLL_S)  # one table poll after the last flush
    for replica in (r1, r2, r3):
        # Reports round kWh to 9 decimals.
        assert it_energy_kwh(replica) == pytest.approx(expected_kwh, abs=1e-9), replica.base

    # A reader outside the service, straight from the bucket: every identity once.
    from deltalake import DeltaTable, QueryBuilder
    options = {"AWS_ENDPOINT_URL": s3.endpoint, "AWS_ACCESS_KEY_ID": s3.env()["AWS_ACCESS_KEY_ID"],
               "AWS_SECRET_ACCESS_KEY": s3.env()["AWS_SECRET_ACCESS_KEY"], "AWS_REGION": "us-east-1",
               "AWS_ALLOW_HTTP": "true", "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
    table = DeltaTable(f"{prefix}/tables/readings", storage_options=options)
    result = QueryBuilder().register("readings", table).execute(
        "SELECT count(*) AS readings, sum(energy_j) AS joules, "
        "count(DISTINCT concat(workload, CAST(start AS VARCHAR))) AS identities "
        "FROM (SELECT DISTINCT customer, workload, site, start, energy_j FROM readings "
        "WHERE customer = 'acme')").read_all()
    row = {name: result[name][0].as_py() for name in ("readings", "joules", "identities")}
    assert row["identities"] == len(sent), "every acknowledged reading is in the table"
    assert row["readings"] == len(sent), "and with one value each"
    assert row["joules"] / 3.6e6 == pytest.approx(expected_kwh, rel=1e-12)
    attempts = sum(w.attempts for w in writers) * PER_BATCH
    raw = QueryBuilder().register("readings", table).execute(
        "SELECT count(*) AS rows FROM readings").read_all()["rows"][0].as_py()
    assert len(sent) <= raw <= attempts, "no batch committed twice by a replay"

    # A key revoked on one replica is refused by another within the poll.
    created = r1.call("/v1/api-keys", {"role": "ingest", "sites": ["fra1"]})
    wait_for(lambda: call(r3.base, "/v1/whoami", created["token"])["id"] == created["id"], 10,
             "the new key on replica 3")
    r1.call(f"/v1/api-keys/{created['id']}", method="DELETE")
    revoked_at = time.time()

    def refused():
        try:
            call(r3.base, "/v1/whoami", created["token"])
            return False
        except urllib.error.HTTPError as error:
            return error.code == 401

    wait_for(refused, 10, "the revoked key refused on replica 3")
    assert time.time() - revoked_at <= POLL_S + 2
