//! `tidewater bench kafka`: JSON messages produced into a topic of 3 partitions, ingested into
//! Delta by the issue's job (in this process, `available-now`) beside a plain consumer that only
//! decodes the same messages into Polars (the ceiling); then the end-to-end latency at a steady
//! produce rate with `interval = 0s`: the produce time each message carries against the
//! `commitInfo.timestamp` of the commit that added its row's file.

use super::{cpu_time, ms, quantile, tempfile_dir};
use crate::cli::BenchKafkaArgs;
use crate::output::EXIT_OK;
use crate::output::{CliError, out, thousands};
use polars::prelude::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::io::Cursor;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};
use tidewater_connectors::files::InputSchema;
use tidewater_connectors::kafka::{KafkaFormat, KafkaSourceProvider, KafkaSpec, Topics};
use tidewater_core::compute::{MemoryWatch, release_memory};
use tidewater_core::{Pipeline, SqlTransform, Trigger};

/// The issue's job, plus the produce time the latency is measured from.
const SQL: &str = "SELECT order_id, customer_id, placed_at, total, produced_us, CAST(placed_at AS DATE) AS date, kafka_partition, kafka_offset FROM input";

const COLUMNS: [(&str, &str); 6] = [
    ("order_id", "string"),
    ("customer_id", "int64"),
    ("placed_at", "timestamp"),
    ("total", "float64"),
    ("produced_us", "int64"),
    ("note", "string"),
];

/// The value of message `i`: a JSON object of `bytes` bytes (padded in `note`), carrying the
/// time it is produced.
fn message(i: u64, produced_us: i64, bytes: usize) -> String {
    let head = format!(
        r#"{{"order_id":"o{i:010}","customer_id":{},"placed_at":"2024-03-02T10:00:00Z","total":{}.25,"produced_us":{produced_us},"note":""#,
        i % 100_000,
        i % 10_000,
    );
    let pad = bytes.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

fn kafka_err(what: &str) -> impl Fn(rdkafka::error::KafkaError) -> CliError + '_ {
    move |e| CliError::Usage(format!("bench kafka: {what}: {e}"))
}

fn polars_err(e: PolarsError) -> CliError {
    CliError::Usage(format!("bench kafka: polars baseline: {e}"))
}

fn client(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    config
}

async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<(), CliError> {
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create().map_err(kafka_err("admin client"))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = admin.create_topics([&new], &AdminOptions::new()).await.map_err(kafka_err("creating the topic"))?;
    for result in results {
        result.map_err(|(t, e)| CliError::Usage(format!("bench kafka: creating topic {t}: {e}")))?;
    }
    Ok(())
}

async fn delete_topic(bootstrap: &str, topic: &str) -> Result<(), CliError> {
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create().map_err(kafka_err("admin client"))?;
    let results = admin.delete_topics(&[topic], &AdminOptions::new()).await.map_err(kafka_err("deleting the topic"))?;
    for result in results {
        result.map_err(|(t, e)| CliError::Usage(format!("bench kafka: deleting topic {t}: {e}")))?;
    }
    Ok(())
}

fn producer(bootstrap: &str, linger_ms: u32) -> Result<BaseProducer, CliError> {
    client(bootstrap)
        .set("linger.ms", linger_ms.to_string())
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .map_err(kafka_err("producer"))
}

/// Sends message `i` to partition `i % partitions`, waiting while the producer's queue is full.
fn send(producer: &BaseProducer, topic: &str, partitions: i32, i: u64, value: &str) -> Result<(), CliError> {
    let key = format!("k{i}");
    let mut record = BaseRecord::to(topic).key(&key).payload(value).partition((i % partitions as u64) as i32);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(kafka_err("producing")(e)),
        }
    }
}

/// Produces `n` messages as fast as the broker takes them.
fn produce_all(bootstrap: &str, topic: &str, partitions: i32, n: u64, bytes: usize) -> Result<(), CliError> {
    let producer = producer(bootstrap, 50)?;
    for i in 0..n {
        send(&producer, topic, partitions, i, &message(i, now_us(), bytes))?;
        if i % 10_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(600)).map_err(kafka_err("flushing the producer"))
}

