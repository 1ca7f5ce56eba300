//! The sink's commit protocol against other writers of the same table: a zombie of the same query
//! (same app id) and a writer of another kind (a table-property change). The sink knows its last
//! commit without re-reading the log, so these are the cases where it must find out it is behind.
//! Read back with the independent reader (the Delta log's JSON and arrow-rs).

use deltalake::arrow::array::{Array as _, AsArray as _};
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use polars::prelude::*;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use tidewater_core::sink::{DeltaSink, WriteKind};
use tidewater_core::{BatchId, SinkOutcome};

fn rows(batch: i64) -> DataFrame {
    df!["batch" => [batch, batch], "n" => [0i64, 1]].unwrap()
}

fn sink(table: &Path, app_id: &str) -> DeltaSink {
    std::fs::create_dir_all(table).unwrap();
    DeltaSink::new(url::Url::from_directory_path(table).unwrap(), app_id, WriteKind::Stream)
}

/// (batch, n) of every live row.
fn live(table: &Path) -> Vec<(String, String)> {
    let mut out: Vec<_> =
        table_tests::read_rows(table).into_iter().map(|r| (r["batch"].clone(), r["n"].clone())).collect();
    out.sort();
    out
}

fn txns(table: &Path, app_id: &str) -> Vec<i64> {
    table_tests::read_log(table).into_iter().flat_map(|c| c.txns).filter(|(a, _)| a == app_id).map(|(_, v)| v).collect()
}

#[tokio::test]
async fn a_zombie_of_the_same_query_never_duplicates_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t");
    let (mut a, mut zombie) = (sink(&table, "q"), sink(&table, "q"));
    assert!(matches!(a.append(BatchId::new(0), rows(0), "0").await.unwrap(), SinkOutcome::Committed { .. }));
    // The other process commits batch 1 behind `a`'s back.
    assert!(matches!(zombie.append(BatchId::new(1), rows(1), "1").await.unwrap(), SinkOutcome::Committed { .. }));
    // `a` still believes the table is where it left it: its commit of batch 1 must find out.
    let again = a.append(BatchId::new(1), rows(1), "1").await.unwrap();
    assert_eq!(again, SinkOutcome::Skipped { recorded: 1 });
    assert!(matches!(a.append(BatchId::new(2), rows(2), "2").await.unwrap(), SinkOutcome::Committed { .. }));
    // And the zombie, now behind `a`, must not write batch 2 again either.
    assert_eq!(zombie.append(BatchId::new(2), rows(2), "2").await.unwrap(), SinkOutcome::Skipped { recorded: 2 });
    assert_eq!(txns(&table, "q"), [0, 1, 2], "each batch once");
    let want: Vec<(String, String)> =
        (0..3).flat_map(|b| [(b.to_string(), "0".to_string()), (b.to_string(), "1".to_string())]).collect();
    assert_eq!(live(&table), want);
}

/// The adds in a checkpoint file, read with arrow-rs.
fn checkpoint_paths(file: &Path) -> BTreeSet<String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap()).unwrap().build().unwrap();
    let mut paths = BTreeSet::new();
    for batch in reader {
        let batch = batch.unwrap();
        let Some(add) = batch.column_by_name("add") else { continue };
        let path = add.as_struct().column_by_name("path").unwrap().as_string::<i32>().clone();
        paths.extend(
            (0..path.len()).filter(|&i| add.is_valid(i) && path.is_valid(i)).map(|i| path.value(i).to_string()),
        );
    }
    paths
}

#[tokio::test]
async fn another_writer_between_batches_is_seen_and_checkpoints_follow_its_properties() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t");
    let mut s = sink(&table, "q");
    s.append(BatchId::new(0), rows(0), "0").await.unwrap();
    // Another writer: a table-property change (version 2), which the sink has not seen.
    let other = deltalake::open_table(url::Url::from_directory_path(&table).unwrap()).await.unwrap();
    let props = HashMap::from([("delta.checkpointInterval".to_string(), "3".to_string())]);
    other.set_tbl_properties().with_properties(props).await.unwrap();

    for batch in 1..8 {
        let committed = s.append(BatchId::new(batch), rows(batch as i64), "b").await.unwrap();
        assert!(matches!(committed, SinkOutcome::Committed { .. }), "batch {batch}: {committed:?}");
    }
    s.settle().await;
    assert_eq!(txns(&table, "q"), (0..8).collect::<Vec<_>>(), "each batch once, none lost to the other commit");
    assert_eq!(live(&table).len(), 16);
    let log = table_tests::read_log(&table);
    assert_eq!(log.len(), 10, "create, batch 0, the property change, batches 1-7");
    assert!(log[2].txns.is_empty() && log[2].adds.is_empty(), "version 2 is the other writer's");

    // Batches 1-7 are versions 3-9; with the interval of 3 seen, checkpoints at 5 and 8 (version + 1
    // a multiple of 3), written in the background. Each holds exactly the files live at its version.
    for version in [5usize, 8] {
        let file = table.join(format!("_delta_log/{version:020}.checkpoint.parquet"));
        assert!(file.exists(), "no checkpoint at version {version}");
        let live_then: BTreeSet<String> =
            log[..=version].iter().flat_map(|c| c.adds.iter().map(|(p, _)| p.clone())).collect();
        assert_eq!(checkpoint_paths(&file), live_then, "checkpoint {version}");
    }
    assert!(!table.join("_delta_log/00000000000000000006.checkpoint.parquet").exists());
}
