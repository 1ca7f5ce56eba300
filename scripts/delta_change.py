"""Changes a Delta table the way another engine would, for the Delta streaming source's tests.

    delta_change.py optimize TABLE            compact its files (a commit with dataChange = false)
    delta_change.py delete TABLE PREDICATE    delete the rows PREDICATE selects (a DELETE commit)
    delta_change.py checkpoint TABLE          write a checkpoint at the latest version

Prints the new table version. Uses the `deltalake` package scripts/test.sh installs.
"""
import sys

from deltalake import DeltaTable


def main() -> None:
    op, table = sys.argv[1], sys.argv[2]
    dt = DeltaTable(table)
    if op == "optimize":
        dt.optimize.compact()
    elif op == "delete":
        dt.delete(sys.argv[3])
    elif op == "checkpoint":
        dt.create_checkpoint()
    else:
        sys.exit(f"unknown operation {op!r}; expected optimize, delete or checkpoint")
    print(DeltaTable(table).version())


if __name__ == "__main__":
    main()
