//! `tidewater bench backfill`: a generated Delta source partitioned by day, backfilled by day
//! with `--parallel 1` and `--parallel 2` (`tidewater backfill plan` + `run`, whole processes
//! measured by the kernel), beside plain Polars reading each day's files, running the same SQL
//! and writing partitioned Parquet, in this process.

use super::{Usage, cpu_time, measure, tempfile_dir};
use crate::cli::BenchBackfillArgs;
use crate::output::EXIT_OK;
use crate::output::{CliError, out, thousands};
use polars::prelude::*;
use polars::sql::SQLContext;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use tidewater_core::BatchId;
use tidewater_core::compute::MemoryWatch;
use tidewater_core::sink::{DeltaSink, WriteKind};

const SQL: &str = "SELECT event_id, user_id, category, amount * 2 AS amount2, date FROM input WHERE amount >= 0";

/// 2024-01-01 as days since the epoch.
const FIRST_DAY: i32 = 19_723;

/// Day `d`'s `rows` events.
fn day_rows(d: usize, rows: usize, first_id: i64) -> Result<DataFrame, CliError> {
    let pl = |e: PolarsError| CliError::Usage(format!("generating rows: {e}"));
    let ids: Vec<i64> = (first_id..first_id + rows as i64).collect();
    let users: Vec<i64> = ids.iter().map(|i| i * 31 % 10_007).collect();
    let amount: Vec<f64> = ids.iter().map(|i| (i * 7919 % 120_000) as f64 / 100.0 - 200.0).collect();
    let category: Vec<&str> = ids.iter().map(|i| ["a", "b", "c", "d", "e"][(i % 5) as usize]).collect();
    let date = Series::new("date".into(), vec![FIRST_DAY + d as i32; rows]).cast(&DataType::Date).map_err(pl)?;
    DataFrame::new_infer_height(vec![
        Series::new("event_id".into(), ids).into_column(),
        Series::new("user_id".into(), users).into_column(),
        Series::new("category".into(), category).into_column(),
        Series::new("amount".into(), amount).into_column(),
        date.into_column(),
    ])
    .map_err(pl)
}

/// The source: `days` commits of one day each, `rows` rows in all.
async fn write_source(path: &Path, rows: usize, days: usize) -> Result<(), CliError> {
    let url = tidewater_core::location::table_url(&path.display().to_string())?;
    let mut sink = DeltaSink::new(url, "bench-source", WriteKind::Batch).with_partition_by(vec!["date".into()]);
    let per_day = rows.div_ceil(days);
    for d in 0..days {
        let n = per_day.min(rows - d * per_day);
        sink.append(BatchId::new(d as u64), day_rows(d, n, (d * per_day) as i64)?, "bench source").await?;
    }
    sink.settle().await;
    Ok(())
}

/// The job file of one backfill run.
fn job_file(work: &Path, source: &Path, name: &str) -> Result<PathBuf, CliError> {
    let quote = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
    let text = format!(
        "name = \"{name}\"\ncheckpoint = {}\n\n[source]\nkind = \"delta\"\ntable = {}\n\n[transform]\nsql = {}\n\n[sink]\ntable = {}\npartition_by = [\"date\"]\n",
        quote(&work.join(format!("{name}-checkpoint"))),
        quote(source),
        toml::Value::String(SQL.into()),
        quote(&work.join(name)),
    );
    let path = work.join(format!("{name}.toml"));
    std::fs::write(&path, text).map_err(CliError::io(path.display()))?;
    Ok(path)
}

