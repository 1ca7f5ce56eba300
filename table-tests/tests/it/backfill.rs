//! Backfills: a Delta source reprocessed by date range into the job's sink table, chunk by
//! chunk; killed and resumed, in parallel, by several workers. Read back by the independent
//! reader and compared with bronze.

use crate::common::*;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use table_tests::events::SOURCE_SCHEMA;
use table_tests::{Row, assert_txn_unique, events, read_file, read_log, read_rows, rows_of_txn};

/// The job `name` over `bronze` into `<dir>/<name>` (checkpoint `<dir>/<name>-checkpoint`):
/// `factor` is the transform's multiplier; `source_keys` and `trailer` add to the file.
fn job_file(dir: &Path, bronze: &Path, name: &str, factor: u32, source_keys: &str, trailer: &str) -> PathBuf {
    let text = format!(
        r#"name = "{name}"
checkpoint = "{dir}/{name}-checkpoint"

[source]
kind = "delta"
table = "{bronze}"
{source_keys}
[transform]
sql = "SELECT event_id, user_id, category, amount * {factor} AS amount_x, {factor} AS factor, date FROM input WHERE amount >= 0"

[sink]
table = "{dir}/{name}"
partition_by = ["date"]
key = ["event_id"]
{trailer}"#,
        dir = dir.display(),
        bronze = bronze.display()
    );
    let path = dir.join(format!("{name}-{factor}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A job over `bronze` whose sink is `<dir>/gold` and that never streams.
fn job(dir: &Path, bronze: &Path, factor: u32) -> PathBuf {
    job_file(dir, bronze, "gold", factor, "", "")
}

/// The same job streaming bronze into `<dir>/silver` (at most 4 bronze files a batch and 4
/// batches a second): the stream and its backfills share the checkpoint and the sink.
fn silver(dir: &Path, bronze: &Path, factor: u32) -> PathBuf {
    job_file(dir, bronze, "silver", factor, "max_files_per_trigger = 4\n", "\n[trigger]\ninterval = \"250ms\"\n")
}

/// Bronze: landing files streamed into `<dir>/table` (dates 2024-03-01..05).
fn bronze(dir: &Path) -> PathBuf {
    let landing = dir.join("landing");
    events::write(&landing, "bf", 6, 80, None, 77);
    let job = events::job(dir, &landing, 2);
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
    dir.join("table")
}

/// Bronze's rows with `date` in `[from, to]`, by event id.
fn bronze_rows(bronze: &Path, from: &str, to: &str) -> BTreeMap<String, Row> {
    read_rows(bronze)
        .into_iter()
        .filter(|r| r["date"].as_str() >= from && r["date"].as_str() <= to)
        .map(|r| (r["event_id"].clone(), r))
        .collect()
}

/// Asserts gold holds each bronze row of `[from, to]` exactly once, computed with `factor`.
fn assert_slice(gold: &[Row], bronze: &BTreeMap<String, Row>, from: &str, to: &str, factor: u32) {
    let slice: Vec<&Row> = gold.iter().filter(|r| r["date"].as_str() >= from && r["date"].as_str() <= to).collect();
    let mut ids: Vec<&str> = slice.iter().map(|r| r["event_id"].as_str()).collect();
    ids.sort();
    let want: Vec<&str> = bronze.keys().map(String::as_str).collect();
    assert_eq!(ids, want, "{from}..={to}: each bronze row exactly once");
    for row in slice {
        let amount: f64 = bronze[&row["event_id"]]["amount"].parse().unwrap();
        let got: f64 = row["amount_x"].parse().unwrap();
        assert!((got - amount * f64::from(factor)).abs() < 1e-9, "{row:?}: computed with factor {factor}");
        assert_eq!(row["factor"], factor.to_string());
    }
}

fn read_json(file: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
}

fn plan(job: &Path, from: &str, to: &str) -> String {
    let out = expect_exit(tidewater(&["backfill", "plan", path(job), "--from", from, "--to", to, "--json"]), 0);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["id"].as_str().unwrap().to_string()
}

/// Each backfill chunk's app id appears in exactly one commit.
fn assert_chunks_once(gold: &Path, expected_chunks: usize) {
    assert_txn_unique(gold);
    let chunk_commits =
        read_log(gold).iter().flat_map(|c| c.txns.clone()).filter(|t| t.0.starts_with("tidewater-backfill-")).count();
    assert_eq!(chunk_commits, expected_chunks, "one commit per chunk");
}

#[test]
fn a_backfill_equals_the_recomputation_of_its_range_and_a_second_one_replaces_its_slice() {
    let dir = tempfile::tempdir().unwrap();
    let bronze = bronze(dir.path());
    let gold = dir.path().join("gold");
    let first = job(dir.path(), &bronze, 2);
    plan(&first, "2024-03-01", "2024-03-05");
    let out = expect_exit(tidewater(&["backfill", "run", path(&first), "--parallel", "3", "--json"]), 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["chunks"].as_array().unwrap().len(), 5, "one chunk per day");
    assert_slice(&read_rows(&gold), &bronze_rows(&bronze, "2024-03-01", "2024-03-05"), "2024-03-01", "2024-03-05", 2);

    // The transform changes; two days are reprocessed. Their rows are replaced, the rest stay.
    let second = job(dir.path(), &bronze, 3);
    let id = plan(&second, "2024-03-02", "2024-03-03");
    expect_exit(tidewater(&["backfill", "run", path(&second), "--id", &id]), 0);
    let rows = read_rows(&gold);
    assert_slice(&rows, &bronze_rows(&bronze, "2024-03-02", "2024-03-03"), "2024-03-02", "2024-03-03", 3);
    assert_slice(&rows, &bronze_rows(&bronze, "2024-03-01", "2024-03-01"), "2024-03-01", "2024-03-01", 2);
    assert_slice(&rows, &bronze_rows(&bronze, "2024-03-04", "2024-03-05"), "2024-03-04", "2024-03-05", 2);
    assert_chunks_once(&gold, 7);
    let replace = read_log(&gold).into_iter().last().unwrap();
    assert!(!replace.removes.is_empty() && !replace.adds.is_empty(), "a chunk's removes and adds are one commit");

    // Status: every chunk done, with its rows and the version it committed; run again: nothing.
    let out = expect_exit(tidewater(&["backfill", "status", path(&second), "--id", &id, "--json"]), 0);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for chunk in status.as_array().unwrap() {
        assert_eq!(chunk["state"], "done", "{chunk}");
        assert!(chunk["rows"].as_u64().unwrap() > 0 && chunk["version"].as_u64().is_some(), "{chunk}");
    }
    let versions = read_log(&gold).len();
    let out = expect_exit(tidewater(&["backfill", "run", path(&second), "--id", &id]), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to do"));
    assert_eq!(read_log(&gold).len(), versions, "a finished backfill commits nothing");
    let out = expect_exit(tidewater(&["backfill", "list", path(&second)]), 0);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2, "two backfills listed");
}

/// Bronze whose events on 2024-03-01 and 2024-03-02 are spread over every hour: landing files
/// streamed into `<dir>/table`, partitioned by date. Returns it and each event's time by id.
fn hourly_bronze(dir: &Path) -> (PathBuf, BTreeMap<String, String>) {
    let landing = dir.join("landing");
    std::fs::create_dir_all(&landing).unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(41);
    let mut times = BTreeMap::new();
    for f in 0..6 {
        let mut text = String::new();
        for i in 0..60 {
            let id = format!("h-{f}-{i}");
            let time = format!(
                "2024-03-0{}T{:02}:{:02}:{:02}Z",
                rng.random_range(1..=2),
                rng.random_range(0..24),
                rng.random_range(0..60),
                rng.random_range(0..60)
            );
            let amount = rng.random_range(0..100) as f64 / 4.0;
            text.push_str(&format!(
                r#"{{"event_id":"{id}","user_id":{i},"event_time":"{time}","category":"c","amount":{amount}}}"#
            ));
            text.push('\n');
            times.insert(id, time);
        }
        std::fs::write(landing.join(format!("h-{f:04}.json")), text).unwrap();
    }
    expect_exit(tidewater(&["run", path(&events::job(dir, &landing, 2)), "--trigger", "available-now"]), 0);
    (dir.join("table"), times)
}

#[test]
fn an_hourly_backfill_over_an_event_time_column_rewrites_those_hours_and_keeps_the_other_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (bronze, times) = hourly_bronze(dir.path());
    // Silver is not partitioned: each of its files, streamed two bronze files a batch, holds
    // rows of both days and of every hour.
    let silver_job = |factor: u32| {
        let text = format!(
            r#"name = "silver"
checkpoint = "{dir}/silver-checkpoint"

[source]
kind = "delta"
table = "{bronze}"
max_files_per_trigger = 2

[transform]
sql = "SELECT event_id, event_time, amount * {factor} AS amount_x, {factor} AS factor, date FROM input"

[sink]
table = "{dir}/silver"
key = ["event_id"]
"#,
            dir = dir.path().display(),
            bronze = bronze.display()
        );
        let file = dir.path().join(format!("silver-{factor}.toml"));
        std::fs::write(&file, text).unwrap();
        file
    };
    let silver = dir.path().join("silver");
    expect_exit(tidewater(&["run", path(&silver_job(2)), "--trigger", "available-now"]), 0);
    let job = silver_job(3);
    let out = expect_exit(
        tidewater(&[
            "backfill",
            "plan",
            path(&job),
            "--on",
            "event_time",
            "--by",
            "hour",
            "--from",
            "2024-03-02",
            "--to",
            "2024-03-02",
            "--json",
        ]),
        0,
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let chunks = plan["chunks"].as_array().unwrap();
    assert!(chunks.len() > 12, "one chunk per hour holding data: {}", chunks.len());
    assert_eq!(plan["scope"]["column"], "event_time");
    let out = expect_exit(tidewater(&["backfill", "run", path(&job), "--json"]), 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["chunks"].as_array().unwrap().len(), chunks.len(), "{report}");

    // Every row once; those of 2024-03-02 recomputed with the new transform, the others kept.
    let rows = read_rows(&silver);
    let mut ids: Vec<&str> = rows.iter().map(|r| r["event_id"].as_str()).collect();
    ids.sort();
    assert_eq!(ids, times.keys().map(String::as_str).collect::<Vec<_>>(), "each bronze row exactly once");
    for row in &rows {
        let want = if times[&row["event_id"]].starts_with("2024-03-02") { "3" } else { "2" };
        assert_eq!(row["factor"], want, "{row:?}");
    }
    // The first chunk rewrote files holding other hours' and the other day's rows: it removed
    // them and wrote those rows again, unchanged, in its one commit.
    let first = rows_of_txn(&silver, &format!("tidewater-backfill-{}-0", plan["id"].as_str().unwrap()), 0);
    assert!(first.iter().any(|r| r["factor"] == "2" && r["date"] == "2024-03-01"), "kept rows rewritten");
    assert!(first.iter().all(|r| r["factor"] == "2" || times[&r["event_id"]].starts_with("2024-03-02T00")));
    assert_chunks_once(&silver, chunks.len());
}

/// The event ids of the rows each commit of `table` added, by version.
fn ids_by_version(table: &Path) -> BTreeMap<u64, Vec<String>> {
    read_log(table)
        .into_iter()
        .map(|c| {
            let ids = c.adds.iter().flat_map(|(p, parts)| read_file(table, p, parts)).map(|r| r["event_id"].clone());
            (c.version, ids.collect())
        })
        .collect()
}

/// Asserts `rows` hold each of `ids` exactly once, computed with `factor`, and no other row.
fn assert_rows(rows: &[Row], want: &BTreeMap<String, u32>) {
    let mut ids: Vec<&str> = rows.iter().map(|r| r["event_id"].as_str()).collect();
    ids.sort();
    assert_eq!(ids, want.keys().map(String::as_str).collect::<Vec<_>>(), "each row exactly once");
    for row in rows {
        assert_eq!(row["factor"], want[&row["event_id"]].to_string(), "{row:?}");
    }
}

#[test]
fn a_backfill_of_a_commit_range_replaces_those_commits_rows_by_key_and_leaves_what_the_stream_has_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let bronze = bronze(dir.path());
    let silver_table = dir.path().join("silver");
    expect_exit(tidewater(&["run", path(&silver(dir.path(), &bronze, 2)), "--trigger", "available-now"]), 0);
    // Bronze gets a new commit that the stream has not read yet.
    events::write(&dir.path().join("landing"), "late", 2, 80, None, 78);
    expect_exit(tidewater(&["run", path(&dir.path().join("job-2.toml")), "--trigger", "available-now"]), 0);
    let commits = ids_by_version(&bronze);
    let latest = *commits.keys().last().unwrap();
    let kept = |id: &str| read_rows(&bronze).iter().any(|r| r["event_id"] == id && !r["amount"].starts_with('-'));
    assert!(commits.len() >= 4 && commits[&latest].iter().any(|id| kept(id)), "{commits:?}");

    // Commits 2..latest are reprocessed with a new transform.
    let job = silver(dir.path(), &bronze, 3);
    let range = format!("2..{latest}");
    let out = expect_exit(tidewater(&["backfill", "plan", path(&job), "--versions", &range, "--json"]), 0);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["writes"]["columns"], serde_json::json!(["event_id"]), "{plan}");
    expect_exit(tidewater(&["backfill", "run", path(&job)]), 0);
    let live: BTreeMap<String, Row> = read_rows(&bronze).into_iter().map(|r| (r["event_id"].clone(), r)).collect();
    let output = |version: u64| {
        commits[&version].iter().filter(|id| live.get(*id).is_some_and(|r| !r["amount"].starts_with('-')))
    };
    let mut want: BTreeMap<String, u32> = BTreeMap::new();
    for version in 0..latest {
        for id in output(version) {
            want.insert(id.clone(), if version >= 2 { 3 } else { 2 });
        }
    }
    // The latest commit is after the stream's cut: the backfill left it to the stream.
    assert_rows(&read_rows(&silver_table), &want);
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
    for id in output(latest) {
        want.insert(id.clone(), 3);
    }
    assert_rows(&read_rows(&silver_table), &want);
    assert_txn_unique(&silver_table);
}

/// A landing-directory job with a key, streaming into `<dir>/silver`.
fn landing_job(dir: &Path, landing: &Path, factor: u32) -> PathBuf {
    let text = format!(
        r#"name = "landing"
checkpoint = "{dir}/landing-checkpoint"

[source]
kind = "files"
path = "{landing}"
format = "ndjson"
max_files_per_trigger = 2

{SOURCE_SCHEMA}
[transform]
sql = "SELECT event_id, amount * {factor} AS amount_x, {factor} AS factor FROM input WHERE amount >= 0"

[sink]
table = "{dir}/silver"
key = ["event_id"]
quarantine = "{dir}/quarantine"
"#,
        dir = dir.display(),
        landing = landing.display()
    );
    let file = dir.join(format!("landing-{factor}.toml"));
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn a_backfill_of_a_landing_directory_s_files_replaces_their_rows_by_key_and_quarantines_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("in");
    let mut lines = events::write(&landing, "a", 4, 50, Some(7), 90);
    expect_exit(tidewater(&["run", path(&landing_job(dir.path(), &landing, 2)), "--trigger", "available-now"]), 0);
    let quarantined = read_rows(&dir.path().join("quarantine")).len();
    assert!(quarantined > 0);
    // Two more files land; the stream has not read them when the backfill runs.
    let late = events::write(&landing, "b", 2, 50, Some(7), 91);
    let job = landing_job(dir.path(), &landing, 3);
    let out = expect_exit(tidewater(&["backfill", "plan", path(&job), "--files"]), 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("files 0..2 of 6") && text.contains("replacing the rows of its keys [event_id]"), "{text}");
    expect_exit(tidewater(&["backfill", "run", path(&job), "--parallel", "2"]), 0);
    let kept = |lines: &[events::Line], factor: u32| -> BTreeMap<String, u32> {
        lines.iter().filter(|l| l.fate == events::Fate::Kept).map(|l| (l.event_id.clone(), factor)).collect()
    };
    let silver = dir.path().join("silver");
    assert_rows(&read_rows(&silver), &kept(&lines, 3));
    assert_eq!(read_rows(&dir.path().join("quarantine")).len(), quarantined, "nothing quarantined twice");
    // The stream reads the new files once, with the new transform.
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
    lines.extend(late);
    assert_rows(&read_rows(&silver), &kept(&lines, 3));
    assert_txn_unique(&silver);
    let quarantine_lines = lines.iter().filter(|l| l.fate == events::Fate::Quarantined).count();
    assert_eq!(read_rows(&dir.path().join("quarantine")).len(), quarantine_lines);
}

#[test]
fn a_parallel_backfill_killed_inside_and_between_chunks_resumes_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let bronze = bronze(dir.path());
    let gold = dir.path().join("gold");
    let job = job(dir.path(), &bronze, 2);
    plan(&job, "2024-03-01", "2024-03-05");
    let run = || tidewater(&["backfill", "run", path(&job), "--parallel", "3"]);
    // Inside a chunk (its files written, not committed), then right after a chunk's commit.
    // Chunks record a heartbeat every 200 ms here: once three have passed, status shows the
    // killed chunks as interrupted, not running. Status is asked until it does.
    let beating = |mut command: std::process::Command| {
        command.env("TIDEWATER_HEARTBEAT_MS", "200");
        command
    };
    expect_killed(beating(run()), "after-data-files:0");
    let mut status = serde_json::Value::Null;
    let aged = wait_until(|| {
        let out = expect_exit(beating(tidewater(&["backfill", "status", path(&job), "--json"])), 0);
        status = serde_json::from_slice(&out.stdout).unwrap();
        status[0]["error"].as_str().is_some_and(|e| e.starts_with("interrupted"))
    });
    assert!(aged, "the killed chunk is not shown as interrupted after {PATIENCE:?}: {status:#}");
    let chunks = status.as_array().unwrap();
    assert!(chunks.iter().all(|c| c["state"] != "running"), "{status:#}");
    assert_eq!(chunks[0]["state"], "pending");
    assert!(chunks[0]["error"].as_str().unwrap().starts_with("interrupted: its process stopped"), "{status:#}");
    expect_killed(run(), "after-delta-commit:0");
    let done_before: usize = read_log(&gold).iter().filter(|c| !c.txns.is_empty()).count();
    assert!(done_before >= 1, "the second kill came after a commit");
    // And at random moments.
    let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
    for _ in 0..4 {
        let mut child = run().stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(20..300)));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let out = expect_exit(tidewater(&["backfill", "run", path(&job), "--parallel", "3", "--json"]), 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["already_done"].as_u64().unwrap() >= done_before as u64, "done chunks are not recomputed");
    assert_slice(&read_rows(&gold), &bronze_rows(&bronze, "2024-03-01", "2024-03-05"), "2024-03-01", "2024-03-05", 2);
    assert_chunks_once(&gold, 5);
}

