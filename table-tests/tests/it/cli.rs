//! The command line as a user meets it: help, clear refusals of bad job files, graceful stop.

use crate::common::*;
use std::time::{Duration, Instant};
use table_tests::events;

#[test]
fn help_reads_like_a_unix_tool() {
    let out = expect_exit(tidewater(&["--help"]), 0);
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["Usage: tidewater", "run", "batch", "demo", "bench", "Exit status"] {
        assert!(help.contains(word), "--help lacks {word:?}:\n{help}");
    }
    let out = expect_exit(tidewater(&["run", "--help"]), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--trigger <TRIGGER>"));
    let out = expect_exit(tidewater(&["batch", "--help"]), 0);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--into <TABLE>") && help.contains("--source-version <N>"), "{help}");
    for command in ["run", "batch", "reconcile", "verify", "demo", "bench"] {
        let out = expect_exit(tidewater(&[command, "--help"]), 0);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Examples:\n  tidewater "), "`{command} --help` has no examples:\n{help}");
    }
    let out = expect_exit(tidewater(&["verify", "--help"]), 0);
    let help = String::from_utf8_lossy(&out.stdout);
    for option in ["--key", "--columns", "--rel-tolerance", "--samples", "--tolerance", "--where", "--report"] {
        assert!(help.contains(option), "verify lacks {option}:\n{help}");
    }
}

/// Writes a job file whose sink table is `<dir>/table`, with `edit` applied to the standard text.
fn job_with(dir: &std::path::Path, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    let landing = dir.join("landing");
    if !landing.exists() {
        events::write(&landing, "x", 2, 20, None, 1);
    }
    let job = events::job(dir, &landing, 1);
    std::fs::write(&job, edit(std::fs::read_to_string(&job).unwrap())).unwrap();
    job
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn regression_13_demo_never_deletes_a_directory_it_did_not_make() {
    let dir = tempfile::tempdir().unwrap();
    let mine = dir.path().join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("events.toml"), "my own job file").unwrap();
    let out = expect_exit(tidewater(&["demo", "--dir", path(&mine), "--files", "2", "--rows-per-file", "10"]), 2);
    assert!(stderr(&out).contains("was not made by `tidewater demo`"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(mine.join("events.toml")).unwrap(), "my own job file", "left untouched");

    let demo = dir.path().join("demo");
    for _ in 0..2 {
        // New, then its own marked directory again: replaced.
        expect_exit(tidewater(&["demo", "--dir", path(&demo), "--files", "2", "--rows-per-file", "10"]), 0);
        assert!(demo.join(".tidewater-demo").is_file() && demo.join("tables/events/_delta_log").is_dir());
    }
}

#[test]
fn regression_13_trigger_flags_change_only_what_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let job = job_with(dir.path(), |t| {
        t.replace("kind = \"processing-time\"\ninterval = \"0s\"", "kind = \"available-now\"")
    });
    let out = expect_exit(tidewater(&["run", path(&job), "--interval", "1s"]), 2);
    assert!(stderr(&out).contains("this job's trigger is `available-now`"), "{}", stderr(&out));
    let out = expect_exit(tidewater(&["run", path(&job), "--trigger", "once", "--interval", "1s"]), 2);
    assert!(stderr(&out).contains("--interval applies to the processing-time trigger only"), "{}", stderr(&out));
    assert!(!dir.path().join("table").exists(), "a refused run writes nothing");
    // The job's own trigger (available-now) ends the run by itself.
    expect_exit(tidewater(&["run", path(&job)]), 0);
    let commits = table_tests::read_log(&dir.path().join("table"));
    assert_eq!(commits.iter().filter(|c| !c.txns.is_empty()).count(), 2, "one batch per file, then the run ended");
}

#[test]
fn regression_13_a_group_by_job_in_append_mode_without_a_watermark_is_refused_when_it_loads() {
    let dir = tempfile::tempdir().unwrap();
    let job = job_with(dir.path(), |t| {
        let start = t.find("sql = ").unwrap();
        let end = start + t[start..].find('\n').unwrap();
        let mut t = t.clone();
        t.replace_range(
            start..end,
            "sql = \"SELECT CAST(event_time AS DATE) AS date, count(*) AS n FROM input GROUP BY CAST(event_time AS DATE)\"",
        );
        t
    });
    for command in ["run", "batch"] {
        let out = expect_exit(tidewater(&[command, path(&job)]), 2);
        let e = stderr(&out);
        // Append mode writes a group once, when the watermark closes it: without one, never.
        assert!(e.contains(&format!("{}: sink.mode: append mode writes a group's row once", job.display())), "{e}");
        assert!(e.contains("mode = \"update\""), "says what to write instead: {e}");
    }
    assert!(!dir.path().join("table").exists() && !dir.path().join("checkpoint").exists(), "nothing written");
}

#[test]
fn regression_13_errors_print_their_cause_chain() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let job = job_with(dir.path(), |t| {
        t.replace(
            &format!("checkpoint = \"{}/checkpoint\"", dir.path().display()),
            &format!("checkpoint = \"{}/checkpoint\"", file.display()),
        )
    });
    let out = expect_exit(tidewater(&["run", path(&job), "--trigger", "once"]), 2);
    let e = stderr(&out);
    assert!(e.contains("tidewater: error: ") && e.contains(&format!("{}/checkpoint", file.display())), "{e}");
    assert!(e.contains("\n  caused by: ") && e.to_lowercase().contains("not a directory"), "{e}");
    assert!(!e.contains("\x1b["), "no colour when stderr is not a terminal: {e:?}");
}

