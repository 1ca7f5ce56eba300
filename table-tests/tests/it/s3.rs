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

/// The events job of `landing` with its table, quarantine and checkpoint under `root` on S3.
fn events_job_on_s3(dir: &std::path::Path, landing: &std::path::Path, root: &str) -> std::path::PathBuf {
    let job = events::job(dir, landing, 1);
    let local = dir.display().to_string();
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace(&format!("\"{local}/checkpoint\""), &format!("\"{root}/checkpoint\""))
        .replace(&format!("\"{local}/table\""), &format!("\"{root}/table\""))
        .replace(&format!("\"{local}/quarantine\""), &format!("\"{root}/quarantine\""));
    assert!(text.contains("s3://") && !text.contains(&format!("{local}/table")), "{text}");
    std::fs::write(&job, text).unwrap();
    job
}

/// A backfill on S3 shared by two worker processes, as the pods of a Kubernetes Indexed Job run
/// it (docs/operations.md): one is killed after its first chunk's commit and restarted; every
/// chunk is committed once, and silver equals a local batch recomputation of bronze.
#[test]
fn backfill_workers_share_one_plan_on_s3_like_the_pods_of_an_indexed_job() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let lines = events::write(&landing, "s3b", 4, 100, None, 21);
    let root = format!("s3://{}/{}", bucket(), uuid::Uuid::new_v4());
    let bronze_job = events_job_on_s3(dir.path(), &landing, &root);
    expect_exit(tidewater(&["run", path(&bronze_job), "--trigger", "available-now"]), 0);
    let silver = dir.path().join("silver.toml");
    std::fs::write(
        &silver,
        format!(
            r#"name = "silver"
checkpoint = "{root}/silver-checkpoint"

[source]
kind = "delta"
table = "{root}/table"

[transform]
sql = "SELECT event_id, user_id, category, amount * 2 AS amount2, date FROM input"

[sink]
table = "{root}/silver"
partition_by = ["date"]
key = ["event_id"]
"#
        ),
    )
    .unwrap();
    let out = expect_exit(
        tidewater(&["backfill", "plan", path(&silver), "--from", "2024-03-01", "--to", "2024-03-05", "--json"]),
        0,
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = plan["id"].as_str().unwrap().to_string();
    assert_eq!(plan["chunks"].as_array().unwrap().len(), 5, "{plan:#}");
    let worker = |i: usize| tidewater(&["backfill", "run", path(&silver), "--id", &id, "--worker", &format!("{i}/2")]);
    let mut zero = worker(0).stdout(std::process::Stdio::null()).spawn().unwrap();
    // Worker 1's share is chunks 1 and 3; chunk k commits as batch k.
    expect_killed(worker(1), "after-delta-commit:1");
    assert!(zero.wait().unwrap().success(), "worker 0 finishes its share");
    expect_exit(worker(1), 0);
    let status: Value =
        serde_json::from_slice(&expect_exit(tidewater(&["backfill", "status", path(&silver), "--json"]), 0).stdout)
            .unwrap();
    assert!(status.as_array().unwrap().iter().all(|c| c["state"] == "done"), "{status:#}");

    let local = dir.path().join("recomputed");
    expect_exit(tidewater(&["batch", path(&silver), "--into", path(&local)]), 0);
    let silver_table = format!("{root}/silver");
    let report: Value = serde_json::from_slice(
        &expect_exit(tidewater(&["reconcile", &silver_table, path(&local), "--key", "event_id", "--json"]), 0).stdout,
    )
    .unwrap();
    assert_eq!(report["left_rows"].as_u64().unwrap(), expected_ids(&lines).len() as u64, "{report:#}");
}

#[test]
fn a_stream_on_s3_survives_a_kill_and_matches_a_local_batch_run() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let lines = events::write(&landing, "s3", 4, 120, Some(11), 5);
    let root = format!("s3://{}/{}", bucket(), uuid::Uuid::new_v4());
    let job = events_job_on_s3(dir.path(), &landing, &root);

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
    use tidewater_core::{BatchId, SinkOutcome};

    let raw = format!("s3://{}/{}/t", bucket(), uuid::Uuid::new_v4());
    let url = tidewater_core::location::table_url(&raw).unwrap();
    let rows = |b: i64| polars::df!["batch" => [b, b], "n" => [0i64, 1]].unwrap();
    let mut sink = DeltaSink::new(url.clone(), "q", WriteKind::Stream);
    sink.append(BatchId::new(0), rows(0), "0").await.unwrap();
    let table = deltalake::open_table(url.clone()).await.unwrap();
    let props = std::collections::HashMap::from([("delta.checkpointInterval".to_string(), "2".to_string())]);
    table.set_tbl_properties().with_properties(props).await.unwrap();
    for batch in 1..8 {
        let committed = sink.append(BatchId::new(batch), rows(batch as i64), "b").await.unwrap();
        assert!(matches!(committed, SinkOutcome::Committed { .. }), "batch {batch}: {committed:?}");
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
