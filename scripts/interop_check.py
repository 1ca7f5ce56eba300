"""Reads the demo's streamed and batched tables with two independent Delta readers, the Python
deltalake package (delta-rs) with polars, and DuckDB's delta extension (delta-kernel-rs), and
checks they hold the same rows, each event once, that the tables record their key, and that every
commit's txn is unique per app id; and that Tidewater refuses a column-mapped table another writer
made, naming the feature. Prints a closing line `N passed, N failed`."""
import glob
import json
import os
import pathlib
import subprocess
import sys

import duckdb
import duckdb_ext

import polars as pl
from deltalake import DeltaTable, write_deltalake

root = pathlib.Path(sys.argv[1])
passed, failed = 0, 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


stream = pl.read_delta(str(root / "tables/events"))
batch = pl.from_arrow(DeltaTable(str(root / "tables/events_batch")).to_pyarrow_table())
cols = sorted(stream.columns)
check("same columns", cols == sorted(batch.columns), f"{stream.columns} vs {batch.columns}")
s = stream.select(cols).sort("event_id")
b = batch.select(cols).sort("event_id")
check("stream and batch hold the same rows", s.equals(b))
check("each event once", s["event_id"].n_unique() == s.height, f"{s.height} rows")
check("amount filter applied", s.filter(pl.col("amount") < 0).height == 0)
check("event_time is a UTC timestamp", str(s.schema["event_time"]).startswith("Datetime(time_unit='us', time_zone='UTC')"), str(s.schema["event_time"]))
q = pl.read_delta(str(root / "tables/events_quarantine"))
check("quarantine has reasons", q.height > 0 and q["reason"].null_count() == 0)

props = DeltaTable(str(root / "tables/events")).metadata().configuration
check("the sink key is recorded as a table property", props.get("tidewater.key") == "event_id", str(props))

# DuckDB's delta_scan: a second reader, built on delta-kernel-rs, sharing no code with delta-rs.
ext = glob.glob(os.path.join(os.path.dirname(duckdb_ext.__path__[0]), "duckdb_ext/extensions/v*/*/delta.duckdb_extension"))
check("the DuckDB delta extension is installed", len(ext) == 1, str(ext))
if len(ext) != 1:
    print(f"interop: {passed} passed, {failed} failed")
    sys.exit(1)
con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
con.execute(f"LOAD '{ext[0]}'")
con.execute("SET TimeZone = 'UTC'")
for table, expected in [("events", s), ("events_batch", b)]:
    d = pl.from_arrow(con.execute(f"SELECT * FROM delta_scan('{root / 'tables' / table}')").arrow()).select(cols).sort("event_id")
    # DuckDB returns TIMESTAMPTZ in its session zone (set to UTC above; some builds name it
    # Etc/UTC): the same instants.
    d = d.with_columns(pl.col(pl.Datetime).dt.convert_time_zone("UTC"))
    check(f"duckdb reads {table}: same rows as delta-rs", d.height == expected.height and d.equals(expected),
          f"{d.height} vs {expected.height} rows; schemas {d.schema} vs {expected.schema}")
per_date = con.execute(f"SELECT CAST(date AS VARCHAR), count(*) FROM delta_scan('{root / 'tables/events'}') GROUP BY 1 ORDER BY 1").fetchall()
want = s.group_by(pl.col("date").cast(pl.Utf8)).len().sort("date").rows()
check("duckdb reads the date partitions", per_date == [tuple(r) for r in want], f"{per_date} vs {want}")
dq = con.execute(f"SELECT count(*) FROM delta_scan('{root / 'tables/events_quarantine'}')").fetchone()[0]
check("duckdb reads the quarantine table", dq == q.height, f"{dq} vs {q.height}")

for table in ["events", "events_batch", "events_quarantine"]:
    seen = set()
    dupes = 0
    for f in sorted((root / "tables" / table / "_delta_log").glob("*.json")):
        for line in f.read_text().splitlines():
            action = json.loads(line)
            if "txn" in action:
                key = (action["txn"]["appId"], action["txn"]["version"])
                dupes += key in seen
                seen.add(key)
    check(f"{table}: txn (appId, version) unique", dupes == 0 and len(seen) > 0, f"{dupes} duplicates, {len(seen)} txns")

# A table another writer made with column mapping (its Parquet files name columns by physical
# name, as Databricks writes them): Tidewater must refuse to read it, naming the table feature,
# not read its columns as nulls.
mapped = root / "column_mapped"
write_deltalake(
    str(mapped),
    pl.DataFrame({"id": [1, 2], "v": ["x", "y"]}).to_arrow(),
    configuration={"delta.columnMapping.mode": "name", "delta.minReaderVersion": "2", "delta.minWriterVersion": "5"},
)
out = subprocess.run(
    [os.environ["TIDEWATER_BIN"], "reconcile", str(mapped), str(mapped), "--key", "id"], capture_output=True, text=True
)
check(
    "a column-mapped table is refused, naming the feature",
    out.returncode == 2 and "column mapping (table feature columnMapping" in out.stderr and "panicked" not in out.stderr,
    f"exit {out.returncode}: {out.stderr}",
)

print(f"interop: {passed} passed, {failed} failed", flush=True)
# os._exit, not sys.exit: pyarrow's reader threads sometimes abort the interpreter's teardown
# ("terminate called without an active exception", apache/arrow#34314, delta-rs#2184), after
# every check has run and printed.
os._exit(1 if failed else 0)
