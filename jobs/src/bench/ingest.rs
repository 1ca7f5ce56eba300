//! `tidewater bench ingest`: the partitioned ingest job as three whole processes, side by side in
//! one run (Tidewater; the same job by hand in Python with polars + deltalake, a txn per commit;
//! plain Polars writing partitioned Parquet), each measured by the kernel (CPU, peak RSS); then
//! the latency of tiny batches early and late in one long stream.

use super::{Usage, measure, median, ms, quantile, tempfile_dir};
use crate::cli::BenchIngestArgs;
use crate::generate::write_events;
use crate::output::EXIT_OK;
use crate::output::{CliError, out, thousands};
use polars::prelude::*;
use polars::sql::SQLContext;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tidewater_connectors::FileSourceProvider;
use tidewater_connectors::files::{FileFormat, FileSpec, InputSchema};
use tidewater_core::{Pipeline, SqlTransform, Trigger};

const SQL: &str = "SELECT event_id, user_id, event_time, category, amount, CAST(event_time AS DATE) AS date FROM input WHERE amount >= 0";

/// The hand-written baselines, run with `--python` (see the script's docstring).
const PYTHON_BASELINE: &str = include_str!("../../../scripts/bench_python_baseline.py");

const COLUMNS: [(&str, &str); 5] = [
    ("event_id", "string"),
    ("user_id", "int64"),
    ("event_time", "timestamp"),
    ("category", "string"),
    ("amount", "float64"),
];

fn schema() -> InputSchema {
    InputSchema::new(COLUMNS.iter().filter_map(|(n, t)| InputSchema::parse_column(n, t).ok()).collect())
}

/// The job file `tidewater run` gets: the same job as the Python pipeline, plus validation for
/// the quarantine, fingerprints and the checkpoint.
fn job_file(landing: &Path, work: &Path, per_batch: usize) -> String {
    let schema: String = COLUMNS.iter().map(|(n, t)| format!("{n} = \"{t}\"\n")).collect();
    let path = |p: PathBuf| toml::Value::String(p.display().to_string()).to_string();
    format!(
        "name = \"bench\"\ncheckpoint = {}\n\n[source]\nkind = \"files\"\npath = {}\nformat = \"ndjson\"\nmax_files_per_trigger = {per_batch}\n\n[source.schema]\n{schema}\n[transform]\nsql = {}\n\n[sink]\ntable = {}\npartition_by = [\"date\"]\nquarantine = {}\n",
        path(work.join("checkpoint")),
        path(landing.to_path_buf()),
        toml::Value::String(SQL.to_string()),
        path(work.join("table")),
        path(work.join("quarantine")),
    )
}

