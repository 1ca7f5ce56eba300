//! The job file as written (TOML), read with serde and nothing else. Unknown keys are refused, so a
//! typo is an error, not a silent default.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    pub name: String,
    pub checkpoint: Option<String>,
    pub source: RawSource,
    #[serde(default)]
    pub transform: RawTransform,
    pub sink: RawSink,
    #[serde(default)]
    pub trigger: RawTrigger,
    pub watermark: Option<RawWatermark>,
    pub dedup: Option<RawDedup>,
    /// Static tables read beside `input`: name = location.
    #[serde(default)]
    pub tables: BTreeMap<String, String>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub kind: String,
    pub path: Option<String>,
    pub table: Option<String>,
    pub format: Option<String>,
    pub max_files_per_trigger: Option<i64>,
    pub files_per_chunk: Option<i64>,
    pub max_bytes_per_trigger: Option<toml::Value>,
    pub starting_version: Option<toml::Value>,
    pub skip_change_commits: Option<bool>,
    pub ignore_deletes: Option<bool>,
    pub schema: Option<BTreeMap<String, toml::Value>>,
    pub bootstrap_servers: Option<String>,
    pub topics: Option<Vec<String>>,
    pub topic_pattern: Option<String>,
    pub starting_offsets: Option<toml::Value>,
    pub max_offsets_per_trigger: Option<i64>,
    pub fail_on_data_loss: Option<bool>,
    pub group_id: Option<String>,
    pub options: Option<BTreeMap<String, toml::Value>>,
    pub rows_per_second: Option<i64>,
    pub host: Option<String>,
    pub port: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTransform {
    pub sql: Option<String>,
    pub rust: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    pub kind: Option<String>,
    pub table: Option<String>,
    pub mode: Option<String>,
    #[serde(default)]
    pub partition_by: Vec<String>,
    #[serde(default)]
    pub key: Vec<String>,
    pub quarantine: Option<String>,
    pub late: Option<String>,
    pub num_rows: Option<i64>,
    pub bootstrap_servers: Option<String>,
    pub topic: Option<String>,
    pub key_column: Option<String>,
    pub headers_column: Option<String>,
    pub options: Option<BTreeMap<String, toml::Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrigger {
    pub kind: Option<String>,
    pub interval: Option<String>,
}
