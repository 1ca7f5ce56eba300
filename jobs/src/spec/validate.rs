//! From a [`RawJob`] to a typed [`JobSpec`], with errors that say `file: key: problem`.

use super::raw::{RawJob, RawSource};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tidewater_connectors::files::{FileFormat, FileSpec, InputSchema};
use tidewater_connectors::kafka::{KafkaFormat, KafkaSinkSpec, KafkaSpec, StartingOffsets, Topics};
use tidewater_connectors::rate::RateSpec;
use tidewater_connectors::socket::SocketSpec;
use tidewater_connectors::{DeltaSpec, StartingVersion};
use tidewater_core::Trigger;
use tidewater_core::location::parse_location;
use tidewater_core::ops::aggregate::OutputMode;

/// A job file that cannot run, and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {problem}")]
pub struct SpecError {
    pub file: String,
    pub key: String,
    pub problem: String,
}

#[derive(Clone, Debug)]
pub enum SourceSpec {
    Files(FileSpec),
    Delta(DeltaSpec),
    Kafka(KafkaSpec),
    Rate(RateSpec),
    Socket(SocketSpec),
}

/// Where the job's rows go.
#[derive(Clone, Debug)]
pub enum SinkKind {
    /// The Delta table `SinkSpec::table`.
    Delta,
    /// Each batch printed, its first `num_rows` rows.
    Console {
        num_rows: usize,
    },
    Kafka(KafkaSinkSpec),
}

#[derive(Clone, Debug)]
pub enum TransformSpec {
    Identity,
    Sql(String),
    /// A Rust transform registered in the binary under this name.
    Rust(String),
}

#[derive(Clone, Debug)]
pub struct SinkSpec {
    pub kind: SinkKind,
    /// The Delta table (a `delta` sink's; none for the others).
    pub table: Option<String>,
    /// How an aggregation's results are written (append for a row-wise query).
    pub mode: OutputMode,
    pub partition_by: Vec<String>,
    pub key: Vec<String>,
    pub quarantine: Option<String>,
    /// Where late rows go (jobs with a watermark; default `<table>_late`).
    pub late: Option<String>,
}

/// A validated job.
#[derive(Clone, Debug)]
pub struct JobSpec {
    pub file: PathBuf,
    pub name: String,
    pub checkpoint: String,
    pub source: SourceSpec,
    pub transform: TransformSpec,
    pub sink: SinkSpec,
    pub trigger: Trigger,
    /// `[watermark]`: the event-time column and the delay.
    pub watermark: Option<(String, std::time::Duration)>,
    /// `[dedup] keys`: rows whose keys were seen within the watermark are dropped.
    pub dedup: Option<Vec<String>>,
    /// `[tables]`: static Delta tables the transform reads beside `input`, by name.
    pub tables: Vec<(String, String)>,
}

/// Reads and validates a job file.
pub fn load(file: &Path) -> Result<JobSpec, SpecError> {
    let shown = file.display().to_string();
    let err = |key: &str, problem: String| SpecError { file: shown.clone(), key: key.to_string(), problem };
    let text = std::fs::read_to_string(file).map_err(|e| err("(file)", format!("cannot read: {e}")))?;
    let raw: RawJob = toml::from_str(&text).map_err(|e| {
        let key = e.span().map_or_else(
            || "(syntax)".to_string(),
            |s| {
                let line = text[..s.start.min(text.len())].lines().count().max(1);
                format!("line {line}")
            },
        );
        err(&key, e.message().to_string())
    })?;
    validate(raw, file, &err)
}

