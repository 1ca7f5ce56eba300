//! `kind = "kafka"`: topics (a list or a pattern) read by offset ranges, JSON decoded by the
//! declared schema or kept raw; offsets live in the table, not in the consumer group.

use super::input_schema;
use crate::spec::file::{JobFile, SpecError};
use serde::Deserialize;
use std::collections::BTreeMap;
use tidewater_connectors::kafka::{KafkaFormat, KafkaSpec, StartingOffsets, Topics};

/// The keys of a Kafka source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKafkaSource {
    pub bootstrap_servers: Option<String>,
    pub topics: Option<Vec<String>>,
    pub topic_pattern: Option<String>,
    pub starting_offsets: Option<toml::Value>,
    pub max_offsets_per_trigger: Option<i64>,
    pub format: Option<String>,
    pub schema: Option<BTreeMap<String, toml::Value>>,
    pub fail_on_data_loss: Option<bool>,
    pub group_id: Option<String>,
    pub options: Option<BTreeMap<String, toml::Value>>,
}

impl RawKafkaSource {
    pub(super) fn validate(self, name: &str, file: &JobFile) -> Result<KafkaSpec, SpecError> {
        let servers =
            self.bootstrap_servers.clone().filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                file.err("source.bootstrap_servers", "missing: the brokers, such as \"127.0.0.1:9092\"")
            })?;
        let topics = match (&self.topics, &self.topic_pattern) {
            (Some(_), Some(_)) => {
                return Err(file.err("source.topic_pattern", "give either `topics` or `topic_pattern`, not both"));
            }
            (Some(list), None) if list.is_empty() || list.iter().any(|t| t.trim().is_empty()) => {
                return Err(file.err("source.topics", "name at least one topic, none empty"));
            }
            (Some(list), None) => Topics::List(list.clone()),
            (None, Some(p)) => {
                regex::Regex::new(p).map_err(|e| file.err("source.topic_pattern", format!("`{p}`: {e}")))?;
                Topics::Pattern(p.clone())
            }
            (None, None) => {
                return Err(file.err("source.topics", "missing: the topics to read, or a topic_pattern"));
            }
        };
        let group = self.group_id.clone().unwrap_or_else(|| format!("tidewater-{name}"));
        let mut spec = KafkaSpec::new(servers, topics, group);
        spec.format = match self.format.as_deref().unwrap_or("json") {
        "json" => KafkaFormat::Json(input_schema(self.schema.as_ref(), file)?.ok_or_else(|| {
            file.err("source.schema", "missing: a JSON source decodes by its schema ([source.schema] column = \"type\"); or use format = \"raw\"")
        })?),
        "raw" if self.schema.is_some() => {
            return Err(file.err("source.schema", "a raw source does not decode its values: remove the schema, or use format = \"json\""));
        }
        "raw" => KafkaFormat::Raw,
        other => return Err(file.err("source.format", format!("unknown format `{other}`; expected json or raw"))),
    };
        if let Some(value) = &self.starting_offsets {
            let bad = |why: &str| {
                file.err(
                    "source.starting_offsets",
                    format!(
                        "{why}; expected \"earliest\", \"latest\" or {{ topic = {{ \"0\" = 42 }} }}, found {value}"
                    ),
                )
            };
            spec.starting_offsets = match value {
                toml::Value::String(s) if s == "earliest" => StartingOffsets::Earliest,
                toml::Value::String(s) if s == "latest" => StartingOffsets::Latest,
                toml::Value::Table(topics) => {
                    let mut exact = std::collections::BTreeMap::new();
                    for (topic, partitions) in topics {
                        let partitions = partitions
                            .as_table()
                            .ok_or_else(|| bad(&format!("`{topic}` is not a table of partitions")))?;
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
        if let Some(n) = self.max_offsets_per_trigger {
            spec.max_offsets_per_trigger =
                Some(u64::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| {
                    file.err("source.max_offsets_per_trigger", format!("{n} is not a positive number"))
                })?);
        }
        spec.fail_on_data_loss = self.fail_on_data_loss.unwrap_or(true);
        for (key, value) in self.options.iter().flatten() {
            let text = option_text(&format!("source.options.{key}"), value, file)?;
            if matches!(key.as_str(), "enable.auto.commit" | "group.id" | "bootstrap.servers" | "auto.offset.reset") {
                return Err(file.err(
                    &format!("source.options.{key}"),
                    "is set by Tidewater (offsets live in the table; group_id and bootstrap_servers are source keys)",
                ));
            }
            spec.options.insert(key.clone(), text);
        }
        // A client that the options make unusable is refused now, with librdkafka's words.
        spec.check_options().map_err(|e| file.err("source.options", e))?;
        Ok(spec)
    }
}

/// A librdkafka property's value as text.
pub(crate) fn option_text(key: &str, value: &toml::Value, file: &JobFile) -> Result<String, SpecError> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(file.err(key, format!("expected a string, number or boolean, found {other}"))),
    }
}