/// Produces `n` messages at `rate` per second, each stamped with the time it is handed to the
/// producer.
fn produce_steady(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: u64,
    rate: u64,
    bytes: usize,
) -> Result<(), CliError> {
    // librdkafka's default linger (5 ms): a produce request per 5 ms, not one per message.
    let producer = producer(bootstrap, 5)?;
    let started = Instant::now();
    for i in 0..n {
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            producer.poll(Duration::ZERO);
            std::thread::sleep(wait);
        }
        send(&producer, topic, partitions, i, &message(i, now_us(), bytes))?;
    }
    producer.flush(Duration::from_secs(60)).map_err(kafka_err("flushing the producer"))
}

fn schema() -> InputSchema {
    InputSchema::new(COLUMNS.iter().filter_map(|(n, t)| InputSchema::parse_column(n, t).ok()).collect())
}

fn spec(bootstrap: &str, topic: &str, per_batch: u64) -> KafkaSpec {
    let mut spec = KafkaSpec::new(bootstrap, Topics::List(vec![topic.to_string()]), format!("bench-{topic}"));
    spec.format = KafkaFormat::Json(schema());
    spec.max_offsets_per_trigger = Some(per_batch);
    spec
}

fn pipeline(work: &Path, bootstrap: &str, topic: &str, per_batch: u64) -> Pipeline {
    let at = |name: &str| work.join(format!("{topic}-{name}")).display().to_string();
    Pipeline::new(format!("bench-{topic}"), KafkaSourceProvider::new(spec(bootstrap, topic, per_batch)))
        .with_transform(SqlTransform::new(SQL))
        .with_table(at("table"))
        .with_partition_by(["date"])
        .with_quarantine(at("quarantine"))
        .with_checkpoint(at("checkpoint"))
}

struct Measured {
    rows: u64,
    wall: Duration,
    cpu: Duration,
    peak_rss: u64,
}

impl Measured {
    fn rows_per_cpu_second(&self) -> f64 {
        self.rows as f64 / self.cpu.as_secs_f64().max(1e-9)
    }

    fn line(&self, name: &str) {
        out(format_args!(
            "{name:<48} {:>8.2} {:>8.2} {:>12} {:>12} {:>9.0}",
            self.wall.as_secs_f64(),
            self.cpu.as_secs_f64(),
            thousands((self.rows as f64 / self.wall.as_secs_f64().max(1e-9)) as u64),
            thousands(self.rows_per_cpu_second() as u64),
            self.peak_rss as f64 / (1 << 20) as f64,
        ));
    }
}

/// Measures `work` in this process: wall, CPU (every thread's), peak resident memory.
async fn measured<F: std::future::Future<Output = Result<u64, CliError>>>(work: F) -> Result<Measured, CliError> {
    release_memory();
    let (watch, started, cpu) = (MemoryWatch::start(), Instant::now(), cpu_time());
    let rows = work.await?;
    Ok(Measured { rows, wall: started.elapsed(), cpu: cpu_time() - cpu, peak_rss: watch.map_or(0, MemoryWatch::peak) })
}

