//! Streaming aggregations (issue 16): the daily per-user rollup in update mode, streamed through
//! SIGKILLs at every step of the batch protocol, against the group-by the test computes itself
//! from the landing files; read back with the independent reader.

use crate::common::{expect_exit, expect_killed, path, tidewater};
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use table_tests::events::{self, Fate, Line, SOURCE_SCHEMA};

const ROLLUP: &str = "SELECT CAST(event_time AS DATE) AS date, user_id, category, count(*) AS event_count, sum(amount) AS total_amount, max(event_time) AS last_event_time FROM input WHERE category IS NOT NULL GROUP BY CAST(event_time AS DATE), user_id, category";

fn rollup_job(dir: &Path, landing: &Path) -> PathBuf {
    let text = format!(
        r#"name = "daily_user_rollup"
checkpoint = "{dir}/checkpoint"

[source]
kind = "files"
path = "{landing}"
format = "ndjson"
max_files_per_trigger = 1

{SOURCE_SCHEMA}
[watermark]
column = "event_time"
delay = "7d"

[transform]
sql = "{ROLLUP}"

[sink]
table = "{dir}/daily_user_rollup"
mode = "update"
partition_by = ["date"]
key = ["date", "user_id", "category"]
"#,
        dir = dir.display(),
        landing = landing.display()
    );
    let file = dir.join("rollup.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// (count, sum of amounts, latest event time) per (date, user, category), from the valid lines.
type Groups = BTreeMap<(String, String, String), (u64, f64, String)>;

fn expected(lines: &[Line]) -> Groups {
    let mut groups = Groups::new();
    for line in lines.iter().filter(|l| l.fate != Fate::Quarantined) {
        let v: serde_json::Value = serde_json::from_str(&line.text).unwrap();
        let time = v["event_time"].as_str().unwrap().to_string();
        let key = (time[..10].to_string(), v["user_id"].to_string(), v["category"].as_str().unwrap().to_string());
        let entry = groups.entry(key).or_insert((0, 0.0, String::new()));
        entry.0 += 1;
        entry.1 += v["amount"].as_f64().unwrap();
        if moment(&time) > moment(&entry.2) {
            entry.2 = time;
        }
    }
    groups
}

fn moment(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.to_utc())
}

/// The valid lines a stream of one file per batch keeps with a watermark of `delay_s`: a line is
/// late when its time is before the latest time of the files before it, less the delay.
/// Computed here, independently of the late table.
fn on_time(lines: &[Line], delay_s: i64) -> Vec<Line> {
    on_time_per(lines, delay_s, 1)
}

/// [`on_time`] for a stream of `per_batch` files per batch.
fn on_time_per(lines: &[Line], delay_s: i64, per_batch: usize) -> Vec<Line> {
    let mut files: Vec<&Path> = lines.iter().map(|l| l.file.as_path()).collect();
    files.dedup();
    let (mut latest, mut kept) = (None::<i64>, Vec::new());
    for batch in files.chunks(per_batch) {
        let valid: Vec<&Line> =
            lines.iter().filter(|l| batch.contains(&l.file.as_path()) && l.fate != Fate::Quarantined).collect();
        let time = |l: &Line| {
            let v: serde_json::Value = serde_json::from_str(&l.text).unwrap();
            moment(v["event_time"].as_str().unwrap()).unwrap().timestamp_millis()
        };
        let watermark = latest.map(|t| t - delay_s * 1000);
        kept.extend(valid.iter().filter(|l| watermark.is_none_or(|w| time(l) >= w)).map(|l| (*l).clone()));
        latest = valid.iter().map(|l| time(l)).chain(latest).max();
    }
    kept
}

/// The table's live rows as groups; a key seen twice fails the test.
fn table_groups(table: &Path) -> Groups {
    let mut groups = Groups::new();
    for row in table_tests::read_rows(table) {
        let key = (row["date"].clone(), row["user_id"].clone(), row["category"].clone());
        let value =
            (row["event_count"].parse().unwrap(), row["total_amount"].parse().unwrap(), row["last_event_time"].clone());
        assert!(groups.insert(key.clone(), value).is_none(), "group {key:?} twice in the table");
    }
    groups
}

fn assert_groups_equal(got: &Groups, want: &Groups, what: &str) {
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{what}: the groups");
    for (key, (n, sum, last)) in want {
        let (gn, gsum, glast) = &got[key];
        assert_eq!(gn, n, "{what}: count of {key:?}");
        assert!((gsum - sum).abs() < 1e-9, "{what}: sum of {key:?}: {gsum} against {sum}");
        assert_eq!(moment(glast), moment(last), "{what}: latest time of {key:?}: {glast} against {last}");
    }
}

#[test]
fn the_daily_rollup_in_update_mode_equals_the_group_by_through_kills_at_every_step() {
    let reference = tempfile::tempdir().unwrap();
    let landing = reference.path().join("landing");
    let lines = events::write(&landing, "e", 6, 80, Some(17), 16);
    let want = expected(&lines);
    assert!(want.values().any(|g| g.0 > 1), "some groups span several batches");

    let job = rollup_job(reference.path(), &landing);
    let out = expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now", "--json"]), 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let batches = report["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 6, "one landing file per batch");
    let last = batches.last().unwrap();
    assert_eq!(last["state_rows"].as_u64(), Some(want.len() as u64), "each batch reports its state: {last}");
    assert!(last["state_bytes"].as_u64().is_some_and(|b| b > 0) && last["watermark_ms"].is_i64(), "{last}");
    let clean = reference.path().join("daily_user_rollup");
    assert_groups_equal(&table_groups(&clean), &want, "clean run");
    let checkpoint = reference.path().join("checkpoint");
    assert!(checkpoint.join("state/5.parquet").exists(), "the state after the last batch is kept");
    let commit: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(checkpoint.join("commits/5.json")).unwrap()).unwrap();
    assert_eq!(
        commit["state_rows"].as_u64(),
        Some(want.len() as u64),
        "no watermark closed a day: every group is kept"
    );
    let size = std::fs::metadata(checkpoint.join("state/5.parquet")).unwrap().len();
    assert_eq!(commit["state_bytes"].as_u64(), Some(size), "commits/5 records the state's size");

    // The batch run of the same job: every group, computed in one pass, equal to the stream's.
    let batch = reference.path().join("batch");
    expect_exit(tidewater(&["batch", path(&job), "--into", path(&batch)]), 0);
    assert_groups_equal(&table_groups(&batch), &want, "tidewater batch");
    let out = expect_exit(tidewater(&["verify", path(&job)]), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("IDENTICAL"), "{}", String::from_utf8_lossy(&out.stdout));

    for point in ["after-offset-log", "after-data-files", "after-delta-commit", "after-state-write", "after-commit-log"]
    {
        let dir = tempfile::tempdir().unwrap();
        let job = rollup_job(dir.path(), &landing);
        expect_killed(tidewater(&["run", path(&job), "--trigger", "available-now"]), &format!("{point}:2"));
        expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
        assert_groups_equal(&table_groups(&dir.path().join("daily_user_rollup")), &want, point);
    }
}

