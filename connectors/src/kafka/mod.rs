//! Kafka topics as a source: streamed by offset ranges, exactly once, or read as a bounded range
//! of offsets.
//!
//! # Offsets
//! A batch's offset (in the offset log) names, for each partition the process reads, the
//! offsets `[from, to)` it reads: `{"orders": {"0": [42, 100], "1": [17, 17]}}`. A replay reads
//! exactly those messages again.
//!
//! # Lanes
//! Each partition is a lane (see [`tidewater_core::Lane`]): the batch's Delta commit records
//! `txn {appId: "tidewater-kafka:<group id>:<topic>:<partition>", version: to}` for every
//! partition it read, and lands only if the table records `from` for it (or nothing yet). A
//! partition's progress is in the table, not in a process: whoever owns a partition next (after
//! a rebalance, a killed process, a lost checkpoint) starts where the table says, and a process
//! that lost a partition mid-batch commits nothing of it.

mod decode;
mod sink;

pub use decode::{KAFKA_COLUMNS, KafkaFormat, Message, Messages, Run, RunBuilder, decode};
pub use sink::{KafkaSinkProvider, KafkaSinkSpec};

use async_trait::async_trait;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::message::{BorrowedMessage, Headers, Message as _};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tidewater_core::checkpoint::Checkpoint;
use tidewater_core::{
    BoundedSource, Chunk, Error, Lane, Offset, OffsetRange, Result, SinkCommit, Source, SourceBatch, SourceProvider,
};

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

    fn err(&self, problem: impl std::fmt::Display) -> Error {
        Error::Source { source_name: self.describe(), problem: problem.to_string() }
    }

    /// The txn app id of a partition's lane.
    pub fn lane_id(&self, topic: &str, partition: i32) -> String {
        format!("tidewater-kafka:{}:{topic}:{partition}", self.group_id)
    }

    fn config(&self) -> ClientConfig {
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

    fn consumer(&self) -> Result<BaseConsumer> {
        self.config().create().map_err(|e| self.err(format!("cannot create a consumer: {e}")))
    }
}

/// A topic-partition.
type Tp = (String, i32);

/// Per partition, the offsets `[from, to)` a batch reads.
type Ranges = BTreeMap<Tp, (i64, i64)>;

fn ranges_offset(ranges: &Ranges) -> Offset {
    let mut topics: BTreeMap<&str, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
    for ((topic, p), (from, to)) in ranges {
        topics.entry(topic).or_default().insert(p.to_string(), serde_json::json!([from, to]));
    }
    Offset::new(serde_json::to_value(topics).unwrap_or_default())
}

fn ranges_of(spec: &KafkaSpec, offset: &Offset) -> Result<Ranges> {
    let bad = || spec.err(format!("not a Kafka offset: {offset}"));
    let mut out = Ranges::new();
    let topics = offset.value().as_object().ok_or_else(bad)?;
    for (topic, partitions) in topics {
        for (p, pair) in partitions.as_object().ok_or_else(bad)? {
            let p: i32 = p.parse().map_err(|_| bad())?;
            let pair = pair.as_array().filter(|a| a.len() == 2).ok_or_else(bad)?;
            let (from, to) = (pair[0].as_i64().ok_or_else(bad)?, pair[1].as_i64().ok_or_else(bad)?);
            out.insert((topic.clone(), p), (from, to));
        }
    }
    Ok(out)
}

/// The client calls, run on the blocking pool (librdkafka's calls block).
#[derive(Clone)]
struct Client {
    spec: Arc<KafkaSpec>,
    consumer: Arc<BaseConsumer>,
    /// What the consumer has read ahead (see [`Reader`]).
    reader: Arc<std::sync::Mutex<Reader>>,
}

impl Client {
    fn open(spec: &KafkaSpec) -> Result<Self> {
        Ok(Client { spec: Arc::new(spec.clone()), consumer: Arc::new(spec.consumer()?), reader: Default::default() })
    }

    /// The earliest offset and the end of each partition: the broker's high watermark, or a
    /// later end the reader has read up to. (Some Kafka-protocol brokers, tansu 0.6 among them, answer
    /// the last record batch's first offset + 1 as the high watermark: the rest of that batch
    /// is then found by the fetches, and by [`Client::probe`].)
    async fn ends(&self, tps: Vec<Tp>) -> Result<BTreeMap<Tp, (i64, i64)>> {
        let mut marks = self.watermarks(tps).await?;
        let reader = self.reader.lock().map_err(|_| Error::Internal("kafka reader poisoned".into()))?;
        for (tp, (_, high)) in marks.iter_mut() {
            if let Some(lane) = reader.lanes.get(tp) {
                *high = (*high).max(lane.read.next);
            }
        }
        Ok(marks)
    }

    /// [`Client::ends`], after reading the record batch that holds each partition's last offset
    /// by its high watermark: the end of everything in the topic now.
    async fn probe(&self, tps: Vec<Tp>) -> Result<BTreeMap<Tp, (i64, i64)>> {
        let marks = self.ends(tps).await?;
        // (A partition the reader has read past its high watermark already ends there.)
        let last: Ranges = marks
            .iter()
            .filter(|(tp, (l, h))| h > l && self.read_up_to(tp) < *h)
            .map(|(tp, (_, h))| (tp.clone(), (h - 1, *h)))
            .collect();
        if !last.is_empty() {
            // Read on until the queues are quiet: a broker whose high watermark lags may hold
            // more record batches after the one at it.
            self.fetch(last, PROBE_QUIET).await?;
        }
        self.ends(marks.into_keys().collect()).await
    }