/// The ceiling: a plain librdkafka consumer reading every message of the topic, the values of
/// each `per_batch` messages joined as NDJSON and decoded by Polars with the same schema (the
/// timestamp parsed). Returns rows decoded.
fn decode_only(bootstrap: &str, topic: &str, partitions: i32, n: u64, per_batch: u64) -> Result<u64, CliError> {
    let consumer: BaseConsumer = client(bootstrap)
        .set("group.id", format!("bench-decode-{topic}"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .map_err(kafka_err("consumer"))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).map_err(kafka_err("assigning"))?;
    }
    consumer.assign(&tpl).map_err(kafka_err("assigning"))?;
    let read_schema = Arc::new(schema().read_schema(false));
    let (mut seen, mut rows, mut buffer, mut in_buffer) = (0u64, 0u64, Vec::new(), 0u64);
    let decode = |buffer: &mut Vec<u8>| -> Result<u64, CliError> {
        let df = JsonReader::new(Cursor::new(std::mem::take(buffer)))
            .with_json_format(JsonFormat::JsonLines)
            .with_schema(read_schema.clone())
            .finish()
            .map_err(polars_err)?
            .lazy()
            .with_column(col("placed_at").str().to_datetime(
                Some(TimeUnit::Microseconds),
                Some(TimeZone::UTC),
                StrptimeOptions { strict: false, ..Default::default() },
                lit("raise"),
            ))
            .collect()
            .map_err(polars_err)?;
        Ok(df.height() as u64)
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen < n {
        if Instant::now() > deadline {
            return Err(CliError::Usage(format!(
                "bench kafka: the decode-only consumer read {seen} of {n} messages in 10 minutes"
            )));
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
        let message = message.map_err(kafka_err("consuming"))?;
        buffer.extend_from_slice(message.payload().unwrap_or_default());
        buffer.push(b'\n');
        (seen, in_buffer) = (seen + 1, in_buffer + 1);
        if in_buffer == per_batch {
            rows += decode(&mut buffer)?;
            in_buffer = 0;
        }
    }
    if in_buffer > 0 {
        rows += decode(&mut buffer)?;
    }
    Ok(rows)
}

/// One commit of a table's log: when it was made and the files it added.
struct Commit {
    timestamp_ms: i64,
    added: Vec<String>,
    records: u64,
}

/// The commits of a local Delta table, read from its JSON log.
fn commits(table: &Path) -> Result<Vec<Commit>, CliError> {
    let log = table.join("_delta_log");
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&log) else { return Ok(out) };
    for entry in entries {
        let path = entry.map_err(CliError::io(log.display()))?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(CliError::io(path.display()))?;
        let mut commit = Commit { timestamp_ms: 0, added: Vec::new(), records: 0 };
        for line in text.lines() {
            let action: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| CliError::Usage(format!("{}: not a Delta log entry: {e}", path.display())))?;
            if let Some(t) = action["commitInfo"]["timestamp"].as_i64() {
                commit.timestamp_ms = t;
            }
            if let Some(add) = action["add"]["path"].as_str() {
                commit.added.push(add.to_string());
                let stats = action["add"]["stats"].as_str().unwrap_or("{}");
                let stats: serde_json::Value = serde_json::from_str(stats).unwrap_or_default();
                commit.records += stats["numRecords"].as_u64().unwrap_or(0);
            }
        }
        out.push(commit);
    }
    Ok(out)
}

/// The latency of every row of `table`: its commit's timestamp minus the produce time it carries.
fn latencies(table: &Path) -> Result<Vec<Duration>, CliError> {
    let mut latency = Vec::new();
    for commit in commits(table)? {
        for file in &commit.added {
            // Add paths are relative URLs (percent-encoded partition values).
            let path = url::Url::from_directory_path(table)
                .ok()
                .and_then(|dir| dir.join(file).ok())
                .and_then(|url| url.to_file_path().ok())
                .ok_or_else(|| CliError::Usage(format!("{}: add path `{file}` is not a file", table.display())))?;
            let f = std::fs::File::open(&path).map_err(CliError::io(path.display()))?;
            let produced =
                ParquetReader::new(f).with_columns(Some(vec!["produced_us".into()])).finish().map_err(polars_err)?;
            let column = produced.column("produced_us").and_then(|c| c.i64().cloned()).map_err(polars_err)?;
            let committed_us = commit.timestamp_ms * 1000;
            latency.extend(column.into_no_null_iter().map(|p| Duration::from_micros((committed_us - p).max(0) as u64)));
        }
    }
    Ok(latency)
}

