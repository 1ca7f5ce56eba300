//! The consistency checker on real tables: two landing directories hold the same events except
//! for one mutation; each is ingested by a real `tidewater run` (different batch sizes, so
//! different file layouts and batch boundaries); `tidewater reconcile` must name exactly the
//! mutation, localised to its key and partition, and exit 1 (0 when there is none).

use crate::common::*;
use serde_json::Value;
use std::path::Path;
use table_tests::events;

/// Copies `from` into `to`, applying `mutate` to the lines of the first file.
fn copy_landing(from: &Path, to: &Path, mutate: &dyn Fn(Vec<String>) -> Vec<String>) {
    std::fs::create_dir_all(to).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(from).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for (i, file) in files.iter().enumerate() {
        let text = std::fs::read_to_string(file).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if i == 0 {
            lines = mutate(lines);
        }
        std::fs::write(to.join(file.file_name().unwrap()), lines.join("\n") + "\n").unwrap();
    }
}

/// Ingests a landing directory into `<dir>/table` with the events job (category optional).
fn ingest(dir: &Path, landing: &Path, max_files: usize, sql: Option<&str>) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let job = events::job(dir, landing, max_files);
    let mut text = std::fs::read_to_string(&job).unwrap().replace("category = \"string\"", "category = \"string?\"");
    if let Some(sql) = sql {
        let start = text.find("sql = ").unwrap();
        let end = start + text[start..].find('\n').unwrap();
        text.replace_range(start..end, &format!("sql = \"{sql}\""));
    }
    std::fs::write(&job, text).unwrap();
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
    dir.join("table")
}

