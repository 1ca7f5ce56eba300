//! The aggregation's unit tests: streamed in any split of batches, a query gives what the batch
//! `GROUP BY` gives; windows, sessions, closing, the Rust builder, and what is refused.

use super::{AggregateQuery, Aggregation, Closes, Function, GroupBy, OutputMode, WINDOW_END, WINDOW_START, Window};
use crate::context::Tables;
use polars::prelude::*;
use polars::sql::SQLContext;
use std::time::Duration;

const WINDOWED: &str = "SELECT window_start, window_end, category, count(*) AS n, sum(amount) AS total FROM input GROUP BY window(event_time, '5 minutes'), category";
const ROLLUP: &str = "SELECT CAST(event_time AS DATE) AS date, user_id, category, count(*) AS event_count, sum(amount) AS total_amount, max(event_time) AS last_event_time FROM input WHERE category IS NOT NULL GROUP BY CAST(event_time AS DATE), user_id, category";

fn events(n: usize, seed: u64) -> DataFrame {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut t, mut user, mut category, mut amount) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        // Within three days, out of order.
        t.push(1_700_000_000_000_000i64 + (next() % (3 * 86_400_000_000)) as i64);
        user.push((next() % 7) as i64);
        category.push(match next() % 4 {
            0 => None,
            c => Some(["a", "b", "c"][c as usize - 1]),
        });
        amount.push(if next() % 10 == 0 { None } else { Some((next() % 10_000) as f64 / 100.0) });
    }
    let utc = DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
    df!["event_time" => t, "user_id" => user, "category" => category, "amount" => amount]
        .unwrap()
        .lazy()
        .with_column(col("event_time").cast(utc))
        .collect()
        .unwrap()
}

fn sql(query: &str, input: DataFrame) -> DataFrame {
    let mut ctx = SQLContext::new();
    ctx.register("input", input.lazy());
    ctx.execute(query).unwrap().collect().unwrap()
}

/// The query streamed: its input split into `batches` (uneven, in order), each batch's
/// partials merged into the state, the state finalized.
fn streamed(q: &AggregateQuery, input: &DataFrame, cuts: &[usize]) -> DataFrame {
    let mut state: Option<DataFrame> = None;
    let mut from = 0;
    for &cut in cuts.iter().chain([input.height()].iter()) {
        let batch = input.slice(from as i64, cut - from);
        from = cut;
        let partial = q.partial(sql(&q.pre, batch)).unwrap();
        state = Some(match state {
            None => partial,
            Some(s) => q.merge(s, partial).unwrap(),
        });
    }
    q.finalize(&state.unwrap()).unwrap()
}

fn sorted(df: &DataFrame) -> DataFrame {
    let by: Vec<String> = df.get_column_names().iter().map(|c| c.to_string()).collect();
    df.sort(by, SortMultipleOptions::default().with_nulls_last(true)).unwrap()
}

fn assert_same(streamed: &DataFrame, batch: &DataFrame) {
    let (s, b) = (sorted(streamed), sorted(batch));
    assert_eq!(s.shape(), b.shape(), "{s}\n{b}");
    for (x, y) in s.columns().iter().zip(b.columns()) {
        assert_eq!(x.name(), y.name());
        let (x, y) = (x.as_materialized_series(), y.as_materialized_series());
        if x.dtype().is_float() {
            let (x64, y64) = (x.cast(&DataType::Float64).unwrap(), y.cast(&DataType::Float64).unwrap());
            let worst = x64
                .f64()
                .unwrap()
                .iter()
                .zip(y64.f64().unwrap().iter())
                .map(|(a, b)| match (a, b) {
                    (Some(a), Some(b)) => (a - b).abs(),
                    (None, None) => 0.0,
                    _ => f64::INFINITY,
                })
                .fold(0.0, f64::max);
            assert!(worst < 1e-6, "{}: off by {worst}", x.name());
            assert_eq!(x.null_count(), y.null_count(), "{}", x.name());
        } else {
            assert!(x.equals_missing(&y.cast(x.dtype()).unwrap()), "{}:\n{x}\n{y}", x.name());
        }
    }
}

