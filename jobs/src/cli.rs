//! The command line, with clap: the argument types, whose doc comments are the `--help` text.
//! What the commands do with them is in [`crate::cmd`] and [`crate::bench`].

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Tidewater: one transformation, streamed or batched, exactly once into Delta Lake.
///
/// Run a job file as a stream (`run`), reprocess its input as a bounded batch (`batch`), or try
/// everything on generated data (`demo`). Tables are plain Delta tables (the tests read them back
/// with delta-rs, Polars and DuckDB).
///
/// Exit status: 0 success, 1 tables differ (consistency checks), 2 error.
#[derive(Debug, Parser)]
#[command(
    name = "tidewater",
    version,
    max_term_width = 100,
    after_help = "Examples:
  tidewater demo                                       # try it: no services, everything local
  tidewater run events.toml                            # stream a job file
  tidewater batch events.toml --into /data/tables/events_reprocessed
  tidewater reconcile /data/tables/events /data/tables/events_reprocessed
  tidewater verify events.toml                         # stream == batch?

Documentation: README.md and docs/ (operations.md: the command line; job-file.md: every key)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// More logging (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream a job's source through its transform into its Delta table, batch by batch.
    ///
    /// Each micro-batch is one Delta commit carrying txn {appId: query id, version: batch id}, so
    /// a crash or a restart never duplicates or loses a row. Ctrl-C or SIGTERM finishes the batch
    /// in flight, then exits 0.
    #[command(after_help = "Examples:
  tidewater run events.toml                            # stream with the job's trigger until Ctrl-C
  tidewater run events.toml --trigger available-now    # what is there now, in batches, then exit
  tidewater run events.toml --interval 10s             # the job's processing-time trigger, every 10s
  tidewater run events.toml --json > report.json       # the run report as JSON
  tidewater run orders.toml --member \"$POD_NAME\"       # Kafka: one member of the job's consumer group
  tidewater run orders.toml --worker 1/3               # Kafka: a static third of the partitions")]
    Run(RunArgs),
    /// Run the job's transform over its source as a bounded input (reprocessing, backfill).
    ///
    /// For a landing directory: every file present at start; for a Delta table: its snapshot (or
    /// --source-version N). The plan and its app id are recorded in the checkpoint, each chunk is one
    /// idempotent commit: re-running an interrupted batch resumes it, re-running a finished one
    /// writes nothing and says so.
    #[command(after_help = "Examples:
  tidewater batch events.toml --into /data/tables/events_reprocessed   # reprocess into another table
  tidewater batch events.toml --into /data/tables/events_reprocessed   # again: resumes, or does nothing
  tidewater batch copy.toml --source-version 42                        # a Delta source at version 42")]
    Batch(BatchArgs),
    /// Reprocess slices of a job's history: plan by date range, run the chunks (in parallel,
    /// resumable), watch their status.
    ///
    /// Each chunk replaces exactly its slice of the job's sink table (its partitions) with the
    /// transform's new output, in one Delta commit carrying the chunk's own txn, so readers never
    /// see half a chunk, and a chunk killed and run again commits once. Beside the job's running
    /// stream, a chunk reads the source only up to the stream's last committed batch, so the two
    /// together hold every source row once.
    #[command(
        subcommand,
        after_help = "Examples:
  tidewater backfill plan silver.toml --from 2024-01-01 --to 2024-03-31 --by day
  tidewater backfill run silver.toml --parallel 2          # the latest plan
  tidewater backfill status silver.toml --json
  tidewater backfill run silver.toml --worker $JOB_COMPLETION_INDEX/3   # one pod of an Indexed Job"
    )]
    Backfill(BackfillCommand),
    /// Compare two Delta tables: say they are identical (exit 0) or where they differ (exit 1).
    ///
    /// With --key: rows missing on each side, changed rows with the columns that differ, and
    /// duplicate keys. Without: a multiset diff (rows and multiplicities on one side only). Schema
    /// differences are reported before any data is compared. Null equals null, NaN equals NaN,
    /// floats within --tolerance + --rel-tolerance * max(|l|, |r|) are equal (keyed only).
    #[command(after_help = "Examples:
  tidewater reconcile /data/tables/events /data/tables/events_batch --key event_id
  tidewater reconcile s3://lake/events@41 s3://lake/events@42    # two versions of one table
  tidewater reconcile A B --where \"date >= '2024-03-01'\" --ignore ingested_at_ms
  tidewater reconcile A B --report diff.json      # the summary, and the JSON in a file
  tidewater reconcile A B --repair --dry-run      # what a repair of B would do