#[test]
fn an_aggregation_the_mode_cannot_hold_is_refused_when_the_job_loads() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    events::write(&landing, "e", 1, 5, None, 1);
    let base = std::fs::read_to_string(rollup_job(dir.path(), &landing)).unwrap();
    let watermark = "[watermark]\ncolumn = \"event_time\"\ndelay = \"7d\"\n";
    for (changes, (key, what)) in [
        (
            vec![("mode = \"update\"", "mode = \"append\""), (watermark, "")],
            ("sink.mode", "append mode writes a group's row once"),
        ),
        (
            vec![("key = [\"date\", \"user_id\", \"category\"]", "key = [\"user_id\"]")],
            ("sink.key", "keyed by its groups"),
        ),
        (vec![("mode = \"update\"", "mode = \"sorted\"")], ("sink.mode", "unknown mode `sorted`")),
        (
            vec![("sum(amount) AS total_amount", "median(amount) AS total_amount")],
            ("transform.sql", "neither a grouping key"),
        ),
    ] {
        let file = dir.path().join("bad.toml");
        let text = changes.iter().fold(base.clone(), |t, (from, to)| {
            assert!(t.contains(from), "{from}");
            t.replace(from, to)
        });
        std::fs::write(&file, text).unwrap();
        // available-now: a job wrongly accepted ends instead of streaming forever.
        let out = expect_exit(tidewater(&["run", path(&file), "--trigger", "available-now"]), 2);
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(&format!("{}: {key}: ", file.display())) && e.contains(what), "{changes:?}: {e}");
    }
    // Backfills by slices would each write partial groups: refused, not wrong.
    let ok = dir.path().join("rollup.toml");
    let out = expect_exit(tidewater(&["backfill", "plan", path(&ok), "--from", "2024-03-01", "--to", "2024-03-05"]), 2);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("of an aggregation (update mode) is not supported yet"), "{e}");
    let row_wise = base.replace(ROLLUP, "SELECT user_id FROM input");
    let file = dir.path().join("row_wise.toml");
    std::fs::write(
        &file,
        row_wise
            .replace("key = [\"date\", \"user_id\", \"category\"]\n", "")
            .replace("partition_by = [\"date\"]\n", ""),
    )
    .unwrap();
    let out = expect_exit(tidewater(&["run", path(&file), "--trigger", "available-now"]), 2);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("sink.mode: `update` is for aggregating queries"), "{e}");
    assert!(!dir.path().join("daily_user_rollup").exists(), "nothing written");
}