    /// For each of `starts` (partition, where its next batch starts), the end of what the
    /// reader has read of it, when the reader has every one of them read to the end of its queue
    /// (not behind: nothing to ask the broker) and one of them has something new. `None`: ask the
    /// broker.
    async fn read_ahead(&self, starts: Vec<(Tp, i64)>) -> Result<Option<Ranges>> {
        let reader = self.reader.clone();
        self.run("kafka read ahead", move |spec, consumer| {
            let mut reader = reader.lock().map_err(|_| Error::Internal("kafka reader poisoned".into()))?;
            let refs: Vec<(&Tp, i64)> = starts.iter().map(|(tp, from)| (tp, *from)).collect();
            reader.prepare(spec, consumer, &refs, true)?;
            let tps: Vec<&Tp> = refs.iter().map(|(tp, _)| *tp).collect();
            let Some(ends) = reader.drain(&tps) else { return Ok(None) };
            let end = |tp: &Tp, from: i64| ends.get(tp).map_or(from, |&end| end.max(from));
            let ranges: Ranges = starts.iter().map(|(tp, from)| (tp.clone(), (*from, end(tp, *from)))).collect();
            Ok(ranges.values().any(|(f, t)| t > f).then_some(ranges))
        })
        .await
    }

    /// Waits up to `wait` for a message to reach one of the reader's queues.
    async fn arrival(&self, wait: Duration) {
        let arrived = match self.reader.lock() {
            Ok(reader) if !reader.lanes.is_empty() => reader.arrived.clone(),
            _ => return,
        };
        let _ = tokio::time::timeout(wait, arrived.notified()).await;
    }

    /// Where the reader's queue for `tp` goes on (`i64::MIN` when it reads none).
    fn read_up_to(&self, tp: &Tp) -> i64 {
        self.reader.lock().ok().and_then(|r| r.lanes.get(tp).map(|l| l.read.next)).unwrap_or(i64::MIN)
    }

    async fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        work: impl FnOnce(&KafkaSpec, &Arc<BaseConsumer>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (spec, consumer) = (self.spec.clone(), self.consumer.clone());
        tidewater_core::compute::blocking(what, move || work(&spec, &consumer)).await
    }

    /// Every partition of the source's topics, sorted.
    async fn partitions(&self) -> Result<Vec<Tp>> {
        self.run("kafka metadata", |spec, consumer| {
            let (one, pattern) = match &spec.topics {
                Topics::List(topics) if topics.len() == 1 => (Some(topics[0].as_str()), None),
                Topics::List(_) => (None, None),
                Topics::Pattern(p) => {
                    let re = regex::Regex::new(&format!("^(?:{p})$"))
                        .map_err(|e| spec.err(format!("topic_pattern `{p}`: {e}")))?;
                    (None, Some(re))
                }
            };
            let metadata = consumer
                .fetch_metadata(one, spec.timeout)
                .map_err(|e| spec.err(format!("cannot read the topics' metadata: {e}")))?;
            let mut out = Vec::new();
            for topic in metadata.topics() {
                let wanted = match (&spec.topics, &pattern) {
                    (Topics::List(list), _) => list.iter().any(|t| t == topic.name()),
                    (_, Some(re)) => re.is_match(topic.name()) && !topic.name().starts_with("__"),
                    _ => false,
                };
                if !wanted {
                    continue;
                }
                if let Some(e) = topic.error() {
                    return Err(spec.err(format!(
                        "topic {}: {:?}",
                        topic.name(),
                        rdkafka::error::RDKafkaErrorCode::from(e)
                    )));
                }
                out.extend(topic.partitions().iter().map(|p| (topic.name().to_string(), p.id())));
            }
            if let Topics::List(list) = &spec.topics
                && let Some(missing) = list.iter().find(|t| !out.iter().any(|(have, _)| have == *t))
            {
                return Err(spec.err(format!("topic {missing} does not exist (or has no partitions)")));
            }
            out.sort();
            Ok(out)
        })
        .await
    }

    /// The earliest and the next offset of each partition.
    async fn watermarks(&self, tps: Vec<Tp>) -> Result<BTreeMap<Tp, (i64, i64)>> {
        self.run("kafka watermarks", move |spec, consumer| {
            // Two ListOffsets requests for every partition (earliest, latest), where
            // `fetch_watermarks` makes two per partition: the round trips were most of a small
            // batch's time against a busy broker.
            let ask = |at: KafkaOffset| -> Result<BTreeMap<Tp, i64>> {
                let mut list = TopicPartitionList::new();
                for (topic, p) in &tps {
                    list.add_partition_offset(topic, *p, at).map_err(|e| spec.err(e))?;
                }
                let found = consumer
                    .offsets_for_times(list, spec.timeout)
                    .map_err(|e| spec.err(format!("cannot read the partitions' offsets: {e}")))?;
                let mut out = BTreeMap::new();
                for e in found.elements() {
                    let tp = (e.topic().to_string(), e.partition());
                    match (e.error(), e.offset()) {
                        (Err(err), _) => {
                            return Err(spec.err(format!("cannot read the offsets of {}/{}: {err}", tp.0, tp.1)));
                        }
                        (Ok(()), KafkaOffset::Offset(n)) => {
                            out.insert(tp, n);
                        }
                        (Ok(()), other) => {
                            return Err(spec.err(format!("{}/{}: the broker answered offset {other:?}", tp.0, tp.1)));
                        }
                    }
                }
                Ok(out)
            };
            if tps.is_empty() {
                // librdkafka refuses an empty list (a member with no partitions yet).
                return Ok(BTreeMap::new());
            }
            let (low, high) = (ask(KafkaOffset::Beginning)?, ask(KafkaOffset::End)?);
            tps.into_iter()
                .map(|tp| match (low.get(&tp), high.get(&tp)) {
                    (Some(&l), Some(&h)) => Ok((tp, (l, h))),
                    _ => Err(spec.err(format!("{}/{}: the broker did not say its offsets", tp.0, tp.1))),
                })
                .collect()
        })
        .await
    }

    /// The messages of `ranges`, partition by partition, each by offset; then, with a `quiet`
    /// time, what more arrives until none has for that long.
    async fn fetch(&self, ranges: Ranges, quiet: Duration) -> Result<Messages> {
        let reader = self.reader.clone();
        self.run("kafka fetch", move |spec, consumer| {
            let mut reader = reader.lock().map_err(|_| Error::Internal("kafka reader poisoned".into()))?;
            let messages = reader.fetch(spec, consumer, &ranges)?;
            if !quiet.is_zero() {
                reader.read_until_quiet(ranges.keys(), quiet);
            }
            Ok(messages)
        })
        .await
    }

