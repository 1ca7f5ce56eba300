//! Bronze → silver: a Delta table streamed into another. Bronze is written by a real `tidewater`
//! process (a landing directory streamed into it) and changed by another engine (Python
//! `deltalake`: OPTIMIZE, DELETE); silver is read back by the independent reader and checked by
//! `tidewater verify`.

use crate::common::*;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use table_tests::{events, multiset, read_log, read_rows, rows_of_txn};

/// The silver job of issue 15 over `bronze`, with `extra` source keys.
fn silver_job(dir: &Path, bronze: &Path, name: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"name = "silver"
checkpoint = "{dir}/{name}-checkpoint"

[source]
kind = "delta"
table = "{bronze}"
max_files_per_trigger = 2
{extra}

[transform]
sql = "SELECT event_id, user_id, category, amount * 2 AS amount2, date FROM input WHERE amount >= 0"

[sink]
table = "{dir}/{name}"
mode = "append"
partition_by = ["date"]
key = ["event_id"]

[trigger]
interval = "0s"
"#,
        dir = dir.display(),
        bronze = bronze.display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Another engine changes bronze: `optimize`, or `delete PREDICATE`. Returns the new version.
fn change_bronze(bronze: &Path, args: &[&str]) -> u64 {
    let out = delta_change().arg(args[0]).arg(bronze).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Bronze: `files` landing files streamed into `<dir>/table` by a `tidewater` process.
fn bronze(dir: &Path, files: usize, seed: u64) -> (PathBuf, PathBuf, Vec<events::Line>) {
    let landing = dir.join("landing");
    let lines = events::write(&landing, "b", files, 60, Some(19), seed);
    let job = events::job(dir, &landing, 1);
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
    (job, dir.join("table"), lines)
}

fn silver_app(table: &Path) -> String {
    read_log(table).iter().flat_map(|c| c.txns.clone()).next().unwrap().0
}

#[test]
fn silver_streamed_from_bronze_is_exactly_once_at_each_crash_point() {
    let reference = tempfile::tempdir().unwrap();
    let (_, bronze, lines) = bronze(reference.path(), 4, 41);
    let clean = silver_job(reference.path(), &bronze, "silver", "");
    let out = expect_exit(tidewater(&["run", path(&clean), "--trigger", "available-now", "--json"]), 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let clean_table = reference.path().join("silver");
    assert_exactly_once(&clean_table, &lines);
    // 4 bronze commits of about 5 date partitions each, read 2 files per batch.
    let batches = report["batches"].as_array().unwrap().len();
    assert!(batches >= 8, "max_files_per_trigger = 2 splits bronze's commits: {batches} batches");

    for point in ["after-offset-log", "after-data-files", "after-delta-commit", "after-commit-log"] {
        let dir = tempfile::tempdir().unwrap();
        let job = silver_job(dir.path(), &bronze, "silver", "");
        let table = dir.path().join("silver");
        expect_killed(tidewater(&["run", path(&job), "--trigger", "available-now"]), &format!("{point}:3"));
        expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
        assert_exactly_once(&table, &lines);
        for batch in 0..batches as i64 {
            assert!(
                multiset(&rows_of_txn(&table, &silver_app(&table), batch))
                    == multiset(&rows_of_txn(&clean_table, &silver_app(&clean_table), batch)),
                "{point}: batch {batch} differs from the clean run"
            );
        }
    }
}

#[test]
fn silver_keeps_up_with_a_live_bronze_through_kills_and_verifies_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (bronze_job, bronze, mut lines) = bronze(dir.path(), 2, 7);
    let landing = dir.path().join("landing");
    // Bronze keeps appending in its own process while silver is killed and restarted.
    let mut writer = tidewater(&["run", path(&bronze_job), "--interval", "0s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let job = silver_job(dir.path(), &bronze, "silver", "");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(15);
    for round in 0..10 {
        lines.extend(events::write(&landing, &format!("l{round}"), 1, 60, Some(19), 100 + round));
        let mut child = tidewater(&["run", path(&job)]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        // The kill moment is the random variable here, not a synchronisation.
        std::thread::sleep(Duration::from_millis(rng.random_range(100..900)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    writer.kill().unwrap();
    writer.wait().unwrap();
    expect_exit(tidewater(&["run", path(&bronze_job), "--trigger", "available-now"]), 0);
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
    let table = dir.path().join("silver");
    assert_exactly_once(&table, &lines);
    let out = expect_exit(tidewater(&["verify", path(&job)]), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("IDENTICAL"), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn compaction_duplicates_nothing_and_a_delete_stops_the_stream_unless_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (bronze_job, bronze, mut lines) = bronze(dir.path(), 3, 23);
    let landing = dir.path().join("landing");
    let job = silver_job(dir.path(), &bronze, "silver", "");
    let table = dir.path().join("silver");
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);

    // OPTIMIZE rewrites every row of bronze into new files (dataChange = false): nothing new.
    let compacted = change_bronze(&bronze, &["optimize"]);
    assert_eq!(read_log(&bronze).last().unwrap().operation, "OPTIMIZE");
    lines.extend(events::write(&landing, "after-optimize", 2, 60, Some(19), 5));
    expect_exit(tidewater(&["run", path(&bronze_job), "--trigger", "available-now"]), 0);
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
    assert_exactly_once(&table, &lines);

    // Deleting a whole partition stops the stream, naming the version and the options, and
    // writes nothing; `ignore_deletes` skips it.
    let dropped = change_bronze(&bronze, &["delete", "date = '2024-03-05'"]);
    assert!(dropped > compacted);
    let stopped = |job: &Path, version: u64, options: &[&str]| {
        let versions = read_log(&table).len();
        let out = expect_exit(tidewater(&["run", path(job), "--trigger", "available-now"]), 2);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("version {version} (DELETE) removes")), "{stderr}");
        for option in options {
            assert!(stderr.contains(&format!("{option} = true")), "{option} in: {stderr}");
        }
        assert_eq!(read_log(&table).len(), versions, "the stopped stream wrote nothing");
    };
    stopped(&job, dropped, &["skip_change_commits", "ignore_deletes"]);
    let job = silver_job(dir.path(), &bronze, "silver", "ignore_deletes = true");
    lines.extend(events::write(&landing, "after-drop", 1, 60, Some(19), 6));
    expect_exit(tidewater(&["run", path(&bronze_job), "--trigger", "available-now"]), 0);
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
    assert_exactly_once(&table, &lines);

    // A DELETE that rewrites files (rows of many partitions) is more than a delete of files:
    // `ignore_deletes` does not let it pass, `skip_change_commits` does. Silver keeps the rows it
    // streamed before, and goes on with bronze's later appends.
    let deleted = change_bronze(&bronze, &["delete", "category = 'c1'"]);
    stopped(&job, deleted, &["skip_change_commits"]);
    let job = silver_job(dir.path(), &bronze, "silver", "skip_change_commits = true");
    lines.extend(events::write(&landing, "after-delete", 2, 60, Some(19), 7));
    expect_exit(tidewater(&["run", path(&bronze_job), "--trigger", "available-now"]), 0);
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
    assert_exactly_once(&table, &lines);
    assert!(
        ids(&read_rows(&bronze)).len() < ids(&read_rows(&table)).len(),
        "bronze lost the deleted rows, silver kept them"
    );
}

#[test]
fn starting_version_latest_reads_only_new_commits_and_a_number_reads_from_that_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (bronze_job, bronze, _) = bronze(dir.path(), 3, 3);
    let landing = dir.path().join("landing");
    let latest = silver_job(dir.path(), &bronze, "latest", "starting_version = \"latest\"");
    expect_exit(tidewater(&["run", path(&latest), "--trigger", "available-now"]), 0);
    let new = events::write(&landing, "new", 1, 60, Some(19), 9);
    expect_exit(tidewater(&["run", path(&bronze_job), "--trigger", "available-now"]), 0);
    expect_exit(tidewater(&["run", path(&latest), "--trigger", "available-now"]), 0);
    assert_exactly_once(&dir.path().join("latest"), &new);

    // Version 2 is bronze's second micro-batch (version 0 created the table): from there on.
    let from_two = silver_job(dir.path(), &bronze, "from-two", "starting_version = 2");
    expect_exit(tidewater(&["run", path(&from_two), "--trigger", "available-now"]), 0);
    let log = read_log(&bronze);
    let want: Vec<String> = log[2..]
        .iter()
        .filter(|c| !c.txns.is_empty())
        .flat_map(|c| rows_of_txn(&bronze, &c.txns[0].0, c.txns[0].1))
        .map(|r| r["event_id"].clone())
        .collect();
    let mut want = want;
    want.sort();
    assert_eq!(ids(&read_rows(&dir.path().join("from-two"))), want);

    let beyond = silver_job(dir.path(), &bronze, "beyond", "starting_version = 99");
    let out = expect_exit(tidewater(&["run", path(&beyond), "--trigger", "available-now"]), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("starting_version = 99") && stderr.contains("latest version is"), "{stderr}");
}

#[test]
fn a_cleaned_up_commit_or_a_vacuumed_file_is_a_data_loss_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bronze, _) = bronze(dir.path(), 3, 31);
    // Log retention: a checkpoint at the latest version, and the JSON of version 1 removed, as
    // log cleanup does. A stream that needs version 1 stops; nothing is skipped.
    change_bronze(&bronze, &["checkpoint"]);
    std::fs::remove_file(bronze.join("_delta_log/00000000000000000001.json")).unwrap();
    let job = silver_job(dir.path(), &bronze, "from-one", "starting_version = 1");
    let out = expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("data loss") && stderr.contains("log entry of version 1 was removed"), "{stderr}");
    assert!(!dir.path().join("from-one/_delta_log").exists(), "nothing was written");

    // VACUUM: a data file the snapshot lists is gone.
    let (_, first) = read_log(&bronze).into_iter().find(|c| !c.adds.is_empty()).map(|c| (c.version, c.adds)).unwrap();
    std::fs::remove_file(bronze.join(first[0].0.replace("%3A", ":"))).unwrap();
    let job = silver_job(dir.path(), &bronze, "snapshot", "");
    let out = expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("data loss") && stderr.contains(&first[0].0), "{stderr}");
}
