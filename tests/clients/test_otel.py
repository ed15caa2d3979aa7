"""The OpenTelemetry Python SDK, configured only through the standard environment variables
(OTEL_EXPORTER_OTLP_ENDPOINT=http://host:port/otlp, bearer header, gzip), exports `hw.energy`
(an observable counter in joules) and `hw.power` (a gauge in watts) over OTLP/HTTP protobuf. The
footprint must then hold exactly the counter's increase over the export."""

import math
import os
import tempfile
import time

from ledger import Ledger

ADMIN = "otel-test-admin-token"
WATTS = 40.0


def test_the_otel_sdk_exports_hw_energy_and_hw_power_into_readings(monkeypatch):
    ledger = Ledger(tempfile.mkdtemp(), ADMIN)
    try:
        ledger.call("/v1/sites/fra1", {"name": "Frankfurt 1", "zone": "DE", "pue": 1.5}, "PUT")
        ledger.call("/v1/customers/acme", {"name": "Acme"}, "PUT")
        ledger.call("/v1/telemetry/mappings/psu-energy", {"preset": "hw_energy", "site": "fra1", "customer": "acme"}, "PUT")
        ledger.call("/v1/telemetry/mappings/psu-power",
                    {"preset": "hw_power", "site": "fra1", "customer": "acme", "workload": "{hw.id}-power"}, "PUT")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"{ledger.base}/otlp")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{ADMIN}")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")

        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.metrics import Observation
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource

        started = time.time()
        observed = []

        def energy(_options):
            joules = 1000.0 + WATTS * (time.time() - started)
            observed.append(joules)
            yield Observation(joules, {"hw.id": "psu-1", "hw.type": "power_supply"})

        def power(_options):
            yield Observation(WATTS, {"hw.id": "psu-1", "hw.type": "power_supply"})

        reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=500)
        provider = MeterProvider(resource=Resource.create({"host.name": "fra1-n1"}), metric_readers=[reader])
        meter = provider.get_meter("carbon-ledger-test")
        meter.create_observable_counter("hw.energy", callbacks=[energy], unit="J")
        meter.create_observable_gauge("hw.power", callbacks=[power], unit="W")
        time.sleep(4)
        provider.shutdown()  # the last collection is exported before this returns

        expected = observed[-1] - observed[0]
        # The last window waits for a later sample (or flush_after_s): write it now.
        assert ledger.call("/v1/telemetry/flush", {}, "POST")["windows_written"] >= 1
        report = ledger.call("/v1/customers/acme/footprint?from=2020-01-01T00:00:00Z"
                             "&to=2030-01-01T00:00:00Z&granularity=month&group_by=workload")
        by_workload = {row["workload"]: row["it_energy_kwh"] * 3.6e6 for row in report["rows"]}
        print(f"\n{len(observed)} exports; hw.energy increased {expected:.6f} J, "
              f"the footprint holds {by_workload.get('psu-1', 0):.6f} J")
        # Answers carry 9 decimals of kWh: 3.6 mJ.
        assert math.isclose(by_workload["psu-1"], expected, abs_tol=0.0036), by_workload
        # The gauge: 40 W over the SDK's own timestamps, which the test does not see exactly.
        assert math.isclose(by_workload["psu-1-power"], expected, rel_tol=0.15), by_workload
        otlp = {s["source"]: s for s in ledger.call("/v1/telemetry/sources")}["otlp"]
        assert otlp["samples_accepted"] >= 2 * len(observed) - 2 and otlp["last_error"] is None, otlp
    finally:
        ledger.stop()