    /// The first offset of each partition whose message time is at or after `ms` (its next
    /// offset when none is).
    async fn offsets_at(&self, tps: Vec<Tp>, ms: i64) -> Result<BTreeMap<Tp, i64>> {
        self.run("kafka offsets for times", move |spec, consumer| {
            let mut list = TopicPartitionList::new();
            for (topic, p) in &tps {
                list.add_partition_offset(topic, *p, KafkaOffset::Offset(ms)).map_err(|e| spec.err(e))?;
            }
            let found = consumer
                .offsets_for_times(list, spec.timeout)
                .map_err(|e| spec.err(format!("cannot look up offsets by time: {e}")))?;
            let mut out = BTreeMap::new();
            for (topic, p) in tps {
                let at = match found.find_partition(&topic, p).map(|e| e.offset()) {
                    Some(KafkaOffset::Offset(n)) => n,
                    _ => {
                        consumer
                            .fetch_watermarks(&topic, p, spec.timeout)
                            .map_err(|e| spec.err(format!("cannot read the offsets of {topic}/{p}: {e}")))?
                            .1
                    }
                };
                out.insert((topic, p), at);
            }
            drop(found);
            Ok(out)
        })
        .await
    }
}

/// The source's consumer, assigned the partitions it reads (no group) and left assigned between
/// batches: librdkafka fetches ahead into a queue per partition, and a batch takes `[from, to)`
/// from what was read of it. What a batch's reading ran past stays for the next batch, so no
/// message is fetched twice while batches follow each other; a partition is assigned again (and
/// its queue starts over) only when a batch starts elsewhere (a replay, a first batch, a
/// partition that comes back to this process).
#[derive(Default)]
struct Reader {
    lanes: BTreeMap<Tp, ReadLane>,
    /// Told when a lane's queue, empty, gets a message.
    arrived: Arc<tokio::sync::Notify>,
}

struct ReadLane {
    queue: PartitionQueue<DefaultConsumerContext>,
    read: Read,
}

/// What was read of a partition and not yet taken by a batch.
struct Read {
    tp: Tp,
    /// Every message of `[base, next)` read from the queue, by offset (`runs`, then `building`).
    runs: VecDeque<Run>,
    building: Option<RunBuilder>,
    base: i64,
    /// The offset after the last message read from the queue: where the queue goes on, and an
    /// end known to exist.
    next: i64,
}

/// How long a probe for the partitions' ends reads on after the last message arrives.
const PROBE_QUIET: Duration = Duration::from_millis(50);

/// Messages read past where a batch ends are kept up to this many per partition; what is
/// beyond stays in librdkafka's queue, which has its own bound.
const READ_AHEAD: i64 = 10_000;

impl Reader {
    /// The messages of `ranges`, partition by partition, each by offset.
    fn fetch(&mut self, spec: &KafkaSpec, consumer: &Arc<BaseConsumer>, ranges: &Ranges) -> Result<Messages> {
        let wanted: BTreeMap<&Tp, (i64, i64)> =
            ranges.iter().filter(|(_, (f, t))| t > f).map(|(k, v)| (k, *v)).collect();
        if wanted.is_empty() {
            return Ok(Messages::default());
        }
        let starts: Vec<(&Tp, i64)> = wanted.iter().map(|(tp, (from, _))| (*tp, *from)).collect();
        self.prepare(spec, consumer, &starts, false)?;
        let result = self.read(spec, consumer, &wanted);
        if let Err(Failed { tp, .. }) = &result {
            // Its queue is in an unknown state: assigned again when next read.
            self.lanes.remove(tp);
        }
        result.map_err(|f| f.error)?;
        let mut messages = Messages::default();
        for (tp, (from, to)) in wanted {
            if let Some(lane) = self.lanes.get_mut(tp) {
                for run in lane.read.take(from, to) {
                    messages.push(run);
                }
            }
        }
        Ok(messages)
    }