#[test]
fn the_daily_rollup_streamed_in_any_split_equals_the_batch_group_by() {
    let q = AggregateQuery::parse(ROLLUP, Some("event_time"), &[]).unwrap().unwrap();
    assert_eq!(q.keys, ["date", "user_id", "category"]);
    assert_eq!(q.output, ["date", "user_id", "category", "event_count", "total_amount", "last_event_time"]);
    let input = events(2_000, 7);
    let batch = sql(ROLLUP, input.clone());
    for cuts in [vec![], vec![1, 2, 3], vec![500, 501, 1500], vec![1999]] {
        assert_same(&streamed(&q, &input, &cuts), &batch);
    }
}

#[test]
fn mergeable_aggregates_equal_the_batch_ones() {
    let query = "SELECT user_id, count(*) AS n, count(amount) AS c, sum(amount) AS s, min(amount) AS lo, max(amount) AS hi, avg(amount) AS mean, count(DISTINCT category) AS kinds FROM input GROUP BY user_id";
    let q = AggregateQuery::parse(query, None, &[]).unwrap().unwrap();
    let input = events(1_000, 11);
    let batch = sql(query, input.clone());
    for cuts in [vec![10, 20, 900], vec![333, 666]] {
        assert_same(&streamed(&q, &input, &cuts), &batch);
    }
}

#[test]
fn first_and_last_take_the_values_at_the_least_and_greatest_event_time() {
    let query = "SELECT user_id, first(amount) AS f, last(amount) AS l FROM input GROUP BY user_id";
    let q = AggregateQuery::parse(query, Some("event_time"), &[]).unwrap().unwrap();
    let input = events(500, 3).lazy().filter(col("amount").is_not_null()).collect().unwrap();
    let by_time = input.sort(["event_time"], SortMultipleOptions::default()).unwrap();
    let expected = by_time
        .lazy()
        .group_by([col("user_id")])
        .agg([col("amount").first().alias("f"), col("amount").last().alias("l")])
        .collect()
        .unwrap();
    assert_same(&streamed(&q, &input, &[100, 101, 400]), &expected);
}

#[test]
fn tumbling_and_sliding_windows_equal_polars_group_by_dynamic_counts() {
    let q = AggregateQuery::parse(WINDOWED, None, &[]).unwrap().unwrap();
    assert_eq!(q.group_columns(), ["category", WINDOW_START, WINDOW_END]);
    let input = events(3_000, 5);
    let out = streamed(&q, &input, &[1000, 2000]);
    // Every row in exactly one 5-minute window, aligned to the epoch.
    let n: i64 = out.column("n").unwrap().as_materialized_series().sum().unwrap();
    assert_eq!(n, 3_000);
    let starts = out.column(WINDOW_START).unwrap().as_materialized_series().to_physical_repr().into_owned();
    assert!(starts.i64().unwrap().into_no_null_iter().all(|s| s % 300_000_000 == 0), "aligned to the epoch");

    let sliding = "SELECT window_start, window_end, count(*) AS n FROM input GROUP BY window(event_time, '10 minutes', '5 minutes')";
    let q = AggregateQuery::parse(sliding, None, &[]).unwrap().unwrap();
    let out = streamed(&q, &input, &[1500]);
    let n: i64 = out.column("n").unwrap().as_materialized_series().sum().unwrap();
    assert_eq!(n, 6_000, "every row in two windows of 10 minutes sliding by 5");
    // The same windows as a plain loop over the event times finds.
    let (size, slide) = (600_000_000i64, 300_000_000i64);
    let mut expected: std::collections::BTreeMap<i64, i64> = Default::default();
    let times = input.column("event_time").unwrap().as_materialized_series().to_physical_repr().into_owned();
    for t in times.i64().unwrap().into_no_null_iter() {
        let mut start = t.div_euclid(slide) * slide;
        while start + size > t {
            *expected.entry(start).or_default() += 1;
            start -= slide;
        }
    }
    let starts = out.column(WINDOW_START).unwrap().as_materialized_series().to_physical_repr().into_owned();
    let counts = out.column("n").unwrap().as_materialized_series().clone();
    let got: std::collections::BTreeMap<i64, i64> =
        starts.i64().unwrap().into_no_null_iter().zip(counts.i64().unwrap().into_no_null_iter()).collect();
    assert_eq!(got, expected);
    let ends = out.column(WINDOW_END).unwrap().as_materialized_series().to_physical_repr().into_owned();
    assert!(
        starts
            .i64()
            .unwrap()
            .into_no_null_iter()
            .zip(ends.i64().unwrap().into_no_null_iter())
            .all(|(s, e)| e - s == size)
    );
}