Exit status: 0 identical, 1 different, 2 error.")]
    Reconcile(ReconcileArgs),
    /// Recompute a job in batch from its source into a scratch table and reconcile it with the
    /// job's sink table: exit 0 when the stream wrote exactly what a batch run writes, 1 if not.
    ///
    /// Compares by the job's sink.key unless --key says otherwise; takes every comparison option
    /// of `reconcile`.
    #[command(after_help = "Examples:
  tidewater verify events.toml
  tidewater verify events.toml --ignore ingested_at_ms --tolerance 1e-9
  tidewater verify events.toml --repair          # make the sink table equal to the recomputation

Exit status: 0 identical, 1 different, 2 error.")]
    Verify(VerifyArgs),
    /// Generate a landing directory of events, stream it into one table and batch it into another.
    #[command(after_help = "Examples:
  tidewater demo                                 # everything under ./tidewater-demo
  tidewater demo --dir /tmp/try --files 4        # a smaller demo elsewhere")]
    Demo(DemoArgs),
    /// Measure a hot path beside a plain-Polars baseline in the same process.
    #[command(
        subcommand,
        after_help = "Examples:
  tidewater bench ingest --rows 1000000 --files 10
  tidewater bench reconcile --rows 10000000 --memory 256MiB
  tidewater bench delta-stream --commits 10000
  tidewater bench backfill --rows 10000000
  tidewater bench kafka --bootstrap-servers 127.0.0.1:9092"
    )]
    Bench(BenchCommand),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job file (TOML).
    pub job: PathBuf,
    /// Override the job's trigger kind (a processing-time trigger keeps the job's interval).
    #[arg(long, value_enum)]
    pub trigger: Option<TriggerKind>,
    /// Override the interval of a processing-time trigger, such as 2s or 500ms (refused with
    /// `once` and `available-now`, which have none).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub interval: Option<std::time::Duration>,
    /// Kafka: read only this worker's static share of the partitions (I of N processes, such as
    /// a Kubernetes Indexed Job's $JOB_COMPLETION_INDEX/N). Its offset log is the checkpoint's
    /// `workers/I-of-N`; each partition's progress is in the table.
    #[arg(long, value_name = "I/N", conflicts_with = "member")]
    pub worker: Option<String>,
    /// Kafka: join the job's consumer group as NAME (such as the pod's name) and read the
    /// partitions the group assigns. Its offset log is the checkpoint's `members/NAME`; each
    /// partition's progress is in the table, so a partition that moves resumes where it was.
    #[arg(long, value_name = "NAME")]
    pub member: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Where the report goes: every command that reports takes these two.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print the report as JSON on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as JSON to FILE (the summary still goes to stdout).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TriggerKind {
    /// A batch every --interval until stopped.
    ProcessingTime,
    /// Everything available at start, in one batch, then exit.
    Once,
    /// Everything available at start, in batches of max_files_per_trigger, then exit.
    AvailableNow,
}

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// The job file (TOML).
    pub job: PathBuf,
    /// Write this table instead of the job's sink table.
    #[arg(long, value_name = "TABLE")]
    pub into: Option<String>,
    /// Read a Delta source at this table version (Spark's versionAsOf).
    #[arg(long, value_name = "N")]
    pub source_version: Option<u64>,
    /// Renamed: `--source-version N`. Kept only to say so.
    #[arg(long = "version", value_name = "N", hide = true)]
    pub old_version: Option<String>,
    /// Plan again with a new app id, even if a plan is recorded (its rows are appended again).
    #[arg(long)]
    pub replan: bool,
    /// A Kafka source: read the messages timed at or after TIME (RFC 3339, or a date for its
    /// midnight UTC) instead of from the earliest offset.
    #[arg(long, value_name = "TIME", value_parser = parse_time_ms)]
    pub from: Option<i64>,
    /// A Kafka source: read up to the first message timed at or after TIME, instead of to the
    /// end at start.
    #[arg(long, value_name = "TIME", value_parser = parse_time_ms)]
    pub to: Option<i64>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// An RFC 3339 time, or a date (its midnight UTC), as epoch milliseconds.
