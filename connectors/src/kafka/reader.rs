//! The reader: the source's consumer, assigned the partitions it reads (no group) and left
//! assigned between batches. librdkafka fetches ahead into a queue per partition, and a batch
//! takes `[from, to)` from what was read of it.
//!
//! # Invariant
//! What a batch's reading ran past stays for the next batch, so no message is fetched twice while
//! batches follow each other; a partition is assigned again (and its queue starts over) only when
//! a batch starts elsewhere (a replay, a first batch, a partition that comes back to this
//! process). A batch gets exactly the messages of its ranges, each once, by offset.

use super::decode::{Message, Messages, Run, RunBuilder};
use super::offsets::{Ranges, Tp};
use super::spec::KafkaSpec;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::message::{BorrowedMessage, Headers, Message as _};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tidewater_core::{Error, Result};

/// The source's consumer's partitions, each read into its lane (see the module doc).
#[derive(Default)]
pub(super) struct Reader {
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

/// Messages read past where a batch ends are kept up to this many per partition; what is
/// beyond stays in librdkafka's queue, which has its own bound.
const READ_AHEAD: i64 = 10_000;

impl Reader {
    /// Where the lane of `tp` goes on: the offset after the last message read of it (`None`:
    /// the reader reads no lane of `tp`).
    pub(super) fn next_of(&self, tp: &Tp) -> Option<i64> {
        self.lanes.get(tp).map(|lane| lane.read.next)
    }

    /// What is told when a lane's queue, empty, gets a message (`None`: the reader reads no
    /// partition).
    pub(super) fn arrivals(&self) -> Option<Arc<tokio::sync::Notify>> {
        (!self.lanes.is_empty()).then(|| self.arrived.clone())
    }

    /// The messages of `ranges`, partition by partition, each by offset.
    pub(super) fn fetch(
        &mut self,
        spec: &KafkaSpec,
        consumer: &Arc<BaseConsumer>,
        ranges: &Ranges,
    ) -> Result<Messages> {
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
    /// reached). An error is logged and left for the batch that reads there.
    pub(super) fn read_until_quiet<'a>(
        &mut self,
        spec: &KafkaSpec,
        tps: impl Iterator<Item = &'a Tp>,
        quiet: Duration,
    ) {
        for tp in tps {
            if let Some(lane) = self.lanes.get_mut(tp)
                && let Err(e) = lane.read_up_to(lane.read.base + READ_AHEAD, quiet)
            {
                tracing::warn!(
                    source = %spec.describe(),
                    "kafka {}/{}: reading on until the queue is quiet failed: {e}; left for the batch that reads there",
                    tp.0,
                    tp.1
                );
            }
        }
    }

    /// Has a lane go on at each of `starts`: those whose lane does not are assigned there.
    /// With `only`, the lanes of other partitions are dropped.
    pub(super) fn prepare(
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
    pub(super) fn drain(&mut self, tps: &[&Tp]) -> Option<BTreeMap<Tp, i64>> {
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
}
