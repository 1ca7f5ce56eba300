//! Tables and checkpoints on an S3-compatible object store (a real server, moto, started by
//! scripts/test.sh, which exports `TIDEWATER_TEST_S3_BUCKET` and the standard `AWS_*` settings).
//! A stream is killed mid-protocol and restarted against S3; the reconciler then compares the S3
//! table with a local batch recomputation, whole and in bounded memory.

use crate::common::*;
use serde_json::Value;
use table_tests::events;

fn bucket() -> String {
    std::env::var("TIDEWATER_TEST_S3_BUCKET").unwrap_or_else(|_| {
        panic!("TIDEWATER_TEST_S3_BUCKET is not set: run the tests with scripts/test.sh, which starts the S3 server")
    })
}

#[test]
fn a_stream_on_s3_survives_a_kill_and_matches_a_local_batch_run() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let lines = events::write(&landing, "s3", 4, 120, Some(11), 5);
    let root = format!("s3://{}/{}", bucket(), uuid::Uuid::new_v4());
    let job = events::job(dir.path(), &landing, 1);
    let local = dir.path().display().to_string();
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace(&format!("\"{local}/checkpoint\""), &format!("\"{root}/checkpoint\""))
        .replace(&format!("\"{local}/table\""), &format!("\"{root}/table\""))
        .replace(&format!("\"{local}/quarantine\""), &format!("\"{root}/quarantine\""));
    assert!(text.contains("s3://") && !text.contains(&format!("{local}/table")), "{text}");
    std::fs::write(&job, text).unwrap();

    expect_killed(tidewater(&["run", path(&job), "--trigger", "available-now"]), "after-delta-commit:1");
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
    // A third run finds nothing new: nothing is written twice.
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);

    let batch = dir.path().join("batch");
    expect_exit(tidewater(&["batch", path(&job), "--into", path(&batch)]), 0);
    let want = expected_ids(&lines);
    assert_eq!(ids(&table_tests::read_rows(&batch)), want, "the local batch table holds every kept row once");

    let table = format!("{root}/table");
    for extra in [&[][..], &["--memory", "4KiB"][..]] {
        let mut args = vec!["reconcile", table.as_str(), path(&batch), "--key", "event_id", "--json"];
        args.extend_from_slice(extra);
        let report: Value = serde_json::from_slice(&expect_exit(tidewater(&args), 0).stdout).unwrap();
        assert_eq!(report["left_rows"].as_u64().unwrap(), want.len() as u64, "{report:#}");
        assert_eq!(report["right_rows"], report["left_rows"]);
    }
    // The S3 table at its first version lacks what later batches wrote: named, exit 1.
    let first = format!("{table}@1");
    let out = expect_exit(tidewater(&["reconcile", &first, path(&batch), "--key", "event_id", "--json"]), 1);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["counts"]["extra_in_right"].as_u64().unwrap() > 0, "{report:#}");
}

/// Checkpoints on S3 are written in the background with a store of their own: they appear in the
/// log, and the batches after each one still commit through the sink's store.
#[tokio::test]
async fn checkpoints_on_s3_are_written_and_later_batches_still_commit() {
    use futures::TryStreamExt as _;
    use tidewater_core::sink::{DeltaSink, WriteKind};
    use tidewater_core::{BatchId, Sink, SinkCommit};

    let raw = format!("s3://{}/{}/t", bucket(), uuid::Uuid::new_v4());
    let url = tidewater_core::location::table_url(&raw).unwrap();
    let rows = |b: i64| polars::df!["batch" => [b, b], "n" => [0i64, 1]].unwrap();
    let mut sink = DeltaSink::new(url.clone(), "q", WriteKind::Stream);
    sink.add_batch(BatchId::new(0), rows(0), "0").await.unwrap();
    let table = deltalake::open_table(url.clone()).await.unwrap();
    let props = std::collections::HashMap::from([("delta.checkpointInterval".to_string(), "2".to_string())]);
    table.set_tbl_properties().with_properties(props).await.unwrap();
    for batch in 1..8 {
        let committed = sink.add_batch(BatchId::new(batch), rows(batch as i64), "b").await.unwrap();
        assert!(matches!(committed, SinkCommit::Committed { .. }), "batch {batch}: {committed:?}");
    }
    sink.settle().await;

    let (store, prefix) = tidewater_core::location::object_store_at(&url).unwrap();
    let log = prefix.clone().join("_delta_log");
    let names: Vec<String> = store
        .list(Some(&log))
        .map_ok(|m| m.location.filename().unwrap_or_default().to_string())
        .try_collect()
        .await
        .unwrap();
    let checkpoints: Vec<&String> = names.iter().filter(|n| n.ends_with(".checkpoint.parquet")).collect();
    assert!(checkpoints.len() >= 2, "checkpoints every 2 versions: {names:?}");
    assert!(names.iter().any(|n| n == "_last_checkpoint"), "{names:?}");
    let reread = deltalake::open_table(url).await.unwrap();
    assert_eq!(reread.version(), Some(9), "create, batch 0, the property change, batches 1-7");
    let snapshot = reread.snapshot().unwrap();
    let recorded = snapshot.transaction_version(reread.log_store().as_ref(), "q").await.unwrap();
    assert_eq!(recorded, Some(7), "the last batch's txn");
    let rows: i64 = snapshot.snapshot().log_data().iter().map(|f| f.num_records().unwrap_or(0) as i64).sum();
    assert_eq!(rows, 16, "two rows a batch, each batch once");
}
