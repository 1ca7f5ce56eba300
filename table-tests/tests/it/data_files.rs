//! The sink's data files as other Delta readers meet them: one file per partition, the partition
//! values and paths Delta writes (nulls, characters a path must escape), the statistics readers
//! skip files by, and the refusal of a batch that does not fit the table. Read back with the
//! independent readers: the Delta log's JSON, and Python deltalake.

use polars::prelude::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use tidewater_core::sink::{DeltaSink, WriteKind};
use tidewater_core::{BatchId, Error, SinkOutcome};

/// 2023-11-14T22:13:20Z in microseconds.
const T0: i64 = 1_700_000_000_000_000;

fn frame() -> DataFrame {
    let utc = DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
    let (long, longer) = ("x".repeat(40), "y".repeat(100));
    df![
        "p" => [Some("a b"), Some("x/y"), None, Some("a b")],
        "i" => [3i64, -1, 7, 5],
        "f" => [1.5f64, f64::NAN, 2.0, -0.5],
        "ts" => [T0 + 123_456, T0, T0 + 1_000, T0 + 250],
        "d" => [19_800i32, 19_801, 19_802, 19_799],
        "s" => [Some("b"), Some("q"), None, Some("a")],
        "long" => [long.as_str(), "short", "short", longer.as_str()],
        "b" => [true, false, false, true],
    ]
    .unwrap()
    .lazy()
    .with_columns([col("ts").cast(utc), col("d").cast(DataType::Date)])
    .collect()
    .unwrap()
}

/// Every `add` action in the table's log.
fn adds(table: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(table.join("_delta_log")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "json") {
            for line in std::fs::read_to_string(entry.path()).unwrap().lines().filter(|l| !l.trim().is_empty()) {
                let action: Value = serde_json::from_str(line).unwrap();
                if let Some(add) = action.get("add") {
                    out.push(add.clone());
                }
            }
        }
    }
    out
}

/// The Python that has `deltalake` (scripts/test.sh installs it and sets `TIDEWATER_PYTHON`).
fn python() -> String {
    std::env::var("TIDEWATER_PYTHON")
        .unwrap_or_else(|_| format!("{}/.cache/tidewater/venv/bin/python", std::env::var("HOME").unwrap_or_default()))
}

fn sink(table: &Path) -> DeltaSink {
    DeltaSink::new(url::Url::from_directory_path(table).unwrap(), "files", WriteKind::Batch)
        .with_partition_by(vec!["p".into()])
}

