//! `tidewater bench delta-stream`: the per-batch cost of streaming a Delta table, on a bronze
//! table with few commits and on one with many, beside plain Polars reading and writing the same
//! files. The cost of a batch must not grow with the length of bronze's log.

use super::{cpu_time, ms, quantile, tempfile_dir};
use crate::cli::BenchDeltaStreamArgs;
use crate::output::EXIT_OK;
use crate::output::{CliError, out, thousands};
use polars::prelude::*;
use std::path::Path;
use std::time::{Duration, Instant};
use tidewater_connectors::{DeltaSourceProvider, DeltaSpec, StartingVersion};
use tidewater_core::compute::MemoryWatch;
use tidewater_core::sink::{DeltaSink, WriteKind};
use tidewater_core::{BatchId, Pipeline, Trigger};

/// Commit `k` of bronze: `rows` events of one day, so one data file per commit.
fn commit_rows(k: usize, rows: usize) -> Result<DataFrame, CliError> {
    let pl = |e: PolarsError| CliError::Usage(format!("generating rows: {e}"));
    let first = (k * rows) as i64;
    let ids: Vec<i64> = (first..first + rows as i64).collect();
    let amount: Vec<f64> = ids.iter().map(|i| (i * 7919 % 100_000) as f64 / 100.0).collect();
    let category: Vec<&str> = ids.iter().map(|i| ["a", "b", "c", "d", "e"][(i % 5) as usize]).collect();
    let date = Series::new("date".into(), vec![19_783 + (k % 28) as i32; rows]).cast(&DataType::Date).map_err(pl)?;
    DataFrame::new_infer_height(vec![
        Series::new("event_id".into(), ids).into_column(),
        Series::new("category".into(), category).into_column(),
        Series::new("amount".into(), amount).into_column(),
        date.into_column(),
    ])
    .map_err(pl)
}

struct Measured {
    per_batch: Vec<Duration>,
    wall: Duration,
    cpu: Duration,
    peak_rss: u64,
    rows: u64,
}

impl Measured {
    fn line(&self, name: &str) {
        out(format_args!(
            "{name:<52} {:>7.2} {:>7.2} {:>8.2} {:>12} {:>9.0}",
            ms(quantile(self.per_batch.clone(), 0.5)),
            ms(quantile(self.per_batch.clone(), 0.9)),
            self.wall.as_secs_f64(),
            thousands((self.rows as f64 / self.cpu.as_secs_f64().max(1e-9)) as u64),
            self.peak_rss as f64 / (1 << 20) as f64,
        ));
    }
}

/// Streams the last `batches` commits of `bronze` (one file each, one batch each) into `silver`.
async fn stream(bronze: &Path, silver: &Path, commits: usize, batches: usize) -> Result<Measured, CliError> {
    let mut spec = DeltaSpec::new(bronze.display().to_string());
    spec.stream.max_files_per_trigger = 1;
    // Version 0 created the table: commit k is version k + 1.
    spec.stream.starting_version = StartingVersion::Version((commits - batches + 1) as u64);
    let pipeline = Pipeline::new("bench-silver", DeltaSourceProvider::new(spec))
        .with_transform(|input: LazyFrame, _: &tidewater_core::BatchContext| {
            Ok(input.filter(col("amount").gt_eq(lit(0.0))).with_column((col("amount") * lit(2.0)).alias("amount2")))
        })
        .with_table(silver.display().to_string())
        .with_partition_by(["date"])
        .with_checkpoint(format!("{}-checkpoint", silver.display()));
    let (watch, started, cpu) = (MemoryWatch::start(), Instant::now(), cpu_time());
    let report = pipeline.run(Trigger::AvailableNow).await?;
    let (wall, cpu) = (started.elapsed(), cpu_time() - cpu);
    Ok(Measured {
        per_batch: report.batches.iter().map(|b| Duration::from_micros(b.duration_us)).collect(),
        wall,
        cpu,
        peak_rss: watch.map_or(0, MemoryWatch::peak),
        rows: report.total(|b| b.output_rows),
    })
}