#[test]
fn regression_13_a_closed_stdout_pipe_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let job = job_with(dir.path(), |t| t);
    let mut child = tidewater(&["run", path(&job), "--trigger", "available-now"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before anything is printed: `| head -0`
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}: {}", out.status, stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn regression_13_report_flags_are_one_convention_and_old_spellings_name_the_new() {
    let dir = tempfile::tempdir().unwrap();
    let job = job_with(dir.path(), |t| t.replace("quarantine = ", "key = [\"event_id\"]\nquarantine = "));
    let report = dir.path().join("run.json");
    let out = expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now", "--report", path(&report)]), 0);
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(written["batches"].as_array().unwrap().len(), 2, "{written}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("rows written"), "the summary still on stdout");

    let table = dir.path().join("table");
    let copy = dir.path().join("copy");
    expect_exit(tidewater(&["batch", path(&job), "--into", path(&copy)]), 0);
    // The key recorded in the table (sink.key, property tidewater.key) is used without --key.
    assert_eq!(table_tests::read_properties(&table).get("tidewater.key").map(String::as_str), Some("event_id"));
    let out = expect_exit(tidewater(&["reconcile", path(&table), path(&copy), "--json"]), 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["key"], serde_json::json!(["event_id"]), "{report}");
    let verify = ["verify", path(&job), "--columns", "event_id,amount", "--samples", "3", "--rel-tolerance", "1e-12"];
    let out = expect_exit(tidewater(&verify), 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("compare by key (event_id)"), "{stdout}");
    let out = expect_exit(tidewater(&[&verify[..], &["--json"]].concat()), 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["columns_compared"],
        serde_json::json!(["event_id", "amount"]),
        "--columns reaches verify: {report}"
    );
    let out = expect_exit(tidewater(&["reconcile", path(&table), path(&copy), "--no-key", "--json"]), 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["key"], serde_json::json!([]), "--no-key: a multiset comparison: {report}");
    let out = expect_exit(tidewater(&["verify", path(&job), "--no-key", "--json"]), 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["key"], serde_json::json!([]), "verify --no-key ignores sink.key too: {report}");

    let in_dir = |args: &[&str]| {
        let mut c = tidewater(args);
        c.current_dir(dir.path());
        c
    };
    let out = expect_exit(in_dir(&["reconcile", path(&table), path(&copy), "--json", "diff.json"]), 2);
    assert!(stderr(&out).contains("use --report diff.json"), "{}", stderr(&out));
    let out = expect_exit(in_dir(&["verify", path(&job), "--json", "diff.json"]), 2);
    assert!(stderr(&out).contains("use --report diff.json"), "{}", stderr(&out));
    let out = expect_exit(tidewater(&["batch", path(&job), "--version", "3"]), 2);
    assert!(stderr(&out).contains("`--version 3` is now `--source-version 3`"), "{}", stderr(&out));
    assert!(!dir.path().join("diff.json").exists());
}

#[test]
fn invalid_job_files_are_refused_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    events::write(&landing, "x", 1, 5, None, 1);
    let good = std::fs::read_to_string(events::job(dir.path(), &landing, 1)).unwrap();
    let cases = [
        (good.replace("\"int64\"", "\"integer64\""), "source.schema.user_id: unknown type `integer64`"),
        (
            good.replace(&format!("table = \"{}/table\"", dir.path().display()), "table = \"ftp://host/t\""),
            "sink.table: ftp://host/t: unsupported",
        ),
        (good.replace("WHERE amount >= 0", "WHERE nope >= 0"), "transform.sql:"),
        (good.replace("format = \"ndjson\"", "format = \"xml\""), "source.format: unknown format `xml`"),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let out = expect_exit(tidewater(&["run", path(&file)]), 2);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("{}: {expected}", file.display())), "expected {expected:?} in:\n{stderr}");
    }
    assert!(!dir.path().join("table").exists(), "a refused job writes nothing");
}

