//! `tidewater bench reconcile`: the consistency checker on two large tables written by Tidewater's
//! sink, beside a plain Polars full outer join on the key over the same Parquet files.

use super::{peak_rss_mb, tempfile_dir};
use crate::cli::BenchReconcileArgs;
use crate::output::EXIT_OK;
use crate::output::{CliError, out, thousands};
use polars::prelude::*;
use std::path::Path;
use std::time::{Duration, Instant};
use tidewater_connectors::Reconciler;
use tidewater_core::BatchId;
use tidewater_core::sink::{DeltaSink, WriteKind};

const DAYS: i64 = 28;

/// Rows `[from, to)`: key `id`, a date partition, a category and an amount; `changed` ids get a
/// different amount.
fn rows(from: usize, to: usize, changed: &[i64]) -> Result<DataFrame, CliError> {
    let pl = |e: PolarsError| CliError::Usage(format!("generating rows: {e}"));
    let ids: Vec<i64> = (from as i64..to as i64).collect();
    let day: Vec<i32> = ids.iter().map(|i| 19_783 + (i % DAYS) as i32).collect(); // 2024-03-01..
    let category: Vec<&str> = ids.iter().map(|i| ["a", "b", "c", "d", "e"][(i % 5) as usize]).collect();
    let amount: Vec<f64> =
        ids.iter().map(|i| (i * 7919 % 100_000) as f64 / 100.0 + if changed.contains(i) { 1.0 } else { 0.0 }).collect();
    let date = Series::new("date".into(), day).cast(&DataType::Date).map_err(pl)?;
    DataFrame::new_infer_height(vec![
        Series::new("id".into(), ids).into_column(),
        Series::new("category".into(), category).into_column(),
        Series::new("amount".into(), amount).into_column(),
        date.into_column(),
    ])
    .map_err(pl)
}

/// Writes `n` rows through the Delta sink in batches of `per_batch` (the layout differs with it).
async fn write_table(path: &Path, n: usize, per_batch: usize, changed: &[i64]) -> Result<(), CliError> {
    let url = tidewater_core::location::table_url(&path.display().to_string())?;
    let mut sink = DeltaSink::new(url, "bench", WriteKind::Batch).with_partition_by(vec!["date".into()]);
    for (k, from) in (0..n).step_by(per_batch).enumerate() {
        let frame = rows(from, (from + per_batch).min(n), changed)?;
        sink.append(BatchId::new(k as u64), frame, "bench rows").await?;
    }
    sink.settle().await;
    Ok(())
}

/// Plain Polars: read both tables' Parquet files, full outer join on `id`, count rows that differ.
fn polars_join(left: &Path, right: &Path) -> Result<usize, CliError> {
    let pl = |e: PolarsError| CliError::Usage(format!("polars baseline: {e}"));
    let scan = |table: &Path| -> Result<LazyFrame, CliError> {
        let mut frames = Vec::new();
        let mut stack = vec![table.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).map_err(CliError::io(dir.display()))? {
                let path = entry.map_err(CliError::io(dir.display()))?.path();
                if path.is_dir() && !path.ends_with("_delta_log") {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "parquet") {
                    let file = std::fs::File::open(&path).map_err(CliError::io(path.display()))?;
                    frames.push(ParquetReader::new(file).finish().map_err(pl)?.lazy());
                }
            }
        }
        concat(frames, UnionArgs::default()).map_err(pl)
    };
    let joined = scan(left)?
        .join(scan(right)?, [col("id")], [col("id")], JoinArgs::new(JoinType::Full).with_suffix(Some("_r".into())))
        .filter(
            col("id")
                .is_null()
                .or(col("id_r").is_null())
                .or(col("amount").neq(col("amount_r")))
                .or(col("category").neq(col("category_r"))),
        )
        .collect()
        .map_err(pl)?;
    Ok(joined.height())
}

pub async fn reconcile(args: BenchReconcileArgs) -> Result<i32, CliError> {
    let temp = tempfile_dir(args.dir.as_deref())?;
    let work = temp.path();
    let (left, right, damaged) = (work.join("left"), work.join("right"), work.join("damaged"));
    let changed: Vec<i64> = (0..args.changed as i64).map(|k| (k * 999_983) % args.rows as i64).collect();
    let started = Instant::now();
    let (a, b) = ((args.rows / 10).max(1), (args.rows / 7).max(1));
    write_table(&left, args.rows, a, &[]).await?;
    write_table(&right, args.rows, b, &[]).await?;
    write_table(&damaged, args.rows, b, &changed).await?;
    out(format_args!(
        "bench reconcile: 3 tables of {} rows (28 date partitions; commits of {} and {} rows) written in {:.1} s under {}",
        thousands(args.rows as u64),
        thousands(a as u64),
        thousands(b as u64),
        started.elapsed().as_secs_f64(),
        work.display()
    ));
    let rss_after_setup = peak_rss_mb();

    let time = |d: Duration| format!("{:>8.3} s", d.as_secs_f64());
    out(format_args!("{:<58} {:>10} {:>12}", "", "wall", "result"));
    for (name, other) in [("identical", &right), (&*format!("{} changed rows", args.changed), &damaged)] {
        let started = Instant::now();
        let report = Reconciler::new(left.display().to_string(), other.display().to_string()).key(["id"]).run().await?;
        let tidewater = started.elapsed();
        let found = report.counts.values().sum::<u64>();
        out(format_args!(
            "{:<58} {} {:>12}   ({} partitions settled from the logs, {} rows read)",
            format!("tidewater reconcile --key id, {name}"),
            time(tidewater),
            format!("{found} diffs"),
            report.partitions_matched_by_fingerprint,
            thousands(report.rows_read)
        ));
        let started = Instant::now();
        let (l, o) = (left.clone(), other.to_path_buf());
        let rows = tokio::task::spawn_blocking(move || polars_join(&l, &o))
            .await
            .map_err(|e| CliError::Usage(format!("baseline thread: {e}")))??;
        let baseline = started.elapsed();
        out(format_args!(
            "{:<58} {} {:>12}   (ratio tidewater / polars {:.3}x)",
            format!("polars: read + full outer join on id, {name}"),
            time(baseline),
            format!("{rows} diffs"),
            tidewater.as_secs_f64() / baseline.as_secs_f64()
        ));
    }
    // Bounded memory: the changed table again, every file read (no fingerprint step: --ignore
    // nothing but a column selection forces rows), within the memory limit.
    let started = Instant::now();
    let report = Reconciler::new(left.display().to_string(), damaged.display().to_string())
        .key(["id"])
        .columns(["id", "category", "amount", "date"])
        .memory_limit(args.memory.as_u64())
        .spill_dir(work.join("spill"))
        .run()
        .await?;
    out(format_args!(
        "{:<58} {} {:>12}   ({} buckets, {} equal by fingerprint, {} rows read {}x{})",
        format!("tidewater reconcile --columns (all) --memory {}, changed", args.memory),
        time(started.elapsed()),
        format!("{} diffs", report.counts.values().sum::<u64>()),
        report.buckets,
        report.buckets_matched_by_fingerprint,
        thousands(report.rows_read),
        report.passes,
        if report.spilled { ", differing rows spilled" } else { "" }
    ));
    if args.keep {
        out(format_args!("tables kept: {}", temp.keep().display()));
    }
    out(format_args!(
        "peak RSS: {rss_after_setup:.0} MB after writing the tables; {:.0} MB at the end (the join baseline's)",
        peak_rss_mb()
    ));
    Ok(EXIT_OK)
}
