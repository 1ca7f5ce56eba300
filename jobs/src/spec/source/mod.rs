//! `[source]`: one module per kind, each owning its keys (a serde struct that refuses any other
//! key) and their validation into the connector's spec. The table is read by its `kind` (see
//! `Section`), so a key of another kind is refused by serde, naming the key and the kind.

mod delta;
mod files;
pub(crate) mod kafka;
mod rate;
mod socket;

use super::file::{JobFile, SpecError};
use super::section::Section;
use polars::prelude::Schema;
use serde::Deserialize;
use std::collections::BTreeMap;
use tidewater_connectors::files::{FileSpec, InputSchema};
use tidewater_connectors::kafka::{KafkaSourceProvider, KafkaSpec};
use tidewater_connectors::rate::{RATE_COLUMNS, RateSourceProvider, RateSpec};
use tidewater_connectors::socket::{SocketSourceProvider, SocketSpec};
use tidewater_connectors::{DeltaSourceProvider, DeltaSpec, FileSourceProvider};
use tidewater_core::Pipeline;
use toml::de::DeTable;

/// A validated source: the connector's own spec.
#[derive(Clone, Debug)]
pub enum SourceSpec {
    Files(FileSpec),
    Delta(DeltaSpec),
    Kafka(KafkaSpec),
    Rate(RateSpec),
    Socket(SocketSpec),
}

/// A `[source]` table as written, read by its kind's struct.
#[derive(Debug)]
pub enum RawSource {
    Files(files::RawFilesSource),
    Delta(delta::RawDeltaSource),
    Kafka(kafka::RawKafkaSource),
    Rate(rate::RawRateSource),
    Socket(socket::RawSocketSource),
}

/// The kinds, in the order an unknown kind's message lists them.
const KINDS: [&str; 5] = ["files", "delta", "kafka", "rate", "socket"];

/// Every key some kind of source takes, in the order serde's message for a key of no kind
/// lists them (the order of the single struct of all keys that these kinds replaced).
pub(crate) const ANY_KIND_KEYS: &[&str] = &[
    "kind",
    "path",
    "table",
    "format",
    "max_files_per_trigger",
    "files_per_chunk",
    "max_bytes_per_trigger",
    "starting_version",
    "skip_change_commits",
    "ignore_deletes",
    "schema",
    "bootstrap_servers",
    "topics",
    "topic_pattern",
    "starting_offsets",
    "max_offsets_per_trigger",
    "fail_on_data_loss",
    "group_id",
    "options",
    "rows_per_second",
    "host",
    "port",
];

/// The keys of [`Head`].
const HEAD: [&str; 1] = ["kind"];

/// The part of `[source]` read first: its kind. (serde's message when `source` is not a table
/// names the struct of all keys it replaced.)
#[derive(Deserialize)]
#[serde(expecting = "struct RawSource")]
struct Head {
    kind: String,
}

impl RawSource {
    /// Reads `[source]`: its `kind`, then its keys as that kind's.
    pub(crate) fn read(root: &DeTable<'_>, file: &JobFile) -> Result<Self, SpecError> {
        let section = Section::of(root, "source", ANY_KIND_KEYS, file)?;
        let Head { kind } = section.head(file)?;
        Ok(match kind.as_str() {
            "files" => RawSource::Files(section.read(&kind, &HEAD, file)?),
            "delta" => RawSource::Delta(section.read(&kind, &HEAD, file)?),
            "kafka" => RawSource::Kafka(section.read(&kind, &HEAD, file)?),
            "rate" => RawSource::Rate(section.read(&kind, &HEAD, file)?),
            "socket" => RawSource::Socket(section.read(&kind, &HEAD, file)?),
            other => {
                section.refuse_keys_of_no_kind(file)?;
                let expected: Vec<String> = KINDS.iter().map(|k| format!("`{k}`")).collect();
                return Err(
                    file.err("source.kind", format!("unknown kind `{other}`; expected {}", expected.join(", ")))
                );
            }
        })
    }

    /// The kind's validation; `job` is the job's name (a Kafka source's default group id).
    pub(crate) fn validate(self, job: &str, file: &JobFile) -> Result<SourceSpec, SpecError> {
        match self {
            RawSource::Files(raw) => raw.validate(file).map(SourceSpec::Files),
            RawSource::Delta(raw) => raw.validate(file).map(SourceSpec::Delta),
            RawSource::Kafka(raw) => raw.validate(job, file).map(SourceSpec::Kafka),
            RawSource::Rate(raw) => raw.validate(file).map(SourceSpec::Rate),
            RawSource::Socket(raw) => raw.validate(file).map(SourceSpec::Socket),
        }
    }
}

impl SourceSpec {
    /// A pipeline named `name` reading this source, and the schema of the rows it reads when it
    /// is known before the first batch (a SQL transform is planned against it).
    pub fn pipeline(&self, name: &str) -> Result<(Pipeline, Option<Schema>), String> {
        Ok(match self {
            SourceSpec::Files(files) => (
                Pipeline::new(name, FileSourceProvider::new(files.clone())),
                files.schema.as_ref().map(|s| s.polars_schema()),
            ),
            SourceSpec::Delta(delta) => (Pipeline::new(name, DeltaSourceProvider::new(delta.clone())), None),
            SourceSpec::Kafka(kafka) => {
                let schema = kafka.format.row_schema().map_err(|e| e.to_string())?;
                (Pipeline::new(name, KafkaSourceProvider::new(kafka.clone())), Some(schema))
            }
            SourceSpec::Rate(rate) => {
                let schema = rate.rows(0, 0, 0).map_err(|e| e.to_string())?.schema().as_ref().clone();
                debug_assert!(RATE_COLUMNS.iter().all(|c| schema.contains(c)));
                (Pipeline::new(name, RateSourceProvider::new(rate.clone())), Some(schema))
            }
            SourceSpec::Socket(socket) => (Pipeline::new(name, SocketSourceProvider::new(socket.clone())), None),
        })
    }
}

/// `[source.schema]` (of a files or a Kafka source), if given.
fn input_schema(
    columns: Option<&BTreeMap<String, toml::Value>>,
    file: &JobFile,
) -> Result<Option<InputSchema>, SpecError> {
    let Some(columns) = columns else { return Ok(None) };
    let mut parsed = Vec::new();
    for (name, ty) in columns {
        let key = format!("source.schema.{name}");
        let text =
            ty.as_str().ok_or_else(|| file.err(&key, format!("expected a type name such as \"int64\", found {ty}")))?;
        parsed.push(InputSchema::parse_column(name, text).map_err(|e| file.err(&key, e))?);
    }
    Ok(Some(InputSchema::new(parsed)))
}