fn reconcile(left: &Path, right: &Path, extra: &[&str], code: i32) -> Value {
    let mut args = vec!["reconcile", path(left), path(right), "--json"];
    args.extend_from_slice(extra);
    let out = expect_exit(tidewater(&args), code);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn set_field(line: &str, field: &str, value: &str) -> String {
    let v: Value = serde_json::from_str(line).unwrap();
    let mut map = v.as_object().unwrap().clone();
    map.insert(field.into(), serde_json::from_str(value).unwrap());
    Value::Object(map).to_string()
}

fn field(line: &str, name: &str) -> Value {
    serde_json::from_str::<Value>(line).unwrap()[name].clone()
}

#[test]
fn each_kind_of_difference_is_found_and_localised() {
    let base = tempfile::tempdir().unwrap();
    let landing = base.path().join("landing");
    events::write(&landing, "rc", 4, 60, None, 42);
    let left = ingest(&base.path().join("left"), &landing, 1, None);
    let first = std::fs::read_to_string(landing.join("rc-0000.json")).unwrap();
    let lines: Vec<&str> = first.lines().collect();
    // A line that the job keeps (amount >= 0), so it is in the table.
    let kept = *lines.iter().find(|l| field(l, "amount").as_f64().unwrap() >= 1.0).unwrap();
    let id = field(kept, "event_id").as_str().unwrap().to_string();
    let date = format!("date={}", &field(kept, "event_time").as_str().unwrap()[..10]);
    let key = ["--key", "event_id"];

    // Identical content in another layout: exit 0, with and without a key.
    let same = tempfile::tempdir().unwrap();
    let right = ingest(same.path(), &landing, 3, None);
    let report = reconcile(&left, &right, &key, 0);
    assert_eq!(report["counts"]["changed"], 0);
    assert_eq!(report["rows_read"], 0, "equal fingerprints in both logs: no data file read");
    assert!(report["partitions_matched_by_fingerprint"].as_u64().unwrap() >= 2, "{report:#}");
    reconcile(&left, &right, &[], 0);
    // Column selection bypasses the fingerprints: rows are read and still found equal.
    let report = reconcile(&left, &right, &["--key", "event_id", "--ignore", "category"], 0);
    assert_eq!(report["rows_read"], report["left_rows"].as_u64().unwrap() * 2);
    // The same in bounded memory: every bucket equal by fingerprint, no join and no second read.
    let report = reconcile(&left, &right, &["--ignore", "category", "--memory", "4KiB"], 0);
    assert!(report["buckets"].as_u64().unwrap() > 1, "{report:#}");
    assert_eq!(report["buckets_matched_by_fingerprint"], report["buckets"]);
    assert_eq!((&report["passes"], &report["spilled"]), (&Value::from(1), &Value::Bool(false)), "{report:#}");

    type Mutation<'a> = Box<dyn Fn(Vec<String>) -> Vec<String> + 'a>;
    let cases: Vec<(&str, Mutation, Vec<&str>, &str)> = vec![
        (
            "missing",
            Box::new(|l: Vec<String>| l.into_iter().filter(|x| !x.contains(&format!("\"{id}\""))).collect()),
            key.to_vec(),
            "missing_in_right",
        ),
        (
            "extra",
            Box::new(|mut l: Vec<String>| {
                l.push(set_field(kept, "event_id", "\"new-row\""));
                l
            }),
            key.to_vec(),
            "extra_in_right",
        ),
        (
            "duplicated",
            Box::new(|mut l: Vec<String>| {
                l.push(kept.to_string());
                l
            }),
            vec![],
            "extra_in_right",
        ),
        (
            "changed",
            Box::new(|l: Vec<String>| {
                l.into_iter().map(|x| if x == kept { set_field(&x, "category", "\"other\"") } else { x }).collect()
            }),
            key.to_vec(),
            "changed",
        ),
        (
            "null",
            Box::new(|l: Vec<String>| {
                l.into_iter().map(|x| if x == kept { set_field(&x, "category", "null") } else { x }).collect()
            }),
            key.to_vec(),
            "changed",
        ),
        (
            "beyond tolerance",
            Box::new(|l: Vec<String>| {
                l.into_iter()
                    .map(|x| {
                        if x == kept {
                            set_field(&x, "amount", &format!("{}", field(&x, "amount").as_f64().unwrap() + 0.5))
                        } else {
                            x
                        }
                    })
                    .collect()
            }),
            vec!["--key", "event_id", "--tolerance", "1e-6"],
            "changed",
        ),
    ];
    for (name, mutate, args, kind) in cases {
        let dir = tempfile::tempdir().unwrap();
        copy_landing(&landing, &dir.path().join("landing"), &*mutate);
        let right = ingest(dir.path(), &dir.path().join("landing"), 2, None);
        let report = reconcile(&left, &right, &args, 1);
        let counts = report["counts"].as_object().unwrap();
        let nonzero: Vec<(&String, &Value)> = counts.iter().filter(|(_, n)| n.as_u64() != Some(0)).collect();
        assert_eq!(nonzero, vec![(&kind.to_string(), &Value::from(1))], "{name}: {report:#}");
        let total = report["left_rows"].as_u64().unwrap() + report["right_rows"].as_u64().unwrap();
        assert!(report["rows_read"].as_u64().unwrap() < total / 2, "{name}: only the differing partition is read");
        let partitions = report["by_partition"].as_object().unwrap();
        assert_eq!(partitions.keys().collect::<Vec<_>>(), vec![&date], "{name}: localised to one partition");
        let sample = &report["samples"].as_array().unwrap()[0];
        let expected_id = if name == "extra" { "new-row" } else { id.as_str() };
        assert_eq!(sample["row"]["event_id"], expected_id, "{name}: {sample}");
        if name == "changed" {
            assert_eq!(sample["values"][0]["column"], "category");
            assert_eq!(sample["values"][0]["right"], "other");
        }
        if name == "null" {
            assert_eq!(sample["values"][0]["right"], "null");
        }
        assert_eq!((&report["passes"], &report["spilled"]), (&Value::from(1), &Value::Bool(false)), "{name}");
        assert_eq!(
            report["buckets_matched_by_fingerprint"].as_u64().unwrap(),
            report["buckets"].as_u64().unwrap() - 1,
            "{name}: in memory, only the bucket holding the difference is joined"
        );
        // Bounded memory: under a small limit the rows are fingerprinted by bucket, dropped, and
        // read again for the differing bucket alone; under a tiny one, that bucket's rows are
        // spilled to disk and joined there. The findings are the same.
        // (Whether 4KiB spills depends on the memory measured while reading: not asserted.)
        for (memory, spilled) in [("4KiB", None), ("64B", Some(true))] {
            let mut bounded_args = args.clone();
            bounded_args.extend(["--memory", memory]);
            let bounded = reconcile(&left, &right, &bounded_args, 1);
            assert_eq!(bounded["passes"], 2, "{name} {memory}: {bounded:#}");
            if let Some(spilled) = spilled {
                assert_eq!(bounded["spilled"], spilled, "{name} {memory}: {bounded:#}");
            }
            assert_eq!(
                bounded["buckets_matched_by_fingerprint"].as_u64().unwrap(),
                bounded["buckets"].as_u64().unwrap() - 1,
                "{name} {memory}: only the bucket holding the difference is joined"
            );
            for field in ["counts", "by_partition", "changed_columns", "left_rows", "right_rows", "rows_read"] {
                assert_eq!(bounded[field], report[field], "{name} {memory}: {field} in buckets");
            }
            assert_eq!(bounded["samples"][0]["row"], sample["row"], "{name} {memory}");
        }
    }

    // A float change within tolerance is not a difference.
    let dir = tempfile::tempdir().unwrap();
    copy_landing(&landing, &dir.path().join("landing"), &|l: Vec<String>| {
        l.into_iter()
            .map(|x| {
                if x == kept {
                    set_field(&x, "amount", &format!("{:?}", field(&x, "amount").as_f64().unwrap() + 1e-9))
                } else {
                    x
                }
            })
            .collect()
    });
    let right = ingest(dir.path(), &dir.path().join("landing"), 2, None);
    reconcile(&left, &right, &["--key", "event_id", "--tolerance", "1e-6"], 0);
    assert_eq!(reconcile(&left, &right, &key, 1)["counts"]["changed"], 1, "exact without --tolerance");

    // Many differences in many buckets: the same findings in memory, read twice, and with the
    // differing buckets' rows spilled to disk.
    let dir = tempfile::tempdir().unwrap();
    copy_landing(&landing, &dir.path().join("landing"), &|l: Vec<String>| {
        let other = |(i, x): (usize, String)| if i % 3 == 0 { set_field(&x, "category", "\"other\"") } else { x };
        l.into_iter().enumerate().map(other).collect()
    });
    let right = ingest(dir.path(), &dir.path().join("landing"), 2, None);
    let many = ["--key", "event_id", "--columns", "event_id,category,amount"];
    let report = reconcile(&left, &right, &many, 1);
    let changed = report["counts"]["changed"].as_u64().unwrap();
    assert!(changed >= 10, "{report:#}");
    assert_eq!(report["changed_columns"]["category"], changed, "{report:#}");
    assert!(report["buckets"].as_u64().unwrap() - report["buckets_matched_by_fingerprint"].as_u64().unwrap() > 5);
    for (memory, spilled) in [("4KiB", None), ("64B", Some(true))] {
        let mut args = many.to_vec();
        args.extend(["--memory", memory]);
        let bounded = reconcile(&left, &right, &args, 1);
        assert_eq!(bounded["passes"], 2, "{memory}: {bounded:#}");
        if let Some(spilled) = spilled {
            assert_eq!(bounded["spilled"], spilled, "{memory}: {bounded:#}");
        }
        for field in ["counts", "by_partition", "changed_columns", "left_rows", "right_rows", "rows_read"] {
            assert_eq!(bounded[field], report[field], "{memory}: {field}");
        }
    }

    // A schema difference is reported before any data.
    let dir = tempfile::tempdir().unwrap();
    let sql =
        "SELECT event_id, user_id, event_time, amount, CAST(event_time AS DATE) AS date FROM input WHERE amount >= 0";
    let right = ingest(dir.path(), &landing, 2, Some(sql));
    let report = reconcile(&left, &right, &key, 1);
    assert_eq!(report["schema"][0]["column"], "category");
    assert_eq!(report["schema"][0]["right"], Value::Null);
    reconcile(&left, &right, &["--key", "event_id", "--ignore", "category"], 0);
}

#[test]
fn verify_recomputes_a_streamed_job_and_finds_what_the_stream_has_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    events::write(&landing, "v", 3, 80, Some(9), 8);
    let job = events::job(dir.path(), &landing, 1);
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
    events::write(&landing, "w", 2, 80, Some(9), 9);
    expect_killed(tidewater(&["run", path(&job), "--trigger", "available-now"]), "after-delta-commit:3");
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);

    let out = expect_exit(tidewater(&["verify", path(&job)]), 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("IDENTICAL"), "{text}");
    let quarantined = events::write(&dir.path().join("unused"), "v", 3, 80, Some(9), 8)
        .into_iter()
        .chain(events::write(&dir.path().join("unused"), "w", 2, 80, Some(9), 9))
        .filter(|l| l.fate == events::Fate::Quarantined)
        .count();
    assert!(text.contains(&format!("quarantined: stream {quarantined}, recomputation {quarantined}")), "{text}");

    // A file the stream has not processed yet: verify names its rows.
    std::fs::write(
        landing.join("late.json"),
        r#"{"event_id":"not-streamed","user_id":1,"event_time":"2024-03-02T00:00:00Z","category":"c","amount":1}"#
            .to_string()
            + "\n",
    )
    .unwrap();
    let out = expect_exit(tidewater(&["verify", path(&job), "--json"]), 1);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["counts"]["extra_in_right"], 1);
    assert_eq!(report["samples"][0]["row"]["event_id"], "not-streamed");
    assert_eq!(report["by_partition"].as_object().unwrap().keys().collect::<Vec<_>>(), vec!["date=2024-03-02"]);
}

