"""The hand-written pipelines `tidewater bench ingest` measures itself against.

Both read a landing directory's NDJSON files in batches of FILES_PER_BATCH (sorted by name, as
the stream takes them), parse the timestamps, keep `amount >= 0` and add a `date` column: the
job `tidewater bench ingest` runs, with none of its checks (no validation for a quarantine, no
fingerprints, no checkpoint).

  delta    what a careful user writes with polars + deltalake: per batch, read the table's txn
           version for the app id, skip the batch if it is recorded, else append it partitioned
           by date as one commit carrying the txn (app id, batch number);
  parquet  plain Polars: each batch written as Parquet files partitioned by date (hive layout,
           one directory per batch).

usage: python bench_python_baseline.py delta|parquet LANDING_DIR OUT_DIR FILES_PER_BATCH
Prints the number of rows written.
"""
import os
import sys

import polars as pl

mode, landing, out, per_batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
schema = {"event_id": pl.String, "user_id": pl.Int64, "event_time": pl.String, "category": pl.String, "amount": pl.Float64}
files = sorted(os.path.join(landing, f) for f in os.listdir(landing) if not f.startswith((".", "_")))
batches = [files[i : i + per_batch] for i in range(0, len(files), per_batch)]


def frame(paths):
    return (
        pl.scan_ndjson(paths, schema=schema)
        .with_columns(pl.col("event_time").str.to_datetime(time_unit="us", time_zone="UTC", strict=False))
        .filter(pl.col("amount") >= 0)
        .with_columns(pl.col("event_time").cast(pl.Date).alias("date"))
        .collect()
    )


rows = 0
if mode == "delta":
    from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

    app_id = "python-baseline"
    table = DeltaTable(out) if DeltaTable.is_deltatable(out) else None
    for k, paths in enumerate(batches):
        if table is not None:
            table.update_incremental()
            recorded = table.transaction_version(app_id)
            if recorded is not None and recorded >= k:
                continue
        df = frame(paths)
        txn = CommitProperties(app_transactions=[Transaction(app_id=app_id, version=k)])
        write_deltalake(table or out, df.to_arrow(), mode="append", partition_by=["date"], commit_properties=txn)
        table = table or DeltaTable(out)
        rows += df.height
elif mode == "parquet":
    for k, paths in enumerate(batches):
        df = frame(paths)
        df.write_parquet(os.path.join(out, f"batch-{k:05}"), partition_by="date")
        rows += df.height
else:
    sys.exit(f"unknown mode {mode!r}: expected delta or parquet")
print(rows)