#[test]
fn a_backfill_beside_the_live_stream_rewrites_its_range_and_loses_or_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bronze = bronze(dir.path());
    let landing = dir.path().join("landing");
    let bronze_job = dir.path().join("job-2.toml");
    assert!(bronze_job.exists(), "the bronze job file");
    let silver_table = dir.path().join("silver");
    // History, streamed with the old transform.
    expect_exit(tidewater(&["run", path(&silver(dir.path(), &bronze, 2)), "--trigger", "available-now"]), 0);
    let checkpoint = dir.path().join("silver-checkpoint");
    let history = last_committed_batch(&checkpoint).expect("the history's batches");
    // The transform changes: the stream restarts with it, bronze keeps growing in every date
    // (another process appends to it), and the same dates are backfilled with it meanwhile.
    let job = silver(dir.path(), &bronze, 3);
    let spawn =
        |job: &Path| tidewater(&["run", path(job)]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut bronze_writer = spawn(&bronze_job);
    let stream_log = dir.path().join("stream.log");
    let mut stream = tidewater(&["run", path(&job)])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stream_log).unwrap())
        .spawn()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let (stop, landing) = (stop.clone(), landing.clone());
        std::thread::spawn(move || {
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                events::write(&landing, &format!("live{round:03}"), 1, 40, None, 500 + round);
                round += 1;
                std::thread::sleep(Duration::from_millis(120));
            }
        })
    };
    // The stream is live (it has committed a batch with the new transform) before the backfill starts.
    let mut stream_alive = || {
        let status = stream.try_wait().unwrap();
        assert!(status.is_none(), "the stream stopped ({status:?}): {}", std::fs::read_to_string(&stream_log).unwrap());
    };
    let live = wait_until(|| {
        stream_alive();
        last_committed_batch(&checkpoint) > Some(history)
    });
    assert!(live, "the restarted stream committed no batch in {PATIENCE:?}");
    let id = plan(&job, "2024-03-02", "2024-03-03");
    // Killed once at a random moment, then run to the end, both beside the stream.
    let mut first = tidewater(&["backfill", "run", path(&job), "--parallel", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(rand::rngs::SmallRng::seed_from_u64(9).random_range(50..400)));
    first.kill().unwrap();
    first.wait().unwrap();
    expect_exit(tidewater(&["backfill", "run", path(&job), "--id", &id, "--parallel", "2"]), 0);
    let after_backfill = read_log(&silver_table).len() as u64;
    // The stream goes on past the backfill's commits: its next commit lands after them.
    let stream_commit_after = |log: &[table_tests::Commit]| {
        log.iter()
            .any(|c| c.version >= after_backfill && c.txns.iter().any(|t| !t.0.starts_with("tidewater-backfill-")))
    };
    let went_on = wait_until(|| {
        stream_alive();
        stream_commit_after(&read_log(&silver_table))
    });
    assert!(went_on, "the stream committed nothing after the backfill's commits in {PATIENCE:?}");
    let live_until = read_log(&silver_table).len() as u64;
    stop.store(true, Ordering::Relaxed);
    appender.join().unwrap();
    // Bronze grows in the backfilled dates after the backfill too; the stream writes those rows.
    events::write(&landing, "after", 1, 40, None, 900);
    // The stream kept running through the backfill's commits (a conflict is retried, not fatal).
    assert!(
        stream.try_wait().unwrap().is_none(),
        "the stream stopped beside the backfill: {}",
        std::fs::read_to_string(&stream_log).unwrap_or_default()
    );
    for child in [&mut bronze_writer, &mut stream] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    expect_exit(tidewater(&["run", path(&bronze_job), "--trigger", "available-now"]), 0);
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);

    // Every bronze row exactly once; the backfilled dates all with the new transform; the rest
    // as the stream computed them (old transform before the restart, new after).
    let rows = read_rows(&silver_table);
    let everything = bronze_rows(&bronze, "2024-03-01", "2024-03-05");
    let mut ids: Vec<&str> = rows.iter().map(|r| r["event_id"].as_str()).collect();
    ids.sort();
    assert_eq!(ids, everything.keys().map(String::as_str).collect::<Vec<_>>(), "each bronze row exactly once");
    assert_slice(&rows, &bronze_rows(&bronze, "2024-03-02", "2024-03-03"), "2024-03-02", "2024-03-03", 3);
    for row in &rows {
        let factor: f64 = row["factor"].parse().unwrap();
        let amount: f64 = everything[&row["event_id"]]["amount"].parse().unwrap();
        assert!((row["amount_x"].parse::<f64>().unwrap() - amount * factor).abs() < 1e-9, "{row:?}");
    }
    assert!(rows.iter().any(|r| r["factor"] == "2"), "the rest of history keeps what the stream wrote");

    // Every stream batch committed once and none lost; every chunk once; and the stream did
    // write into the backfilled dates after the backfill committed there.
    let log = read_log(&silver_table);
    let stream_app =
        log.iter().flat_map(|c| c.txns.clone()).find(|t| !t.0.starts_with("tidewater-backfill-")).unwrap().0;
    let batches: Vec<i64> =
        log.iter().flat_map(|c| c.txns.clone()).filter(|t| t.0 == stream_app).map(|t| t.1).collect();
    assert_eq!(batches, (0..batches.len() as i64).collect::<Vec<_>>(), "stream batches 0..n, each once");
    assert_chunks_once(&silver_table, 2);
    // The live stream, with the new transform, committed both before the backfill's first commit
    // and after its last: the backfill ran beside it.
    let backfill_versions: Vec<u64> = log
        .iter()
        .filter(|c| c.txns.iter().any(|t| t.0.starts_with("tidewater-backfill-")))
        .map(|c| c.version)
        .collect();
    let (first_chunk, last_chunk) = (backfill_versions[0], backfill_versions[backfill_versions.len() - 1]);
    let live_versions: Vec<u64> = log
        .iter()
        .filter(|c| c.version < live_until && c.txns.iter().any(|t| t.0 == stream_app && t.1 > history as i64))
        .map(|c| c.version)
        .collect();
    assert!(
        live_versions.iter().any(|v| *v < first_chunk) && live_versions.iter().any(|v| *v > last_chunk),
        "the live stream's commits {live_versions:?}, the backfill's {backfill_versions:?}: stream commits on both sides"
    );
    let in_range = |c: &table_tests::Commit| {
        c.adds.iter().any(|(_, p)| {
            p.get("date").cloned().flatten().is_some_and(|d| d.as_str() >= "2024-03-02" && d.as_str() <= "2024-03-03")
        })
    };
    assert!(
        log.iter().any(|c| c.version >= after_backfill && c.txns.iter().any(|t| t.0 == stream_app) && in_range(c)),
        "the stream wrote into the backfilled dates after the backfill"
    );
}