    /// Reads the queues of `tps` until none gets a message for `quiet` (or [`READ_AHEAD`] is
    /// reached). An error is left for the batch that reads there.
    fn read_until_quiet<'a>(&mut self, tps: impl Iterator<Item = &'a Tp>, quiet: Duration) {
        for tp in tps {
            if let Some(lane) = self.lanes.get_mut(tp) {
                let _ = lane.read_up_to(lane.read.base + READ_AHEAD, quiet);
            }
        }
    }

    /// Has a lane go on at each of `starts`: those whose lane does not are assigned there.
    /// With `only`, the lanes of other partitions are dropped.
    fn prepare(
        &mut self,
        spec: &KafkaSpec,
        consumer: &Arc<BaseConsumer>,
        starts: &[(&Tp, i64)],
        only: bool,
    ) -> Result<()> {
        let goes_on = |lane: Option<&ReadLane>, from: i64| lane.is_some_and(|l| l.read.goes_on(from));
        let restart: Vec<(&Tp, i64)> =
            starts.iter().filter(|(tp, from)| !goes_on(self.lanes.get(*tp), *from)).copied().collect();
        let before = self.lanes.len();
        if only {
            self.lanes.retain(|tp, _| starts.iter().any(|(s, _)| *s == tp));
        }
        if !restart.is_empty() || self.lanes.len() != before {
            self.assign(spec, consumer, &restart)?;
        }
        Ok(())
    }

    /// Reads what the lanes of `tps` hold now (up to [`READ_AHEAD`] past where their batches
    /// take from), and returns where each ends if every one of them was read to the end of its
    /// queue without an error; `None` when a queue holds more (a backlog), or failed (its lane is
    /// dropped: assigned again when read, and the plan asks the broker).
    fn drain(&mut self, tps: &[&Tp]) -> Option<BTreeMap<Tp, i64>> {
        let mut ends = BTreeMap::new();
        let mut all = true;
        for &tp in tps {
            let Some(lane) = self.lanes.get_mut(tp) else {
                all = false;
                continue;
            };
            let ahead = lane.read.base + READ_AHEAD;
            match lane.read_up_to(ahead, Duration::ZERO) {
                Err(e) => {
                    tracing::debug!("kafka {}/{}: {e}", tp.0, tp.1);
                    self.lanes.remove(tp);
                    all = false;
                }
                Ok(_) if lane.read.next >= ahead => all = false,
                Ok(_) => {
                    ends.insert(tp.clone(), lane.read.next);
                }
            }
        }
        all.then_some(ends)
    }

    /// Starts each partition of `restart` at its offset, and every other lane where its queue
    /// goes on (`assign` starts every partition's queue over).
    fn assign(&mut self, spec: &KafkaSpec, consumer: &Arc<BaseConsumer>, restart: &[(&Tp, i64)]) -> Result<()> {
        for &((topic, p), from) in restart {
            self.lanes.remove(&(topic.clone(), *p));
            let mut queue = consumer
                .split_partition_queue(topic, *p)
                .ok_or_else(|| spec.err(format!("cannot read {topic}/{p}: no queue for it")))?;
            let arrived = self.arrived.clone();
            queue.set_nonempty_callback(move || arrived.notify_one());
            let lane = ReadLane { queue, read: Read::new((topic.clone(), *p), from) };
            self.lanes.insert((topic.clone(), *p), lane);
        }
        let mut list = TopicPartitionList::new();
        for ((topic, p), lane) in &self.lanes {
            list.add_partition_offset(topic, *p, KafkaOffset::Offset(lane.read.next)).map_err(|e| spec.err(e))?;
        }
        consumer.assign(&list).map_err(|e| spec.err(format!("cannot assign the partitions: {e}")))
    }

    /// Reads each partition's queue up to `to` (and what more it holds, up to [`READ_AHEAD`]).
    fn read(
        &mut self,
        spec: &KafkaSpec,
        consumer: &Arc<BaseConsumer>,
        wanted: &BTreeMap<&Tp, (i64, i64)>,
    ) -> std::result::Result<(), Failed> {
        let mut last_progress = Instant::now();
        loop {
            let mut progressed = false;
            let mut open = Vec::new();
            for (&tp, &(from, to)) in wanted {
                let Some(lane) = self.lanes.get_mut(tp) else { continue };
                progressed |=
                    lane.read_up_to(to + READ_AHEAD, Duration::ZERO).map_err(|e| Failed::of(spec, tp, from, to, e))?;
                if lane.read.next < to {
                    open.push(tp);
                }
            }
            let Some(&first) = open.first() else { return Ok(()) };
            if progressed {
                last_progress = Instant::now();
                continue;
            }
            // Nothing queued for a partition not read to its end yet: serve the consumer's own
            // queue (events; a message of a partition whose queue was not split in time),
            // see whether a partition's position passed offsets a fetch never returns
            // (transaction markers, compacted away), then wait on one of them.
            while let Some(polled) = consumer.poll(Duration::ZERO) {
                match polled {
                    Ok(m) => {
                        let tp = (m.topic().to_string(), m.partition());
                        if let Some(lane) = self.lanes.get_mut(&tp) {
                            take_message(&mut lane.read, &m);
                        }
                    }
                    Err(e) => tracing::warn!(source = %spec.describe(), "kafka consumer: {e}"),
                }
            }
            let position = consumer.position().map_err(|e| Failed { tp: first.clone(), error: spec.err(e) })?;
            for &tp in &open {
                if let (Some(KafkaOffset::Offset(at)), Some(lane)) =
                    (position.find_partition(&tp.0, tp.1).map(|e| e.offset()), self.lanes.get_mut(tp))
                    && at > lane.read.next
                    && at >= wanted[tp].1
                {
                    lane.read.next = at;
                }
            }
            drop(position);
            if last_progress.elapsed() > spec.timeout {
                let stuck: Vec<String> = open.iter().map(|tp| format!("{}/{}", tp.0, tp.1)).collect();
                let error = spec.err(format!(
                    "no message from {} for {:?} while reading offsets the broker listed",
                    stuck.join(", "),
                    spec.timeout
                ));
                return Err(Failed { tp: first.clone(), error });
            }
            let (from, to) = wanted[first];
            if let Some(lane) = self.lanes.get_mut(first) {
                let ReadLane { queue, read } = lane;
                match queue.poll(Duration::from_millis(10)) {
                    Some(Ok(m)) if take_message(read, &m) => last_progress = Instant::now(),
                    Some(Err(e)) => return Err(Failed::of(spec, first, from, to, e)),
                    _ => {}
                }
            }
        }
    }
}

impl ReadLane {
    /// Reads the queue until `ahead`, or until it has no message for `wait`. Returns whether
    /// anything new was read.
    fn read_up_to(&mut self, ahead: i64, wait: Duration) -> std::result::Result<bool, rdkafka::error::KafkaError> {
        let mut progressed = false;
        while self.read.next < ahead {
            match self.queue.poll(wait) {
                None => break,
                Some(Ok(m)) => progressed |= take_message(&mut self.read, &m),
                Some(Err(e)) => return Err(e),
            }
        }
        Ok(progressed)
    }
}

impl Read {
    fn new(tp: Tp, from: i64) -> Read {
        Read { tp, runs: VecDeque::new(), building: None, base: from, next: from }
    }

    /// Whether a batch from `from` can be taken from here.
    fn goes_on(&self, from: i64) -> bool {
        self.base <= from && from <= self.next
    }

    /// Appends `message` and its headers, unless it was read already (`next` passed it).
    /// Returns whether it was new.
    fn push<'h>(
        &mut self,
        message: Message<'_>,
        headers: impl IntoIterator<Item = (&'h str, Option<&'h [u8]>)>,
    ) -> bool {
        if message.offset < self.next {
            return false;
        }
        let (topic, p) = &self.tp;
        self.building.get_or_insert_with(|| RunBuilder::new(topic, *p)).push(message, headers);
        self.next = message.offset + 1;
        true
    }

    /// The messages of `[from, to)` (`base <= from`, `to <= next`); those after stay.
    fn take(&mut self, from: i64, to: i64) -> Vec<Run> {
        if let Some(built) = self.building.take().filter(|b| !b.is_empty()) {
            self.runs.push_back(built.finish());
        }
        let mut out = Vec::new();
        while let Some(run) = self.runs.pop_front() {
            let offsets = run.offsets();
            let (lo, hi) = (offsets.partition_point(|&o| o < from), offsets.partition_point(|&o| o < to));
            if lo < hi {
                out.push(run.slice(lo, hi - lo));
            }
            if hi < run.len() {
                self.runs.push_front(run.slice(hi, run.len() - hi));
                break;
            }
        }
        self.base = to;
        out
    }
}