const WINDOWS: &str = "SELECT window_start, window_end, category, count(*) AS n, sum(amount) AS total FROM input GROUP BY window(event_time, '5 minutes'), category";

/// The category windows job of the issue, in `mode`, with a 10-minute watermark.
fn windows_job(dir: &Path, landing: &Path, mode: &str, sql: &str) -> PathBuf {
    let text = std::fs::read_to_string(rollup_job(dir, landing))
        .unwrap()
        .replace(ROLLUP, sql)
        .replace("delay = \"7d\"", "delay = \"10m\"")
        .replace("mode = \"update\"", &format!("mode = \"{mode}\""))
        .replace("partition_by = [\"date\"]\n", "")
        .replace("key = [\"date\", \"user_id\", \"category\"]\n", "");
    let file = dir.join(format!("windows-{mode}.toml"));
    std::fs::write(&file, text).unwrap();
    file
}

/// The 5-minute window start (epoch seconds) of an event time.
fn window_of(time: &str) -> i64 {
    moment(time).unwrap().timestamp().div_euclid(300) * 300
}

#[test]
fn append_mode_writes_each_window_once_after_the_watermark_passes_it_through_kills() {
    let source = tempfile::tempdir().unwrap();
    let landing = source.path().join("landing");
    // Events on five days at 10:15, in random order: after the first batch the watermark is
    // ten minutes before the latest one, so later rows of earlier days are late.
    let lines = events::write(&landing, "e", 6, 60, None, 23);
    for point in ["", "after-delta-commit:2", "after-state-write:2", "after-commit-log:1"] {
        let dir = tempfile::tempdir().unwrap();
        let job = windows_job(dir.path(), &landing, "append", WINDOWS);
        if !point.is_empty() {
            expect_killed(tidewater(&["run", path(&job), "--trigger", "available-now"]), point);
        }
        expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
        // The on-time rows (computed here, not taken from the late table) and their windows.
        let kept = on_time(&lines, 600);
        let late = table_tests::read_rows(&dir.path().join("daily_user_rollup_late")).len();
        assert!(late > 0 && late == lines.len() - kept.len(), "{point}: the late table holds the late rows");
        let mut want: BTreeMap<(i64, String), (u64, f64)> = BTreeMap::new();
        for line in &kept {
            let v: serde_json::Value = serde_json::from_str(&line.text).unwrap();
            let time = v["event_time"].as_str().unwrap();
            let entry = want.entry((window_of(time), v["category"].as_str().unwrap().to_string())).or_default();
            entry.0 += 1;
            entry.1 += v["amount"].as_f64().unwrap();
        }
        // The last batch's watermark: the latest time of the files before the last, less ten
        // minutes. The windows ending after it are still open.
        let last_file = lines.last().unwrap().file.clone();
        let before_last = lines
            .iter()
            .filter(|l| l.file != last_file && kept.iter().any(|k| k.event_id == l.event_id))
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(&l.text).unwrap();
                moment(v["event_time"].as_str().unwrap()).unwrap().timestamp()
            })
            .max()
            .unwrap();
        let latest = before_last;
        let mut got: BTreeMap<(i64, String), (u64, f64)> = BTreeMap::new();
        for row in table_tests::read_rows(&dir.path().join("daily_user_rollup")) {
            let key = (window_of(&row["window_start"]), row["category"].clone());
            let value = (row["n"].parse().unwrap(), row["total"].parse().unwrap());
            assert!(got.insert(key.clone(), value).is_none(), "{point}: window {key:?} written twice");
        }
        let open: Vec<_> = want.keys().filter(|(start, _)| start + 300 > latest - 600).cloned().collect();
        assert!(!open.is_empty() && open.iter().all(|k| !got.contains_key(k)), "{point}: open windows are not written");
        for key in &open {
            want.remove(key);
        }
        assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{point}: the closed windows");
        for (key, (n, total)) in &want {
            assert_eq!(got[key].0, *n, "{point}: count of {key:?}");
            assert!((got[key].1 - total).abs() < 1e-9, "{point}: total of {key:?}");
        }
        // verify compares the closed windows and counts the open ones as pending.
        let out = expect_exit(tidewater(&["verify", path(&job)]), 0);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("IDENTICAL"), "{point}: {text}");
        assert!(
            text.contains(&format!(
                "has not closed; append mode writes them when it does): {}, not compared",
                open.len()
            )),
            "{point}: {text}"
        );
    }
}