#[test]
fn session_windows_streamed_in_any_split_equal_sessions_found_by_a_plain_loop() {
    let query = "SELECT user_id, window_start, window_end, count(*) AS n, sum(amount) AS s FROM input GROUP BY user_id, session_window(event_time, '2 hours')";
    let q = AggregateQuery::parse(query, Some("event_time"), &[]).unwrap().unwrap();
    assert_eq!(q.closes, Some(Closes::SessionEnd));
    let input = events(400, 21);
    // Each user's events in time order: a new session when an event comes after the end of
    // the one before (its last event + the gap), as Spark merges them.
    let gap = 2 * 3_600_000_000i64;
    let times = input.column("event_time").unwrap().as_materialized_series().to_physical_repr().into_owned();
    let users = input.column("user_id").unwrap().i64().unwrap().clone();
    let mut by_user: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for (u, t) in users.into_no_null_iter().zip(times.i64().unwrap().into_no_null_iter()) {
        by_user.entry(u).or_default().push(t);
    }
    let mut expected: std::collections::BTreeSet<(i64, i64, i64, i64)> = Default::default();
    for (u, mut ts) in by_user {
        ts.sort();
        let (mut start, mut end, mut n) = (ts[0], ts[0] + gap, 0);
        for t in ts {
            if t > end {
                expected.insert((u, start, end, n));
                (start, n) = (t, 0);
            }
            end = end.max(t + gap);
            n += 1;
        }
        expected.insert((u, start, end, n));
    }
    for cuts in [vec![], vec![1, 2, 3], vec![100, 101, 300], vec![399]] {
        let out = streamed(&q, &input, &cuts);
        let col = |name: &str| out.column(name).unwrap().as_materialized_series().to_physical_repr().into_owned();
        let (u, s, e, n) = (col("user_id"), col(WINDOW_START), col(WINDOW_END), col("n"));
        let got: std::collections::BTreeSet<(i64, i64, i64, i64)> = (0..out.height())
            .map(|i| {
                let at = |c: &Series| c.i64().unwrap().get(i).unwrap();
                (at(&u), at(&s), at(&e), at(&n))
            })
            .collect();
        assert_eq!(got.len(), out.height(), "one row per session");
        assert_eq!(got, expected, "cuts {cuts:?}");
    }
    // The sums match the batch engine's per session too.
    let batch = sql("SELECT user_id, count(*) AS n, sum(amount) AS s FROM input GROUP BY user_id", input.clone());
    let per_user = streamed(&q, &input, &[50])
        .lazy()
        .group_by([col("user_id")])
        .agg([col("n").sum(), col("s").sum()])
        .collect()
        .unwrap();
    assert_same(&per_user, &batch);
}