/// Appends message `m` to what its lane read (see [`Read::push`]).
fn take_message(read: &mut Read, m: &BorrowedMessage<'_>) -> bool {
    let message =
        Message { offset: m.offset(), key: m.key(), value: m.payload(), timestamp_ms: m.timestamp().to_millis() };
    read.push(message, m.headers().into_iter().flat_map(|h| h.iter()).map(|h| (h.key, h.value)))
}

/// A read that failed, and the partition whose queue failed it.
struct Failed {
    tp: Tp,
    error: Error,
}

impl Failed {
    /// An error from `tp`'s queue while reading `[from, to)`: offsets gone are a data loss.
    fn of(spec: &KafkaSpec, tp: &Tp, from: i64, to: i64, e: rdkafka::error::KafkaError) -> Failed {
        let text = e.to_string();
        let error = if text.contains("OffsetOutOfRange") || text.contains("out of range") {
            Error::DataLoss {
                source_name: spec.describe(),
                problem: format!(
                    "{}/{} offsets {from}..{to} are no longer in the topic (deleted by retention?): {e}",
                    tp.0, tp.1
                ),
            }
        } else {
            spec.err(format!("fetch of {}/{} failed: {e}", tp.0, tp.1))
        };
        Failed { tp: tp.clone(), error }
    }
}

/// Opens a [`KafkaSpec`] as a stream or a bounded range of offsets.
pub struct KafkaSourceProvider {
    spec: KafkaSpec,
}

impl KafkaSourceProvider {
    pub fn new(spec: KafkaSpec) -> Self {
        KafkaSourceProvider { spec }
    }
}

#[async_trait]
impl SourceProvider for KafkaSourceProvider {
    fn describe(&self) -> String {
        self.spec.describe()
    }

    async fn open_stream(&self, _state: Checkpoint) -> Result<Box<dyn Source>> {
        Ok(Box::new(KafkaStream::open(&self.spec)?))
    }

    async fn open_bounded(&self, version: Option<u64>) -> Result<Box<dyn BoundedSource>> {
        if version.is_some() {
            return Err(Error::Unsupported(format!(
                "{}: a topic has no versions (use --from/--to times)",
                self.describe()
            )));
        }
        Ok(Box::new(KafkaBounded { client: Client::open(&self.spec)?, times: self.spec.bounded_ms }))
    }
}

/// The stream view.
struct KafkaStream {
    client: Client,
    /// The group member whose assignment says which partitions are ours (group mode).
    member: Option<Arc<BaseConsumer>>,
    /// The partitions this process reads now.
    owned: BTreeSet<Tp>,
    /// Where each owned partition's next batch starts, when known.
    next: BTreeMap<Tp, i64>,
    /// Owned partitions waiting for what the table records.
    unplaced: BTreeSet<Tp>,
    /// The offset of the last batch planned or committed (the engine's start).
    last_end: Option<Offset>,
    /// Whether the query has planned a batch yet (`starting_offsets` applies before).
    started: bool,
    /// The topics' partitions and when the broker said so.
    metadata: Option<(Instant, BTreeSet<Tp>)>,
}

/// How long a stream with nothing new waits for a message before the engine's loop goes on.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// How long the topics' partitions are taken as known before the metadata is asked again.
const METADATA_MAX_AGE: Duration = Duration::from_secs(1);

impl KafkaStream {
    fn open(spec: &KafkaSpec) -> Result<Self> {
        let member = match &spec.assignment {
            Assignment::Group { member } => {
                let mut config = spec.config();
                config.set("client.id", member);
                let consumer: BaseConsumer =
                    config.create().map_err(|e| spec.err(format!("cannot join group {}: {e}", spec.group_id)))?;
                let topics: Vec<String> = match &spec.topics {
                    Topics::List(list) => list.clone(),
                    Topics::Pattern(p) => vec![format!("^{p}$")],
                };
                let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
                consumer.subscribe(&refs).map_err(|e| spec.err(format!("cannot subscribe: {e}")))?;
                Some(Arc::new(consumer))
            }
            _ => None,
        };
        Ok(KafkaStream {
            client: Client::open(spec)?,
            member,
            owned: BTreeSet::new(),
            next: BTreeMap::new(),
            unplaced: BTreeSet::new(),
            last_end: None,
            started: false,
            metadata: None,
        })
    }

    fn spec(&self) -> &KafkaSpec {
        &self.client.spec
    }

    /// The partitions this process reads now: all, its static share, or the group's assignment.
    async fn assigned(&mut self) -> Result<BTreeSet<Tp>> {
        let spec = self.client.spec.clone();
        match (&spec.assignment, &self.member) {
            (Assignment::Group { .. }, Some(member)) => {
                let member = member.clone();
                tidewater_core::compute::blocking("kafka group", move || {
                    // Serves the group's rebalances; the member reads nothing itself (its
                    // partitions are paused), the batches read by offset range.
                    while let Some(polled) = member.poll(Duration::ZERO) {
                        if let Err(e) = polled {
                            tracing::warn!(group = %spec.group_id, "consumer group: {e}");
                        }
                    }
                    let assignment = member.assignment().map_err(|e| spec.err(e))?;
                    let _ = member.pause(&assignment);
                    let owned = assignment.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
                    drop(assignment);
                    Ok(owned)
                })
                .await
            }
            (Assignment::Worker { index, count }, _) => {
                let all = self.topic_partitions().await?;
                Ok(all.into_iter().filter(|(t, p)| worker_of(t, *p, *count) == *index).collect())
            }
            _ => self.topic_partitions().await,
        }
    }

