//! Nothing lost: with malformed lines mixed in, every input line is in the table, filtered by the
//! transform, or in the quarantine table with its file, line and reason; the counts add up.

use crate::common::*;
use table_tests::events::Fate;
use table_tests::{events, read_rows};

#[test]
fn every_line_is_written_filtered_or_quarantined_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let lines = events::write(&landing, "q", 6, 120, Some(7), 77);
    let job = events::job(dir.path(), &landing, 4);
    let out = expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now", "--json"]), 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let table: std::collections::BTreeSet<String> = ids(&read_rows(&dir.path().join("table"))).into_iter().collect();
    let quarantine = read_rows(&dir.path().join("quarantine"));
    for line in &lines {
        let in_table = table.contains(&line.event_id);
        let in_quarantine = quarantine.iter().filter(|r| r["raw"] == line.text).count();
        match line.fate {
            Fate::Kept => assert!(in_table && in_quarantine == 0, "{line:?}"),
            Fate::Filtered => assert!(!in_table && in_quarantine == 0, "{line:?}"),
            Fate::Quarantined => assert!(!in_table && in_quarantine == 1, "{line:?}"),
        }
    }
    assert_exactly_once(&dir.path().join("table"), &lines);
    assert_quarantined_once(&dir.path().join("quarantine"), &lines);

    let reasons: Vec<&str> = quarantine.iter().map(|r| r["reason"].as_str()).collect();
    for expected in [
        "malformed JSON",
        "field `user_id`: expected int64",
        "missing required field `event_id`",
        "field `event_time`: not a valid timestamp",
    ] {
        assert!(reasons.iter().any(|r| r.starts_with(expected)), "no reason starting with {expected:?} in {reasons:?}");
    }

    let sum = |key: &str| report["batches"].as_array().unwrap().iter().map(|b| b[key].as_u64().unwrap()).sum::<u64>();
    let count = |fate: Fate| lines.iter().filter(|l| l.fate == fate).count() as u64;
    assert_eq!(sum("input_records"), lines.len() as u64);
    assert_eq!(sum("output_rows"), count(Fate::Kept));
    assert_eq!(sum("filtered"), count(Fate::Filtered));
    assert_eq!(sum("quarantined"), count(Fate::Quarantined));
}