#[test]
fn repair_makes_a_damaged_table_identical_in_one_commit_and_twice_commits_once() {
    let base = tempfile::tempdir().unwrap();
    let landing = base.path().join("landing");
    events::write(&landing, "rp", 3, 50, None, 77);
    let truth = ingest(&base.path().join("truth"), &landing, 3, None);
    let dir = tempfile::tempdir().unwrap();
    copy_landing(&landing, &dir.path().join("landing"), &|l: Vec<String>| {
        let mut l: Vec<String> = l.into_iter().skip(2).collect(); // two rows missing
        l.push(set_field(&l[0], "event_id", "\"intruder\"")); // one extra
        l
    });
    let damaged = ingest(dir.path(), &dir.path().join("landing"), 1, None);
    reconcile(&truth, &damaged, &["--key", "event_id"], 1);

    let versions = table_tests::read_log(&damaged).len();
    let dry = reconcile(&truth, &damaged, &["--key", "event_id", "--repair", "--dry-run"], 1);
    assert_eq!(dry["committed_version"], Value::Null);
    assert_eq!(table_tests::read_log(&damaged).len(), versions, "a dry run commits nothing");

    let repaired = reconcile(&truth, &damaged, &["--key", "event_id", "--repair"], 0);
    assert!(repaired["after"]["counts"].as_object().unwrap().values().all(|n| n == 0), "{repaired:#}");
    let log = table_tests::read_log(&damaged);
    assert_eq!(log.len(), versions + 1, "one commit");
    let repair = log.last().unwrap();
    assert!(!repair.removes.is_empty() && !repair.adds.is_empty(), "removes and adds in the same commit");
    assert_eq!(repair.txns.len(), 1);
    assert!(repair.txns[0].0.starts_with("tidewater-repair-"));
    assert!(
        table_tests::multiset(&table_tests::read_rows(&truth))
            == table_tests::multiset(&table_tests::read_rows(&damaged)),
        "the independent reader sees the repaired table equal to the truth"
    );

    let again = reconcile(&truth, &damaged, &["--key", "event_id", "--repair"], 0);
    assert_eq!(again["committed_version"], Value::Null);
    assert_eq!(table_tests::read_log(&damaged).len(), versions + 1, "a repeated repair commits nothing");
}