#[test]
fn batch_into_the_job_s_own_sink_after_its_stream_replaces_everything_instead_of_a_second_copy() {
    let dir = tempfile::tempdir().unwrap();
    let bronze = bronze(dir.path());
    let silver_table = dir.path().join("silver");
    expect_exit(tidewater(&["run", path(&silver(dir.path(), &bronze, 2)), "--trigger", "available-now"]), 0);
    // The transform changes; `tidewater batch` without --into reprocesses the whole job in
    // place, day by day (a backfill of everything), never appending a second copy.
    // Killed after its first day's commit, then run again: it resumes.
    let job = silver(dir.path(), &bronze, 3);
    expect_killed(tidewater(&["batch", path(&job)]), "after-delta-commit:0");
    let out = expect_exit(tidewater(&["batch", path(&job)]), 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("batch run of 5 chunks (1 already committed before)"),
        "a backfill of every day, resumed: {stdout}"
    );
    assert_slice(
        &read_rows(&silver_table),
        &bronze_rows(&bronze, "2024-03-01", "2024-03-05"),
        "2024-03-01",
        "2024-03-05",
        3,
    );
    // Run again after it finished: a new backfill of everything replaces it all again.
    let out = expect_exit(tidewater(&["batch", path(&job)]), 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("batch run of 5 chunks (0 already committed before)"),
        "a new backfill replaces again"
    );
    assert_slice(
        &read_rows(&silver_table),
        &bronze_rows(&bronze, "2024-03-01", "2024-03-05"),
        "2024-03-01",
        "2024-03-05",
        3,
    );
}