pub async fn kafka(args: BenchKafkaArgs) -> Result<i32, CliError> {
    let temp = tempfile_dir(args.dir.as_deref())?;
    let work = temp.path();
    let bootstrap = args.bootstrap_servers.as_str();
    let suffix = std::process::id();
    let partitions = args.partitions;
    out(format_args!(
        "bench kafka: {} JSON messages of {} bytes in {partitions} partitions ({:.0} MB) on {bootstrap}, {} per batch; then {} s at {} messages/s with interval 0s (produced from 2 s after the job starts); in {}",
        thousands(args.messages),
        args.bytes,
        (args.messages as f64 * args.bytes as f64) / 1e6,
        thousands(args.per_batch),
        args.latency_seconds,
        thousands(args.rate),
        work.display()
    ));

    let topic = format!("bench-{suffix}");
    create_topic(bootstrap, &topic, partitions).await?;
    let started = Instant::now();
    let (b, t, n, bytes) = (bootstrap.to_string(), topic.clone(), args.messages, args.bytes);
    tokio::task::spawn_blocking(move || produce_all(&b, &t, partitions, n, bytes))
        .await
        .map_err(|e| CliError::Usage(format!("bench kafka: producer: {e}")))??;
    out(format_args!("produced in {:.1} s", started.elapsed().as_secs_f64()));

    out(format_args!(
        "{:<48} {:>8} {:>8} {:>12} {:>12} {:>9}",
        "", "wall s", "CPU s", "rows/s", "rows/CPU-s", "peak MiB"
    ));
    let (b, t, per_batch) = (bootstrap.to_string(), topic.clone(), args.per_batch);
    let ceiling = measured(async move {
        tokio::task::spawn_blocking(move || decode_only(&b, &t, partitions, n, per_batch))
            .await
            .map_err(|e| CliError::Usage(format!("bench kafka: decode-only consumer: {e}")))?
    })
    .await?;
    ceiling.line("decode only: librdkafka consumer + polars JSON");
    let job = pipeline(work, bootstrap, &topic, args.per_batch);
    let ingest = measured(async {
        let report = job.run(Trigger::AvailableNow).await?;
        Ok(report.total(|b| b.output_rows))
    })
    .await?;
    ingest.line("tidewater: kafka -> delta (the issue's job)");
    if ingest.rows != args.messages || ceiling.rows != args.messages {
        return Err(CliError::Usage(format!(
            "bench kafka: {} messages produced, but tidewater wrote {} rows and the decode-only consumer decoded {}",
            args.messages, ingest.rows, ceiling.rows
        )));
    }
    out(format_args!(
        "tidewater: {:.2}x the decode-only ceiling's rows per CPU-second ({:.2}x its rows/s)",
        ingest.rows_per_cpu_second() / ceiling.rows_per_cpu_second(),
        ceiling.wall.as_secs_f64() / ingest.wall.as_secs_f64().max(1e-9)
    ));

    if args.latency_seconds > 0 {
        // The throughput topic goes first: the latency is of a broker holding only its own.
        delete_topic(bootstrap, &topic).await?;
        latency(work, bootstrap, &format!("latency-{suffix}"), &args).await?;
    }
    Ok(EXIT_OK)
}

/// How long the latency run's job runs before the producer starts.
const STARTUP: Duration = Duration::from_secs(2);

/// The steady-rate stream: the job runs with `interval = 0s` while a producer writes `rate`
/// messages a second; every row's latency from its produce time to its commit.
async fn latency(work: &Path, bootstrap: &str, topic: &str, args: &BenchKafkaArgs) -> Result<(), CliError> {
    create_topic(bootstrap, topic, args.partitions).await?;
    let n = args.rate * args.latency_seconds;
    let job = pipeline(work, bootstrap, topic, args.per_batch);
    let stop = job.stop_handle();
    let (b, t, partitions, rate, bytes) =
        (bootstrap.to_string(), topic.to_string(), args.partitions, args.rate, args.bytes);
    // The job starts first: the figures are of the running stream, not of its start.
    let producer = tokio::task::spawn_blocking(move || {
        std::thread::sleep(STARTUP);
        produce_steady(&b, &t, partitions, n, rate, bytes)
    });
    let table = work.join(format!("{topic}-table"));
    let watch = async {
        // Until every message is in the table (or a minute past the produce time), then stop.
        let deadline = Instant::now() + Duration::from_secs(args.latency_seconds + 60);
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let written: u64 = commits(&table)?.iter().map(|c| c.records).sum();
            if written >= n || Instant::now() > deadline {
                break;
            }
        }
        stop.request();
        Ok::<_, CliError>(())
    };
    let run = job.run(Trigger::ProcessingTime(Duration::ZERO));
    tokio::pin!(run);
    let report = tokio::select! {
        // A run that ends before the watch stops it has failed.
        report = &mut run => report?,
        watched = watch => {
            watched?;
            run.await?
        }
    };
    producer.await.map_err(|e| CliError::Usage(format!("bench kafka: producer: {e}")))??;
    let latency = latencies(&table)?;
    if latency.len() as u64 != n {
        return Err(CliError::Usage(format!(
            "bench kafka: {n} messages produced at {} a second, but the table holds {} rows",
            args.rate,
            latency.len()
        )));
    }
    let batches: Vec<Duration> = report.batches.iter().map(|b| Duration::from_micros(b.duration_us)).collect();
    out(format_args!(
        "latency, produce -> delta commit, {} messages at {}/s in {} batches: median {:.0} ms, p99 {:.0} ms, max {:.0} ms; a batch's plan to commit: median {:.0} ms, p99 {:.0} ms",
        thousands(n),
        thousands(args.rate),
        report.batches.len(),
        ms(quantile(latency.clone(), 0.5)),
        ms(quantile(latency.clone(), 0.99)),
        ms(quantile(latency, 1.0)),
        ms(quantile(batches.clone(), 0.5)),
        ms(quantile(batches, 0.99)),
    ));
    Ok(())
}
