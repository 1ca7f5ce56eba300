"""Whole-process baseline for `tidewater run JOB --trigger once`: the same job by hand in Python.

Reads every NDJSON file of a landing directory with polars (timestamps as text, parsed in the
plan), applies the example job's filter and date column, and appends one Delta commit with
deltalake's write_deltalake, partitioned by date. No checkpoint, no quarantine, no txn.

usage: python bench_python_baseline.py LANDING_DIR TABLE_DIR
"""
import sys

import polars as pl
from deltalake import write_deltalake

landing, table = sys.argv[1], sys.argv[2]
schema = {"event_id": pl.String, "user_id": pl.Int64, "event_time": pl.String, "category": pl.String, "amount": pl.Float64}
df = (
    pl.scan_ndjson(f"{landing}/*.json", schema=schema)
    .with_columns(pl.col("event_time").str.to_datetime(time_unit="us", time_zone="UTC", strict=False))
    .filter(pl.col("amount") >= 0)
    .with_columns(pl.col("event_time").cast(pl.Date).alias("date"))
    .collect()
)
write_deltalake(table, df.to_arrow(), mode="append", partition_by=["date"])
print(df.height)