/// Plain Polars: each day's Parquet files of the source, the same SQL, one Parquet file per
/// day under `out/date=…/`. Returns the rows written.
fn polars_days(source: &Path, out_dir: &Path) -> Result<u64, CliError> {
    let pl = |e: PolarsError| CliError::Usage(format!("polars baseline: {e}"));
    let mut days: Vec<_> = std::fs::read_dir(source)
        .map_err(CliError::io(source.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && !p.ends_with("_delta_log"))
        .collect();
    days.sort();
    let mut rows = 0u64;
    for day in days {
        let name = day.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let date = name.strip_prefix("date=").unwrap_or(&name).to_string();
        let days_since_epoch = chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d")
            .map_err(|e| CliError::Usage(format!("{}: not a date partition: {e}", day.display())))?
            .signed_duration_since(chrono::NaiveDate::default())
            .num_days() as i32;
        let mut frame: Option<DataFrame> = None;
        for entry in std::fs::read_dir(&day).map_err(CliError::io(day.display()))? {
            let path = entry.map_err(CliError::io(day.display()))?.path();
            let file = std::fs::File::open(&path).map_err(CliError::io(path.display()))?;
            let read = ParquetReader::new(file).finish().map_err(pl)?;
            match frame.as_mut() {
                None => frame = Some(read),
                Some(acc) => {
                    acc.vstack_mut_owned(read).map_err(pl)?;
                }
            }
        }
        let Some(frame) = frame else { continue };
        let input = frame.lazy().with_column(lit(days_since_epoch).cast(DataType::Date).alias("date"));
        let mut ctx = SQLContext::new();
        ctx.register("input", input);
        let mut result = ctx.execute(SQL).and_then(|q| q.collect()).map_err(pl)?;
        rows += result.height() as u64;
        let dir = out_dir.join(&name);
        std::fs::create_dir_all(&dir).map_err(CliError::io(dir.display()))?;
        let path = dir.join("part-00000.parquet");
        let file = std::fs::File::create(&path).map_err(CliError::io(path.display()))?;
        ParquetWriter::new(file).finish(&mut result).map_err(pl)?;
    }
    Ok(rows)
}

fn line(name: &str, usage: Usage, rows: u64) {
    out(format_args!(
        "{name:<44} {:>8.2} {:>8.2} {:>12} {:>12} {:>9.0}",
        usage.wall.as_secs_f64(),
        usage.cpu.as_secs_f64(),
        thousands((rows as f64 / usage.wall.as_secs_f64().max(1e-9)) as u64),
        thousands((rows as f64 / usage.cpu.as_secs_f64().max(1e-9)) as u64),
        usage.peak_rss_bytes as f64 / (1 << 20) as f64,
    ));
}

pub async fn backfill(args: BenchBackfillArgs) -> Result<i32, CliError> {
    if args.days == 0 || args.rows < args.days {
        return Err(CliError::Usage(format!(
            "--rows {} --days {}: need at least one row per day",
            args.rows, args.days
        )));
    }
    let temp = tempfile_dir(args.dir.as_deref())?;
    let work = temp.path();
    let source = work.join("source");
    let started = Instant::now();
    write_source(&source, args.rows, args.days).await?;
    out(format_args!(
        "bench backfill: a Delta source of {} rows over {} days (one commit per day) under {}, written in {:.1} s; backfilled by day",
        thousands(args.rows as u64),
        args.days,
        work.display(),
        started.elapsed().as_secs_f64()
    ));
    out(format_args!(
        "{:<44} {:>8} {:>8} {:>12} {:>12} {:>9}",
        "", "wall s", "cpu s", "rows/s", "rows/cpu-s", "peak MiB"
    ));

    let (watch, started, cpu) = (MemoryWatch::start(), Instant::now(), cpu_time());
    let rows = polars_days(&source, &work.join("polars"))?;
    let polars =
        Usage { wall: started.elapsed(), cpu: cpu_time() - cpu, peak_rss_bytes: watch.map_or(0, MemoryWatch::peak) };
    line("polars: scan + SQL + partitioned Parquet", polars, rows);

    let exe = std::env::current_exe().map_err(CliError::io("the tidewater executable"))?;
    let last = chrono::NaiveDate::default() + chrono::Duration::days(i64::from(FIRST_DAY) + args.days as i64 - 1);
    let mut per_cpu = Vec::new();
    for parallel in [1u8, 2] {
        let name = format!("backfill-p{parallel}");
        let job = job_file(work, &source, &name)?;
        let log = work.join(format!("{name}.log"));
        let mut plan = Command::new(&exe);
        plan.args(["-q", "backfill", "plan"]).arg(&job).args([
            "--from",
            "2024-01-01",
            "--to",
            &last.to_string(),
            "--json",
        ]);
        measure("tidewater backfill plan", &mut plan, &log)?;
        let mut run = Command::new(&exe);
        run.args(["-q", "backfill", "run"]).arg(&job).args(["--parallel", &parallel.to_string(), "--json"]);
        let (usage, stdout) = measure(&format!("tidewater backfill run --parallel {parallel}"), &mut run, &log)?;
        let report: serde_json::Value = serde_json::from_str(&stdout)
            .map_err(|e| CliError::Usage(format!("the report of backfill run --parallel {parallel}: {e}")))?;
        let written: u64 = report["chunks"].as_array().map_or(0, |c| c.iter().filter_map(|c| c["rows"].as_u64()).sum());
        if written != rows {
            return Err(CliError::Usage(format!(
                "backfill run --parallel {parallel} wrote {written} rows, Polars {rows}: the two must write the same rows"
            )));
        }
        line(&format!("tidewater backfill run --parallel {parallel}"), usage, written);
        per_cpu.push(written as f64 / usage.cpu.as_secs_f64().max(1e-9));
    }
    let baseline = rows as f64 / polars.cpu.as_secs_f64().max(1e-9);
    out(format_args!(
        "rows per CPU-second against Polars: --parallel 1 {:.2}x, --parallel 2 {:.2}x (aim: >= 0.9x at --parallel 2)",
        per_cpu[0] / baseline,
        per_cpu[1] / baseline
    ));
    Ok(EXIT_OK)
}
