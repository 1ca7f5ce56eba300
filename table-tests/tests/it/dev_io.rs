//! The sources and sinks for development: `rate` (replayable generated rows) through a kill, the
//! `socket` source reading lines from a TCP server, the `console` sink printing batches, and the
//! memory sink collecting them in a Rust test.

use crate::common::{
    PATIENCE, expect_exit, expect_killed, expected_ids, last_committed_batch, path, tidewater, wait_until,
};
use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};
use table_tests::{events, read_rows};

fn write_job(dir: &Path, source: &str, sink: &str, sql: &str, trigger: &str) -> std::path::PathBuf {
    let file = dir.join("job.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"dev\"\ncheckpoint = \"{}\"\n\n[source]\n{source}\n\n[transform]\nsql = \"{sql}\"\n\n[sink]\n{sink}\n\n[trigger]\n{trigger}\n",
            dir.join("cp").display()
        ),
    )
    .unwrap();
    file
}

/// Epoch microseconds of a timestamp as the reader prints it.
fn micros(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("`{text}`: {e}")).timestamp_micros()
}

#[test]
fn a_rate_source_generates_each_row_once_with_its_timestamp_through_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("table");
    let file = write_job(
        dir.path(),
        "kind = \"rate\"\nrows_per_second = 400",
        &format!("table = \"{}\"", table.display()),
        "SELECT *, value % 7 AS bucket FROM input",
        "kind = \"processing-time\"\ninterval = \"100ms\"",
    );
    expect_killed(tidewater(&["run", path(&file)]), "after-delta-commit:3");
    // A restart replays batch 3 (its commit landed: skipped) and goes on: it is stopped once it
    // has committed two batches past the replayed one.
    let checkpoint = dir.path().join("cp");
    let mut child = tidewater(&["run", path(&file)]).spawn().unwrap();
    let went_on = wait_until(|| {
        assert!(child.try_wait().unwrap().is_none(), "the restarted run stopped by itself");
        last_committed_batch(&checkpoint) >= Some(5)
    });
    assert!(went_on, "the restarted run did not commit batches 4 and 5 in {PATIENCE:?}");
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success(), "a SIGTERM stops the run after its batch");

    // Every row due at the last committed batch's end is in the table, once, and the batches
    // hold consecutive runs of values in commit order.
    let last = last_committed_batch(&checkpoint).unwrap();
    let entry: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(checkpoint.join(format!("offsets/{last}.json"))).unwrap())
            .unwrap();
    let due = entry["range"]["end"]["rows"].as_i64().unwrap_or_else(|| panic!("batch {last}'s offsets: {entry}"));
    let in_commit_order: Vec<i64> = table_tests::read_log(&table)
        .iter()
        .flat_map(|c| {
            let mut values: Vec<i64> = c
                .adds
                .iter()
                .flat_map(|(p, parts)| table_tests::read_file(&table, p, parts))
                .map(|r| r["value"].parse().unwrap())
                .collect();
            values.sort();
            values
        })
        .collect();
    assert_eq!(in_commit_order, (0..due).collect::<Vec<_>>(), "every value due by batch {last} once, in order");
    let batches: BTreeSet<i64> =
        table_tests::read_log(&table).iter().flat_map(|c| c.txns.clone()).map(|t| t.1).collect();
    assert_eq!(batches, (0..=last as i64).collect(), "batches 0..={last}, before the kill and after the restart");
    let rows = read_rows(&table);
    let mut values: Vec<i64> = rows.iter().map(|r| r["value"].parse().unwrap()).collect();
    values.sort();
    assert_eq!(values, (0..values.len() as i64).collect::<Vec<_>>(), "every value once, none skipped");
    // Row i is at the stream's start + i / 400 s, the start the checkpoint records.
    let started: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("cp/sources/0/start.json")).unwrap()).unwrap();
    let start_us = started["start_ms"].as_i64().unwrap() * 1000;
    for r in &rows {
        let value: i64 = r["value"].parse().unwrap();
        assert_eq!(micros(&r["timestamp"]), start_us + value * 2_500, "row {value}'s timestamp");
        assert_eq!(r["bucket"], (value % 7).to_string());
    }
    table_tests::assert_txn_unique(&table);
}

