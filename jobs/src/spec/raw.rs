//! The job file as written (TOML), read with serde and nothing else. Unknown keys are refused, so a
//! typo is an error, not a silent default. `[source]` and `[sink]` are read by their kind, each
//! kind's keys by its own struct (see `section.rs`).

use super::file::{JobFile, SpecError};
use super::sink::RawSink;
use super::source::RawSource;
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::collections::BTreeMap;
use toml::de::DeTable;

/// A job file as written.
#[derive(Debug)]
pub struct RawJob {
    pub name: String,
    pub checkpoint: Option<String>,
    pub source: RawSource,
    pub transform: RawTransform,
    pub sink: RawSink,
    pub trigger: RawTrigger,
    pub watermark: Option<RawWatermark>,
    pub dedup: Option<RawDedup>,
    /// Static tables read beside `input`: name = location.
    pub tables: BTreeMap<String, String>,
}

/// The top level as serde reads it: `[source]` and `[sink]` must be there, but their keys depend
/// on their kind, so they are read after it, each by its kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopLevel {
    name: String,
    checkpoint: Option<String>,
    #[serde(rename = "source")]
    _source: IgnoredAny,
    #[serde(default)]
    transform: RawTransform,
    #[serde(rename = "sink")]
    _sink: IgnoredAny,
    #[serde(default)]
    trigger: RawTrigger,
    watermark: Option<RawWatermark>,
    dedup: Option<RawDedup>,
    #[serde(default)]
    tables: BTreeMap<String, String>,
}

impl RawJob {
    /// Reads the job file's TOML: the top level, then `[source]` and `[sink]` by their kind.
    pub(crate) fn read(file: &JobFile) -> Result<RawJob, SpecError> {
        let root = DeTable::parse(file.text()).map_err(|e| file.serde_error(&e))?;
        let top =
            TopLevel::deserialize(toml::de::Deserializer::from(root.clone())).map_err(|e| file.serde_error(&e))?;
        let source = RawSource::read(root.get_ref(), file)?;
        let sink = RawSink::read(root.get_ref(), file)?;
        Ok(RawJob {
            name: top.name,
            checkpoint: top.checkpoint,
            source,
            transform: top.transform,
            sink,
            trigger: top.trigger,
            watermark: top.watermark,
            dedup: top.dedup,
            tables: top.tables,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDedup {
    #[serde(default)]
    pub keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWatermark {
    pub column: Option<String>,
    pub delay: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTransform {
    pub sql: Option<String>,
    pub rust: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrigger {
    pub kind: Option<String>,
    pub interval: Option<String>,
}
