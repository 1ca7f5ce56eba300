//! What a Kafka source is configured with: the topics, where a partition starts when the table
//! records nothing for it, which partitions this process reads, and the librdkafka properties
//! passed through. A spec also names things: the source in messages ([`KafkaSpec::describe`]) and
//! each partition's lane in the table ([`KafkaSpec::lane_id`]), so every file says them alike.

use super::decode::KafkaFormat;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use std::collections::BTreeMap;
use std::time::Duration;
use tidewater_core::{Error, Result};

/// The topics a source reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topics {
    List(Vec<String>),
    /// Every topic whose whole name matches this regular expression (Spark's `subscribePattern`).
    Pattern(String),
}

/// Where a query reads a partition from when the table records nothing for it yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartingOffsets {
    Earliest,
    Latest,
    /// Per topic and partition; a partition not named starts at the earliest.
    Exact(BTreeMap<String, BTreeMap<i32, i64>>),
}

/// Which partitions this process reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Assignment {
    /// Every partition of the topics.
    All,
    /// A static split, `--worker I/N`: the partitions whose hash is `index` modulo `count`.
    Worker { index: u32, count: u32 },
    /// The broker's consumer-group assignment, as member `member` of the group.
    Group { member: String },
}

/// A configured Kafka source.
#[derive(Clone, Debug)]
pub struct KafkaSpec {
    pub bootstrap_servers: String,
    pub topics: Topics,
    pub starting_offsets: StartingOffsets,
    /// At most this many offsets per batch, over all partitions (`None`: no limit).
    pub max_offsets_per_trigger: Option<u64>,
    pub format: KafkaFormat,
    /// Offsets deleted by retention stop the query (true) or are skipped with a warning.
    pub fail_on_data_loss: bool,
    /// librdkafka properties passed through (security, timeouts), by librdkafka's names.
    pub options: BTreeMap<String, String>,
    /// The consumer group; also names the lanes' txn app ids.
    pub group_id: String,
    pub assignment: Assignment,
    /// How long a metadata or fetch call may wait for the broker.
    pub timeout: Duration,
    /// The bounded view reads the messages timed in `[from, to)` (epoch milliseconds; `tidewater
    /// batch --from/--to`), each end open when `None`.
    pub bounded_ms: (Option<i64>, Option<i64>),
}

impl KafkaSpec {
    pub fn new(bootstrap_servers: impl Into<String>, topics: Topics, group_id: impl Into<String>) -> Self {
        KafkaSpec {
            bootstrap_servers: bootstrap_servers.into(),
            topics,
            starting_offsets: StartingOffsets::Earliest,
            max_offsets_per_trigger: None,
            format: KafkaFormat::Raw,
            fail_on_data_loss: true,
            options: BTreeMap::new(),
            group_id: group_id.into(),
            assignment: Assignment::All,
            timeout: Duration::from_secs(30),
            bounded_ms: (None, None),
        }
    }

    pub fn describe(&self) -> String {
        let topics = match &self.topics {
            Topics::List(topics) => format!("kafka {} topics {}", self.bootstrap_servers, topics.join(",")),
            Topics::Pattern(p) => format!("kafka {} topics matching {p}", self.bootstrap_servers),
        };
        let time = |ms: Option<i64>| {
            ms.and_then(chrono::DateTime::from_timestamp_millis)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        };
        match (time(self.bounded_ms.0), time(self.bounded_ms.1)) {
            (None, None) => topics,
            (from, to) => format!(
                "{topics}, messages timed from {} to {}",
                from.as_deref().unwrap_or("the earliest"),
                to.as_deref().unwrap_or("the end")
            ),
        }
    }

    /// A source error naming this source.
    pub(super) fn err(&self, problem: impl std::fmt::Display) -> Error {
        Error::Source { source_name: self.describe(), problem: problem.to_string() }
    }

    /// The txn app id of a partition's lane.
    pub fn lane_id(&self, topic: &str, partition: i32) -> String {
        format!("tidewater-kafka:{}:{topic}:{partition}", self.group_id)
    }

    /// The librdkafka configuration of every consumer the source creates: no auto commit (the
    /// table holds each partition's progress), the spec's options last.
    pub(super) fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "error")
            .set("enable.partition.eof", "false")
            // A batch reads offsets known to exist: a fetch need not wait for more to arrive
            // (librdkafka's default waits up to 500 ms for fetch.min.bytes, on every fetch).
            .set("fetch.wait.max.ms", "10");
        for (k, v) in &self.options {
            config.set(k, v);
        }
        config
    }

    /// Whether librdkafka accepts the options (no client is created, no broker contacted).
    pub fn check_options(&self) -> std::result::Result<(), String> {
        self.config().create_native_config().map(drop).map_err(|e| e.to_string())
    }

    /// A consumer of [`KafkaSpec::config`], subscribed to nothing (it is assigned partitions).
    pub(super) fn consumer(&self) -> Result<BaseConsumer> {
        self.config().create().map_err(|e| self.err(format!("cannot create a consumer: {e}")))
    }
}