/// Plain Polars in this process: read each file (timestamps as text, parsed in the plan), the
/// same SQL, write Parquet. Returns rows written.
fn polars_tiny(landing: &Path, out: &Path) -> Result<usize, CliError> {
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

/// One contender's runs.
struct Contender {
    name: &'static str,
    runs: Vec<Usage>,
}

impl Contender {
    fn median(&self, f: fn(&Usage) -> Duration) -> Duration {
        median(self.runs.iter().map(f).collect())
    }
    fn rss(&self) -> u64 {
        median(self.runs.iter().map(|u| u.peak_rss_bytes).collect())
    }
    fn rows_per_cpu_second(&self, rows: u64) -> f64 {
        rows as f64 / self.median(|u| u.cpu).as_secs_f64().max(1e-9)
    }
}

pub async fn ingest(args: BenchIngestArgs) -> Result<i32, CliError> {
    let temp = tempfile_dir(args.dir.as_deref())?;
    let work = temp.path();
    let landing = work.join("landing");
    let per_file = args.rows.div_ceil(args.files.max(1));
    let generated = write_events(&landing, args.files, per_file, None, 7).map_err(CliError::io(landing.display()))?;
    let per_batch = args.files_per_batch.max(1);
    let commits = generated.files.div_ceil(per_batch);
    out(format_args!(
        "bench ingest: {} events in {} NDJSON files ({:.1} MB), {per_batch} files per batch ({commits} commits), partitioned by date; runs of each: {}, alternating; in {}",
        thousands(generated.lines as u64),
        generated.files,
        generated.bytes as f64 / 1e6,
        args.runs.max(1),
        work.display()
    ));

    let python = args.python.clone().unwrap_or_else(default_python);
    let check = Command::new(&python).args(["-c", "import polars, deltalake"]).output();
    if !check.as_ref().is_ok_and(|o| o.status.success()) {
        return Err(CliError::Usage(format!(
            "bench ingest compares against Python polars + deltalake, and `{}` cannot import them: give --python PATH (scripts/test.sh installs them into ~/.cache/tidewater/venv)",
            python.display()
        )));
    }
    let script = work.join("bench_python_baseline.py");
    std::fs::write(&script, PYTHON_BASELINE).map_err(CliError::io(script.display()))?;
    let me = std::env::current_exe().map_err(CliError::io("locating the tidewater binary"))?;

    let mut contenders = [
        Contender { name: "tidewater run (validate, fingerprint, txn)", runs: Vec::new() },
        Contender { name: "python: polars + write_deltalake, txn", runs: Vec::new() },
        Contender { name: "python: plain polars, partitioned parquet", runs: Vec::new() },
    ];
    let mut written: Vec<(&str, u64)> = Vec::new();
    for run in 0..args.runs.max(1) {
        for k in 0..contenders.len() {
            // Alternate the order run by run, so no contender always runs on a warmer cache.
            let which = if run % 2 == 0 { k } else { contenders.len() - 1 - k };
            let dir = work.join(format!("run-{run}-{which}"));
            std::fs::create_dir_all(&dir).map_err(CliError::io(dir.display()))?;
            let mut command = match which {
                0 => {
                    let job = dir.join("job.toml");
                    std::fs::write(&job, job_file(&landing, &dir, per_batch)).map_err(CliError::io(job.display()))?;
                    let mut c = Command::new(&me);
                    c.arg("-q").arg("run").arg(&job).args(["--trigger", "available-now", "--json"]);
                    c
                }
                _ => {
                    let mut c = Command::new(&python);
                    let mode = if which == 1 { "delta" } else { "parquet" };
                    c.arg(&script).arg(mode).arg(&landing).arg(dir.join("out")).arg(per_batch.to_string());
                    c
                }
            };
            let (usage, stdout) = measure(contenders[which].name, &mut command, &dir.join("stderr.log"))?;
            let rows = match which {
                0 => serde_json::from_str::<serde_json::Value>(&stdout).ok().and_then(|report| {
                    report["batches"].as_array().map(|b| b.iter().filter_map(|b| b["output_rows"].as_u64()).sum())
                }),
                _ => stdout.trim().parse().ok(),
            }
            .ok_or_else(|| {
                CliError::Usage(format!("{}: no row count in its output: {stdout}", contenders[which].name))
            })?;
            written.push((contenders[which].name, rows));
            contenders[which].runs.push(usage);
            std::fs::remove_dir_all(&dir).map_err(CliError::io(dir.display()))?;
        }
    }
    let rows = written.first().map_or(0, |w| w.1);
    if written.iter().any(|w| w.1 != rows) {
        return Err(CliError::Usage(format!("the runs wrote different row counts: {written:?}")));
    }
    out(format_args!(
        "{:<44} {:>9} {:>9} {:>14} {:>10}",
        "(medians; rows per CPU-second over the input)", "wall", "CPU", "rows/CPU-s", "peak RSS"
    ));
    for c in &contenders {
        out(format_args!(
            "{:<44} {:>7.2} s {:>7.2} s {:>14} {:>6} MiB",
            c.name,
            c.median(|u| u.wall).as_secs_f64(),
            c.median(|u| u.cpu).as_secs_f64(),
            thousands(c.rows_per_cpu_second(generated.lines as u64) as u64),
            c.rss() / (1 << 20)
        ));
    }
    let [tidewater, python_delta, plain] = &contenders;
    let ratio = |other: &Contender| {
        tidewater.rows_per_cpu_second(generated.lines as u64) / other.rows_per_cpu_second(generated.lines as u64)
    };
    out(format_args!(
        "tidewater: {:.2}x the rows per CPU-second of the Python pipeline (peak RSS {:.2}x), {:.2}x plain Polars'; {} rows written by each",
        ratio(python_delta),
        tidewater.rss() as f64 / python_delta.rss().max(1) as f64,
        ratio(plain),
        thousands(rows)
    ));

    tiny_batches(work, args.tiny_batches).await?;
    Ok(EXIT_OK)
}

/// The Python with polars and deltalake: the venv scripts/test.sh installs, else `python3`.
fn default_python() -> PathBuf {
    let venv = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tidewater/venv/bin/python"));
    venv.filter(|p| p.exists()).unwrap_or_else(|| PathBuf::from("python3"))
}

/// One stream of `n` tiny batches (one 1,000-row file each), in this process: plan-to-commit
/// latency of the first and the last 100 batches, beside plain Polars reading one such file and
/// writing Parquet.
async fn tiny_batches(work: &Path, n: usize) -> Result<(), CliError> {
    if n == 0 {
        return Ok(());
    }
    let tiny = work.join("tiny-landing");
    write_events(&tiny, n, 1_000, None, 8).map_err(CliError::io(tiny.display()))?;
    let mut polars = Vec::new();
    for k in 0..n.min(30) {
        let one = work.join(format!("tiny-one-{k}"));
        std::fs::create_dir_all(&one).map_err(CliError::io(one.display()))?;
        let name = format!("events-0008-{k:05}.json");
        std::fs::copy(tiny.join(&name), one.join(&name)).map_err(CliError::io(name))?;
        let started = Instant::now();
        polars_tiny(&one, &work.join(format!("tiny-out-{k}")))?;
        polars.push(started.elapsed());
    }
    let spec = FileSpec::new(tiny.display().to_string(), FileFormat::Ndjson)
        .with_schema(schema())
        .with_max_files_per_trigger(1);
    let started = Instant::now();
    let report = Pipeline::new("tiny", FileSourceProvider::new(spec))
        .with_transform(SqlTransform::new(SQL))
        .with_table(work.join("tiny-table").display().to_string())
        .with_partition_by(["date"])
        .with_checkpoint(work.join("tiny-checkpoint").display().to_string())
        .run(Trigger::AvailableNow)
        .await?;
    let total = started.elapsed();
    let latency: Vec<Duration> = report.batches.iter().map(|b| Duration::from_micros(b.duration_us)).collect();
    // The first and the last 100 batches (halves of a shorter stream).
    let window = (latency.len() / 2).clamp(1, 100).min(latency.len());
    let (first, last) = (&latency[..window], &latency[latency.len() - window..]);
    out(format_args!(
        "tiny batches: {} batches of 1,000 rows in one stream, {:.1} s; plan-to-commit latency, batches 1-{window}: median {:.1} ms, p99 {:.1} ms; batches {}-{}: median {:.1} ms, p99 {:.1} ms",
        latency.len(),
        total.as_secs_f64(),
        ms(median(first.to_vec())),
        ms(quantile(first.to_vec(), 0.99)),
        latency.len() - window + 1,
        latency.len(),
        ms(median(last.to_vec())),
        ms(quantile(last.to_vec(), 0.99)),
    ));
    out(format_args!(
        "plain polars, one such file read + written as Parquet, in this process: median {:.1} ms of {}",
        ms(median(polars.clone())),
        polars.len()
    ));
    Ok(())
}