/// Landing files for session windows: file k's events fall within two minutes from `k * 150 s`,
/// so a category's events chain into sessions across batches; files from 5 on start half an hour
/// later (closing the first sessions), and file 6 also holds rows from the start (late).
fn session_events(landing: &Path) -> Vec<Line> {
    use rand::{Rng, SeedableRng};
    std::fs::create_dir_all(landing).unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(31);
    let start = moment("2024-03-01T10:00:00Z").unwrap();
    let mut lines = Vec::new();
    for k in 0..8i64 {
        let file = landing.join(format!("s-{k:04}.json"));
        let mut text = String::new();
        for i in 0..30 {
            let base = if k >= 5 { 1800 } else { 0 } + k * 150;
            let late = k == 6 && i % 10 == 0;
            let at = start
                + chrono::Duration::milliseconds(if late { 0 } else { base * 1000 } + rng.random_range(0..120_000));
            let id = format!("s-{k}-{i}");
            let line = format!(
                r#"{{"event_id":"{id}","user_id":{},"event_time":"{}","category":"c{}","amount":{}}}"#,
                rng.random_range(1..50),
                at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                rng.random_range(0..4),
                rng.random_range(0..400) as f64 / 4.0
            );
            text.push_str(&line);
            text.push('\n');
            lines.push(Line { file: file.clone(), number: i + 1, text: line, event_id: id, fate: Fate::Kept });
        }
        std::fs::write(&file, text).unwrap();
    }
    lines
}