fn parse_time_ms(text: &str) -> Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(|| format!("`{text}` is not a time: give one as 2024-03-02T10:00:00Z or a date, 2024-03-02"))
}

#[derive(Debug, Subcommand)]
pub enum BackfillCommand {
    /// Plan a backfill: one chunk per hour, day or month that holds data, over the source's date
    /// partition column or (--on) an event-time column, with estimated rows and bytes from the
    /// Delta log's file statistics; recorded under the job's checkpoint with a new backfill id.
    /// Nothing is recorded for a refused plan.
    #[command(after_help = "Examples:
  tidewater backfill plan silver.toml --from 2024-01-01 --to 2024-03-31
  tidewater backfill plan silver.toml --from 2024-01-01 --to 2024-12-31 --by month --on date
  tidewater backfill plan silver.toml --from 2024-03-02 --to 2024-03-02 --by hour --on event_time

Over a partition column a chunk replaces whole partitions of the sink table; over a data column
(an event time) it rewrites the sink's files that may hold rows of its range, keeping their other
rows.")]
    Plan(BackfillPlanArgs),
    /// Run a backfill's chunks that the sink table does not record yet (the latest plan unless
    /// --id): killed and run again, it resumes; a finished one writes nothing.
    #[command(after_help = "Examples:
  tidewater backfill run silver.toml --parallel 2
  tidewater backfill run silver.toml --id 20240401T101500-3f2a1c --dry-run
  tidewater backfill run silver.toml --worker 0/3    # chunks 0, 3, 6, … of the plan

Exit status: 0 every chunk of this run's share committed, 2 a chunk failed (the others ran).")]
    Run(BackfillRunArgs),
    /// Every chunk of a backfill: pending, running, done or failed; rows; duration; the sink
    /// table version it committed.
    Status(BackfillStatusArgs),
    /// The job's backfills, oldest first.
    List(BackfillListArgs),
    /// No new chunk of the backfill starts; running chunks finish or leave nothing.
    Cancel(BackfillCancelArgs),
}