#[tokio::test(flavor = "multi_thread")]
async fn each_partition_is_one_file_with_delta_partition_values_and_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t");
    let committed = sink(&table).append(BatchId::new(0), frame(), "files").await.unwrap();
    assert!(matches!(committed, SinkOutcome::Committed { rows: 4, files: 3, .. }), "{committed:?}");

    let adds = adds(&table);
    let by_value = |v: Option<&str>| {
        adds.iter()
            .find(|a| a["partitionValues"]["p"].as_str() == v)
            .unwrap_or_else(|| panic!("no file for p = {v:?} in {adds:?}"))
    };
    let null = by_value(None);
    assert!(null["path"].as_str().unwrap().starts_with("p=__HIVE_DEFAULT_PARTITION__/"), "{null}");
    // Hive escapes the directory name (`x%2Fy`, `a%20b`) and the log holds it as a URI, so its
    // `%` is escaped once more: as delta-rs and Spark write it.
    let slash = by_value(Some("x/y"))["path"].as_str().unwrap().to_string();
    assert!(slash.starts_with("p=x%252Fy/"), "a slash is escaped: {slash}");
    assert!(table.join("p=x%2Fy").is_dir(), "the directory of x/y");
    let space = by_value(Some("a b"))["path"].as_str().unwrap().to_string();
    assert!(space.starts_with("p=a%2520b/"), "a space is escaped: {space}");
    let stats: Value = serde_json::from_str(by_value(Some("a b"))["stats"].as_str().unwrap()).unwrap();
    assert_eq!(stats["numRecords"], 2);
    assert_eq!((&stats["minValues"]["i"], &stats["maxValues"]["i"]), (&Value::from(3), &Value::from(5)));
    assert_eq!((&stats["minValues"]["f"], &stats["maxValues"]["f"]), (&Value::from(-0.5), &Value::from(1.5)));
    // Milliseconds, as the protocol wants: the min down, the max up, so the bounds hold every value.
    assert_eq!(stats["minValues"]["ts"], "2023-11-14T22:13:20.000Z");
    assert_eq!(stats["maxValues"]["ts"], "2023-11-14T22:13:20.124Z");
    assert_eq!(
        (&stats["minValues"]["d"], &stats["maxValues"]["d"]),
        (&Value::from("2024-03-17"), &Value::from("2024-03-18"))
    );
    assert_eq!((&stats["minValues"]["s"], &stats["maxValues"]["s"]), (&Value::from("a"), &Value::from("b")));
    // Long strings are bounded as Polars' writer bounds them: a prefix below, a bumped prefix above.
    let (lo, hi) = (stats["minValues"]["long"].as_str().unwrap(), stats["maxValues"]["long"].as_str().unwrap());
    assert_eq!(lo, "x".repeat(40));
    assert!(hi >= "y".repeat(100).as_str() && hi.len() < 100, "a bound above every value, shorter: {hi}");
    assert_eq!((&stats["minValues"]["b"], &stats["maxValues"]["b"]), (&Value::from(true), &Value::from(true)));
    assert!(stats["minValues"].get("p").is_none(), "partition columns live in the log, not the file: {stats}");
    assert_eq!(stats["nullCount"]["long"], 0);

    let nan: Value = serde_json::from_str(by_value(Some("x/y"))["stats"].as_str().unwrap()).unwrap();
    assert!(nan["minValues"].get("f").is_none(), "no bounds for a float column holding NaN: {nan}");
    let nulls: Value = serde_json::from_str(null["stats"].as_str().unwrap()).unwrap();
    assert_eq!((&nulls["nullCount"]["s"], &nulls["nullCount"]["i"]), (&Value::from(1), &Value::from(0)));
    assert!(nulls["minValues"].get("s").is_none(), "an all-null column has no bounds: {nulls}");

    // Python deltalake finds every file by its path and reads the partition values back.
    // os._exit once printed: pyarrow's reader threads sometimes abort the interpreter's teardown
    // (apache/arrow#34314, delta-rs#2184).
    let script = "import os, sys, deltalake\n\
        t = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table().sort_by([('i', 'ascending')])\n\
        print([(r['p'], r['i'], r['s']) for r in t.to_pylist()], flush=True)\n\
        os._exit(0)";
    let out = Command::new(python()).args(["-c", script]).arg(&table).output().expect("run the Python reader");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "[('x/y', -1, 'q'), ('a b', 3, 'b'), ('a b', 5, 'a'), (None, 7, None)]"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_that_does_not_fit_the_table_is_refused_naming_the_columns() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t");
    let mut sink = sink(&table);
    sink.append(BatchId::new(0), frame(), "files").await.unwrap();
    let files = adds(&table).len();
    for (batch, change, names) in [
        (frame().drop("s").unwrap(), "a missing column", vec!["`s`"]),
        (frame().lazy().with_column(lit(1i64).alias("extra")).collect().unwrap(), "an extra column", vec!["`extra`"]),
        (
            frame().lazy().with_column(col("i").cast(DataType::String)).collect().unwrap(),
            "a column of another type",
            vec!["`i`"],
        ),
    ] {
        let e = sink.append(BatchId::new(1), batch, "files").await.unwrap_err();
        assert!(matches!(e, Error::SchemaMismatch { .. }), "{change}: {e}");
        let text = e.to_string();
        assert!(names.iter().all(|n| text.contains(n)), "{change}: {text}");
    }
    assert_eq!(adds(&table).len(), files, "a refused batch writes nothing");
    // Columns in another order, and types Delta maps (u32 into the table's long), fit.
    let reordered = frame()
        .lazy()
        .select([
            col("s"),
            col("i").abs().cast(DataType::UInt32),
            col("p"),
            col("f"),
            col("ts"),
            col("d"),
            col("long"),
            col("b"),
        ])
        .collect()
        .unwrap();
    let committed = sink.append(BatchId::new(1), reordered, "files").await.unwrap();
    assert!(matches!(committed, SinkOutcome::Committed { rows: 4, .. }), "{committed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partition_larger_than_the_target_file_size_is_written_as_several_files() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t");
    let mut sink = sink(&table);
    sink.append(BatchId::new(0), frame(), "files").await.unwrap();
    // Another engine sets the table's target file size (Python deltalake, as Spark would).
    let script = "import os, sys, deltalake\n\
        deltalake.DeltaTable(sys.argv[1]).alter.set_table_properties({'delta.targetFileSize': '20000'}, raise_if_not_exists=False)\n\
        os._exit(0)";
    let out = Command::new(python()).args(["-c", script]).arg(&table).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let n = 10_000i64;
    let rows = df!["p" => vec!["one"; n as usize], "i" => (0..n).collect::<Vec<_>>()].unwrap();
    let rows = rows
        .lazy()
        .with_columns([
            lit(1.0f64).alias("f"),
            lit(T0).cast(DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))).alias("ts"),
            lit(19_800i32).cast(DataType::Date).alias("d"),
            lit("s").alias("s"),
            lit("l").alias("long"),
            lit(true).alias("b"),
        ])
        .collect()
        .unwrap();
    let mut sink = self::sink(&table);
    sink.append(BatchId::new(1), rows, "files").await.unwrap();
    let files: Vec<Value> = adds(&table).into_iter().filter(|a| a["partitionValues"]["p"] == "one").collect();
    assert!(files.len() > 1, "several files for 10,000 rows over a 20 kB target: {}", files.len());
    let counted: i64 = files
        .iter()
        .map(|a| serde_json::from_str::<Value>(a["stats"].as_str().unwrap()).unwrap()["numRecords"].as_i64().unwrap())
        .sum();
    assert_eq!(counted, n, "the files' row counts add up");
    let read: std::collections::BTreeSet<String> =
        table_tests::read_rows(&table).into_iter().filter(|r| r["p"] == "one").map(|r| r["i"].clone()).collect();
    assert_eq!(read.len() as i64, n, "every row once, read back by arrow-rs");
}
