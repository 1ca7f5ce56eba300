//! Test support for end-to-end table tests: an independent Delta reader and an event generator.
//!
//! The reader follows the Delta protocol directly: it replays `_delta_log/*.json` (add, remove,
//! txn) and reads the live Parquet files with arrow-rs. It shares no code with Tidewater's sink or
//! sources, so a bug there cannot hide itself here.

// Test support: a table that cannot be read must fail the test loudly, so panics are the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use deltalake::arrow::util::display::array_value_to_string;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub mod events;

/// One row: column name → value as text (`null` for null). Partition values come from the log.
pub type Row = BTreeMap<String, String>;

/// One `_delta_log/<version>.json` entry.
#[derive(Debug, Clone, Default)]
pub struct Commit {
    pub version: u64,
    pub operation: String,
    pub adds: Vec<(String, BTreeMap<String, Option<String>>)>,
    pub removes: Vec<String>,
    /// (appId, version) of each txn action.
    pub txns: Vec<(String, i64)>,
}

/// Every commit of a table, in version order.
pub fn read_log(table: &Path) -> Vec<Commit> {
    let dir = table.join("_delta_log");
    let mut versions: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let p = e.ok()?.path();
            let v = p.file_name()?.to_str()?.strip_suffix(".json")?.parse().ok()?;
            Some((v, p))
        })
        .collect();
    versions.sort();
    versions
        .into_iter()
        .map(|(version, path)| {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut commit = Commit { version, ..Commit::default() };
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let action: Value = serde_json::from_str(line).unwrap();
                if let Some(add) = action.get("add") {
                    let parts = add["partitionValues"]
                        .as_object()
                        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned))).collect())
                        .unwrap_or_default();
                    commit.adds.push((add["path"].as_str().unwrap().to_string(), parts));
                } else if let Some(remove) = action.get("remove") {
                    commit.removes.push(remove["path"].as_str().unwrap().to_string());
                } else if let Some(txn) = action.get("txn") {
                    commit.txns.push((txn["appId"].as_str().unwrap().to_string(), txn["version"].as_i64().unwrap()));
                } else if let Some(info) = action.get("commitInfo") {
                    commit.operation = info["operation"].as_str().unwrap_or_default().to_string();
                }
            }
            commit
        })
        .collect()
}

fn decode(path: &str) -> String {
    // Delta paths are URIs: percent-encoded once more than the file's name on disk.
    percent_encoding::percent_decode_str(path).decode_utf8_lossy().into_owned()
}

/// The rows of one data file, with its partition values.
pub fn read_file(table: &Path, path: &str, partitions: &BTreeMap<String, Option<String>>) -> Vec<Row> {
    let full = table.join(decode(path));
    let file = std::fs::File::open(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        for i in 0..batch.num_rows() {
            let mut row = Row::new();
            for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                let value =
                    if column.is_null(i) { "null".to_string() } else { array_value_to_string(column, i).unwrap() };
                row.insert(field.name().clone(), value);
            }
            for (k, v) in partitions {
                row.insert(k.clone(), v.clone().unwrap_or_else(|| "null".into()));
            }
            rows.push(row);
        }
    }
    rows
}

/// The live rows of a table at its latest version.
pub fn read_rows(table: &Path) -> Vec<Row> {
    let mut live: BTreeMap<String, BTreeMap<String, Option<String>>> = BTreeMap::new();
    for commit in read_log(table) {
        for path in &commit.removes {
            live.remove(path);
        }
        for (path, parts) in commit.adds {
            live.insert(path, parts);
        }
    }
    live.iter().flat_map(|(path, parts)| read_file(table, path, parts)).collect()
}

/// The rows added by the commit(s) carrying txn `(app_id, version)`.
pub fn rows_of_txn(table: &Path, app_id: &str, version: i64) -> Vec<Row> {
    read_log(table)
        .into_iter()
        .filter(|c| c.txns.iter().any(|(a, v)| a == app_id && *v == version))
        .flat_map(|c| c.adds.into_iter().flat_map(|(p, parts)| read_file(table, &p, &parts)).collect::<Vec<_>>())
        .collect()
}

/// Parquet files in the table directory that no commit ever added (left by a crash).
pub fn orphan_files(table: &Path) -> Vec<String> {
    let added: BTreeSet<String> =
        read_log(table).into_iter().flat_map(|c| c.adds.into_iter().map(|(p, _)| decode(&p))).collect();
    let mut found = Vec::new();
    let mut stack = vec![table.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "_delta_log") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|e| e == "parquet") {
                let rel = p.strip_prefix(table).unwrap().to_string_lossy().to_string();
                if !added.contains(&rel) {
                    found.push(rel);
                }
            }
        }
    }
    found.sort();
    found
}

/// Asserts that no (appId, version) pair appears in two commits.
pub fn assert_txn_unique(table: &Path) {
    let mut seen = BTreeMap::new();
    for commit in read_log(table) {
        for txn in &commit.txns {
            if let Some(first) = seen.insert(txn.clone(), commit.version) {
                panic!("{}: txn {txn:?} in versions {first} and {}", table.display(), commit.version);
            }
        }
    }
}

/// A multiset of rows, for order-independent comparison.
pub fn multiset(rows: &[Row]) -> BTreeMap<Row, usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r.clone()).or_insert(0) += 1;
    }
    m
}

/// Each column's Delta type as the table's latest `metaData.schemaString` records it (a type
/// name such as `"long"`, or the JSON of a nested type).
pub fn read_schema(table: &Path) -> BTreeMap<String, Value> {
    let dir = table.join("_delta_log");
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    entries.retain(|p| p.extension().is_some_and(|e| e == "json"));
    entries.sort();
    let mut schema = None;
    for path in entries {
        for line in std::fs::read_to_string(&path).unwrap().lines().filter(|l| !l.trim().is_empty()) {
            let action: Value = serde_json::from_str(line).unwrap();
            if let Some(text) = action.get("metaData").and_then(|m| m["schemaString"].as_str()) {
                schema = Some(serde_json::from_str::<Value>(text).unwrap());
            }
        }
    }
    let schema = schema.unwrap_or_else(|| panic!("{}: no metaData action", table.display()));
    schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap().to_string(), f["type"].clone()))
        .collect()
}

/// The table's configuration (table properties) as its latest `metaData` records them.
pub fn read_properties(table: &Path) -> BTreeMap<String, String> {
    let dir = table.join("_delta_log");
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    entries.retain(|p| p.extension().is_some_and(|e| e == "json"));
    entries.sort();
    let mut properties = BTreeMap::new();
    for path in entries {
        for line in std::fs::read_to_string(&path).unwrap().lines().filter(|l| !l.trim().is_empty()) {
            let action: Value = serde_json::from_str(line).unwrap();
            if let Some(config) = action.get("metaData").and_then(|m| m["configuration"].as_object()) {
                properties =
                    config.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect();
            }
        }
    }
    properties
}
