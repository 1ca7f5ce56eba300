//! Exactly once under crashes: a real `tidewater run` is SIGKILLed at each protocol step, and at
//! random moments, then restarted on the same checkpoint.

use crate::common::*;
use rand::{Rng, SeedableRng};
use std::time::Duration;
use table_tests::{events, multiset, orphan_files, read_log, rows_of_txn};

const POINTS: [&str; 4] = ["after-offset-log", "after-data-files", "after-delta-commit", "after-commit-log"];

#[test]
fn a_kill_at_each_step_then_a_restart_is_exactly_once_and_replays_the_same_rows() {
    // A clean run gives the reference content of every batch.
    let reference = tempfile::tempdir().unwrap();
    let landing = reference.path().join("landing");
    let lines = events::write(&landing, "ev", 8, 150, Some(23), 11);
    let job = events::job(reference.path(), &landing, 2);
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
    let clean_table = reference.path().join("table");
    assert_exactly_once(&clean_table, &lines);
    let app_of = |table: &std::path::Path| read_log(table).iter().flat_map(|c| c.txns.clone()).next().unwrap().0;
    let clean_app = app_of(&clean_table);

    for point in POINTS {
        let dir = tempfile::tempdir().unwrap();
        let job = events::job(dir.path(), &landing, 2);
        let table = dir.path().join("table");
        expect_killed(tidewater(&["run", path(&job), "--trigger", "available-now"]), &format!("{point}:2"));
        if point == "after-data-files" {
            let orphans = orphan_files(&table);
            assert!(!orphans.is_empty(), "{point}: the killed attempt should have left uncommitted data files");
        }
        let out = expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now", "--json"]), 0);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_exactly_once(&table, &lines);
        assert_quarantined_once(&dir.path().join("quarantine"), &lines);

        // Deterministic replay: every batch holds the same rows as in the clean run.
        let app = app_of(&table);
        for batch in 0..4 {
            assert_eq!(
                multiset(&rows_of_txn(&table, &app, batch)),
                multiset(&rows_of_txn(&clean_table, &clean_app, batch)),
                "{point}: batch {batch} differs from the clean run"
            );
        }
        let replayed = report["batches"].as_array().unwrap().iter().filter(|b| b["replayed"] == true).count();
        let expect_replayed = usize::from(point == "after-delta-commit");
        assert_eq!(replayed, expect_replayed, "{point}: batches skipped as already committed");
    }
}

#[test]
fn kills_at_random_moments_never_duplicate_or_lose_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let lines = events::write(&landing, "rk", 30, 60, None, 5);
    let job = events::job(dir.path(), &landing, 1);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(2024);
    for _ in 0..12 {
        let mut child = tidewater(&["run", path(&job), "--interval", "0s"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The kill moment is the random variable here, not a synchronisation.
        std::thread::sleep(Duration::from_millis(rng.random_range(50..900)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
    assert_exactly_once(&dir.path().join("table"), &lines);
}