#[test]
fn a_session_closes_once_the_watermark_is_past_its_end() {
    let query = "SELECT user_id, window_start, window_end, count(*) AS n FROM input GROUP BY user_id, session_window(event_time, '10 minutes')";
    let q = AggregateQuery::parse(query, Some("event_time"), &[]).unwrap().unwrap();
    assert!(Aggregation::new(q.clone(), OutputMode::Update, Some("event_time")).unwrap_err().contains("update mode"));
    let agg = Aggregation::new(q, OutputMode::Append, Some("event_time")).unwrap();
    let utc = DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
    let at = |minutes: &[i64]| {
        df!["event_time" => minutes.iter().map(|m| m * 60_000_000).collect::<Vec<_>>(), "user_id" => vec![1i64; minutes.len()]]
            .unwrap()
            .lazy()
            .with_column(col("event_time").cast(utc.clone()))
            .collect()
            .unwrap()
    };
    let none = Tables::default();
    // Events at 0 and 5 minutes: one session [0, 15m). A watermark at its end keeps it open
    // (an event at 15m would still join it).
    let step = agg.step(None, at(&[0, 5]), Some(15 * 60_000), &none).unwrap();
    assert_eq!((step.output.height(), step.state.height()), (0, 1));
    // An event at 15m joins it: [0, 25m). An event at 30m starts a new one.
    let step = agg.step(Some(step.state), at(&[15, 30]), Some(26 * 60_000), &none).unwrap();
    assert_eq!(step.output.height(), 1, "[0, 25m) is closed: {}", step.output);
    assert_eq!(step.output.column("n").unwrap().i64().unwrap().get(0), Some(3));
    let end = step.output.column(WINDOW_END).unwrap().as_materialized_series().to_physical_repr().into_owned();
    assert_eq!(end.i64().unwrap().get(0), Some(25 * 60_000_000));
    assert_eq!(step.state.height(), 1, "[30m, 40m) stays open");
}

#[test]
fn an_aggregation_built_in_rust_is_the_sql_it_stands_for() {
    let built = GroupBy::new(["category"])
        .window(Window::fixed("event_time", Duration::from_secs(300), Duration::from_secs(300)))
        .agg("n", Function::CountRows, None)
        .agg("total", Function::Sum, Some("amount"))
        .query(Some("event_time"))
        .unwrap();
    let sql = "SELECT category, window_start, window_end, count(*) AS n, sum(amount) AS total FROM input GROUP BY category, window(event_time, '5 minutes')";
    let parsed = AggregateQuery::parse(sql, Some("event_time"), &[]).unwrap().unwrap();
    let input = events(1_000, 2);
    assert_same(&streamed(&built, &input, &[300, 600]), &streamed(&parsed, &input, &[]));
    assert_eq!((built.closes.clone(), built.output.clone()), (parsed.closes, parsed.output));

    let sessions = GroupBy::new(["user_id"])
        .window(Window::session("event_time", Duration::from_secs(1800)))
        .agg("f", Function::First, Some("amount"))
        .agg("kinds", Function::CountDistinct, Some("category"))
        .query(Some("event_time"))
        .unwrap();
    assert_eq!(sessions.closes, Some(Closes::SessionEnd));
    assert!(GroupBy::new(["k"]).agg("s", Function::Sum, None).query(None).unwrap_err().contains("needs a column"));
}

#[test]
fn a_global_aggregate_is_one_group() {
    let query = "SELECT count(*) AS n, sum(amount) AS s FROM input";
    let q = AggregateQuery::parse(query, None, &[]).unwrap().unwrap();
    let input = events(100, 1);
    assert_same(&streamed(&q, &input, &[30, 60]), &sql(query, input.clone()));
}

#[test]
fn group_by_an_alias_or_a_position_names_the_select_item() {
    let by_alias = "SELECT CAST(event_time AS DATE) AS date, user_id, count(*) AS n FROM input GROUP BY date, 2";
    let q = AggregateQuery::parse(by_alias, Some("event_time"), &[]).unwrap().unwrap();
    assert_eq!(q.keys, ["date", "user_id"]);
    assert_eq!(q.closes, Some(Closes::DayAfter("date".into())), "a date key of the watermark column closes");
    let input = events(300, 9);
    let expected = sql(
        "SELECT CAST(event_time AS DATE) AS date, user_id, count(*) AS n FROM input GROUP BY CAST(event_time AS DATE), user_id",
        input.clone(),
    );
    assert_same(&streamed(&q, &input, &[100]), &expected);
}

#[test]
fn only_the_watermark_column_closes_a_window() {
    let q = AggregateQuery::parse(WINDOWED, Some("event_time"), &[]).unwrap().unwrap();
    assert_eq!(q.closes, Some(Closes::WindowEnd));
    let q = AggregateQuery::parse(WINDOWED, Some("ingested_at"), &[]).unwrap().unwrap();
    assert_eq!(q.closes, None, "rows by another time never turn late, so the window never closes");
    assert!(Aggregation::new(q, OutputMode::Append, Some("ingested_at")).is_err());
}