    /// Every partition of the source's topics, from the broker's metadata at most once a
    /// second (a batch loop with nothing new asks again at once; partitions added are found
    /// within the second).
    async fn topic_partitions(&mut self) -> Result<BTreeSet<Tp>> {
        if let Some((at, known)) = &self.metadata
            && at.elapsed() < METADATA_MAX_AGE
        {
            return Ok(known.clone());
        }
        let known: BTreeSet<Tp> = self.client.partitions().await?.into_iter().collect();
        self.metadata = Some((Instant::now(), known.clone()));
        Ok(known)
    }

    /// `[from, to)` for each owned partition, `to` within the admission limit and `until`.
    async fn plan(&mut self, until: Option<&Ranges>, limit: Option<u64>, probe: bool) -> Result<Ranges> {
        let placed: Vec<Tp> = self.owned.iter().filter(|tp| self.next.contains_key(*tp)).cloned().collect();
        if !probe && until.is_none() {
            // Streaming: what the reader has already read, when that is all there is to read
            // (no round trip to the broker between batches that follow each other).
            let starts = placed.iter().map(|tp| (tp.clone(), self.next[tp])).collect();
            if let Some(mut ranges) = self.client.read_ahead(starts).await? {
                if let Some(limit) = limit {
                    limit_ranges(&mut ranges, limit);
                }
                return Ok(ranges);
            }
        }
        let mut marks = match probe {
            true => self.client.probe(placed.clone()).await?,
            false => self.client.ends(placed.clone()).await?,
        };
        // A partition that seems to end before where its progress is: read its last record
        // batch first (a broker's high watermark can lag, see `Client::ends`).
        let behind: Vec<Tp> = placed.iter().filter(|tp| self.next[*tp] > marks[*tp].1).cloned().collect();
        if !probe && !behind.is_empty() {
            marks.extend(self.client.probe(behind).await?);
        }
        let mut ranges = Ranges::new();
        for tp in placed {
            let (low, high) = marks[&tp];
            let from = lost(self.spec(), &tp, self.next[&tp], low, high)?;
            let mut to = high.max(from);
            if let Some(until) = until {
                to = until.get(&tp).map_or(from, |&(_, end)| end.clamp(from, to));
            }
            ranges.insert(tp, (from, to));
        }
        if let Some(limit) = limit {
            limit_ranges(&mut ranges, limit);
        }
        Ok(ranges)
    }

    /// `ranges` as the batch's end, or the last end when no partition has anything new.
    fn end_of(&mut self, ranges: &Ranges) -> Option<Offset> {
        if ranges.values().all(|(from, to)| from == to) {
            return self.last_end.clone();
        }
        self.started = true;
        Some(ranges_offset(ranges))
    }
}

/// Where partition `tp` is read from when its progress says `from` and the topic holds
/// `[low, high)`: `from`, or (offsets deleted by retention, `fail_on_data_loss = false`) `low`.
/// Offsets deleted before they were read stop the query with a data-loss error (Spark's
/// `failOnDataLoss`); so does a partition that now ends before `from` (the topic was deleted and
/// made again: its offsets restart, and the progress recorded is the old topic's), whatever
/// `fail_on_data_loss` says, since no offset of the new topic follows from it.
fn lost(spec: &KafkaSpec, tp: &Tp, from: i64, low: i64, high: i64) -> Result<i64> {
    let (topic, p) = tp;
    if from > high {
        return Err(Error::DataLoss {
            source_name: spec.describe(),
            problem: format!(
                "{topic}/{p} was read up to offset {from}, and the partition now ends at {high} (was the topic deleted and made again?); its recorded progress is for offsets that no longer exist: run the job with a new group_id and a new checkpoint, whose partitions start at starting_offsets"
            ),
        });
    }
    if from >= low {
        return Ok(from);
    }
    let problem = format!(
        "{topic}/{p} offsets {from}..{low} are no longer in the topic (deleted by retention?); the earliest is {low}"
    );
    if spec.fail_on_data_loss {
        return Err(Error::DataLoss {
            source_name: spec.describe(),
            problem: format!("{problem} (fail_on_data_loss = false skips them)"),
        });
    }
    tracing::warn!(source = %spec.describe(), "data loss: {problem}; skipped (fail_on_data_loss = false)");
    Ok(low)
}

/// The worker (of `count`) that reads a partition in a static split: the partitions of a topic
/// go round the workers, starting at a place the topic's name chooses.
pub fn worker_of(topic: &str, partition: i32, count: u32) -> u32 {
    let start = xxhash_rust::xxh3::xxh3_64(topic.as_bytes());
    ((start.wrapping_add(partition as u64)) % u64::from(count.max(1))) as u32
}

/// Cuts `ranges` to `limit` offsets in all, shared by the partitions in proportion to what each
/// has (Spark's `maxOffsetsPerTrigger`), each partition getting at least one.
fn limit_ranges(ranges: &mut Ranges, limit: u64) {
    let total: u64 = ranges.values().map(|(f, t)| (t - f) as u64).sum();
    if total <= limit {
        return;
    }
    for (from, to) in ranges.values_mut() {
        let have = (*to - *from) as u64;
        if have == 0 {
            continue;
        }
        let share = ((have as u128 * limit as u128) / total as u128).max(1) as i64;
        *to = *from + share.min(have as i64);
    }
}

#[async_trait]
impl Source for KafkaStream {
    async fn latest_offset(&mut self, start: Option<&Offset>, until: Option<&Offset>) -> Result<Option<Offset>> {
        let until = until.map(|u| ranges_of(self.spec(), u)).transpose()?;
        let limit = self.spec().max_offsets_per_trigger;
        let mut ranges = self.plan(until.as_ref(), limit, false).await?;
        if until.is_none() && ranges.values().all(|(from, to)| from == to) {
            // Nothing new: wait for a message to arrive (a loop with `interval = "0s"` would
            // otherwise ask the broker again at once, over and over), then look again.
            self.client.arrival(IDLE_WAIT).await;
            ranges = self.plan(until.as_ref(), limit, false).await?;
        }
        if self.last_end.is_none() {
            self.last_end = start.cloned();
        }
        Ok(self.end_of(&ranges))
    }

