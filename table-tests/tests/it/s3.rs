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
