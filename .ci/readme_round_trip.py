"""Runs README.md's curl round trip as pasted, against the binary the test build made.

The only substitutions: the binary for `cargo run --release --`, a free port for 8080 and a fresh
data directory, so CI neither builds a second profile nor touches ./data.
"""
import os
import pathlib
import re
import socket
import subprocess
import sys
import tempfile

readme = pathlib.Path(__file__).resolve().parent.parent / "README.md"
text = readme.read_text()
block = re.search(r"<!-- round-trip:start -->\s*```sh\n(.*?)```\s*<!-- round-trip:end -->", text, re.S)
if not block:
    sys.exit("README.md has no round-trip block")
binary = sys.argv[1]
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
work = tempfile.mkdtemp(prefix="round-trip-")
script = (
    block.group(1)
    .replace("cargo run --release -- serve", f"{binary} serve --data-dir {work}/data --bind 127.0.0.1:{port}")
    .replace("localhost:8080", f"localhost:{port}")
)
result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, capture_output=True, text=True, timeout=300)
print(result.stdout)
print(result.stderr[-3000:], file=sys.stderr)
if result.returncode != 0:
    sys.exit(f"the round trip failed with exit code {result.returncode}")
expected = [
    '"bucket_start":"2026-03-01T09:00:00Z","workload":"api","it_energy_kwh":0.075',
    '"location_emissions_gco2e":37.125',
    "bucket_start,customer,site,it_energy_kwh,facility_energy_kwh,location_emissions_gco2e",
    "2026-03-01T00:00:00Z,acme,fra1,",
    '"windows":[{"start":"2026-03-01T11:00:00Z","end":"2026-03-01T13:00:00Z","average_gco2e_per_kwh":130.0',
    '"saving_gco2e":1850.0',
    '"optimalDataPoints":[{"location":"DE","timestamp":"2026-03-01T11:00:00Z","duration":120,"value":130.0}]',
    '"embodied_kgco2e":1633.125',
    '"embodied_gco2e":11.651862158,"functional_units":1000.0,"sci_gco2e_per_unit":0.048776862',
    '"measured_workloads_kwh":0.145833333,"modelled_workloads_kwh":0.0,"unattributed_it_kwh":0.054166667,"allocated_it_kwh":0.0,"operator_it_kwh":0.054166667,"attribution_coverage":0.729166667,"measured_pue":1.5',
    '"workload":"(reserved capacity)","it_energy_kwh":0.024662667',
    '"modelled_it_energy_kwh":0.029504,"modelled_share":1.0',
    '"totals":{"it_energy_kwh":0.2,"attributed_it_energy_kwh":0.175337333,"allocated_it_energy_kwh":0.024662667,"facility_energy_kwh":0.3,',
]
missing = [e for e in expected if e not in result.stdout]
if missing:
    sys.exit(f"the round trip's output lacks {missing}")
print("README round trip: ok")