    async fn available_end(&mut self) -> Result<Option<Offset>> {
        let ranges = self.plan(None, None, true).await?;
        Ok(self.end_of(&ranges))
    }

    async fn read(&mut self, range: &OffsetRange) -> Result<SourceBatch> {
        let ranges = ranges_of(self.spec(), &range.end)?;
        let messages = self.client.fetch(ranges, Duration::ZERO).await?;
        let format = self.spec().format.clone();
        tidewater_core::compute::blocking("decoding kafka messages", move || decode(messages, &format)).await
    }

    async fn acknowledge(&mut self, end: &Offset, outcome: &SinkCommit) -> Result<()> {
        let ranges = ranges_of(self.spec(), end)?;
        if let SinkCommit::Superseded { lane, recorded, expected } = outcome {
            if !matches!(self.spec().assignment, Assignment::Group { .. }) {
                return Err(self.spec().err(format!(
                    "partition {lane}: another writer committed its offsets up to {recorded} while this batch read from {}; is another process of this job running outside a consumer group or with an overlapping --worker split?",
                    expected.map_or("its start".to_string(), |e| e.to_string())
                )));
            }
            // The group moved a partition: start again from what the table records.
            tracing::info!(%lane, recorded, "a partition moved to another member; re-reading where the table is");
            self.next.clear();
            self.unplaced = self.owned.clone();
            self.last_end = None;
            return Ok(());
        }
        for (tp, (_, to)) in &ranges {
            if self.owned.contains(tp) {
                self.next.insert(tp.clone(), *to);
            }
        }
        self.last_end = Some(end.clone());
        if let Some(member) = self.member.clone() {
            // For lag monitors only: the table, not the group's offsets, is where a partition resumes.
            let mut list = TopicPartitionList::new();
            for ((topic, p), (_, to)) in &ranges {
                let _ = list.add_partition_offset(topic, *p, KafkaOffset::Offset(*to));
            }
            if let Err(e) = member.commit(&list, rdkafka::consumer::CommitMode::Async) {
                tracing::debug!("committing the group's offsets (for monitoring): {e}");
            }
        }
        Ok(())
    }

    fn lanes(&self, range: &OffsetRange) -> Vec<Lane> {
        let Ok(ranges) = ranges_of(self.spec(), &range.end) else { return Vec::new() };
        // Where the previous batch left each partition: what the table records for it. A batch
        // that starts later skipped offsets lost to retention (`fail_on_data_loss = false`), and
        // lands on the progress before the gap.
        let before = range.start.as_ref().and_then(|start| ranges_of(self.spec(), start).ok()).unwrap_or_default();
        ranges
            .iter()
            .filter(|(_, (from, to))| to > from)
            .map(|(tp, (from, to))| Lane {
                app_id: self.spec().lane_id(&tp.0, tp.1),
                origin: format!("{}/{}", tp.0, tp.1),
                from: Some(before.get(tp).map_or(*from, |&(_, end)| end.min(*from))),
                to: *to,
            })
            .collect()
    }

    async fn unplaced(&mut self, start: Option<&Offset>) -> Result<Vec<String>> {
        let owned = self.assigned().await?;
        if owned != self.owned {
            let (gone, new): (Vec<&Tp>, Vec<&Tp>) =
                (self.owned.difference(&owned).collect(), owned.difference(&self.owned).collect());
            if !gone.is_empty() || !new.is_empty() {
                tracing::info!(source = %self.spec().describe(), revoked = ?gone, assigned = ?new, "partitions changed");
            }
            self.next.retain(|tp, _| owned.contains(tp));
            self.unplaced.retain(|tp| owned.contains(tp));
            for tp in owned.difference(&self.owned) {
                self.unplaced.insert(tp.clone());
            }
            self.owned = owned;
        }
        // A static split resumes from the offset log; the table is asked only for partitions
        // the log has not seen (a new partition, a first run).
        if !matches!(self.spec().assignment, Assignment::Group { .. })
            && let Some(start) = start
        {
            let logged = ranges_of(self.spec(), start)?;
            for (tp, (_, to)) in logged {
                if self.unplaced.remove(&tp) {
                    self.next.insert(tp, to);
                }
            }
        }
        Ok(self.unplaced.iter().map(|(t, p)| self.spec().lane_id(t, *p)).collect())
    }

    async fn place(&mut self, recorded: Vec<(String, Option<i64>)>) -> Result<()> {
        let recorded: BTreeMap<String, Option<i64>> = recorded.into_iter().collect();
        let pending: Vec<Tp> = std::mem::take(&mut self.unplaced).into_iter().collect();
        let (mut defaults, mut placed) = (Vec::new(), Vec::new());
        for tp in pending {
            match recorded.get(&self.spec().lane_id(&tp.0, tp.1)).copied().flatten() {
                Some(at) => placed.push((tp, at)),
                None => defaults.push(tp),
            }
        }
        let marks = self.client.ends(defaults.clone()).await?;
        for tp in defaults {
            let (low, high) = marks[&tp];
            // `starting_offsets` is where the query starts; a partition found later starts at
            // its earliest offset (as Spark's).
            let at = match (&self.spec().starting_offsets, self.started) {
                (_, true) | (StartingOffsets::Earliest, _) => low,
                (StartingOffsets::Latest, false) => high,
                (StartingOffsets::Exact(map), false) => {
                    map.get(&tp.0).and_then(|m| m.get(&tp.1)).copied().unwrap_or(low)
                }
            };
            placed.push((tp, at));
        }
        for (tp, at) in placed {
            tracing::debug!(partition = %format!("{}/{}", tp.0, tp.1), at, "partition placed");
            self.next.insert(tp, at);
        }
        Ok(())
    }
}

/// The bounded view: each partition's offsets from the earliest (or the first at `--from`) to
/// its end at planning (or the first at `--to`), in chunks.
struct KafkaBounded {
    client: Client,
    times: (Option<i64>, Option<i64>),
}

/// Offsets per chunk of a bounded read.
const CHUNK_OFFSETS: i64 = 1_000_000;

