//! `tidewater bench ingest`: Tidewater streaming NDJSON into Delta, beside plain Polars reading the
//! same files and writing Parquet, in the same process; then the latency of tiny batches.

use super::{CliError, out, thousands};
use crate::EXIT_OK;
use crate::cli::BenchIngestArgs;
use crate::generate::write_events;
use polars::prelude::*;
use polars::sql::SQLContext;
use std::io::Cursor;
use std::path::Path;
use std::time::{Duration, Instant};
use tidewater_connectors::FileSourceProvider;
use tidewater_connectors::files::{FileFormat, FileSpec, InputSchema};
use tidewater_core::{Pipeline, SqlTransform, Trigger};

const SQL: &str = "SELECT event_id, user_id, event_time, category, amount, CAST(event_time AS DATE) AS date FROM input WHERE amount >= 0";

fn schema() -> InputSchema {
    let columns = [
        ("event_id", "string"),
        ("user_id", "int64"),
        ("event_time", "timestamp"),
        ("category", "string"),
        ("amount", "float64"),
    ];
    InputSchema::new(columns.iter().filter_map(|(n, t)| InputSchema::parse_column(n, t).ok()).collect())
}

fn pipeline(landing: &Path, work: &Path, name: &str, max_files: usize) -> Pipeline {
    let spec = FileSpec::new(landing.display().to_string(), FileFormat::Ndjson)
        .with_schema(schema())
        .with_max_files_per_trigger(max_files);
    Pipeline::new(name, FileSourceProvider::new(spec))
        .with_transform(SqlTransform::new(SQL))
        .with_table(work.join(format!("{name}-table")).display().to_string())
        .with_partition_by(["date"])
        .with_checkpoint(work.join(format!("{name}-checkpoint")).display().to_string())
}

/// Plain Polars: read each file (timestamps as text, parsed in the plan), the same SQL, write
/// Parquet. Returns rows written.
fn polars_baseline(landing: &Path, out: &Path) -> Result<usize, CliError> {
    std::fs::create_dir_all(out).map_err(CliError::io(out.display()))?;
    let read_schema = Arc::new(schema().read_schema(false));
    let mut rows = 0;
    let mut files: Vec<_> =
        std::fs::read_dir(landing).map_err(CliError::io(landing.display()))?.filter_map(|e| e.ok()).collect();
    files.sort_by_key(|e| e.path());
    let pl = |e: PolarsError| CliError::Usage(format!("polars baseline: {e}"));
    for (i, entry) in files.iter().enumerate() {
        let bytes = std::fs::read(entry.path()).map_err(CliError::io(entry.path().display()))?;
        let df = JsonReader::new(Cursor::new(bytes))
            .with_json_format(JsonFormat::JsonLines)
            .with_schema(read_schema.clone())
            .finish()
            .map_err(pl)?;
        let lf = df.lazy().with_column(col("event_time").str().to_datetime(
            Some(TimeUnit::Microseconds),
            Some(TimeZone::UTC),
            StrptimeOptions { strict: false, ..Default::default() },
            lit("raise"),
        ));
        let mut ctx = SQLContext::new();
        ctx.register("input", lf);
        let mut result = ctx.execute(SQL).and_then(|q| q.collect()).map_err(pl)?;
        rows += result.height();
        let path = out.join(format!("part-{i:05}.parquet"));
        let file = std::fs::File::create(&path).map_err(CliError::io(path.display()))?;
        ParquetWriter::new(file).finish(&mut result).map_err(pl)?;
    }
    Ok(rows)
}

fn rate(n: f64, d: Duration) -> f64 {
    n / d.as_secs_f64().max(1e-9)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

pub async fn ingest(args: BenchIngestArgs) -> Result<i32, CliError> {
    let temp = tempfile_dir(args.dir.as_deref())?;
    let work = temp.path();
    let landing = work.join("landing");
    let per_file = args.rows.div_ceil(args.files.max(1));
    let generated = write_events(&landing, args.files, per_file, None, 7).map_err(CliError::io(landing.display()))?;
    let mb = generated.bytes as f64 / 1e6;
    out(format_args!(
        "bench ingest: {} events in {} NDJSON files, {mb:.1} MB, in {}",
        thousands(generated.lines as u64),
        generated.files,
        work.display()
    ));

    let started = Instant::now();
    let baseline_rows = polars_baseline(&landing, &work.join("polars-parquet"))?;
    let baseline = started.elapsed();

    let started = Instant::now();
    let report = pipeline(&landing, work, "ingest", 1000).run(Trigger::AvailableNow).await?;
    let tidewater = started.elapsed();
    let written = report.total(|b| b.output_rows);
    if written as usize != baseline_rows {
        return Err(CliError::Usage(format!("tidewater wrote {written} rows but polars {baseline_rows}")));
    }

    out(format_args!("{:<42} {:>10} {:>12} {:>9}", "", "wall", "rows/s", "MB/s"));
    let line = |name: &str, d: Duration| {
        out(format_args!(
            "{name:<42} {:>8.3} s {:>12} {:>9.1}",
            d.as_secs_f64(),
            thousands(rate(generated.lines as f64, d) as u64),
            rate(mb, d)
        ));
    };
    line("polars: read NDJSON + SQL + write Parquet", baseline);
    line("tidewater: stream into Delta (txn commits)", tidewater);
    out(format_args!(
        "ratio tidewater / polars: {:.2}x ({} batches, {} rows)",
        tidewater.as_secs_f64() / baseline.as_secs_f64(),
        report.batches.len(),
        thousands(written)
    ));

    // Tiny batches: one 1,000-row file per trigger.
    let tiny = work.join("tiny-landing");
    write_events(&tiny, args.tiny_batches, 1_000, None, 8).map_err(CliError::io(tiny.display()))?;
    let mut polars_tiny = Vec::new();
    for n in 0..args.tiny_batches {
        let one = work.join(format!("tiny-one-{n}"));
        std::fs::create_dir_all(&one).map_err(CliError::io(one.display()))?;
        let name = format!("events-0008-{n:05}.json");
        std::fs::copy(tiny.join(&name), one.join(&name)).map_err(CliError::io(name))?;
        let started = Instant::now();
        polars_baseline(&one, &work.join(format!("tiny-out-{n}")))?;
        polars_tiny.push(started.elapsed());
    }
    let report = pipeline(&tiny, work, "tiny", 1).run(Trigger::AvailableNow).await?;
    let batches: Vec<Duration> = report.batches.iter().map(|b| Duration::from_micros(b.duration_us)).collect();
    out(format_args!(
        "tiny batches (1,000 rows each, {} batches): median per-batch latency {:.1} ms (offset log + read + transform + Delta commit + commit log); polars read + write Parquet of one such file: median {:.1} ms",
        batches.len(),
        median(batches).as_secs_f64() * 1e3,
        median(polars_tiny).as_secs_f64() * 1e3
    ));
    Ok(EXIT_OK)
}

/// A scratch directory: the one given (kept), or a temporary one (removed on drop).
pub(crate) fn tempfile_dir(dir: Option<&Path>) -> Result<tempfile::TempDir, CliError> {
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(CliError::io(d.display()))?;
            tempfile::Builder::new().prefix("bench-").tempdir_in(d).map_err(CliError::io(d.display()))
        }
        None => tempfile::tempdir().map_err(CliError::io("temporary directory")),
    }
}
