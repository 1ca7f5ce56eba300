//! Stream–static joins: the stream of events joined with a `users` dimension that another engine
//! (Python deltalake) rewrites between batches. Each batch joins the version it recorded in its
//! offset-log entry, a replay included.

use crate::common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use table_tests::events::{self, Fate, SOURCE_SCHEMA};
use table_tests::read_rows;

/// Users 1..=500 with `tier` = `tier`; the events' users 501..999 are not in it.
fn write_users(table: &Path, tier: &str) -> u64 {
    let rows: Vec<serde_json::Value> =
        (1..=500).map(|u| serde_json::json!({"user_id": u, "tier": format!("{tier}-{}", u % 3)})).collect();
    let out =
        delta_change().args(["overwrite", path(table), &serde_json::Value::Array(rows).to_string()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn job(dir: &Path, landing: &Path, users: &Path, sql: &str, mode: &str) -> PathBuf {
    let text = format!(
        r#"name = "enriched"
checkpoint = "{dir}/checkpoint"

[source]
kind = "files"
path = "{landing}"
format = "ndjson"
max_files_per_trigger = 1

{SOURCE_SCHEMA}
[tables]
users = "{users}"

[transform]
sql = "{sql}"

[sink]
table = "{dir}/table"
mode = "{mode}"
"#,
        dir = dir.display(),
        landing = landing.display(),
        users = users.display(),
    );
    let file = dir.join("job.toml");
    std::fs::write(&file, text).unwrap();
    file
}

const ENRICH: &str =
    "SELECT e.event_id, e.user_id, u.tier FROM input e LEFT JOIN users u ON e.user_id = u.user_id WHERE e.amount >= 0";

fn user_of(line: &events::Line) -> i64 {
    let v: serde_json::Value = serde_json::from_str(&line.text).unwrap();
    v["user_id"].as_i64().unwrap()
}

/// The tier each kept event must carry, joined against users written with `tier`.
fn expected(lines: &[events::Line], tier: &str) -> BTreeMap<String, String> {
    lines
        .iter()
        .filter(|l| l.fate == Fate::Kept)
        .map(|l| {
            let u = user_of(l);
            (l.event_id.clone(), if u <= 500 { format!("{tier}-{}", u % 3) } else { "null".into() })
        })
        .collect()
}

#[test]
fn each_batch_joins_the_dimension_version_it_logged_and_a_replay_joins_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let (landing, users) = (dir.path().join("landing"), dir.path().join("users"));
    let job = job(dir.path(), &landing, &users, ENRICH, "append");
    let run = || tidewater(&["run", path(&job), "--trigger", "available-now"]);

    assert_eq!(write_users(&users, "gold"), 0);
    let first = events::write(&landing, "a", 1, 80, Some(13), 1);
    expect_exit(run(), 0);

    // The dimension changes; batch 1 is planned against version 1 and killed before it commits.
    assert_eq!(write_users(&users, "silver"), 1);
    let second = events::write(&landing, "b", 1, 80, Some(13), 2);
    expect_killed(run(), "after-offset-log:1");
    let logged: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("checkpoint/offsets/1.json")).unwrap()).unwrap();
    assert_eq!(logged["context"]["tables"]["users"], 1, "the offset log records the version: {logged}");

    // It changes again before the restart: the replay of batch 1 still joins version 1.
    assert_eq!(write_users(&users, "bronze"), 2);
    expect_exit(run(), 0);
    let third = events::write(&landing, "c", 1, 80, Some(13), 3);
    expect_exit(run(), 0);

    let mut want = expected(&first, "gold");
    want.extend(expected(&second, "silver"));
    want.extend(expected(&third, "bronze"));
    let rows = read_rows(&dir.path().join("table"));
    let got: BTreeMap<String, String> = rows.iter().map(|r| (r["event_id"].clone(), r["tier"].clone())).collect();
    assert_eq!(rows.len(), got.len(), "each event once");
    assert_eq!(got, want);
    assert!(got.values().any(|t| t == "null"), "users outside the dimension keep their rows (left join)");

    // A recomputation joins the version current when it is planned.
    let recomputed = dir.path().join("recomputed");
    expect_exit(tidewater(&["batch", path(&job), "--into", path(&recomputed)]), 0);
    let all: Vec<events::Line> = first.iter().chain(&second).chain(&third).cloned().collect();
    let got: BTreeMap<String, String> =
        read_rows(&recomputed).iter().map(|r| (r["event_id"].clone(), r["tier"].clone())).collect();
    assert_eq!(got, expected(&all, "bronze"));
}