/// Plain Polars on the same files: read each of the last `batches` commits' Parquet file, apply
/// the same filter and column, write it as Parquet.
fn polars_files(bronze: &Path, out_dir: &Path, batches: usize) -> Result<Measured, CliError> {
    let pl = |e: PolarsError| CliError::Usage(format!("polars baseline: {e}"));
    let mut files = Vec::new();
    for day in std::fs::read_dir(bronze).map_err(CliError::io(bronze.display()))? {
        let day = day.map_err(CliError::io(bronze.display()))?.path();
        if day.is_dir() && !day.ends_with("_delta_log") {
            for f in std::fs::read_dir(&day).map_err(CliError::io(day.display()))? {
                let f = f.map_err(CliError::io(day.display()))?;
                let modified = f.metadata().and_then(|m| m.modified()).map_err(CliError::io(f.path().display()))?;
                files.push((modified, f.path()));
            }
        }
    }
    files.sort();
    let files: Vec<_> = files.into_iter().rev().take(batches).map(|(_, p)| p).collect();
    std::fs::create_dir_all(out_dir).map_err(CliError::io(out_dir.display()))?;
    let (watch, started, cpu) = (MemoryWatch::start(), Instant::now(), cpu_time());
    let (mut per_batch, mut rows) = (Vec::new(), 0u64);
    for (k, path) in files.iter().enumerate() {
        let one = Instant::now();
        let file = std::fs::File::open(path).map_err(CliError::io(path.display()))?;
        let mut df = ParquetReader::new(file)
            .finish()
            .map_err(pl)?
            .lazy()
            .filter(col("amount").gt_eq(lit(0.0)))
            .with_column((col("amount") * lit(2.0)).alias("amount2"))
            .collect()
            .map_err(pl)?;
        rows += df.height() as u64;
        let target = out_dir.join(format!("part-{k:05}.parquet"));
        let file = std::fs::File::create(&target).map_err(CliError::io(target.display()))?;
        ParquetWriter::new(file).finish(&mut df).map_err(pl)?;
        per_batch.push(one.elapsed());
    }
    Ok(Measured {
        per_batch,
        wall: started.elapsed(),
        cpu: cpu_time() - cpu,
        peak_rss: watch.map_or(0, MemoryWatch::peak),
        rows,
    })
}

/// Writes bronze: `commits` commits of `rows` rows through the Delta sink (checkpoints included).
async fn write_bronze(path: &Path, commits: usize, rows: usize) -> Result<(), CliError> {
    let url = tidewater_core::location::table_url(&path.display().to_string())?;
    let mut sink = DeltaSink::new(url, "bench-bronze", WriteKind::Stream).with_partition_by(vec!["date".into()]);
    for k in 0..commits {
        sink.append(BatchId::new(k as u64), commit_rows(k, rows)?, "bench bronze").await?;
    }
    sink.settle().await;
    Ok(())
}

pub async fn delta_stream(args: BenchDeltaStreamArgs) -> Result<i32, CliError> {
    let temp = tempfile_dir(args.dir.as_deref())?;
    let work = temp.path();
    let mut shorts = vec![args.commits.min(10), args.commits];
    shorts.dedup();
    out(format_args!(
        "bench delta-stream: bronze tables of {} commits ({} rows each, one file per commit) under {}; the last {} commits streamed, one file per batch",
        shorts.iter().map(|c| thousands(*c as u64)).collect::<Vec<_>>().join(" and "),
        thousands(args.rows_per_commit as u64),
        work.display(),
        args.batches,
    ));
    out(format_args!(
        "{:<52} {:>7} {:>7} {:>8} {:>12} {:>9}",
        "", "p50 ms", "p90 ms", "wall s", "rows/cpu-s", "peak MiB"
    ));
    let mut medians = Vec::new();
    for commits in shorts {
        let bronze = work.join(format!("bronze-{commits}"));
        let started = Instant::now();
        write_bronze(&bronze, commits, args.rows_per_commit).await?;
        let written = started.elapsed();
        let batches = args.batches.min(commits);
        let streamed = stream(&bronze, &work.join(format!("silver-{commits}")), commits, batches).await?;
        streamed.line(&format!("tidewater, bronze of {} commits", thousands(commits as u64)));
        let baseline = polars_files(&bronze, &work.join(format!("polars-{commits}")), batches)?;
        baseline.line(&format!("polars: read + filter + write each file, {} commits", thousands(commits as u64)));
        out(format_args!("  (bronze written in {:.1} s)", written.as_secs_f64()));
        medians.push(quantile(streamed.per_batch, 0.5));
    }
    if let [few, many] = medians[..] {
        out(format_args!("per-batch median, many commits / few: {:.2}x", ms(many) / ms(few).max(1e-9)));
    }
    Ok(EXIT_OK)
}