#[test]
fn append_mode_writes_each_session_once_after_the_watermark_passes_its_end_through_kills() {
    const SESSIONS: &str = "SELECT category, window_start, window_end, count(*) AS n, sum(amount) AS total FROM input GROUP BY category, session_window(event_time, '5 minutes')";
    let source = tempfile::tempdir().unwrap();
    let landing = source.path().join("landing");
    let lines = session_events(&landing);
    let time_of = |l: &Line| {
        let v: serde_json::Value = serde_json::from_str(&l.text).unwrap();
        moment(v["event_time"].as_str().unwrap()).unwrap()
    };
    let gap = chrono::Duration::minutes(5);
    // The sessions of the on-time rows, found here: each category's events in time order, a new
    // session when an event comes after the end of the one before (last event + gap).
    let kept = on_time(&lines, 600);
    assert!(kept.len() < lines.len(), "some rows are late");
    type Session = (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>, u64, f64);
    let mut by_category: BTreeMap<String, Vec<(chrono::DateTime<chrono::Utc>, f64)>> = BTreeMap::new();
    for line in &kept {
        let v: serde_json::Value = serde_json::from_str(&line.text).unwrap();
        by_category
            .entry(v["category"].as_str().unwrap().to_string())
            .or_default()
            .push((time_of(line), v["amount"].as_f64().unwrap()));
    }
    let mut want: BTreeMap<(String, chrono::DateTime<chrono::Utc>), Session> = BTreeMap::new();
    for (category, mut events) in by_category {
        events.sort_by_key(|e| e.0);
        let mut current: Option<Session> = None;
        for (t, amount) in events {
            match current.as_mut() {
                Some(s) if t <= s.1 => {
                    s.1 = s.1.max(t + gap);
                    s.2 += 1;
                    s.3 += amount;
                }
                _ => {
                    if let Some(s) = current.take() {
                        want.insert((category.clone(), s.0), s);
                    }
                    current = Some((t, t + gap, 1, amount));
                }
            }
        }
        let s = current.unwrap();
        want.insert((category, s.0), s);
    }
    // After the last batch, the watermark is the latest on-time event less ten minutes; a batch
    // without data writes the sessions it closes. Sessions ending at or after it stay open.
    let watermark = kept.iter().map(time_of).max().unwrap() - chrono::Duration::minutes(10);
    let (closed, open): (BTreeMap<_, _>, BTreeMap<_, _>) = want.into_iter().partition(|(_, s)| s.1 < watermark);
    assert!(!closed.is_empty() && !open.is_empty(), "the test needs closed and open sessions");
    assert!(closed.values().any(|s| s.1 - s.0 > chrono::Duration::minutes(10)), "sessions span batches");

    for point in ["", "after-offset-log:3", "after-state-write:3", "after-delta-commit:5", "after-commit-log:2"] {
        let dir = tempfile::tempdir().unwrap();
        let job = windows_job(dir.path(), &landing, "append", SESSIONS);
        if !point.is_empty() {
            expect_killed(tidewater(&["run", path(&job), "--trigger", "available-now"]), point);
        }
        expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
        let mut got: BTreeMap<(String, chrono::DateTime<chrono::Utc>), Session> = BTreeMap::new();
        for row in table_tests::read_rows(&dir.path().join("daily_user_rollup")) {
            let (start, end) = (moment(&row["window_start"]).unwrap(), moment(&row["window_end"]).unwrap());
            let value = (start, end, row["n"].parse().unwrap(), row["total"].parse().unwrap());
            let key = (row["category"].clone(), start);
            assert!(got.insert(key.clone(), value).is_none(), "{point}: session {key:?} written twice");
        }
        assert_eq!(got.keys().collect::<Vec<_>>(), closed.keys().collect::<Vec<_>>(), "{point}: the closed sessions");
        for (key, (start, end, n, total)) in &closed {
            let g = &got[key];
            assert_eq!((g.0, g.1, g.2), (*start, *end, *n), "{point}: session {key:?}");
            assert!((g.3 - total).abs() < 1e-9, "{point}: total of {key:?}");
        }
        let late = table_tests::read_rows(&dir.path().join("daily_user_rollup_late")).len();
        assert_eq!(late, lines.len() - kept.len(), "{point}: the late table holds the late rows");
        let out = expect_exit(tidewater(&["verify", path(&job)]), 0);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("IDENTICAL"), "{point}: {text}");
        assert!(text.contains(&format!("{}, not compared", open.len())), "{point}: {text}");
    }
}

#[test]
fn a_long_streams_state_stays_flat_as_the_watermark_evicts_its_windows() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    std::fs::create_dir_all(&landing).unwrap();
    // 60 files, two minutes of events each, in order between files, out of order within them.
    let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
    let start = moment("2024-03-01T00:00:00Z").unwrap();
    let mut windows = std::collections::BTreeSet::new();
    for k in 0..60i64 {
        let mut text = String::new();
        for i in 0..20 {
            let at = start + chrono::Duration::milliseconds(k * 120_000 + rng.random_range(0..120_000));
            let category = format!("c{}", rng.random_range(0..4));
            windows.insert((at.timestamp().div_euclid(300), category.clone()));
            text.push_str(&format!(
                "{{\"event_id\":\"f-{k}-{i}\",\"user_id\":1,\"event_time\":\"{}\",\"category\":\"{category}\",\"amount\":1.0}}\n",
                at.format("%Y-%m-%dT%H:%M:%S%.3fZ")
            ));
        }
        std::fs::write(landing.join(format!("f-{k:04}.json")), text).unwrap();
    }
    let job = windows_job(dir.path(), &landing, "update", WINDOWS);
    let out = expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now", "--json"]), 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let states: Vec<u64> =
        report["batches"].as_array().unwrap().iter().map(|b| b["state_rows"].as_u64().unwrap()).collect();
    assert!(states.len() >= 60, "a batch per file: {states:?}");
    // The state holds the windows the 10-minute watermark has not closed: about four 5-minute
    // windows of each category, however long the stream has run.
    let (early, late) = (states[5..30].iter().max().unwrap(), states[30..].iter().max().unwrap());
    assert!(late <= early, "the state does not grow with the stream: {states:?}");
    assert!(*late <= 6 * 4, "at most six open windows per category: {states:?}");
    assert!(windows.len() > 4 * *late as usize, "{} windows in all, {late} kept", windows.len());
    // Every window is in the table once, with its count.
    let rows = table_tests::read_rows(&dir.path().join("daily_user_rollup"));
    assert_eq!(rows.len(), windows.len());
    assert_eq!(rows.iter().map(|r| r["n"].parse::<u64>().unwrap()).sum::<u64>(), 60 * 20);
}