#[test]
fn an_aggregation_groups_by_a_column_of_the_dimension() {
    let dir = tempfile::tempdir().unwrap();
    let (landing, users) = (dir.path().join("landing"), dir.path().join("users"));
    let sql = "SELECT u.tier AS tier, count(*) AS n FROM input e JOIN users u ON e.user_id = u.user_id WHERE e.amount >= 0 GROUP BY u.tier";
    let job = job(dir.path(), &landing, &users, sql, "update");
    write_users(&users, "gold");
    let lines = events::write(&landing, "a", 3, 60, None, 4);
    expect_exit(tidewater(&["run", path(&job), "--trigger", "available-now"]), 0);
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for (_, tier) in expected(&lines, "gold").into_iter().filter(|(_, t)| t != "null") {
        *want.entry(tier).or_default() += 1;
    }
    let got: BTreeMap<String, u64> =
        read_rows(&dir.path().join("table")).iter().map(|r| (r["tier"].clone(), r["n"].parse().unwrap())).collect();
    assert_eq!(got, want);
    let out = expect_exit(tidewater(&["verify", path(&job)]), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("IDENTICAL"), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn a_join_that_would_not_stream_is_refused_when_the_job_loads() {
    let dir = tempfile::tempdir().unwrap();
    let (landing, users) = (dir.path().join("landing"), dir.path().join("users"));
    for (sql, what) in [
        ("SELECT e.event_id, u.tier FROM input e RIGHT JOIN users u ON e.user_id = u.user_id", "right or full outer"),
        ("SELECT e.event_id, u.tier FROM users u JOIN input e ON e.user_id = u.user_id", "starts from the static"),
        ("SELECT e.event_id FROM input e JOIN orders o ON e.user_id = o.user_id", "a join with `orders o`"),
    ] {
        let job = job(dir.path(), &landing, &users, sql, "append");
        let out = expect_exit(tidewater(&["run", path(&job)]), 2);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("transform.sql") && stderr.contains(what), "{sql}: {stderr}");
    }
}

/// From Rust: a transform that joins `ctx.table("users")` and derives a key, then an aggregation
/// built with `GroupBy`, streamed in-process; the table is read back with the independent reader.
#[test]
fn from_rust_a_transform_joins_the_dimension_and_a_group_by_aggregates_its_rows() {
    use polars::prelude::*;
    use tidewater_connectors::FileSourceProvider;
    use tidewater_connectors::files::{FileFormat, FileSpec, InputSchema};
    use tidewater_core::ops::aggregate::{Aggregation, Function, GroupBy, OutputMode, Window};
    use tidewater_core::{BatchContext, Pipeline, Trigger};

    let dir = tempfile::tempdir().unwrap();
    let (landing, users) = (dir.path().join("landing"), dir.path().join("users"));
    write_users(&users, "gold");
    let lines = events::write(&landing, "r", 4, 50, None, 6);
    let schema = ["event_id:string", "user_id:int64", "event_time:timestamp", "category:string", "amount:float64"]
        .iter()
        .map(|c| c.split_once(':').unwrap())
        .map(|(n, t)| InputSchema::parse_column(n, t).unwrap())
        .collect();
    let source = FileSpec::new(path(&landing), FileFormat::Ndjson)
        .with_schema(InputSchema::new(schema))
        .with_max_files_per_trigger(1);
    let query = GroupBy::new(["tier", "big"])
        .window(Window::fixed(
            "event_time",
            std::time::Duration::from_secs(86_400),
            std::time::Duration::from_secs(86_400),
        ))
        .agg("n", Function::CountRows, None)
        .agg("total", Function::Sum, Some("amount"))
        .query(Some("event_time"))
        .unwrap();
    let aggregation = Aggregation::new(query, OutputMode::Update, Some("event_time")).unwrap();
    let pipeline = Pipeline::new("rust", FileSourceProvider::new(source))
        .with_static_table("users", path(&users))
        .with_transform(|input: LazyFrame, ctx: &BatchContext| {
            Ok(input
                .filter(col("amount").gt_eq(lit(0.0)))
                .join(ctx.table("users")?, [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Inner))
                .with_column(col("amount").gt(lit(50.0)).alias("big")))
        })
        .with_watermark("event_time", std::time::Duration::from_secs(7 * 86_400))
        .with_aggregation(aggregation)
        .with_table(path(&dir.path().join("table")))
        .with_checkpoint(path(&dir.path().join("checkpoint")));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let report = runtime.block_on(pipeline.run(Trigger::AvailableNow)).unwrap();
    assert_eq!(report.batches.len(), 4);

    let tiers = expected(&lines, "gold");
    let mut want: BTreeMap<(String, String, String), (u64, f64)> = BTreeMap::new();
    for line in lines.iter().filter(|l| l.fate == Fate::Kept) {
        let tier = &tiers[&line.event_id];
        if tier == "null" {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line.text).unwrap();
        let amount = v["amount"].as_f64().unwrap();
        let day = v["event_time"].as_str().unwrap()[..10].to_string();
        let e = want.entry((tier.clone(), (amount > 50.0).to_string(), day)).or_default();
        e.0 += 1;
        e.1 += amount;
    }
    let mut got: BTreeMap<(String, String, String), (u64, f64)> = BTreeMap::new();
    for r in read_rows(&dir.path().join("table")) {
        let key = (r["tier"].clone(), r["big"].clone(), r["window_start"][..10].to_string());
        assert!(got.insert(key, (r["n"].parse().unwrap(), r["total"].parse().unwrap())).is_none(), "a group twice");
    }
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (key, (n, total)) in &want {
        assert_eq!(got[key].0, *n, "{key:?}");
        assert!((got[key].1 - total).abs() < 1e-9, "{key:?}");
    }
}
