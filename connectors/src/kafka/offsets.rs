//! The offset codec: how a batch's per-partition ranges are written into the offset log, and
//! read back. A batch's offset names, for each partition it reads, the offsets `[from, to)`:
//! `{"orders": {"0": [42, 100], "1": [17, 17]}}`; reading it back gives the same ranges, so a
//! replay reads exactly those messages again.

use super::spec::KafkaSpec;
use std::collections::BTreeMap;
use tidewater_core::{Offset, Result};

/// A topic-partition.
pub(super) type Tp = (String, i32);

/// Per partition, the offsets `[from, to)` a batch reads.
pub(super) type Ranges = BTreeMap<Tp, (i64, i64)>;

/// `ranges` as an offset: per topic, per partition, `[from, to]`.
pub(super) fn ranges_offset(ranges: &Ranges) -> Offset {
    let mut topics: BTreeMap<&str, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
    for ((topic, p), (from, to)) in ranges {
        topics.entry(topic).or_default().insert(p.to_string(), serde_json::json!([from, to]));
    }
    // Built as a JSON object directly (topics in order, as `serde_json::to_value` of the map
    // gave), so there is no serialization error to drop.
    let topics = topics.into_iter().map(|(topic, partitions)| (topic.to_string(), partitions.into()));
    Offset::new(serde_json::Value::Object(topics.collect()))
}

/// The ranges an offset of [`ranges_offset`] names; anything else is an error naming the source.
pub(super) fn ranges_of(spec: &KafkaSpec, offset: &Offset) -> Result<Ranges> {
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

/// Cuts `ranges` to `limit` offsets in all, shared by the partitions in proportion to what each
/// has (Spark's `maxOffsetsPerTrigger`), each partition getting at least one.
pub(super) fn limit_ranges(ranges: &mut Ranges, limit: u64) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::spec::Topics;

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
}
