"""Changes a Delta table the way another engine would, for the Delta streaming source's tests.

    delta_change.py optimize TABLE            compact its files (a commit with dataChange = false)
    delta_change.py delete TABLE PREDICATE    delete the rows PREDICATE selects (a DELETE commit)
    delta_change.py checkpoint TABLE          write a checkpoint at the latest version
    delta_change.py overwrite TABLE JSON      replace its rows (creating it) with JSON's, a list of objects

Prints the new table version. Uses the `deltalake` package scripts/test.sh installs.
"""
import json
import os
import sys

from deltalake import DeltaTable


def main() -> None:
    op, table = sys.argv[1], sys.argv[2]
    if op == "overwrite":
        import pyarrow as pa
        from deltalake import write_deltalake

        write_deltalake(table, pa.Table.from_pylist(json.loads(sys.argv[3])), mode="overwrite")
        print(DeltaTable(table).version(), flush=True)
        # pyarrow's threads sometimes abort the interpreter's teardown (apache/arrow#34314).
        os._exit(0)
    dt = DeltaTable(table)
    if op == "optimize":
        dt.optimize.compact()
    elif op == "delete":
        dt.delete(sys.argv[3])
    elif op == "checkpoint":
        dt.create_checkpoint()
    else:
        sys.exit(f"unknown operation {op!r}; expected optimize, delete, checkpoint or overwrite")
    print(DeltaTable(table).version())


if __name__ == "__main__":
    main()