fn validate(raw: RawJob, file: &Path, err: &dyn Fn(&str, String) -> SpecError) -> Result<JobSpec, SpecError> {
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let location = |key: &str, value: &str| -> Result<String, SpecError> {
        let resolved = resolve(&base, value);
        parse_location(&resolved).map_err(|e| err(key, e.to_string()))?;
        Ok(resolved)
    };
    if raw.name.trim().is_empty() {
        return Err(err("name", "must not be empty".into()));
    }
    let checkpoint = raw
        .checkpoint
        .as_deref()
        .ok_or_else(|| err("checkpoint", "missing: say where the job keeps its offsets and commits".into()))
        .and_then(|c| location("checkpoint", c))?;
    let source = source(&raw.source, &raw.name, &location, err)?;
    let transform = match (&raw.transform.sql, &raw.transform.rust) {
        (Some(_), Some(_)) => {
            return Err(err("transform", "give either `sql` or `rust`, not both".into()));
        }
        (Some(sql), None) if sql.trim().is_empty() => {
            return Err(err("transform.sql", "is empty".into()));
        }
        (Some(sql), None) => TransformSpec::Sql(sql.clone()),
        (None, Some(name)) => TransformSpec::Rust(name.clone()),
        (None, None) => TransformSpec::Identity,
    };
    let mode = match raw.sink.mode.as_deref().unwrap_or("append") {
        "append" => OutputMode::Append,
        "update" => OutputMode::Update,
        "complete" => OutputMode::Complete,
        other => {
            return Err(err("sink.mode", format!("unknown mode `{other}`; expected append, update or complete")));
        }
    };
    let (kind, table) = sink_kind(&raw.sink, &location, err)?;
    let sink = SinkSpec {
        kind,
        table,
        mode,
        partition_by: raw.sink.partition_by.clone(),
        key: raw.sink.key.clone(),
        quarantine: raw.sink.quarantine.as_deref().map(|q| location("sink.quarantine", q)).transpose()?,
        late: raw.sink.late.as_deref().map(|q| location("sink.late", q)).transpose()?,
    };
    let watermark = match &raw.watermark {
        None if sink.late.is_some() => {
            return Err(err("sink.late", "late rows need a watermark: add a [watermark] section".into()));
        }
        None => None,
        Some(w) => {
            let column = w
                .column
                .clone()
                .filter(|c| !c.trim().is_empty())
                .ok_or_else(|| err("watermark.column", "missing: the event-time column".into()))?;
            if let SourceSpec::Files(files) = &source
                && let Some(schema) = &files.schema
                && !schema.columns.iter().any(|c| c.name == column)
            {
                return Err(err("watermark.column", format!("`{column}` is not a column of source.schema")));
            }
            let delay = w.delay.as_deref().ok_or_else(|| err("watermark.delay", "missing: such as \"10m\"".into()))?;
            let delay =
                humantime::parse_duration(delay).map_err(|e| err("watermark.delay", format!("`{delay}`: {e}")))?;
            Some((column, delay))
        }
    };
    let trigger = parse_trigger(raw.trigger.kind.as_deref(), raw.trigger.interval.as_deref())
        .map_err(|(key, problem)| err(&format!("trigger.{key}"), problem))?;
    let dedup = match &raw.dedup {
        None => None,
        Some(d) if d.keys.is_empty() => {
            return Err(err("dedup.keys", "missing: the columns a duplicate shares, such as [\"event_id\"]".into()));
        }
        Some(d) => {
            if let SourceSpec::Files(FileSpec { schema: Some(schema), .. }) = &source
                && let Some(missing) = d.keys.iter().find(|k| !schema.polars_schema().contains(k.as_str()))
            {
                return Err(err("dedup.keys", format!("`{missing}` is not a column of source.schema")));
            }
            Some(d.keys.clone())
        }
    };
    let mut tables = Vec::new();
    for (name, at) in &raw.tables {
        let key = format!("tables.{name}");
        let plain = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !plain {
            return Err(err(&key, "a table's name is what the SQL reads it by: letters, digits and _".into()));
        }
        if name.eq_ignore_ascii_case("input") {
            return Err(err(&key, "`input` is the stream's name; call the static table something else".into()));
        }
        tables.push((name.clone(), location(&key, at)?));
    }
    Ok(JobSpec {
        file: file.to_path_buf(),
        name: raw.name,
        checkpoint,
        source,
        transform,
        sink,
        trigger,
        watermark,
        dedup,
        tables,
    })
}

fn resolve(base: &Path, value: &str) -> String {
    if value.contains("://") || Path::new(value).is_absolute() {
        value.to_string()
    } else {
        base.join(value).display().to_string()
    }
}

/// The keys each kind of source takes.
const SOURCE_KEYS: [(&str, &[&str]); 5] = [
    ("files", &["path", "format", "schema", "max_files_per_trigger"]),
    (
        "delta",
        &[
            "table",
            "path",
            "files_per_chunk",
            "max_files_per_trigger",
            "max_bytes_per_trigger",
            "starting_version",
            "skip_change_commits",
            "ignore_deletes",
        ],
    ),
    (
        "kafka",
        &[
            "bootstrap_servers",
            "topics",
            "topic_pattern",
            "starting_offsets",
            "max_offsets_per_trigger",
            "format",
            "schema",
            "fail_on_data_loss",
            "group_id",
            "options",
        ],
    ),
    ("rate", &["rows_per_second"]),
    ("socket", &["host", "port"]),
];

