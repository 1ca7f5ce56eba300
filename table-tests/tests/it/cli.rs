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
    assert!(help.contains("--into <TABLE>") && help.contains("--version <N>"), "{help}");
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