#[test]
fn complete_mode_rewrites_the_whole_result_at_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let lines = events::write(&landing, "e", 3, 40, Some(9), 5);
    let job = windows_job(dir.path(), &landing, "complete", "SELECT count(*) AS n, sum(amount) AS total FROM input");
    let text =
        std::fs::read_to_string(&job).unwrap().replace("[watermark]\ncolumn = \"event_time\"\ndelay = \"10m\"\n", "");
    std::fs::write(&job, text).unwrap();
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
    let rows = table_tests::read_rows(&dir.path().join("daily_user_rollup"));
    let good: Vec<&Line> = lines.iter().filter(|l| l.fate != Fate::Quarantined).collect();
    assert_eq!(rows.len(), 1, "one row: {rows:?}");
    assert_eq!(rows[0]["n"].parse::<usize>().unwrap(), good.len());
    let total: f64 = good
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(&l.text).unwrap()["amount"].as_f64().unwrap())
        .sum();
    assert!((rows[0]["total"].parse::<f64>().unwrap() - total).abs() < 1e-9);
    let log = table_tests::read_log(&dir.path().join("daily_user_rollup"));
    assert_eq!(log.iter().filter(|c| !c.removes.is_empty()).count(), 2, "batches 2 and 3 each replace the row");
}

#[test]
fn with_a_short_delay_late_rows_are_set_aside_and_closed_days_leave_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    // Five days at 10:15 in random order: after the first batch, the days before the latest
    // are behind a 10-minute watermark.
    let lines = events::write(&landing, "e", 5, 60, Some(13), 31);
    let kept = on_time(&lines, 600);
    assert!(kept.len() < lines.iter().filter(|l| l.fate != Fate::Quarantined).count(), "some rows are late");
    let job = rollup_job(dir.path(), &landing);
    std::fs::write(&job, std::fs::read_to_string(&job).unwrap().replace("delay = \"7d\"", "delay = \"10m\"")).unwrap();
    expect_killed(tidewater(&["run", path(&job), "--trigger", "available-now"]), "after-state-write:2");
    let out = expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now", "--json"]), 0);
    let want = expected(&kept);
    assert_groups_equal(&table_groups(&dir.path().join("daily_user_rollup")), &want, "on-time rows");
    // Closed days left the state: only the last day's groups are kept.
    let last_day = want.keys().map(|k| k.0.clone()).max().unwrap();
    let open = want.keys().filter(|k| k.0 == last_day).count() as u64;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let state = report["batches"].as_array().unwrap().last().unwrap()["state_rows"].as_u64().unwrap();
    assert_eq!(state, open, "the state holds the open day's {open} groups, not all {}", want.len());
    let late = table_tests::read_rows(&dir.path().join("daily_user_rollup_late")).len();
    let valid = lines.iter().filter(|l| l.fate != Fate::Quarantined).count();
    assert_eq!(late, valid - kept.len(), "every late row is in the late table");
}