#[test]
fn batch_into_the_own_sink_of_an_unpartitioned_delta_source_replaces_by_key_over_its_commits() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    events::write(&landing, "up", 4, 80, None, 79);
    let bronze_job = events::job(dir.path(), &landing, 2);
    let text = std::fs::read_to_string(&bronze_job).unwrap().replace("partition_by = [\"date\"]\n", "");
    assert!(!text.contains("partition_by"), "{text}");
    std::fs::write(&bronze_job, text).unwrap();
    expect_exit(tidewater(&["run", path(&bronze_job), "--trigger", "available-now"]), 0);
    let bronze = dir.path().join("table");
    let silver_table = dir.path().join("silver");
    expect_exit(tidewater(&["run", path(&silver(dir.path(), &bronze, 2)), "--trigger", "available-now"]), 0);
    // A bronze commit the stream has not read yet.
    events::write(&landing, "late", 2, 80, None, 80);
    expect_exit(tidewater(&["run", path(&bronze_job), "--trigger", "available-now"]), 0);

    // Bronze has no date partition to replace by: `batch --into` the job's own sink (named by
    // its path) replaces by key, over bronze's commits, what the stream had read.
    let job = silver(dir.path(), &bronze, 3);
    let out = expect_exit(tidewater(&["batch", path(&job), "--into", path(&silver_table), "--json"]), 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = report["backfill"].as_str().unwrap();
    let plan = read_json(&dir.path().join(format!("silver-checkpoint/backfills/{id}/plan.json")));
    assert_eq!(plan["scope"]["kind"], "versions", "{plan}");
    assert_eq!(plan["writes"]["kind"], "keys", "{plan}");
    let kept: BTreeMap<String, Row> = read_rows(&bronze).into_iter().map(|r| (r["event_id"].clone(), r)).collect();
    let mut want: BTreeMap<String, u32> =
        kept.keys().filter(|id| id.starts_with("up-")).map(|id| (id.clone(), 3)).collect();
    assert_rows(&read_rows(&silver_table), &want);
    // The stream goes on with the commit it had not read.
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
    want.extend(kept.keys().filter(|id| id.starts_with("late-")).map(|id| (id.clone(), 3)));
    assert_rows(&read_rows(&silver_table), &want);
    assert_txn_unique(&silver_table);
}

