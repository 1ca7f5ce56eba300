//! `kind = "delta"`: a Delta table, streamed from its snapshot (or a version) commit by commit,
//! or read whole by `tidewater batch` and in chunks by backfills.

use crate::spec::file::{JobFile, SpecError};
use serde::Deserialize;
use tidewater_connectors::{DeltaSpec, StartingVersion};

/// The keys of a Delta source (`path` is another name for `table`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeltaSource {
    pub table: Option<String>,
    pub path: Option<String>,
    pub files_per_chunk: Option<i64>,
    pub max_files_per_trigger: Option<i64>,
    pub max_bytes_per_trigger: Option<toml::Value>,
    pub starting_version: Option<toml::Value>,
    pub skip_change_commits: Option<bool>,
    pub ignore_deletes: Option<bool>,
}

impl RawDeltaSource {
    pub(super) fn validate(self, file: &JobFile) -> Result<DeltaSpec, SpecError> {
        let table = self
            .table
            .as_deref()
            .or(self.path.as_deref())
            .ok_or_else(|| file.err("source.table", "missing: the Delta table to read"))?;
        let mut spec = DeltaSpec::new(file.location("source.table", table)?);
        if let Some(n) = self.files_per_chunk {
            spec.files_per_chunk = file.positive("source.files_per_chunk", n)?;
        }
        let stream = &mut spec.stream;
        if let Some(n) = self.max_files_per_trigger {
            stream.max_files_per_trigger = file.positive("source.max_files_per_trigger", n)?;
        }
        if let Some(value) = &self.max_bytes_per_trigger {
            let key = "source.max_bytes_per_trigger";
            let bytes = match value {
                toml::Value::Integer(n) => u64::try_from(*n).ok().filter(|&n| n > 0),
                toml::Value::String(text) => {
                    text.parse::<bytesize::ByteSize>().ok().map(|b| b.as_u64()).filter(|&n| n > 0)
                }
                _ => None,
            };
            stream.max_bytes_per_trigger = Some(bytes.ok_or_else(|| {
                file.err(key, format!("expected a positive size such as 268435456 or \"256MiB\", found {value}"))
            })?);
        }
        if let Some(value) = &self.starting_version {
            stream.starting_version = match value {
                toml::Value::String(s) if s == "latest" => StartingVersion::Latest,
                toml::Value::Integer(n) if *n >= 0 => StartingVersion::Version(*n as u64),
                _ => {
                    return Err(file.err(
                        "source.starting_version",
                        format!("expected a table version (0 or more) or \"latest\", found {value}"),
                    ));
                }
            };
        }
        stream.skip_change_commits = self.skip_change_commits.unwrap_or(false);
        stream.ignore_deletes = self.ignore_deletes.unwrap_or(false);
        Ok(spec)
    }
}