#[test]
fn dedup_keeps_each_key_once_when_a_source_replays_rows_within_the_delay_through_kills() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let lines = events::write(&landing, "e", 4, 50, None, 8);
    // An at-least-once producer writes some lines again, in later files.
    let replayed: Vec<&Line> = lines.iter().step_by(3).collect();
    for (n, chunk) in replayed.chunks(20).enumerate() {
        let text: String = chunk.iter().map(|l| format!("{}\n", l.text)).collect();
        std::fs::write(landing.join(format!("r-{n:04}.json")), text).unwrap();
    }
    let job = events::job(dir.path(), &landing, 1);
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "[transform]",
        "[watermark]\ncolumn = \"event_time\"\ndelay = \"7d\"\n\n[dedup]\nkeys = [\"event_id\"]\n\n[transform]",
    );
    std::fs::write(&job, text).unwrap();
    expect_killed(tidewater(&["run", path(&job), "--trigger", "available-now"]), "after-state-write:4");
    let out = expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now", "--json"]), 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids = crate::common::ids(&table_tests::read_rows(&dir.path().join("table")));
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids, unique, "each event id once");
    let kept: Vec<String> = {
        let mut v: Vec<String> = lines.iter().filter(|l| l.fate == Fate::Kept).map(|l| l.event_id.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(ids, kept, "every kept row, none twice");
    // The replayed files' batches ran after the restart: their rows are all dropped, and counted.
    let dropped: u64 = report["batches"].as_array().unwrap().iter().map(|b| b["deduplicated"].as_u64().unwrap()).sum();
    assert_eq!(dropped, replayed.len() as u64, "every replayed row is counted as a duplicate");
}

#[test]
fn update_mode_keeps_every_window_once_with_the_totals_of_its_on_time_rows() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let lines = events::write(&landing, "e", 6, 60, None, 29);
    let job = windows_job(dir.path(), &landing, "update", WINDOWS);
    expect_killed(tidewater(&["run", path(&job), "--trigger", "available-now"]), "after-data-files:3");
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
    let mut want: BTreeMap<(i64, String), (u64, f64)> = BTreeMap::new();
    for line in on_time(&lines, 600) {
        let v: serde_json::Value = serde_json::from_str(&line.text).unwrap();
        let time = v["event_time"].as_str().unwrap();
        let entry = want.entry((window_of(time), v["category"].as_str().unwrap().to_string())).or_default();
        entry.0 += 1;
        entry.1 += v["amount"].as_f64().unwrap();
    }
    let mut got: BTreeMap<(i64, String), (u64, f64)> = BTreeMap::new();
    for row in table_tests::read_rows(&dir.path().join("daily_user_rollup")) {
        let key = (window_of(&row["window_start"]), row["category"].clone());
        assert!(
            got.insert(key.clone(), (row["n"].parse().unwrap(), row["total"].parse().unwrap())).is_none(),
            "window {key:?} twice"
        );
    }
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "every window, open or closed");
    for (key, (n, total)) in &want {
        assert_eq!(got[key].0, *n, "count of {key:?}");
        assert!((got[key].1 - total).abs() < 1e-9, "total of {key:?}");
    }
}

