//! The stream view: which partitions this process reads (every one, its share of a static split
//! `--worker I/N`, or what the consumer group assigns it), where each one's next batch starts,
//! and each batch's ranges.
//!
//! # Invariant
//! A partition's batch starts where its previous batch ended. Where that is comes from the offset
//! log (a static split resuming), else from what the table records for the partition's lane,
//! else from `starting_offsets`; a partition that moved to another member mid-batch is placed
//! again from the table. Offsets lost to retention stop the stream unless
//! `fail_on_data_loss = false` says to skip them.

use super::client::Client;
use super::decode::decode;
use super::offsets::{Ranges, Tp, limit_ranges, ranges_of, ranges_offset};
use super::spec::{Assignment, KafkaSpec, StartingOffsets, Topics};
use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tidewater_core::{Error, History, Lane, Lanes, Offset, OffsetRange, Result, SinkOutcome, Source, SourceBatch};

/// The stream view.
pub(super) struct KafkaStream {
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
    pub(super) fn open(spec: &KafkaSpec) -> Result<Self> {
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
                    member.pause(&assignment).map_err(|e| {
                        spec.err(format!("consumer group {}: cannot pause the assigned partitions: {e}", spec.group_id))
                    })?;
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

    async fn acknowledge(&mut self, end: &Offset, outcome: &SinkOutcome) -> Result<()> {
        let ranges = ranges_of(self.spec(), end)?;
        if let SinkOutcome::Superseded { lane, recorded, expected } = outcome {
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
                if let Err(e) = list.add_partition_offset(topic, *p, KafkaOffset::Offset(*to)) {
                    tracing::warn!(
                        group = %self.spec().group_id,
                        "{topic}/{p}: offset {to} left out of the group's offsets (for monitoring): {e}"
                    );
                }
            }
            if let Err(e) = member.commit(&list, rdkafka::consumer::CommitMode::Async) {
                tracing::debug!("committing the group's offsets (for monitoring): {e}");
            }
        }
        Ok(())
    }

    fn lanes(&mut self) -> Option<&mut dyn Lanes> {
        Some(self)
    }

    fn history(&mut self) -> Option<&mut dyn History> {
        None
    }
}

/// Each partition is a lane: its progress is recorded in the table as a txn beside the batch.
#[async_trait]
impl Lanes for KafkaStream {
    fn of(&self, range: &OffsetRange) -> Vec<Lane> {
        // (`lanes` returns no error: an offset that is not a Kafka source's is logged. `read` of
        // the same range has refused it already.)
        let ranges = match ranges_of(self.spec(), &range.end) {
            Ok(ranges) => ranges,
            Err(e) => {
                tracing::warn!("the batch's partitions are not recorded as lanes: {e}");
                return Vec::new();
            }
        };
        // Where the previous batch left each partition: what the table records for it. A batch
        // that starts later skipped offsets lost to retention (`fail_on_data_loss = false`), and
        // lands on the progress before the gap.
        let before = match range.start.as_ref().map(|start| ranges_of(self.spec(), start)).transpose() {
            Ok(before) => before.unwrap_or_default(),
            Err(e) => {
                tracing::warn!("each lane is taken to start where the batch reads from: {e}");
                Ranges::new()
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;

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
