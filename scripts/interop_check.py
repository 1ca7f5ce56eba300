"""Reads the demo's streamed and batched tables with the Python deltalake and polars packages and
checks they hold the same rows, each event once, and that every commit's txn is unique per app id.
Prints a closing line `N passed, N failed`."""
import json
import pathlib
import sys

import polars as pl
from deltalake import DeltaTable

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

print(f"interop: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