#[test]
fn a_group_without_a_closing_time_stays_in_the_state() {
    let q = AggregateQuery::parse(
        "SELECT CAST(event_time AS DATE) AS date, count(*) AS n FROM input GROUP BY CAST(event_time AS DATE)",
        Some("event_time"),
        &[],
    )
    .unwrap()
    .unwrap();
    let agg = Aggregation::new(q, OutputMode::Update, Some("event_time")).unwrap();
    let utc = DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
    let input = df!["event_time" => [None, Some(0i64), Some(86_400_000_000 * 3)]]
        .unwrap()
        .lazy()
        .with_column(col("event_time").cast(utc))
        .collect()
        .unwrap();
    // The watermark has passed day 0 (closing at day 1), not day 3.
    let step = agg.step(None, input, Some(2 * 86_400_000), &Tables::default()).unwrap();
    assert_eq!(step.output.height(), 3, "every changed group is written");
    assert_eq!(step.state.height(), 2, "day 0 closed; day 3 and the null date stay: {}", step.state);
    assert_eq!(step.state.column("date").unwrap().null_count(), 1);
}

#[test]
fn integer_sums_are_longs() {
    let q = AggregateQuery::parse("SELECT k, sum(v) AS s FROM input GROUP BY k", None, &[]).unwrap().unwrap();
    let big = df!["k" => [1i32, 1], "v" => [i32::MAX, i32::MAX]].unwrap();
    let out = streamed(&q, &big, &[1]);
    assert_eq!(out.column("s").unwrap().i64().unwrap().get(0), Some(2 * i64::from(i32::MAX)));
}

#[test]
fn row_wise_queries_are_not_aggregations() {
    assert_eq!(AggregateQuery::parse("SELECT a, b * 2 AS c FROM input WHERE a > 0", None, &[]), Ok(None));
}

#[test]
fn what_cannot_merge_is_refused_with_the_reason() {
    for (sql, what) in [
        ("SELECT category, count(*) AS n FROM input GROUP BY category HAVING count(*) > 1", "HAVING"),
        ("SELECT category, count(*) AS n FROM input GROUP BY category ORDER BY n LIMIT 3", "ORDER BY"),
        ("SELECT category, median(amount) AS m FROM input GROUP BY category", "neither a grouping key nor"),
        ("SELECT user_id, count(*) AS n FROM input GROUP BY category", "neither a grouping key"),
        ("SELECT user_id, first(amount) AS f FROM input GROUP BY user_id", "[watermark]"),
        (
            "SELECT count(*) AS n FROM input GROUP BY window(event_time, '1 minute', '5 minutes')",
            "longer than its size",
        ),
        ("SELECT count(*) AS n FROM input GROUP BY window(event_time, 'soon')", "window size"),
        ("SELECT count(*) AS n FROM input GROUP BY session_window(event_time)", "the gap is missing"),
        (
            "SELECT count(*) AS n FROM input GROUP BY window(event_time, '5 minutes'), session_window(event_time, '5 minutes')",
            "two windows",
        ),
        ("SELECT a.c, count(*) AS n FROM input a JOIN input b ON a.c = b.c GROUP BY a.c", "a join with `input b`"),
        ("SELECT c, count(*) AS n FROM other GROUP BY c", "FROM input"),
        ("SELECT count(*) AS n FROM input GROUP BY category", "not in the SELECT"),
        ("SELECT c, count(*) FILTER (WHERE a > 0) AS n FROM input GROUP BY c", "FILTER"),
        ("SELECT c, sum(a) OVER () AS n FROM input GROUP BY c", "OVER"),
        ("SELECT c, count(*) AS n FROM input GROUP BY 3", "no SELECT item 3"),
    ] {
        let e = AggregateQuery::parse(sql, None, &[]).unwrap_err();
        assert!(e.contains(what), "{sql}: {e}");
    }
}