fn source(
    raw: &RawSource,
    name: &str,
    location: &dyn Fn(&str, &str) -> Result<String, SpecError>,
    err: &dyn Fn(&str, String) -> SpecError,
) -> Result<SourceSpec, SpecError> {
    let set = [
        ("path", raw.path.is_some()),
        ("table", raw.table.is_some()),
        ("format", raw.format.is_some()),
        ("schema", raw.schema.is_some()),
        ("max_files_per_trigger", raw.max_files_per_trigger.is_some()),
        ("files_per_chunk", raw.files_per_chunk.is_some()),
        ("max_bytes_per_trigger", raw.max_bytes_per_trigger.is_some()),
        ("starting_version", raw.starting_version.is_some()),
        ("skip_change_commits", raw.skip_change_commits.is_some()),
        ("ignore_deletes", raw.ignore_deletes.is_some()),
        ("bootstrap_servers", raw.bootstrap_servers.is_some()),
        ("topics", raw.topics.is_some()),
        ("topic_pattern", raw.topic_pattern.is_some()),
        ("starting_offsets", raw.starting_offsets.is_some()),
        ("max_offsets_per_trigger", raw.max_offsets_per_trigger.is_some()),
        ("fail_on_data_loss", raw.fail_on_data_loss.is_some()),
        ("group_id", raw.group_id.is_some()),
        ("options", raw.options.is_some()),
        ("rows_per_second", raw.rows_per_second.is_some()),
        ("host", raw.host.is_some()),
        ("port", raw.port.is_some()),
    ];
    let kind = raw.kind.as_str();
    if let Some((_, keys)) = SOURCE_KEYS.iter().find(|(k, _)| *k == kind)
        && let Some((key, _)) = set.iter().find(|(key, set)| *set && !keys.contains(key))
    {
        return Err(err(&format!("source.{key}"), format!("is not a key of a `{kind}` source")));
    }
    let positive = |key: &str, n: i64| -> Result<usize, SpecError> {
        usize::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| err(key, format!("{n} is not a positive number")))
    };
    match raw.kind.as_str() {
        "files" => {
            let path =
                raw.path.as_deref().ok_or_else(|| err("source.path", "missing: the landing directory".into()))?;
            let format: FileFormat = raw
                .format
                .as_deref()
                .ok_or_else(|| err("source.format", "missing: ndjson, csv or parquet".into()))?
                .parse()
                .map_err(|e| err("source.format", e))?;
            let mut spec = FileSpec::new(location("source.path", path)?, format);
            if let Some(n) = raw.max_files_per_trigger {
                spec = spec.with_max_files_per_trigger(positive("source.max_files_per_trigger", n)?);
            }
            if let Some(schema) = input_schema(raw, err)? {
                spec = spec.with_schema(schema);
            }
            Ok(SourceSpec::Files(spec))
        }
        "delta" => {
            let table = raw
                .table
                .as_deref()
                .or(raw.path.as_deref())
                .ok_or_else(|| err("source.table", "missing: the Delta table to read".into()))?;
            let mut spec = DeltaSpec::new(location("source.table", table)?);
            if let Some(n) = raw.files_per_chunk {
                spec.files_per_chunk = positive("source.files_per_chunk", n)?;
            }
            let stream = &mut spec.stream;
            if let Some(n) = raw.max_files_per_trigger {
                stream.max_files_per_trigger = positive("source.max_files_per_trigger", n)?;
            }
            if let Some(value) = &raw.max_bytes_per_trigger {
                let key = "source.max_bytes_per_trigger";
                let bytes = match value {
                    toml::Value::Integer(n) => u64::try_from(*n).ok().filter(|&n| n > 0),
                    toml::Value::String(text) => {
                        text.parse::<bytesize::ByteSize>().ok().map(|b| b.as_u64()).filter(|&n| n > 0)
                    }
                    _ => None,
                };
                stream.max_bytes_per_trigger = Some(bytes.ok_or_else(|| {
                    err(key, format!("expected a positive size such as 268435456 or \"256MiB\", found {value}"))
                })?);
            }
            if let Some(value) = &raw.starting_version {
                stream.starting_version = match value {
                    toml::Value::String(s) if s == "latest" => StartingVersion::Latest,
                    toml::Value::Integer(n) if *n >= 0 => StartingVersion::Version(*n as u64),
                    _ => {
                        return Err(err(
                            "source.starting_version",
                            format!("expected a table version (0 or more) or \"latest\", found {value}"),
                        ));
                    }
                };
            }
            stream.skip_change_commits = raw.skip_change_commits.unwrap_or(false);
            stream.ignore_deletes = raw.ignore_deletes.unwrap_or(false);
            Ok(SourceSpec::Delta(spec))
        }
        "kafka" => kafka(raw, name, err).map(SourceSpec::Kafka),
        "rate" => {
            let n = raw.rows_per_second.ok_or_else(|| err("source.rows_per_second", "missing: such as 100".into()))?;
            Ok(SourceSpec::Rate(RateSpec::new(positive("source.rows_per_second", n)? as u64)))
        }
        "socket" => {
            let host = raw.host.clone().unwrap_or_else(|| "localhost".into());
            let port = raw
                .port
                .ok_or_else(|| err("source.port", "missing: the port of the server to read lines from".into()))?;
            let port = u16::try_from(port)
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| err("source.port", format!("{port} is not a TCP port")))?;
            Ok(SourceSpec::Socket(SocketSpec { host, port }))
        }
        other => Err(err(
            "source.kind",
            format!(
                "unknown kind `{other}`; expected {}",
                SOURCE_KEYS.iter().map(|(k, _)| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// `[source.schema]`, if given.
fn input_schema(raw: &RawSource, err: &dyn Fn(&str, String) -> SpecError) -> Result<Option<InputSchema>, SpecError> {
    let Some(columns) = &raw.schema else { return Ok(None) };
    let mut parsed = Vec::new();
    for (name, ty) in columns {
        let key = format!("source.schema.{name}");
        let text =
            ty.as_str().ok_or_else(|| err(&key, format!("expected a type name such as \"int64\", found {ty}")))?;
        parsed.push(InputSchema::parse_column(name, text).map_err(|e| err(&key, e))?);
    }
    Ok(Some(InputSchema::new(parsed)))
}

fn kafka(raw: &RawSource, name: &str, err: &dyn Fn(&str, String) -> SpecError) -> Result<KafkaSpec, SpecError> {
    let servers =
        raw.bootstrap_servers.clone().filter(|s| !s.trim().is_empty()).ok_or_else(|| {
            err("source.bootstrap_servers", "missing: the brokers, such as \"127.0.0.1:9092\"".into())
        })?;
    let topics = match (&raw.topics, &raw.topic_pattern) {
        (Some(_), Some(_)) => {
            return Err(err("source.topic_pattern", "give either `topics` or `topic_pattern`, not both".into()));
        }
        (Some(list), None) if list.is_empty() || list.iter().any(|t| t.trim().is_empty()) => {
            return Err(err("source.topics", "name at least one topic, none empty".into()));
        }
        (Some(list), None) => Topics::List(list.clone()),
        (None, Some(p)) => {
            regex::Regex::new(p).map_err(|e| err("source.topic_pattern", format!("`{p}`: {e}")))?;
            Topics::Pattern(p.clone())
        }
        (None, None) => {
            return Err(err("source.topics", "missing: the topics to read, or a topic_pattern".into()));
        }
    };
    let group = raw.group_id.clone().unwrap_or_else(|| format!("tidewater-{name}"));
    let mut spec = KafkaSpec::new(servers, topics, group);
    spec.format = match raw.format.as_deref().unwrap_or("json") {
        "json" => KafkaFormat::Json(input_schema(raw, err)?.ok_or_else(|| {
            err("source.schema", "missing: a JSON source decodes by its schema ([source.schema] column = \"type\"); or use format = \"raw\"".into())
        })?),
        "raw" if raw.schema.is_some() => {
            return Err(err("source.schema", "a raw source does not decode its values: remove the schema, or use format = \"json\"".into()));
        }
        "raw" => KafkaFormat::Raw,
        other => return Err(err("source.format", format!("unknown format `{other}`; expected json or raw"))),
    };
    if let Some(value) = &raw.starting_offsets {
        let bad = |why: &str| {
            err(
                "source.starting_offsets",
                format!("{why}; expected \"earliest\", \"latest\" or {{ topic = {{ \"0\" = 42 }} }}, found {value}"),
            )
        };
        spec.starting_offsets = match value {
            toml::Value::String(s) if s == "earliest" => StartingOffsets::Earliest,
            toml::Value::String(s) if s == "latest" => StartingOffsets::Latest,
            toml::Value::Table(topics) => {
                let mut exact = std::collections::BTreeMap::new();
                for (topic, partitions) in topics {
                    let partitions =
                        partitions.as_table().ok_or_else(|| bad(&format!("`{topic}` is not a table of partitions")))?;
                    let mut per = std::collections::BTreeMap::new();
                    for (p, at) in partitions {
                        let p: i32 = p
                            .parse()
                            .ok()
                            .filter(|p| *p >= 0)
                            .ok_or_else(|| bad(&format!("`{p}` is not a partition number")))?;
                        let at = at
                            .as_integer()
                            .filter(|n| *n >= 0)
                            .ok_or_else(|| bad(&format!("{topic}/{p}: not an offset")))?;
                        per.insert(p, at);
                    }
                    exact.insert(topic.clone(), per);
                }
                StartingOffsets::Exact(exact)
            }
            _ => return Err(bad("not a starting point")),
        };
    }
    if let Some(n) = raw.max_offsets_per_trigger {
        spec.max_offsets_per_trigger = Some(
            u64::try_from(n)
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| err("source.max_offsets_per_trigger", format!("{n} is not a positive number")))?,
        );
    }
    spec.fail_on_data_loss = raw.fail_on_data_loss.unwrap_or(true);
    for (key, value) in raw.options.iter().flatten() {
        let text = option_text(&format!("source.options.{key}"), value, err)?;
        if matches!(key.as_str(), "enable.auto.commit" | "group.id" | "bootstrap.servers" | "auto.offset.reset") {
            return Err(err(
                &format!("source.options.{key}"),
                "is set by Tidewater (offsets live in the table; group_id and bootstrap_servers are source keys)"
                    .into(),
            ));
        }
        spec.options.insert(key.clone(), text);
    }
    // A client that the options make unusable is refused now, with librdkafka's words.
    spec.check_options().map_err(|e| err("source.options", e))?;
    Ok(spec)
}

/// A librdkafka property's value as text.
fn option_text(key: &str, value: &toml::Value, err: &dyn Fn(&str, String) -> SpecError) -> Result<String, SpecError> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(err(key, format!("expected a string, number or boolean, found {other}"))),
    }
}

/// The keys each kind of sink takes.
const SINK_KEYS: [(&str, &[&str]); 3] = [
    ("delta", &["table", "mode", "partition_by", "key", "quarantine", "late"]),
    ("console", &["mode", "quarantine", "late", "num_rows"]),
    ("kafka", &["mode", "quarantine", "late", "bootstrap_servers", "topic", "key_column", "headers_column", "options"]),
];

/// `[sink] kind` (default `delta`) and its keys.
fn sink_kind(
    raw: &super::raw::RawSink,
    location: &dyn Fn(&str, &str) -> Result<String, SpecError>,
    err: &dyn Fn(&str, String) -> SpecError,
) -> Result<(SinkKind, Option<String>), SpecError> {
    let kind = raw.kind.as_deref().unwrap_or("delta");
    let set = [
        ("table", raw.table.is_some()),
        ("partition_by", !raw.partition_by.is_empty()),
        ("key", !raw.key.is_empty()),
        ("num_rows", raw.num_rows.is_some()),
        ("bootstrap_servers", raw.bootstrap_servers.is_some()),
        ("topic", raw.topic.is_some()),
        ("key_column", raw.key_column.is_some()),
        ("headers_column", raw.headers_column.is_some()),
        ("options", raw.options.is_some()),
    ];
    let Some((_, keys)) = SINK_KEYS.iter().find(|(k, _)| *k == kind) else {
        return Err(err("sink.kind", format!("unknown kind `{kind}`; expected `delta`, `console` or `kafka`")));
    };
    if let Some((key, _)) = set.iter().find(|(key, set)| *set && !keys.contains(key)) {
        return Err(err(&format!("sink.{key}"), format!("is not a key of a `{kind}` sink")));
    }
    Ok(match kind {
        "delta" => {
            let table =
                raw.table.as_deref().ok_or_else(|| err("sink.table", "missing: the Delta table to write".into()))?;
            (SinkKind::Delta, Some(location("sink.table", table)?))
        }
        "console" => {
            let num_rows = match raw.num_rows {
                None => tidewater_core::sink::ConsoleSink::DEFAULT_ROWS,
                Some(n) => {
                    usize::try_from(n).map_err(|_| err("sink.num_rows", format!("{n} is not a number of rows")))?
                }
            };
            (SinkKind::Console { num_rows }, None)
        }
        _ => {
            let servers = raw.bootstrap_servers.clone().filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                err("sink.bootstrap_servers", "missing: the brokers, such as \"127.0.0.1:9092\"".into())
            })?;
            let topic = raw
                .topic
                .clone()
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| err("sink.topic", "missing: the topic to write".into()))?;
            let mut spec = KafkaSinkSpec::new(servers, topic);
            spec.key_column = raw.key_column.clone();
            spec.headers_column = raw.headers_column.clone();
            for (key, value) in raw.options.iter().flatten() {
                let at = format!("sink.options.{key}");
                if KafkaSinkSpec::FIXED_OPTIONS.contains(&key.as_str()) {
                    return Err(err(&at, "is set by Tidewater: the sink's guarantee rests on an idempotent producer (bootstrap_servers is a sink key)".into()));
                }
                spec.options.insert(key.clone(), option_text(&at, value, err)?);
            }
            spec.check_options().map_err(|e| err("sink.options", e))?;
            (SinkKind::Kafka(spec), None)
        }
    })
}

