//! `tidewater bench windowed`: the category windows (5 minutes, a 10-minute watermark)
//! streamed in update mode over generated Parquet files, one file per batch, beside one plain
//! Polars group-by of the same rows in the same process; then 1,000-row batches on the warm state.

use super::{cpu_time, ms, quantile, tempfile_dir};
use crate::cli::BenchWindowedArgs;
use crate::output::EXIT_OK;
use crate::output::{CliError, out, thousands};
use polars::prelude::*;
use std::path::Path;
use std::time::{Duration, Instant};
use tidewater_connectors::FileSourceProvider;
use tidewater_connectors::files::{FileFormat, FileSpec};
use tidewater_core::compute::MemoryWatch;
use tidewater_core::ops::aggregate::{AggregateQuery, Aggregation, OutputMode};
use tidewater_core::{Pipeline, Trigger};

const SQL: &str = "SELECT window_start, window_end, category, count(*) AS n, sum(amount) AS total FROM input GROUP BY window(event_time, '5 minutes'), category";

/// 2024-03-01T00:00:00Z in microseconds.
const START_US: i64 = 1_709_251_200_000_000;

/// Writes `files` Parquet files of `rows` events each into `dir`, file `k` starting at `first +
/// k` (in file units of ten minutes of event time), times out of order within two minutes.
fn write_files(dir: &Path, first: usize, files: usize, rows: usize) -> Result<(), CliError> {
    let pl = |e: PolarsError| CliError::Usage(format!("generating events: {e}"));
    std::fs::create_dir_all(dir).map_err(CliError::io(dir.display()))?;
    let utc = DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
    let span_us = 600_000_000i64;
    for k in first..first + files {
        let i: Vec<i64> = (0..rows as i64).collect();
        let step = span_us / rows as i64;
        let mut df = df!["i" => i]
            .map_err(pl)?
            .lazy()
            .select([
                (lit(START_US + k as i64 * span_us) + col("i") * lit(step)
                    - (col("i") * lit(7_919i64)) % lit(120_000_000i64))
                .cast(utc.clone())
                .alias("event_time"),
                (col("i") % lit(8i64)).cast(DataType::String).alias("category"),
                ((col("i") * lit(37i64)) % lit(10_000i64)).cast(DataType::Float64).alias("amount"),
            ])
            .collect()
            .map_err(pl)?;
        let path = dir.join(format!("events-{k:06}.parquet"));
        let file = std::fs::File::create(&path).map_err(CliError::io(path.display()))?;
        ParquetWriter::new(file).finish(&mut df).map_err(pl)?;
    }
    Ok(())
}

/// Plain Polars: every file read, one group-by by 5-minute window and category.
fn polars_windows(dir: &Path) -> Result<(u64, usize), CliError> {
    let pl = |e: PolarsError| CliError::Usage(format!("polars baseline: {e}"));
    let mut paths: Vec<_> =
        std::fs::read_dir(dir).map_err(CliError::io(dir.display()))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let mut frames = Vec::new();
    for path in paths {
        let file = std::fs::File::open(&path).map_err(CliError::io(path.display()))?;
        frames.push(ParquetReader::new(file).finish().map_err(pl)?.lazy());
    }
    let window = 300_000_000i64;
    let t = col("event_time").dt().timestamp(TimeUnit::Microseconds);
    let out = concat(frames, UnionArgs::default())
        .map_err(pl)?
        .with_column((t.clone() - t % lit(window)).alias("window_start"))
        .group_by([col("window_start"), col("category")])
        .agg([len().alias("n"), col("amount").sum().alias("total")])
        .collect()
        .map_err(pl)?;
    let rows: u64 = out.column("n").map_err(pl)?.as_materialized_series().sum().map_err(pl)?;
    Ok((rows, out.height()))
}

fn pipeline(landing: &Path, work: &Path) -> Result<Pipeline, CliError> {
    let query = AggregateQuery::parse(SQL, Some("event_time"), &[])
        .map_err(CliError::Usage)?
        .ok_or_else(|| CliError::Usage("the bench's query is not an aggregation".into()))?;
    let aggregation = Aggregation::new(query, OutputMode::Update, Some("event_time")).map_err(CliError::Usage)?;
    let spec = FileSpec::new(landing.display().to_string(), FileFormat::Parquet).with_max_files_per_trigger(1);
    Ok(Pipeline::new("windowed", FileSourceProvider::new(spec))
        .with_watermark("event_time", Duration::from_secs(600))
        .with_aggregation(aggregation)
        .with_key(["category", "window_start", "window_end"])
        .with_table(work.join("table").display().to_string())
        .with_checkpoint(work.join("checkpoint").display().to_string()))
}

