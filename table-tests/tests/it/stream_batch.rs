//! Stream ≡ batch: for the same input, streaming (any batch sizes, with restarts and files landing
//! between runs) and `tidewater batch` write the same multiset of rows. Plus batch-run resume.

use crate::common::*;
use table_tests::{events, multiset, read_log, read_rows};

#[test]
fn stream_with_restarts_and_varying_batch_sizes_equals_batch() {
    for max_files in [1usize, 3, 7] {
        let dir = tempfile::tempdir().unwrap();
        let landing = dir.path().join("landing");
        // First half lands, the stream runs; the rest lands, the stream restarts.
        let mut lines = events::write(&landing, "a", 5, 80, Some(31), max_files as u64);
        let job = events::job(dir.path(), &landing, max_files);
        expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
        lines.extend(events::write(&landing, "b", 6, 80, Some(31), 100 + max_files as u64));
        expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
        // Restart with nothing new: no new commit.
        let versions = read_log(&dir.path().join("table")).len();
        expect_exit(tidewater(&["run", path(&job), "--trigger", "once"]), 0);
        assert_eq!(read_log(&dir.path().join("table")).len(), versions, "a run with nothing new commits nothing");

        // Into the stream's own table, a batch run would append a second copy: refused, and
        // nothing is written.
        if max_files == 1 {
            let versions = read_log(&dir.path().join("table")).len();
            let out = expect_exit(tidewater(&["batch", path(&job)]), 2);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("would append a second copy") && stderr.contains("--into TABLE"), "{stderr}");
            assert_eq!(read_log(&dir.path().join("table")).len(), versions, "the refused run wrote nothing");
        }

        let batch_table = dir.path().join("batch-table");
        expect_exit(tidewater(&["batch", path(&job), "--into", path(&batch_table)]), 0);

        let streamed = read_rows(&dir.path().join("table"));
        let batched = read_rows(&batch_table);
        assert_eq!(streamed.len(), expected_ids(&lines).len());
        assert!(
            multiset(&streamed) == multiset(&batched),
            "max_files_per_trigger={max_files}: stream and batch differ"
        );
        let stream_commits = read_log(&dir.path().join("table")).iter().filter(|c| !c.txns.is_empty()).count();
        assert_eq!(
            stream_commits,
            5usize.div_ceil(max_files) + 6usize.div_ceil(max_files),
            "one commit per micro-batch"
        );
    }
}

#[test]
fn an_interrupted_batch_run_resumes_and_a_finished_one_is_a_noop() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let lines = events::write(&landing, "r", 9, 100, Some(17), 3);
    let job = events::job(dir.path(), &landing, 2); // 5 chunks
    let target = dir.path().join("reprocessed");
    expect_killed(tidewater(&["batch", path(&job), "--into", path(&target)]), "after-delta-commit:2");
    let out = expect_exit(tidewater(&["batch", path(&job), "--into", path(&target), "--json"]), 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["chunks_total"], 5);
    assert_eq!(report["chunks_already_done"], 3, "chunks 0..=2 were committed before the kill");
    assert_exactly_once(&target, &lines);

    let versions = read_log(&target).len();
    let out = expect_exit(tidewater(&["batch", path(&job), "--into", path(&target)]), 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("nothing to do"), "{stdout}");
    assert_eq!(read_log(&target).len(), versions, "a finished batch run commits nothing");
    let txns: Vec<i64> = read_log(&target).iter().flat_map(|c| c.txns.iter().map(|t| t.1)).collect();
    assert_eq!(txns, vec![0, 1, 2, 3, 4], "chunk k commits with txn version k");
}

#[test]
fn a_delta_table_is_reprocessed_from_its_snapshot_and_at_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    events::write(&landing, "d", 4, 50, None, 9);
    let job = events::job(dir.path(), &landing, 2);
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
    let source = dir.path().join("table");
    let copy_job = dir.path().join("copy.toml");
    std::fs::write(
        &copy_job,
        format!(
            "name = \"copy\"\ncheckpoint = \"{d}/copy-checkpoint\"\n[source]\nkind = \"delta\"\ntable = \"{d}/table\"\nfiles_per_chunk = 3\n[transform]\nsql = \"SELECT * FROM input\"\n[sink]\ntable = \"{d}/copy\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    expect_exit(tidewater(&["batch", path(&copy_job)]), 0);
    assert!(
        multiset(&read_rows(&source)) == multiset(&read_rows(&dir.path().join("copy"))),
        "copy of the snapshot differs"
    );

    // Version 1 holds the first micro-batch only (version 0 created the table).
    let at_v1 = dir.path().join("copy-v1");
    expect_exit(tidewater(&["batch", path(&copy_job), "--source-version", "1", "--into", path(&at_v1)]), 0);
    let first_batch = table_tests::rows_of_txn(&source, &read_log(&source)[1].txns[0].0, 0);
    assert!(multiset(&first_batch) == multiset(&read_rows(&at_v1)), "snapshot at version 1 differs");

    // The recorded plan is at version 1: a rerun at another version is refused, not ignored.
    let out = expect_exit(tidewater(&["batch", path(&copy_job), "--into", path(&at_v1)]), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("planned over the source at version 1, and this run asks for its latest"), "{stderr}");
    let out = expect_exit(tidewater(&["batch", path(&copy_job), "--source-version", "1", "--into", path(&at_v1)]), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to do"), "the same run again is a no-op");
}