#[test]
fn sigterm_finishes_the_batch_in_flight_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    events::write(&landing, "t", 40, 50, None, 3);
    let job = events::job(dir.path(), &landing, 1);
    let mut child = tidewater(&["run", path(&job), "--interval", "200ms"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let commits = dir.path().join("checkpoint/commits");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_dir(&commits).map(|d| d.count()).unwrap_or(0) < 2 {
        assert!(Instant::now() < deadline, "no batch committed within the deadline");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    let offsets = std::fs::read_dir(dir.path().join("checkpoint/offsets")).unwrap().count();
    let commits = std::fs::read_dir(&commits).unwrap().count();
    assert_eq!(offsets, commits, "every planned batch was committed before exiting");
    table_tests::assert_txn_unique(&dir.path().join("table"));
}

#[test]
fn regression_13_an_unsigned_output_column_is_written_as_a_long() {
    // Polars' length() is UInt32, as count(*) is: the table gets a long, streamed and batched.
    let dir = tempfile::tempdir().unwrap();
    let job = job_with(dir.path(), |t| {
        t.replace(
            "CAST(event_time AS DATE) AS date FROM",
            "CAST(event_time AS DATE) AS date, length(event_id) AS n FROM",
        )
    });
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
    let copy = dir.path().join("copy");
    expect_exit(tidewater(&["batch", path(&job), "--into", path(&copy)]), 0);
    for table in [dir.path().join("table"), copy] {
        assert_eq!(table_tests::read_schema(&table)["n"], serde_json::json!("long"), "{}", table.display());
        let rows = table_tests::read_rows(&table);
        assert!(!rows.is_empty() && rows.iter().all(|r| r["n"] == r["event_id"].len().to_string()), "{rows:?}");
    }
}

#[test]
fn regression_13_an_output_column_delta_cannot_hold_is_refused_when_the_job_loads() {
    let dir = tempfile::tempdir().unwrap();
    let job = job_with(dir.path(), |t| {
        t.replace("CAST(event_time AS DATE) AS date FROM", "CAST(event_time AS DATE) AS date, NULL AS note FROM")
    });
    let out = expect_exit(tidewater(&["run", path(&job)]), 2);
    assert!(stderr(&out).contains("transform.sql: the output column `note` is all null"), "{}", stderr(&out));
    assert!(!dir.path().join("checkpoint").exists(), "nothing written");
}