/// The events of the stream's first `batches` batches of `per_batch` files.
fn first_batches(lines: &[Line], batches: usize, per_batch: usize) -> Vec<Line> {
    let mut files: Vec<&Path> = lines.iter().map(|l| l.file.as_path()).collect();
    files.dedup();
    let taken: Vec<&Path> = files.into_iter().take(batches * per_batch).collect();
    lines.iter().filter(|l| taken.contains(&l.file.as_path())).cloned().collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 8, ..Default::default() })]

    /// Generated events (out of order within the days, so with a 10-minute delay some are
    /// late), random splits into batches, a SIGKILL at a random step of a random batch: after
    /// the killed run, the update-mode rollup equals the group-by of the on-time rows of the
    /// batches its table holds; after the restart, of every on-time row; and it differs from the
    /// group-by of all rows by exactly the rows the late table counts.
    #[test]
    fn the_rollup_equals_its_group_by_after_every_run_whatever_the_splits_and_kills(
        files in 2usize..7,
        rows in 10usize..50,
        per_batch in 1usize..4,
        late in proptest::bool::ANY,
        point in 0usize..5,
        batch in 0usize..3,
        seed in proptest::prelude::any::<u64>(),
    ) {
        let points = ["after-offset-log", "after-data-files", "after-delta-commit", "after-state-write", "after-commit-log"];
        let dir = tempfile::tempdir().unwrap();
        let landing = dir.path().join("landing");
        let lines = events::write(&landing, "e", files, rows, Some(7), seed);
        let (delay, delay_s) = if late { ("10m", 600) } else { ("7d", 7 * 86_400) };
        let job = rollup_job(dir.path(), &landing);
        let text = std::fs::read_to_string(&job)
            .unwrap()
            .replace("delay = \"7d\"", &format!("delay = \"{delay}\""))
            .replace("max_files_per_trigger = 1", &format!("max_files_per_trigger = {per_batch}"));
        std::fs::write(&job, text).unwrap();
        let table = dir.path().join("daily_user_rollup");
        let kill = format!("{}:{batch}", points[point]);
        let first = tidewater(&["run", path(&job), "--trigger", "available-now"])
            .env("TIDEWATER_CRASH_AT", &kill)
            .output()
            .unwrap();
        let what = format!("{files} files of {rows}, {per_batch} per batch, delay {delay}, kill at {kill}");
        proptest::prop_assert!(first.status.success() || first.status.signal() == Some(libc::SIGKILL), "{}: {:?}", what, first.status);
        // The batches the table holds: its txn's version, the batch id of its last commit.
        let committed = if table.join("_delta_log").exists() {
            table_tests::read_log(&table).iter().flat_map(|c| c.txns.clone()).map(|(_, v)| v + 1).max().unwrap_or(0)
        } else {
            0
        };
        let held = first_batches(&lines, committed as usize, per_batch);
        let want = expected(&on_time_per(&held, delay_s, per_batch));
        if committed > 0 {
            assert_groups_equal(&table_groups(&table), &want, &format!("{what}, after the killed run"));
        }
        expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
        let kept = on_time_per(&lines, delay_s, per_batch);
        assert_groups_equal(&table_groups(&table), &expected(&kept), &format!("{what}, after the restart"));
        // Against every valid row: the counts differ by the late rows, and nothing else.
        let all = expected(&lines);
        let count = |g: &Groups| g.values().map(|v| v.0).sum::<u64>();
        let late_table = dir.path().join("daily_user_rollup_late");
        // The late table is created by the first late row.
        let late_rows = if late_table.join("_delta_log").exists() { table_tests::read_rows(&late_table).len() as u64 } else { 0 };
        proptest::prop_assert_eq!(count(&all) - count(&table_groups(&table)), late_rows, "{}", what);
        proptest::prop_assert_eq!(late_rows == 0, kept.len() == lines.iter().filter(|l| l.fate != Fate::Quarantined).count());
    }
}

#[test]
fn a_batch_without_data_writes_the_windows_the_last_watermark_closed() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    std::fs::create_dir_all(&landing).unwrap();
    let line = |id: &str, time: &str| {
        format!(r#"{{"event_id":"{id}","user_id":1,"event_time":"{time}","category":"c","amount":1.5}}"#)
    };
    // Batch 0: the window [10:00, 10:05). Batch 1: 10:20, which moves the watermark (1 minute of
    // delay) to 10:19, past that window's end, but only for the batch after it.
    std::fs::write(
        landing.join("a.json"),
        [line("a1", "2024-03-01T10:00:10Z"), line("a2", "2024-03-01T10:04:00Z")].join("\n"),
    )
    .unwrap();
    std::fs::write(landing.join("b.json"), line("b1", "2024-03-01T10:20:00Z")).unwrap();
    let job = windows_job(dir.path(), &landing, "append", WINDOWS);
    std::fs::write(&job, std::fs::read_to_string(&job).unwrap().replace("delay = \"10m\"", "delay = \"1m\"")).unwrap();
    let out = expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now", "--json"]), 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let batches = report["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 3, "two batches of data and one without: {batches:?}");
    assert_eq!(batches[2]["input_records"], 0);
    let rows = table_tests::read_rows(&dir.path().join("daily_user_rollup"));
    assert_eq!(rows.len(), 1, "the closed window, written by the batch without data: {rows:?}");
    assert_eq!(
        (rows[0]["n"].as_str(), moment(&rows[0]["window_start"]).map(|t| t.timestamp())),
        ("2", Some(1_709_287_200))
    );
    // A second run has nothing to do: the watermark closes nothing more.
    let again: serde_json::Value = serde_json::from_slice(
        &expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now", "--json"]), 0).stdout,
    )
    .unwrap();
    assert_eq!(again["batches"].as_array().unwrap().len(), 0, "{again}");
}