/// Event time of a generated line in milliseconds since 2024-03-01T00:00:00Z.
fn event_ms(line: &str) -> i64 {
    let time = field(line, "event_time");
    let time = time.as_str().unwrap();
    let day: i64 = time[8..10].parse().unwrap();
    let ms: i64 = time.get(20..23).map_or(0, |m| m.parse().unwrap());
    (day - 1) * 86_400_000 + (10 * 3600 + 15 * 60) * 1000 + ms
}

#[test]
fn verify_accounts_for_rows_the_stream_set_aside_as_late() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let lines = events::write(&landing, "wm", 4, 60, Some(13), 21);
    let job = events::job(dir.path(), &landing, 1);
    let text = std::fs::read_to_string(&job).unwrap() + "\n[watermark]\ncolumn = \"event_time\"\ndelay = \"1d\"\n";
    std::fs::write(&job, text).unwrap();

    // The watermark as Structured Streaming defines it, one file per batch: batch N+1 runs with
    // max(previous, largest on-time event time of batch N - 1 day); rows before it are late.
    let (mut watermark, mut late_ids) = (None::<i64>, Vec::new());
    for file in 0..4 {
        let valid: Vec<&events::Line> = lines
            .iter()
            .filter(|l| l.fate != events::Fate::Quarantined && l.file.ends_with(format!("wm-{file:04}.json")))
            .collect();
        let (late, on_time): (Vec<_>, Vec<_>) =
            valid.into_iter().partition(|l| watermark.is_some_and(|w| event_ms(&l.text) < w));
        late_ids.extend(late.iter().map(|l| l.event_id.clone()));
        let max = on_time.iter().map(|l| event_ms(&l.text)).max();
        watermark = match (watermark, max.map(|m| m - 86_400_000)) {
            (Some(w), Some(c)) => Some(w.max(c)),
            (w, c) => w.or(c),
        };
    }
    late_ids.sort();
    assert!(late_ids.len() > 10, "the generated data has late rows: {}", late_ids.len());

    expect_killed(tidewater(&["run", path(&job), "--trigger", "available-now"]), "after-delta-commit:2");
    let out = expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("late"), "{}", String::from_utf8_lossy(&out.stdout));

    // The independent reader: the late table holds exactly the late rows, once; the sink table
    // every kept row that was not late.
    let late_table = dir.path().join("table_late");
    assert_eq!(ids(&table_tests::read_rows(&late_table)), late_ids, "late table content");
    table_tests::assert_txn_unique(&late_table);
    let mut want: Vec<String> =
        expected_ids(&lines).into_iter().filter(|id| late_ids.binary_search(id).is_err()).collect();
    want.sort();
    assert_eq!(ids(&table_tests::read_rows(&dir.path().join("table"))), want);

    let out = expect_exit(tidewater(&["verify", path(&job)]), 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("IDENTICAL"), "{text}");
    let n = late_ids.len();
    assert!(text.contains(&format!("stream {n} in ")) && text.contains(&format!("recomputation {n}")), "{text}");
}

