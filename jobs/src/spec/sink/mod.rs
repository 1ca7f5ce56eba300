//! `[sink]`: one module per kind (`delta`, the default; `console`; `kafka`), each owning its keys
//! (a serde struct that refuses any other key) and their validation. The keys every kind takes
//! (`mode`, `quarantine`, `late`) are read with the kind, first (see `Section`).

mod console;
mod delta;
mod kafka;

use super::file::{JobFile, SpecError};
use super::section::Section;
use serde::Deserialize;
use tidewater_connectors::kafka::{KafkaSinkProvider, KafkaSinkSpec};
use tidewater_core::Pipeline;
use tidewater_core::ops::aggregate::OutputMode;
use toml::de::DeTable;

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

/// A validated sink.
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

/// A `[sink]` table as written: the keys every kind takes, and its kind's own.
#[derive(Debug)]
pub struct RawSink {
    pub mode: Option<String>,
    pub quarantine: Option<String>,
    pub late: Option<String>,
    pub kind: RawSinkKind,
}

/// A `[sink]` table's kind, read by the kind's struct.
#[derive(Debug)]
pub enum RawSinkKind {
    Delta(delta::RawDeltaSink),
    Console(console::RawConsoleSink),
    Kafka(kafka::RawKafkaSink),
}

/// Every key some kind of sink takes, in the order serde's message for a key of no kind lists
/// them (the order of the single struct of all keys that these kinds replaced).
pub(crate) const ANY_KIND_KEYS: &[&str] = &[
    "kind",
    "table",
    "mode",
    "partition_by",
    "key",
    "quarantine",
    "late",
    "num_rows",
    "bootstrap_servers",
    "topic",
    "key_column",
    "headers_column",
    "options",
];

/// The keys of [`Head`].
const HEAD: [&str; 4] = ["kind", "mode", "quarantine", "late"];

/// The part of `[sink]` read first: its kind (default `delta`) and the keys every kind takes.
/// (serde's message when `sink` is not a table names the struct of all keys it replaced.)
#[derive(Deserialize)]
#[serde(expecting = "struct RawSink")]
struct Head {
    kind: Option<String>,
    mode: Option<String>,
    quarantine: Option<String>,
    late: Option<String>,
}

impl RawSink {
    /// Reads `[sink]`: its kind and shared keys, then the rest as that kind's keys.
    pub(crate) fn read(root: &DeTable<'_>, file: &JobFile) -> Result<Self, SpecError> {
        let section = Section::of(root, "sink", ANY_KIND_KEYS, file)?;
        let Head { kind, mode, quarantine, late } = section.head(file)?;
        let kind = kind.as_deref().unwrap_or("delta");
        let kind = match kind {
            "delta" => RawSinkKind::Delta(section.read(kind, &HEAD, file)?),
            "console" => RawSinkKind::Console(section.read(kind, &HEAD, file)?),
            "kafka" => RawSinkKind::Kafka(section.read(kind, &HEAD, file)?),
            other => {
                section.refuse_keys_of_no_kind(file)?;
                return Err(
                    file.err("sink.kind", format!("unknown kind `{other}`; expected `delta`, `console` or `kafka`"))
                );
            }
        };
        Ok(RawSink { mode, quarantine, late, kind })
    }

    pub(crate) fn validate(self, file: &JobFile) -> Result<SinkSpec, SpecError> {
        let mode = match self.mode.as_deref().unwrap_or("append") {
            "append" => OutputMode::Append,
            "update" => OutputMode::Update,
            "complete" => OutputMode::Complete,
            other => {
                return Err(
                    file.err("sink.mode", format!("unknown mode `{other}`; expected append, update or complete"))
                );
            }
        };
        let (kind, table, partition_by, key) = match self.kind {
            RawSinkKind::Delta(delta) => {
                let table = delta.table(file)?;
                (SinkKind::Delta, Some(table), delta.partition_by, delta.key)
            }
            RawSinkKind::Console(console) => (console.validate(file)?, None, Vec::new(), Vec::new()),
            RawSinkKind::Kafka(kafka) => (SinkKind::Kafka(kafka.validate(file)?), None, Vec::new(), Vec::new()),
        };
        Ok(SinkSpec {
            kind,
            table,
            mode,
            partition_by,
            key,
            quarantine: self.quarantine.as_deref().map(|q| file.location("sink.quarantine", q)).transpose()?,
            late: self.late.as_deref().map(|q| file.location("sink.late", q)).transpose()?,
        })
    }
}

impl SinkSpec {
    /// `pipeline` writing into this sink; the problem, at `sink.table`, of a Delta sink without
    /// a table.
    pub fn attach(&self, pipeline: Pipeline) -> Result<Pipeline, String> {
        Ok(match (&self.kind, &self.table) {
            (SinkKind::Delta, Some(table)) => pipeline.with_table(table),
            (SinkKind::Delta, None) => return Err("missing: the Delta table to write".into()),
            (SinkKind::Console { num_rows }, _) => {
                pipeline.with_sink(tidewater_core::sink::ConsoleSink::new(*num_rows))
            }
            (SinkKind::Kafka(kafka), _) => pipeline.with_sink(KafkaSinkProvider::new(kafka.clone())),
        })
    }
}
