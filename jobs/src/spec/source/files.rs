//! `kind = "files"`: a landing directory of NDJSON, CSV or Parquet files, read in name order.

use super::input_schema;
use crate::spec::file::{JobFile, SpecError};
use serde::Deserialize;
use std::collections::BTreeMap;
use tidewater_connectors::files::{FileFormat, FileSpec};

/// The keys of a files source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFilesSource {
    pub path: Option<String>,
    pub format: Option<String>,
    pub max_files_per_trigger: Option<i64>,
    pub schema: Option<BTreeMap<String, toml::Value>>,
}

impl RawFilesSource {
    pub(super) fn validate(self, file: &JobFile) -> Result<FileSpec, SpecError> {
        let path = self.path.as_deref().ok_or_else(|| file.err("source.path", "missing: the landing directory"))?;
        let format: FileFormat = self
            .format
            .as_deref()
            .ok_or_else(|| file.err("source.format", "missing: ndjson, csv or parquet"))?
            .parse()
            .map_err(|e: String| file.err("source.format", e))?;
        let mut spec = FileSpec::new(file.location("source.path", path)?, format);
        if let Some(n) = self.max_files_per_trigger {
            spec = spec.with_max_files_per_trigger(file.positive("source.max_files_per_trigger", n)?);
        }
        if let Some(schema) = input_schema(self.schema.as_ref(), file)? {
            spec = spec.with_schema(schema);
        }
        Ok(spec)
    }
}