#[test]
fn plans_recorded_by_an_earlier_tidewater_are_resumed_or_refused_never_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let bronze = bronze(dir.path());
    let gold = dir.path().join("gold");
    let job = job(dir.path(), &bronze, 2);
    // A date-range plan as the first backfills recorded it (format 1), one chunk committed.
    let id = plan(&job, "2024-03-01", "2024-03-03");
    let at = dir.path().join(format!("gold-checkpoint/backfills/{id}/plan.json"));
    let current = read_json(&at);
    let chunks: Vec<serde_json::Value> = current["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let from = &c["span"]["from"].as_str().unwrap()[..10];
            let until = &c["span"]["until"].as_str().unwrap()[..10];
            serde_json::json!({"from": from, "until": until, "files": c["files"], "estimated_rows": c["estimated_rows"],
                "estimated_bytes": c["estimated_bytes"], "read": c["read"]})
        })
        .collect();
    let v1 = serde_json::json!({"v": 1, "id": id, "job": current["job"], "source": current["source"],
        "source_version": current["source_version"], "target": current["target"], "column": "date",
        "scope": {"column": null, "from": "2024-03-01", "to": "2024-03-03", "by": "day"},
        "planned_at_ms": current["planned_at_ms"], "chunks": chunks});
    std::fs::write(&at, serde_json::to_vec(&v1).unwrap()).unwrap();
    expect_killed(tidewater(&["backfill", "run", path(&job)]), "after-delta-commit:0");
    let out = expect_exit(tidewater(&["backfill", "status", path(&job), "--json"]), 0);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let states: Vec<&str> = status.as_array().unwrap().iter().map(|c| c["state"].as_str().unwrap()).collect();
    assert_eq!(states.iter().filter(|s| **s == "done").count(), 1, "{status}");
    assert_eq!(status[1]["range"], "2024-03-02", "{status}");
    expect_exit(tidewater(&["backfill", "run", path(&job)]), 0);
    assert_slice(&read_rows(&gold), &bronze_rows(&bronze, "2024-03-01", "2024-03-03"), "2024-03-01", "2024-03-03", 2);
    assert_chunks_once(&gold, 3);

    // A plan format this one does not know is refused naming its file.
    std::fs::write(&at, br#"{"v": 9}"#).unwrap();
    let out = expect_exit(tidewater(&["backfill", "list", path(&job)]), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{id}/plan.json: plan format 9")), "{stderr}");
    std::fs::remove_dir_all(at.parent().unwrap()).unwrap();

    // A batch run that a Tidewater before backfills recorded into a table: running it again
    // would append a second copy, so it is refused until --replan.
    let other = dir.path().join("other");
    let earlier = dir.path().join("gold-checkpoint/batch/abc");
    std::fs::create_dir_all(&earlier).unwrap();
    let target = format!("file://{}", other.display());
    let old =
        serde_json::json!({"v": 1, "app_id": "tidewater-batch-1", "source": "delta", "target": target, "chunks": []});
    std::fs::write(earlier.join("plan.json"), serde_json::to_vec(&old).unwrap()).unwrap();
    let out = expect_exit(tidewater(&["batch", path(&job), "--into", path(&other)]), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("an earlier Tidewater ran this batch") && stderr.contains("--replan"), "{stderr}");
    assert!(!other.join("_delta_log").exists(), "the refused run wrote nothing");
    expect_exit(tidewater(&["batch", path(&job), "--into", path(&other), "--replan"]), 0);
}

#[test]
fn three_workers_share_one_plan_and_each_chunk_commits_once() {
    let dir = tempfile::tempdir().unwrap();
    let bronze = bronze(dir.path());
    let gold = dir.path().join("gold");
    let job = job(dir.path(), &bronze, 2);
    let id = plan(&job, "2024-03-01", "2024-03-05");
    let worker = |i: usize| tidewater(&["backfill", "run", path(&job), "--id", &id, "--worker", &format!("{i}/3")]);
    // Worker 1 is killed after its first chunk's commit, while 0 and 2 run beside it.
    let mut others: Vec<_> =
        [0, 2].iter().map(|i| worker(*i).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()).collect();
    expect_killed(worker(1), "after-delta-commit:1");
    for child in others.iter_mut() {
        assert!(child.wait().unwrap().success(), "workers 0 and 2 finish their share");
    }
    let out = expect_exit(worker(1), 0);
    let report: serde_json::Value =
        serde_json::from_slice(&expect_exit(tidewater(&["backfill", "status", path(&job), "--json"]), 0).stdout)
            .unwrap();
    assert!(report.as_array().unwrap().iter().all(|c| c["state"] == "done"), "{report}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 already done before"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_slice(&read_rows(&gold), &bronze_rows(&bronze, "2024-03-01", "2024-03-05"), "2024-03-01", "2024-03-05", 2);
    assert_chunks_once(&gold, 5);
}

#[test]
fn bad_plans_and_options_are_refused_naming_the_flag_and_nothing_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let bronze = bronze(dir.path());
    let job = job(dir.path(), &bronze, 2);
    let cases: [(&[&str], &str); 7] = [
        (&["--from", "2024-03-05", "--to", "2024-03-01"], "--from 2024-03-05 is after --to 2024-03-01"),
        (&["--from", "2024-13-01", "--to", "2024-03-01"], "--from 2024-13-01: expected a date as YYYY-MM-DD"),
        (&["--from", "2024-03-01", "--to", "2024-03-05", "--on", "colour"], "`colour` is not a column of the table"),
        (&["--from", "2024-03-01", "--to", "2024-03-05", "--on", "amount"], "`amount` is of type f64"),
        (&["--from", "2025-01-01", "--to", "2025-01-31"], "no data in date 2025-01-01..=2025-01-31 by day"),
        (&["--from", "2024-03-01", "--to", "2024-03-05", "--by", "week"], "--by week: unknown granularity"),
        (&["--from", "2024-03-01", "--to", "2024-03-05", "--by", "hour"], "--by hour: `date` holds dates"),
    ];
    for (args, expected) in cases {
        let mut all = vec!["backfill", "plan", path(&job)];
        all.extend_from_slice(args);
        let out = expect_exit(tidewater(&all), 2);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: expected `{expected}` in {stderr}");
    }
    let keyless = dir.path().join("keyless.toml");
    std::fs::write(&keyless, std::fs::read_to_string(&job).unwrap().replace("key = [\"event_id\"]", "")).unwrap();
    let cases: [(&Path, &[&str], &str); 5] = [
        (&job, &["--versions", "3..1"], "--versions 3..1: the first version is after the last"),
        (&job, &["--versions", "1..99"], "is at version"),
        (&job, &["--versions", "1-2"], "--versions 1-2: expected A..B"),
        (&keyless, &["--versions", "1..2"], "give the job's sink a key"),
        (&job, &["--files"], "--files plans over a landing directory's files; a Delta source's are planned by commits"),
    ];
    for (job, args, expected) in cases {
        let mut all = vec!["backfill", "plan", path(job)];
        all.extend_from_slice(args);
        let out = expect_exit(tidewater(&all), 2);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: expected `{expected}` in {stderr}");
    }
    let out = expect_exit(tidewater(&["backfill", "list", path(&job)]), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no backfills planned"), "refused plans record nothing");
    let out = expect_exit(tidewater(&["backfill", "run", path(&job)]), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no backfill planned yet"));
    plan(&job, "2024-03-01", "2024-03-02");
    for (flag, expected) in [("--worker=3/3", "--worker 3/3: expected I/N"), ("--parallel=0", "--parallel")] {
        let out = expect_exit(tidewater(&["backfill", "run", path(&job), flag]), 2);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(expected),
            "{flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A cancelled backfill starts no chunk.
    let out = expect_exit(tidewater(&["backfill", "list", path(&job), "--json"]), 0);
    let plans: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = plans[0]["id"].as_str().unwrap();
    expect_exit(tidewater(&["backfill", "cancel", path(&job), "--id", id]), 0);
    let out = expect_exit(tidewater(&["backfill", "run", path(&job), "--json"]), 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["cancelled"], true);
    assert!(!dir.path().join("gold/_delta_log").exists(), "nothing committed after the cancel");

    // A transform that moves rows out of the date they were read from would replace one slice
    // with another's rows: the chunk fails naming the value and the slice, and commits nothing.
    let shifted = dir.path().join("shifted.toml");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace(" date FROM input", " CAST('2024-03-09' AS DATE) AS date FROM input");
    assert!(text.contains("2024-03-09"), "{text}");
    std::fs::write(&shifted, text).unwrap();
    let id = plan(&shifted, "2024-03-01", "2024-03-01");
    let out = expect_exit(tidewater(&["backfill", "run", path(&shifted), "--id", &id]), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("chunk 0 (2024-03-01)")
            && stderr.contains("outside the slice date >= '2024-03-01' AND date < '2024-03-02'"),
        "{stderr}"
    );
    let gold = dir.path().join("gold");
    assert!(read_log(&gold).iter().all(|c| c.adds.is_empty()), "the refused chunk added nothing");
}