#[derive(Debug, Args)]
pub struct BackfillPlanArgs {
    /// The job file (TOML).
    pub job: PathBuf,
    /// First day of the range (YYYY-MM-DD), inclusive.
    #[arg(long, value_name = "DATE", required_unless_present_any = ["versions", "files"])]
    pub from: Option<String>,
    /// Last day of the range (YYYY-MM-DD), inclusive.
    #[arg(long, value_name = "DATE", required_unless_present_any = ["versions", "files"])]
    pub to: Option<String>,
    /// Chunk size: hour (a timestamp column), day or month.
    #[arg(long, value_name = "UNIT", default_value = "day")]
    pub by: String,
    /// The column to plan over: a date partition column, or a date or timestamp column of the
    /// source and the sink (default: the source's only partition column).
    #[arg(long, value_name = "COLUMN")]
    pub on: Option<String>,
    /// Plan over the data files commits A..B (both inclusive) of a Delta source added, such as
    /// 10..250; each chunk replaces the sink's rows of its rows' keys (the job's sink needs a key).
    #[arg(long, value_name = "A..B", conflicts_with_all = ["from", "to", "files"])]
    pub versions: Option<String>,
    /// Plan over every file of a landing directory; each chunk replaces the sink's rows of its
    /// rows' keys (the job's sink needs a key).
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub files: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct BackfillRunArgs {
    /// The job file (TOML).
    pub job: PathBuf,
    /// The backfill (default: the latest planned).
    #[arg(long)]
    pub id: Option<String>,
    /// Chunks at once; memory holds at most this many chunks' input and output.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: u16,
    /// Take only this worker's share of the chunks: I/N takes chunks k with k % N == I.
    #[arg(long, value_name = "I/N")]
    pub worker: Option<String>,
    /// Print what each chunk would read and replace; commit nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct BackfillStatusArgs {
    /// The job file (TOML).
    pub job: PathBuf,
    /// The backfill (default: the latest planned).
    #[arg(long)]
    pub id: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct BackfillListArgs {
    /// The job file (TOML).
    pub job: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct BackfillCancelArgs {
    /// The job file (TOML).
    pub job: PathBuf,
    /// The backfill to cancel.
    #[arg(long)]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The left table: a local path, file:// or s3:// URL, optionally at a version (path@42) or an
    /// instant (path@2024-03-01T00:00:00Z).
    pub left: String,
    /// The right table, in the same form.
    pub right: String,
    /// Not an argument: catches the old `--json FILE` (now `--report FILE`).
    #[arg(hide = true)]
    pub stray: Option<String>,
    #[command(flatten)]
    pub compare: CompareArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Make RIGHT equal to LEFT (the source of truth): replace exactly the differing partitions
    /// of RIGHT (of an unpartitioned table compared by key: the differing keys) with LEFT's
    /// rows in one Delta commit, then compare again.
    #[arg(long)]
    pub repair: bool,
    /// With --repair: say what would be replaced, change nothing.
    #[arg(long, requires = "repair")]
    pub dry_run: bool,
}

/// How two tables are compared: `reconcile` and `verify` take the same options.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Key columns, comma separated. Default: the key recorded in the table (a job's sink.key,
    /// table property tidewater.key); with none, rows are compared as multisets.
    #[arg(long, value_delimiter = ',')]
    pub key: Vec<String>,
    /// Compare as multisets even if the table records a key.
    #[arg(long, conflicts_with = "key")]
    pub no_key: bool,
    /// Compare only these columns (and the key), comma separated.
    #[arg(long, value_delimiter = ',', conflicts_with = "ignore")]
    pub columns: Option<Vec<String>>,
    /// Never compare these columns, comma separated (e.g. a batch-time stamp).
    #[arg(long, value_delimiter = ',')]
    pub ignore: Vec<String>,
    /// Absolute tolerance for floating-point values (keyed comparisons).
    #[arg(long, default_value_t = 0.0, value_name = "ABS")]
    pub tolerance: f64,
    /// Relative tolerance for floating-point values (keyed comparisons).
    #[arg(long, default_value_t = 0.0, value_name = "REL")]
    pub rel_tolerance: f64,
    /// Compare only the rows matching this SQL condition, e.g. "date >= '2024-01-01'".
    #[arg(long = "where", value_name = "CONDITION")]
    pub filter: Option<String>,
    /// Example differences to show per kind.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub samples: usize,
    #[command(flatten)]
    pub memory: MemoryArgs,
}

/// How much memory a comparison may use, and where it spills beyond that.
#[derive(Debug, Args)]
pub struct MemoryArgs {
    /// Memory the comparison may hold, such as 64MiB or 4GiB. Rows that do not fit are
    /// fingerprinted by key-hash bucket and read again for the differing buckets only; those
    /// rows are spilled to disk by bucket when even they do not fit.
    #[arg(long, value_name = "SIZE", default_value = "1GiB")]
    pub memory: bytesize::ByteSize,
    /// Where to spill (default: the system's temporary directory; deleted at the end).
    #[arg(long, value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The job file (TOML).
    pub job: PathBuf,
    /// Not an argument: catches the old `--json FILE` (now `--report FILE`).
    #[arg(hide = true)]
    pub stray: Option<String>,
    #[command(flatten)]
    pub compare: CompareArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Keep the scratch table even when the tables are identical.
    #[arg(long)]
    pub keep: bool,
    /// Replace the sink table's differing partitions (or keys) with the recomputed rows, in one
    /// commit, then compare again.
    #[arg(long)]
    pub repair: bool,
    /// With --repair: say what would be replaced, change nothing.
    #[arg(long, requires = "repair")]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to put the landing directory, the tables and the checkpoints. It must not exist, be
    /// empty, or be an earlier demo's (marked by a .tidewater-demo file), which is replaced; any
    /// other directory is refused and left as it is.
    #[arg(long, default_value = "tidewater-demo")]
    pub dir: PathBuf,
    /// Landing files to generate.
    #[arg(long, default_value_t = 12)]
    pub files: usize,
    /// Events per file.
    #[arg(long, default_value_t = 2_000)]
    pub rows_per_file: usize,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The partitioned ingest job as whole processes, side by side: `tidewater run`, the same job
    /// by hand in Python (polars + deltalake, one commit per batch with a txn) and plain Polars
    /// writing partitioned Parquet; wall, CPU, rows per CPU-second and peak RSS of each. Then the
    /// plan-to-commit latency of tiny batches (one 1,000-row file each), early and late in one
    /// long stream. Needs a Python with polars and deltalake (--python).
    #[command(after_help = "Examples:
  tidewater bench ingest                  # defaults: 2M events, 20 files, 2,000 tiny batches
  tidewater bench ingest --rows 200000 --files 4 --runs 1 --tiny-batches 100 --dir /tmp/bench
  tidewater bench ingest --python ~/.cache/tidewater/venv/bin/python")]
    Ingest(BenchIngestArgs),
    /// Reconcile two identical tables and two differing by 10 changed rows; baseline: a plain
    /// Polars full outer join on the key over the same files.
    #[command(after_help = "Examples:
  tidewater bench reconcile                      # 10,000,000 rows, 10 changed
  tidewater bench reconcile --rows 1000000 --memory 64MiB --dir /tmp/rb --keep")]
    Reconcile(BenchReconcileArgs),
    /// Stream the last commits of a bronze Delta table with few commits and of one with many
    /// (one file per commit, one batch each): the per-batch cost must not grow with the log.
    /// Baseline: plain Polars reading, filtering and writing the same files.
    #[command(after_help = "Examples:
  tidewater bench delta-stream                          # bronze of 10 and 10,000 commits
  tidewater bench delta-stream --commits 1000 --batches 50 --dir /tmp/bench")]
    DeltaStream(BenchDeltaStreamArgs),
    /// Backfill a generated Delta source partitioned by day, by day, with `--parallel 1` and
    /// `--parallel 2` (whole `tidewater backfill` processes); baseline: plain Polars reading each
    /// day's files, the same SQL, partitioned Parquet. Rows/s, rows per CPU-second, peak RSS.
    #[command(after_help = "Examples:
  tidewater bench backfill                              # 10,000,000 rows over 20 days
  tidewater bench backfill --rows 1000000 --days 10 --dir /tmp/bench")]
    Backfill(BenchBackfillArgs),
    /// Stream 5-minute windows by category (10-minute watermark, update mode) over generated
    /// Parquet files, one per batch; baseline: one plain Polars group-by of the same rows. Rows/s,
    /// rows per CPU-second, peak RSS, state size; then 1,000-row batches on the warm state.
    #[command(after_help = "Examples:
  tidewater bench windowed                              # 10,000,000 events in 100 batches
  tidewater bench windowed --rows 1000000 --batches 20 --dir /tmp/bench")]
    Windowed(BenchWindowedArgs),
    /// Produce JSON messages into a new topic of 3 partitions and ingest them into Delta with
    /// the Kafka job (in this process, available-now), beside a plain librdkafka consumer that
    /// only decodes the same messages into Polars (the ceiling); rows/s, rows per CPU-second,
    /// peak RSS. Then the end-to-end latency (produce time in each message -> the
    /// commitInfo.timestamp of the commit that added its row) at a steady produce rate with
    /// interval 0s. Needs a broker: scripts/bench-kafka.sh starts the test broker and runs this.
    #[command(after_help = "Examples:
  scripts/bench-kafka.sh                                # starts a broker, then the defaults:
  tidewater bench kafka --bootstrap-servers HOST:PORT   #   5M messages of 200 bytes; 30 s at 10,000/s
  tidewater bench kafka --bootstrap-servers HOST:PORT --messages 500000 --latency-seconds 10")]
    Kafka(BenchKafkaArgs),
}

#[derive(Debug, Args)]
pub struct BenchKafkaArgs {
    /// The broker (a topic is created for each part of the run).
    #[arg(long, value_name = "HOST:PORT", env = "TIDEWATER_TEST_KAFKA")]
    pub bootstrap_servers: String,
    /// Messages produced for the throughput run.
    #[arg(long, default_value_t = 5_000_000)]
    pub messages: u64,
    /// Bytes of each message's JSON value.
    #[arg(long, default_value_t = 200)]
    pub bytes: usize,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// max_offsets_per_trigger of the job (and the decode-only consumer's chunk).
    #[arg(long, default_value_t = 500_000)]
    pub per_batch: u64,
    /// Messages per second of the latency run.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Seconds of the latency run (0: skip it).
    #[arg(long, default_value_t = 30)]
    pub latency_seconds: u64,
    /// Where to work: a fresh directory made inside DIR, removed afterwards.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchBackfillArgs {
    /// Rows of the generated source.
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: usize,
    /// Days (partitions, one chunk each) the rows are spread over.
    #[arg(long, default_value_t = 20)]
    pub days: usize,
    /// Where to work: a fresh directory made inside DIR, removed afterwards.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchWindowedArgs {
    /// Events generated.
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: usize,
    /// Files, one batch each.
    #[arg(long, default_value_t = 100)]
    pub batches: usize,
    /// Where to work: a fresh directory made inside DIR, removed afterwards.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchDeltaStreamArgs {
    /// Commits of the long bronze table (the short one has 10).
    #[arg(long, default_value_t = 10_000)]
    pub commits: usize,
    /// Commits streamed from the end of each table (at most all of them).
    #[arg(long, default_value_t = 200)]
    pub batches: usize,
    /// Rows per bronze commit.
    #[arg(long, default_value_t = 1_000)]
    pub rows_per_commit: usize,
    /// Where to work: a fresh directory made inside DIR, removed afterwards.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchReconcileArgs {
    /// Rows per table.
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: usize,
    /// Rows changed in the differing table.
    #[arg(long, default_value_t = 10)]
    pub changed: usize,
    /// Also compare the changed table under this memory limit (spilling to key-hash buckets).
    #[arg(long, value_name = "SIZE", default_value = "128MiB")]
    pub memory: bytesize::ByteSize,
    /// Keep the three tables (left, right, damaged) under --dir for other measurements.
    #[arg(long, requires = "dir")]
    pub keep: bool,
    /// Working directory (default: a fresh temporary directory, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchIngestArgs {
    /// Total events to ingest.
    #[arg(long, default_value_t = 2_000_000)]
    pub rows: usize,
    /// Files the events are spread over.
    #[arg(long, default_value_t = 20)]
    pub files: usize,
    /// Files per batch (one Delta commit each).
    #[arg(long, default_value_t = 2)]
    pub files_per_batch: usize,
    /// Runs of each contender (medians are printed).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Tiny batches in the latency stream (0: skip it).
    #[arg(long, default_value_t = 2_000)]
    pub tiny_batches: usize,
    /// The Python that runs the baselines (needs polars and deltalake; default: the venv
    /// scripts/test.sh installs, ~/.cache/tidewater/venv, else python3).
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Where to work: a fresh directory made inside DIR, removed afterwards (default: the
    /// system's temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}