#[async_trait]
impl BoundedSource for KafkaBounded {
    async fn plan(&mut self) -> Result<Vec<Chunk>> {
        let tps = self.client.partitions().await?;
        let marks = self.client.probe(tps.clone()).await?;
        let starts = match self.times.0 {
            Some(ms) => self.client.offsets_at(tps.clone(), ms).await?,
            None => marks.iter().map(|(tp, (low, _))| (tp.clone(), *low)).collect(),
        };
        let ends = match self.times.1 {
            Some(ms) => self.client.offsets_at(tps.clone(), ms).await?,
            None => marks.iter().map(|(tp, (_, high))| (tp.clone(), *high)).collect(),
        };
        let mut chunks = Vec::new();
        for tp in tps {
            let (mut from, to) = (starts[&tp], ends[&tp]);
            while from < to {
                let end = (from + CHUNK_OFFSETS).min(to);
                chunks.push(Chunk {
                    describe: format!("{}/{} offsets {from}..{end}", tp.0, tp.1),
                    spec: ranges_offset(&Ranges::from([(tp.clone(), (from, end))])).value().clone(),
                });
                from = end;
            }
        }
        Ok(chunks)
    }

    async fn plan_files(&mut self) -> Result<tidewater_core::scope::SlicePlan> {
        let chunks = self
            .plan()
            .await?
            .into_iter()
            .map(|read| tidewater_core::scope::SliceChunk {
                range: read.describe.clone(),
                span: None,
                files: 0,
                estimated_rows: 0,
                estimated_bytes: 0,
                read,
            })
            .collect();
        Ok(tidewater_core::scope::SlicePlan { version: None, column: None, chunks })
    }

    async fn read_chunk(&mut self, chunk: &Chunk) -> Result<SourceBatch> {
        let ranges = ranges_of(&self.client.spec, &Offset::new(chunk.spec.clone()))?;
        let messages = self.client.fetch(ranges, Duration::ZERO).await?;
        let format = self.client.spec.format.clone();
        tidewater_core::compute::blocking("decoding kafka messages", move || decode(messages, &format)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets_of(runs: &[Run]) -> Vec<i64> {
        runs.iter().flat_map(|r| r.offsets().to_vec()).collect()
    }

    #[test]
    fn a_batch_takes_its_range_of_what_was_read_and_the_rest_waits_for_the_next() {
        let mut read = Read::new(("orders".into(), 2), 10);
        let push = |read: &mut Read, offset: i64| {
            let message = Message { offset, key: None, value: Some(b"{}"), timestamp_ms: None };
            read.push(message, [])
        };
        // 10..20, then a gap (compacted away) to 25..30.
        for offset in (10..20).chain(25..30) {
            assert!(push(&mut read, offset));
        }
        assert!(!push(&mut read, 12), "an offset read already is not read again");
        assert_eq!(read.next, 30);
        assert_eq!(offsets_of(&read.take(10, 14)), [10, 11, 12, 13]);
        assert!(read.goes_on(14) && !read.goes_on(13), "a replay from before what is kept starts over");
        // More arrives after the first take: it joins what waits.
        for offset in 30..33 {
            push(&mut read, offset);
        }
        assert_eq!(offsets_of(&read.take(14, 27)), [14, 15, 16, 17, 18, 19, 25, 26]);
        assert_eq!(offsets_of(&read.take(27, 33)), [27, 28, 29, 30, 31, 32]);
        assert!(read.take(33, 33).is_empty());
        assert!(read.goes_on(33) && !read.goes_on(34), "past what was read: the queue starts there");
    }

    #[test]
    fn offsets_round_trip_and_limits_share_by_backlog() {
        let spec = KafkaSpec::new("x:1", Topics::List(vec!["orders".into()]), "g");
        let mut ranges = Ranges::from([
            (("orders".to_string(), 0), (0, 900)),
            (("orders".to_string(), 1), (50, 150)),
            (("orders".to_string(), 2), (7, 7)),
        ]);
        let offset = ranges_offset(&ranges);
        assert_eq!(offset.to_string(), r#"{"orders":{"0":[0,900],"1":[50,150],"2":[7,7]}}"#);
        assert_eq!(ranges_of(&spec, &offset).unwrap(), ranges);
        limit_ranges(&mut ranges, 100);
        let sizes: Vec<i64> = ranges.values().map(|(f, t)| t - f).collect();
        assert_eq!(sizes, [90, 10, 0]);
        assert!(ranges_of(&spec, &Offset::new(serde_json::json!({"files": 3}))).is_err());
    }

    #[test]
    fn offsets_gone_before_they_were_read_are_a_data_loss_or_skipped_when_allowed() {
        let mut spec = KafkaSpec::new("x:1", Topics::List(vec!["orders".into()]), "g");
        let tp = ("orders".to_string(), 2);
        assert_eq!(lost(&spec, &tp, 40, 10, 90).unwrap(), 40, "nothing lost");
        assert_eq!(lost(&spec, &tp, 90, 10, 90).unwrap(), 90, "at the end");
        let e = lost(&spec, &tp, 5, 10, 90).unwrap_err().to_string();
        assert!(e.contains("data loss: orders/2 offsets 5..10 are no longer in the topic"), "{e}");
        let e = lost(&spec, &tp, 120, 0, 7).unwrap_err().to_string();
        assert!(e.contains("orders/2 was read up to offset 120, and the partition now ends at 7"), "{e}");
        spec.fail_on_data_loss = false;
        assert_eq!(lost(&spec, &tp, 5, 10, 90).unwrap(), 10, "skipped to the earliest");
        assert!(lost(&spec, &tp, 120, 0, 7).is_err(), "a made-again topic is refused whatever the setting");
    }

    #[test]
    fn a_static_split_gives_each_partition_to_one_worker_and_spreads_a_topic() {
        for count in 1..5u32 {
            for p in 0..12 {
                assert!(worker_of("orders", p, count) < count);
            }
        }
        let mut per = [0; 3];
        for p in 0..12 {
            per[worker_of("orders", p, 3) as usize] += 1;
        }
        assert_eq!(per, [4, 4, 4]);
    }
}
