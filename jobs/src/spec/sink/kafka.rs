//! `kind = "kafka"`: each batch's rows as messages to a topic, by an idempotent producer.

use crate::spec::file::{JobFile, SpecError};
use crate::spec::source::kafka::option_text;
use serde::Deserialize;
use std::collections::BTreeMap;
use tidewater_connectors::kafka::KafkaSinkSpec;

/// The keys of a Kafka sink (besides those every sink takes).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKafkaSink {
    pub bootstrap_servers: Option<String>,
    pub topic: Option<String>,
    pub key_column: Option<String>,
    pub headers_column: Option<String>,
    pub options: Option<BTreeMap<String, toml::Value>>,
}

impl RawKafkaSink {
    pub(super) fn validate(self, file: &JobFile) -> Result<KafkaSinkSpec, SpecError> {
        let servers = self
            .bootstrap_servers
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| file.err("sink.bootstrap_servers", "missing: the brokers, such as \"127.0.0.1:9092\""))?;
        let topic = self
            .topic
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| file.err("sink.topic", "missing: the topic to write"))?;
        let mut spec = KafkaSinkSpec::new(servers, topic);
        spec.key_column = self.key_column;
        spec.headers_column = self.headers_column;
        for (key, value) in self.options.iter().flatten() {
            let at = format!("sink.options.{key}");
            if KafkaSinkSpec::FIXED_OPTIONS.contains(&key.as_str()) {
                return Err(file.err(&at, "is set by Tidewater: the sink's guarantee rests on an idempotent producer (bootstrap_servers is a sink key)"));
            }
            spec.options.insert(key.clone(), option_text(&at, value, file)?);
        }
        spec.check_options().map_err(|e| file.err("sink.options", e))?;
        Ok(spec)
    }
}