#[test]
fn the_console_sink_prints_each_batch_and_bad_lines_go_to_the_checkpoints_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let lines = events::write(&landing, "ev", 3, 30, Some(10), 41);
    let source = format!(
        "kind = \"files\"\npath = \"{}\"\nformat = \"ndjson\"\nmax_files_per_trigger = 1\n\n[source.schema]\nevent_id = \"string\"\nuser_id = \"int64\"\nevent_time = \"timestamp\"\ncategory = \"string\"\namount = \"float64\"",
        landing.display()
    );
    let file = write_job(
        dir.path(),
        &source,
        "kind = \"console\"\nnum_rows = 50",
        "SELECT event_id, amount FROM input WHERE amount >= 0",
        "kind = \"available-now\"",
    );
    let out = expect_exit(tidewater(&["run", path(&file)]), 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for batch in 0..3 {
        assert!(stdout.contains(&format!("Batch: {batch} (")), "batch {batch} printed:\n{stdout}");
    }
    // Every kept event is printed (num_rows is above each batch's size).
    for id in expected_ids(&lines) {
        assert!(stdout.contains(&format!("\"{id}\"")) || stdout.contains(&id), "{id} not printed:\n{stdout}");
    }
    let kept_per_batch: usize =
        stdout.lines().filter_map(|l| l.strip_suffix(" rows").and_then(|n| n.parse::<usize>().ok())).sum();
    assert_eq!(kept_per_batch, expected_ids(&lines).len(), "the batches' row counts:\n{stdout}");
    let quarantined = read_rows(&dir.path().join("cp/quarantine"));
    let bad = lines.iter().filter(|l| l.fate == events::Fate::Quarantined).count();
    assert_eq!(quarantined.len(), bad, "the bad lines are in <checkpoint>/quarantine");
    // A console job has no table: a batch run says so.
    let out = expect_exit(tidewater(&["batch", path(&file)]), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("writes to console") && stderr.contains("need a Delta table sink"), "{stderr}");
}

#[test]
fn the_socket_source_reads_the_lines_a_server_sends() {
    let dir = tempfile::tempdir().unwrap();
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let table = dir.path().join("table");
    let file = write_job(
        dir.path(),
        &format!("kind = \"socket\"\nhost = \"127.0.0.1\"\nport = {port}"),
        &format!("table = \"{}\"", table.display()),
        "SELECT *, length(value) AS n FROM input",
        "kind = \"processing-time\"\ninterval = \"50ms\"",
    );
    let mut child = tidewater(&["run", path(&file)]).spawn().unwrap();
    server.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut conn = loop {
        match server.accept() {
            Ok((conn, _)) => break conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                let _ = child.kill();
                panic!("the job did not connect: {e}")
            }
        }
    };
    conn.set_nonblocking(false).unwrap();
    let sent: Vec<String> = (0..200).map(|i| format!("line {i} of the demo")).collect();
    for chunk in sent.chunks(40) {
        for line in chunk {
            writeln!(conn, "{line}").unwrap();
        }
        conn.flush().unwrap();
        std::thread::sleep(Duration::from_millis(120));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && std::panic::catch_unwind(|| read_rows(&table).len()).unwrap_or(0) < sent.len() {
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let rows = read_rows(&table);
    let got: Vec<&str> = rows.iter().map(|r| r["value"].as_str()).collect();
    assert_eq!(got.len(), sent.len(), "each line once");
    assert_eq!(got.iter().copied().collect::<BTreeSet<_>>(), sent.iter().map(String::as_str).collect());
    assert!(rows.iter().all(|r| r["n"] == r["value"].len().to_string()));
    assert!(rows.len() > 1 && read_rows_commits(&table) > 1, "the lines came in more than one batch");
}

fn read_rows_commits(table: &Path) -> usize {
    table_tests::read_log(table).iter().filter(|c| !c.adds.is_empty()).count()
}

#[test]
fn a_memory_sink_collects_each_batch_for_a_rust_test() {
    use tidewater_connectors::FileSourceProvider;
    use tidewater_connectors::files::{FileFormat, FileSpec, InputSchema};
    use tidewater_core::sink::MemorySink;
    use tidewater_core::{Pipeline, SqlTransform, Trigger};

    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let lines = events::write(&landing, "mem", 4, 25, None, 43);
    let schema = InputSchema::new(
        [
            ("event_id", "string"),
            ("user_id", "int64"),
            ("event_time", "timestamp"),
            ("category", "string"),
            ("amount", "float64"),
        ]
        .iter()
        .map(|(n, t)| InputSchema::parse_column(n, t).unwrap())
        .collect(),
    );
    let spec = FileSpec::new(landing.display().to_string(), FileFormat::Ndjson)
        .with_schema(schema)
        .with_max_files_per_trigger(1);
    let memory = MemorySink::new();
    let pipeline = Pipeline::new("mem", FileSourceProvider::new(spec))
        .with_transform(SqlTransform::new("SELECT event_id, amount FROM input WHERE amount >= 0"))
        .with_sink(memory.clone())
        .with_checkpoint(dir.path().join("cp").display().to_string());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt.block_on(pipeline.run(Trigger::AvailableNow)).unwrap();
    assert_eq!(report.batches.len(), 4);
    assert_eq!(report.table, "memory");
    let batches = memory.batches();
    assert_eq!(batches.iter().map(|(id, _)| id.get()).collect::<Vec<_>>(), [0, 1, 2, 3]);
    let rows = memory.rows().unwrap();
    let mut ids: Vec<String> =
        rows.column("event_id").unwrap().str().unwrap().iter().flatten().map(str::to_string).collect();
    ids.sort();
    assert_eq!(ids, expected_ids(&lines));
}