pub async fn windowed(args: BenchWindowedArgs) -> Result<i32, CliError> {
    if args.batches == 0 || args.rows < args.batches {
        return Err(CliError::Usage(format!("--rows {} --batches {}: need a row per batch", args.rows, args.batches)));
    }
    let temp = tempfile_dir(args.dir.as_deref())?;
    let work = temp.path();
    let landing = work.join("landing");
    let per_file = args.rows / args.batches;
    write_files(&landing, 0, args.batches, per_file)?;
    out(format_args!(
        "bench windowed: {} events in {} Parquet files (ten minutes of event time each), 5-minute windows by category, 10-minute watermark, update mode, one file per batch; under {}",
        thousands((per_file * args.batches) as u64),
        args.batches,
        work.display()
    ));
    out(format_args!(
        "{:<44} {:>8} {:>8} {:>12} {:>12} {:>9}",
        "", "wall s", "cpu s", "rows/s", "rows/cpu-s", "peak MiB"
    ));
    let line = |name: &str, wall: Duration, cpu: Duration, rows: u64, peak: u64| {
        out(format_args!(
            "{name:<44} {:>8.2} {:>8.2} {:>12} {:>12} {:>9.0}",
            wall.as_secs_f64(),
            cpu.as_secs_f64(),
            thousands((rows as f64 / wall.as_secs_f64().max(1e-9)) as u64),
            thousands((rows as f64 / cpu.as_secs_f64().max(1e-9)) as u64),
            peak as f64 / (1 << 20) as f64,
        ))
    };

    let (watch, started, cpu) = (MemoryWatch::start(), Instant::now(), cpu_time());
    let (rows, groups) = polars_windows(&landing)?;
    let (polars_wall, polars_cpu) = (started.elapsed(), cpu_time() - cpu);
    line("polars: read + one group-by", polars_wall, polars_cpu, rows, watch.map_or(0, MemoryWatch::peak));

    let (watch, started, cpu) = (MemoryWatch::start(), Instant::now(), cpu_time());
    let report = pipeline(&landing, work)?.run(Trigger::AvailableNow).await?;
    let (wall, spent) = (started.elapsed(), cpu_time() - cpu);
    let streamed = report.total(|b| b.input_records);
    line(
        &format!("tidewater: {} batches, update mode", report.batches.len()),
        wall,
        spent,
        streamed,
        watch.map_or(0, MemoryWatch::peak),
    );
    let last = report.batches.last();
    let latency: Vec<Duration> = report.batches.iter().map(|b| Duration::from_micros(b.duration_us)).collect();
    out(format_args!(
        "rows per CPU-second against Polars: {:.2}x (aim: >= 0.7x); {} group rows written over the batches ({} groups in all, by Polars), state after the last batch: {} groups, {} bytes; per batch of {} rows: median {:.1} ms, p90 {:.1} ms",
        (streamed as f64 / spent.as_secs_f64().max(1e-9)) / (rows as f64 / polars_cpu.as_secs_f64().max(1e-9)),
        thousands(report.total(|b| b.output_rows)),
        groups,
        last.and_then(|b| b.state_rows).unwrap_or_default(),
        last.and_then(|b| b.state_bytes).unwrap_or_default(),
        thousands(per_file as u64),
        ms(quantile(latency.clone(), 0.5)),
        ms(quantile(latency, 0.9)),
    ));
    if streamed != rows || report.total(|b| b.late) != 0 {
        return Err(CliError::Usage(format!(
            "the stream read {streamed} rows ({} late), Polars {rows}: the two must see the same rows",
            report.total(|b| b.late)
        )));
    }

    // Warm state: 1,000-row batches after the stream, in the same query.
    write_files(&landing, args.batches, 20, 1_000)?;
    let report = pipeline(&landing, work)?.run(Trigger::AvailableNow).await?;
    let latency: Vec<Duration> = report.batches.iter().map(|b| Duration::from_micros(b.duration_us)).collect();
    out(format_args!(
        "1,000-row batches on the warm state: {} batches, median {:.1} ms, p90 {:.1} ms (aim: < 30 ms)",
        latency.len(),
        ms(quantile(latency.clone(), 0.5)),
        ms(quantile(latency, 0.9)),
    ));
    Ok(EXIT_OK)
}