/// Parses a trigger kind and interval; errors name the sub-key (`kind`, `interval`).
fn parse_trigger(kind: Option<&str>, interval: Option<&str>) -> Result<Trigger, (&'static str, String)> {
    let kind = kind.unwrap_or("processing-time");
    if interval.is_some() && matches!(kind, "once" | "available-now") {
        return Err((
            "interval",
            format!("a `{kind}` trigger has no interval: remove it, or use kind = \"processing-time\""),
        ));
    }
    match kind {
        "processing-time" => {
            let interval = match interval {
                None => Duration::ZERO,
                Some(text) => humantime::parse_duration(text).map_err(|e| ("interval", format!("`{text}`: {e}")))?,
            };
            Ok(Trigger::ProcessingTime(interval))
        }
        "once" => Ok(Trigger::Once),
        "available-now" => Ok(Trigger::AvailableNow),
        other => Err(("kind", format!("unknown trigger `{other}`; expected processing-time, once or available-now"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE_JOB: &str = r#"
name = "events"
checkpoint = "/data/checkpoints/events"

[source]
kind = "files"
path = "/data/landing/events"
format = "ndjson"
max_files_per_trigger = 10

[source.schema]
event_id = "string"
user_id = "int64"
event_time = "timestamp"
category = "string"
amount = "float64"

[transform]
sql = "SELECT event_id, user_id, event_time, category, amount, CAST(event_time AS DATE) AS date FROM input WHERE amount >= 0"

[sink]
table = "/data/tables/events"
mode = "append"
partition_by = ["date"]
quarantine = "/data/tables/events_quarantine"

[trigger]
kind = "processing-time"
interval = "2s"
"#;

    fn load_text(text: &str) -> Result<JobSpec, SpecError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("job.toml");
        std::fs::write(&file, text).unwrap();
        load(&file)
    }

    #[test]
    fn the_issue_job_file_loads_as_is() {
        let job = load_text(ISSUE_JOB).unwrap();
        assert_eq!(job.trigger, Trigger::ProcessingTime(Duration::from_secs(2)));
        let SourceSpec::Files(files) = &job.source else { panic!("files source") };
        assert_eq!(files.max_files_per_trigger, 10);
        assert_eq!(files.schema.as_ref().unwrap().columns.len(), 5);
        assert_eq!(job.sink.partition_by, ["date"]);
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let cases = [
            (ISSUE_JOB.replace("int64", "int65"), "source.schema.user_id: unknown type `int65`"),
            (
                ISSUE_JOB.replace("/data/tables/events\"", "hdfs://nn/events\""),
                "sink.table: hdfs://nn/events: unsupported",
            ),
            (ISSUE_JOB.replace("\"2s\"", "\"soon\""), "trigger.interval: `soon`"),
            (
                ISSUE_JOB.replace("kind = \"processing-time\"", "kind = \"once\""),
                "trigger.interval: a `once` trigger has no interval",
            ),
            (ISSUE_JOB.replace("mode = \"append\"", "mode = \"append\"\ncolour = 1"), "unknown field `colour`"),
            (ISSUE_JOB.replace("checkpoint = \"/data/checkpoints/events\"", ""), "checkpoint: missing"),
            (
                ISSUE_JOB.replace("max_files_per_trigger = 10", "files_per_chunk = 10"),
                "source.files_per_chunk: is not a key of a `files` source",
            ),
            (
                format!("{ISSUE_JOB}\n[watermark]\ncolumn = \"ts\"\ndelay = \"1h\"\n"),
                "watermark.column: `ts` is not a column",
            ),
            (
                format!("{ISSUE_JOB}\n[watermark]\ncolumn = \"event_time\"\ndelay = \"an hour\"\n"),
                "watermark.delay: `an hour`",
            ),
        ];
        for (text, expected) in cases {
            let e = load_text(&text).unwrap_err().to_string();
            assert!(e.contains("job.toml: "), "{e}");
            assert!(e.contains(expected), "expected `{expected}` in: {e}");
        }
    }

    /// The bronze → silver job of issue 15, as written there.
    const SILVER_JOB: &str = r#"
name = "silver"
checkpoint = "/data/checkpoints/silver"

[source]
kind = "delta"
table = "/data/tables/bronze"          # partitioned by date
max_files_per_trigger = 8

[transform]
sql = "SELECT event_id, user_id, category, amount * 2 AS amount2, date FROM input WHERE amount >= 0"

[sink]
table = "/data/tables/silver"
mode = "append"
partition_by = ["date"]
key = ["event_id"]
"#;

    #[test]
    fn the_delta_stream_job_loads_with_its_options() {
        let job = load_text(SILVER_JOB).unwrap();
        let SourceSpec::Delta(delta) = &job.source else { panic!("delta source") };
        assert_eq!(delta.stream.max_files_per_trigger, 8);
        assert_eq!(delta.stream.starting_version, StartingVersion::Snapshot);
        let with = |extra: &str| {
            SILVER_JOB.replace("max_files_per_trigger = 8", &format!("max_files_per_trigger = 8\n{extra}"))
        };
        let job = load_text(&with(
            "starting_version = \"latest\"\nmax_bytes_per_trigger = \"1MiB\"\nskip_change_commits = true",
        ))
        .unwrap();
        let SourceSpec::Delta(delta) = &job.source else { panic!("delta source") };
        assert_eq!(delta.stream.starting_version, StartingVersion::Latest);
        assert_eq!(delta.stream.max_bytes_per_trigger, Some(1 << 20));
        assert!(delta.stream.skip_change_commits && !delta.stream.ignore_deletes);
        let job = load_text(&with("starting_version = 12\nignore_deletes = true")).unwrap();
        let SourceSpec::Delta(delta) = &job.source else { panic!("delta source") };
        assert_eq!(delta.stream.starting_version, StartingVersion::Version(12));
        assert!(delta.stream.ignore_deletes);

        let cases = [
            (with("starting_version = \"earliest\""), "source.starting_version: expected a table version"),
            (with("starting_version = -1"), "source.starting_version: expected a table version"),
            (with("max_bytes_per_trigger = \"lots\""), "source.max_bytes_per_trigger: expected a positive size"),
            (SILVER_JOB.replace("= 8", "= 0"), "source.max_files_per_trigger: 0 is not a positive number"),
            (with("skip_change_commits = \"yes\""), "invalid type"),
            (
                ISSUE_JOB.replace("max_files_per_trigger = 10", "starting_version = 3"),
                "source.starting_version: is not a key of a `files` source",
            ),
        ];
        for (text, expected) in cases {
            let e = load_text(&text).unwrap_err().to_string();
            assert!(e.contains(expected), "expected `{expected}` in: {e}");
        }
    }

    const KAFKA_JOB: &str = r#"
name = "orders"
checkpoint = "/data/checkpoints/orders"

[source]
kind = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topics = ["orders"]
max_offsets_per_trigger = 100000

[source.schema]
order_id = "string"

[sink]
table = "/data/tables/orders"
"#;

    #[test]
    fn development_sources_and_other_sinks_load_and_their_mistakes_are_named() {
        const DEV: &str = "name = \"dev\"\ncheckpoint = \"/cp\"\n[source]\nkind = \"rate\"\nrows_per_second = 10\n[sink]\nkind = \"console\"\n";
        let job = load_text(DEV).unwrap();
        assert!(matches!(job.source, SourceSpec::Rate(RateSpec { rows_per_second: 10 })));
        assert!(matches!(job.sink.kind, SinkKind::Console { num_rows: 20 }));
        assert_eq!(job.sink.table, None);
        let socket = DEV.replace("kind = \"rate\"\nrows_per_second = 10", "kind = \"socket\"\nport = 9999");
        let job = load_text(&socket).unwrap();
        let SourceSpec::Socket(spec) = &job.source else { panic!("socket source") };
        assert_eq!((spec.host.as_str(), spec.port), ("localhost", 9999));
        let kafka_sink = DEV.replace(
            "kind = \"console\"\n",
            "kind = \"kafka\"\nbootstrap_servers = \"b:9092\"\ntopic = \"alerts\"\nkey_column = \"value\"\n",
        );
        let job = load_text(&kafka_sink).unwrap();
        let SinkKind::Kafka(kafka) = &job.sink.kind else { panic!("kafka sink") };
        assert_eq!((kafka.topic.as_str(), kafka.key_column.as_deref()), ("alerts", Some("value")));
        let cases = [
            (
                DEV.replace("rows_per_second = 10", "rows_per_second = 0"),
                "source.rows_per_second: 0 is not a positive number",
            ),
            (DEV.replace("rows_per_second = 10", ""), "source.rows_per_second: missing"),
            (
                DEV.replace("rows_per_second = 10", "rows_per_second = 10\npath = \"x\""),
                "source.path: is not a key of a `rate` source",
            ),
            (socket.replace("port = 9999", "port = 70000"), "source.port: 70000 is not a TCP port"),
            (socket.replace("port = 9999", ""), "source.port: missing"),
            (
                DEV.replace("kind = \"rate\"", "kind = \"tcp\""),
                "unknown kind `tcp`; expected `files`, `delta`, `kafka`, `rate`, `socket`",
            ),
            (
                DEV.replace("kind = \"console\"", "kind = \"console\"\ntable = \"/t\""),
                "sink.table: is not a key of a `console` sink",
            ),
            (
                DEV.replace("kind = \"console\"", "kind = \"console\"\ntopic = \"t\""),
                "sink.topic: is not a key of a `console` sink",
            ),
            (DEV.replace("kind = \"console\"", "kind = \"parquet\""), "sink.kind: unknown kind `parquet`"),
            (DEV.replace("kind = \"console\"\n", ""), "sink.table: missing"),
            (kafka_sink.replace("topic = \"alerts\"\n", ""), "sink.topic: missing"),
            (
                kafka_sink.replace("key_column", "partition_by = [\"x\"]\nheaders_column"),
                "sink.partition_by: is not a key of a `kafka` sink",
            ),
            (format!("{kafka_sink}[sink.options]\n\"no.such\" = 1\n"), "sink.options"),
            (format!("{kafka_sink}[sink.options]\nacks = \"1\"\n"), "sink.options.acks: is set by Tidewater"),
        ];
        for (text, expected) in cases {
            let e = load_text(&text).unwrap_err().to_string();
            assert!(e.contains(expected), "expected `{expected}` in: {e}");
        }
    }

    #[test]
    fn a_kafka_job_loads_and_its_mistakes_are_named() {
        let job = load_text(KAFKA_JOB).unwrap();
        let SourceSpec::Kafka(kafka) = &job.source else { panic!("kafka source") };
        assert_eq!(kafka.group_id, "tidewater-orders");
        assert_eq!(kafka.max_offsets_per_trigger, Some(100_000));
        assert!(kafka.fail_on_data_loss);
        let exact = KAFKA_JOB.replace(
            "max_offsets_per_trigger = 100000",
            "starting_offsets = { orders = { \"0\" = 42, \"2\" = 7 } }\n[source.options]\n\"session.timeout.ms\" = 6000",
        );
        let job = load_text(&exact).unwrap();
        let SourceSpec::Kafka(kafka) = &job.source else { panic!("kafka source") };
        assert_eq!(
            kafka.starting_offsets,
            StartingOffsets::Exact([("orders".to_string(), [(0, 42), (2, 7)].into())].into())
        );
        assert_eq!(kafka.options["session.timeout.ms"], "6000");
        let cases = [
            (KAFKA_JOB.replace("bootstrap_servers = \"127.0.0.1:9092\"\n", ""), "source.bootstrap_servers: missing"),
            (KAFKA_JOB.replace("topics = [\"orders\"]", "topics = []"), "source.topics: name at least one topic"),
            (
                KAFKA_JOB.replace("topics = [\"orders\"]", "topics = [\"orders\"]\ntopic_pattern = \"o.*\""),
                "give either `topics` or `topic_pattern`",
            ),
            (KAFKA_JOB.replace("topics = [\"orders\"]", "topic_pattern = \"(\""), "source.topic_pattern: `(`"),
            (KAFKA_JOB.replace("[source.schema]\norder_id = \"string\"\n", ""), "source.schema: missing"),
            (
                KAFKA_JOB.replace("max_offsets_per_trigger = 100000", "starting_offsets = \"soon\""),
                "source.starting_offsets: not a starting point",
            ),
            (KAFKA_JOB.replace("= 100000", "= 0"), "source.max_offsets_per_trigger: 0 is not a positive number"),
            (
                format!("{KAFKA_JOB}\n[source.options]\n\"no.such.option\" = \"1\"\n").replace("\n[sink]", "\n[sink]"),
                "source.options",
            ),
            (
                KAFKA_JOB.replace("max_offsets_per_trigger = 100000", "max_files_per_trigger = 3"),
                "source.max_files_per_trigger: is not a key of a `kafka` source",
            ),
        ];
        for (text, expected) in cases {
            let e = load_text(&text).unwrap_err().to_string();
            assert!(e.contains(expected), "expected `{expected}` in: {e}");
        }
    }
}