#[test]
fn repair_of_an_unpartitioned_table_rewrites_only_the_files_holding_differing_keys() {
    let base = tempfile::tempdir().unwrap();
    let landing = base.path().join("landing");
    events::write(&landing, "rk", 4, 40, None, 78);
    let unpartitioned = |dir: &Path, landing: &Path, max_files: usize| {
        std::fs::create_dir_all(dir).unwrap();
        let job = events::job(dir, landing, max_files);
        let text = std::fs::read_to_string(&job).unwrap().replace("partition_by = [\"date\"]\n", "");
        std::fs::write(&job, text).unwrap();
        expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
        dir.join("table")
    };
    let truth = unpartitioned(&base.path().join("truth"), &landing, 4);
    let dir = tempfile::tempdir().unwrap();
    copy_landing(&landing, &dir.path().join("landing"), &|l: Vec<String>| {
        // Two rows missing, one kept row changed, one extra.
        let mut l: Vec<String> =
            l.into_iter().filter(|x| !x.contains("\"rk-0-0\"") && !x.contains("\"rk-0-1\"")).collect();
        let kept = l.iter().position(|x| field(x, "amount").as_f64().unwrap() >= 1.0).unwrap();
        l[kept] = set_field(&l[kept], "category", "\"wrong\"");
        l.push(set_field(&l[kept], "event_id", "\"intruder\""));
        l
    });
    let damaged = unpartitioned(dir.path(), &dir.path().join("landing"), 1);
    let files_before = table_tests::read_log(&damaged).iter().map(|c| c.adds.len()).sum::<usize>();
    assert_eq!(files_before, 4, "one data file per batch");

    let repaired = reconcile(&truth, &damaged, &["--key", "event_id", "--repair"], 0);
    assert_eq!(repaired["keys"], 4, "2 missing + 1 changed + 1 extra: {repaired:#}");
    assert_eq!(repaired["files_removed"], 1, "only the file holding the changed and extra keys is rewritten");
    let repair = table_tests::read_log(&damaged).into_iter().last().unwrap();
    assert_eq!((repair.removes.len(), repair.txns.len()), (1, 1));
    assert!(
        table_tests::multiset(&table_tests::read_rows(&truth))
            == table_tests::multiset(&table_tests::read_rows(&damaged)),
        "the independent reader sees the repaired table equal to the truth"
    );
    let again = reconcile(&truth, &damaged, &["--key", "event_id", "--repair"], 0);
    assert_eq!(again["committed_version"], Value::Null, "a repeated repair commits nothing");
}
