"""DuckDB on the accounting benchmark's Parquet files: the same plain join and group-by as the
polars baseline (energy joined to the covering 30-minute interval, PUE applied, per customer,
workload and hour). Prints the best of three and the process's peak RSS."""
import resource
import sys
import time

import duckdb

directory = sys.argv[1]
query = f"""
SELECT r.customer, r.workload, (epoch_us(r.start) // 3600000000) AS hour,
       sum(r.energy_j / 3.6e6 * s.pue) AS facility_kwh,
       sum(r.energy_j / 3.6e6 * s.pue * i.gco2e_per_kwh) AS location_gco2e
FROM read_parquet('{directory}/readings.parquet') r
JOIN read_parquet('{directory}/sites.parquet') s ON r.site = s.site
JOIN read_parquet('{directory}/intensity.parquet') i
  ON i.zone = s.zone AND i.start_us = epoch_us(r.start) - epoch_us(r.start) % 1800000000
GROUP BY ALL
"""
connection = duckdb.connect()
connection.execute("SET threads TO 2")
best = float("inf")
for _ in range(3):
    started = time.perf_counter()
    rows = len(connection.execute(query).fetchall())
    best = min(best, time.perf_counter() - started)
print(f"DuckDB {duckdb.__version__} plain query: {best:.3f} s, {rows} rows, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
print(f"duckdb_seconds={best}")
