//! The client: the source's calls to the broker, run on the blocking pool (librdkafka's calls
//! block). The topics' partitions (metadata), each partition's earliest offset and end
//! (ListOffsets, or by message time), and the messages of a batch's ranges, read by the
//! [`Reader`] it holds.
//!
//! # Invariant
//! An end the client reports is never before what the reader has read of the partition: a
//! broker's high watermark may lag what it holds, and an offset read is known to exist.

use super::decode::Messages;
use super::offsets::{Ranges, Tp};
use super::reader::Reader;
use super::spec::{KafkaSpec, Topics};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tidewater_core::{Error, Result};

/// How long a probe for the partitions' ends reads on after the last message arrives.
const PROBE_QUIET: Duration = Duration::from_millis(50);

/// The client calls, run on the blocking pool (librdkafka's calls block).
#[derive(Clone)]
pub(super) struct Client {
    pub(super) spec: Arc<KafkaSpec>,
    consumer: Arc<BaseConsumer>,
    /// What the consumer has read ahead (see [`Reader`]).
    reader: Arc<Mutex<Reader>>,
}

impl Client {
    pub(super) fn open(spec: &KafkaSpec) -> Result<Self> {
        Ok(Client { spec: Arc::new(spec.clone()), consumer: Arc::new(spec.consumer()?), reader: Default::default() })
    }

    /// The earliest offset and the end of each partition: the broker's high watermark, or a
    /// later end the reader has read up to. (Some Kafka-protocol brokers, tansu 0.6 among them, answer
    /// the last record batch's first offset + 1 as the high watermark: the rest of that batch
    /// is then found by the fetches, and by [`Client::probe`].)
    pub(super) async fn ends(&self, tps: Vec<Tp>) -> Result<BTreeMap<Tp, (i64, i64)>> {
        let mut marks = self.watermarks(tps).await?;
        let reader = lock(&self.reader)?;
        for (tp, (_, high)) in marks.iter_mut() {
            if let Some(next) = reader.next_of(tp) {
                *high = (*high).max(next);
            }
        }
        Ok(marks)
    }

    /// [`Client::ends`], after reading the record batch that holds each partition's last offset
    /// by its high watermark: the end of everything in the topic now.
    pub(super) async fn probe(&self, tps: Vec<Tp>) -> Result<BTreeMap<Tp, (i64, i64)>> {
        let marks = self.ends(tps).await?;
        // (A partition the reader has read past its high watermark already ends there.)
        let last: Ranges = {
            let reader = lock(&self.reader)?;
            marks
                .iter()
                .filter(|(tp, (l, h))| h > l && reader.next_of(tp).is_none_or(|next| next < *h))
                .map(|(tp, (_, h))| (tp.clone(), (h - 1, *h)))
                .collect()
        };
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
    pub(super) async fn read_ahead(&self, starts: Vec<(Tp, i64)>) -> Result<Option<Ranges>> {
        let reader = self.reader.clone();
        self.run("kafka read ahead", move |spec, consumer| {
            let mut reader = lock(&reader)?;
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
    pub(super) async fn arrival(&self, wait: Duration) {
        let arrived = match self.reader.lock() {
            Ok(reader) => reader.arrivals(),
            // Nothing to wait for: the plan that follows reports the poisoned reader.
            Err(_) => None,
        };
        // (`None`: the reader reads no partition, nothing can arrive.)
        let Some(arrived) = arrived else { return };
        // Elapsed (nothing arrived within `wait`) is no error: the caller looks again either way.
        let _ = tokio::time::timeout(wait, arrived.notified()).await;
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
    pub(super) async fn partitions(&self) -> Result<Vec<Tp>> {
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
    pub(super) async fn fetch(&self, ranges: Ranges, quiet: Duration) -> Result<Messages> {
        let reader = self.reader.clone();
        self.run("kafka fetch", move |spec, consumer| {
            let mut reader = lock(&reader)?;
            let messages = reader.fetch(spec, consumer, &ranges)?;
            if !quiet.is_zero() {
                reader.read_until_quiet(spec, ranges.keys(), quiet);
            }
            Ok(messages)
        })
        .await
    }

    /// The first offset of each partition whose message time is at or after `ms` (its next
    /// offset when none is).
    pub(super) async fn offsets_at(&self, tps: Vec<Tp>, ms: i64) -> Result<BTreeMap<Tp, i64>> {
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

/// The reader, locked (a panic while it was locked leaves it in an unknown state: an error).
fn lock(reader: &Mutex<Reader>) -> Result<MutexGuard<'_, Reader>> {
    reader.lock().map_err(|_| Error::Internal("kafka reader poisoned".into()))
}
