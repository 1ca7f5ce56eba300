//! Deduplication within the watermark (Spark's `dropDuplicatesWithinWatermark`): a row whose keys
//! an earlier row had is dropped and counted. The keys seen are kept in the state with the
//! latest event time they were seen at, and leave it once the watermark passes that time: a
//! duplicate arriving later is older than the watermark, so it is late and set aside before it
//! gets here. Without a watermark, every key seen is kept.

use crate::error::{Error, Result};
use polars::prelude::*;

/// The state's column of the latest event time a key was seen at (epoch milliseconds).
const SEEN: &str = "__seen_ms";

/// `[dedup] keys = [...]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dedup {
    pub keys: Vec<String>,
    /// The watermark's event-time column, when the job has one.
    pub event_time: Option<String>,
}

/// What one batch's deduplication did.
pub struct Deduplicated {
    /// The rows whose keys are new, the first of each.
    pub rows: DataFrame,
    /// Rows dropped as duplicates.
    pub dropped: u64,
    /// The keys seen, after the batch.
    pub state: DataFrame,
}

impl Dedup {
    pub fn new(keys: Vec<String>, event_time: Option<String>) -> Self {
        Dedup { keys, event_time }
    }

    /// Whether the state is ever evicted.
    pub fn evicts(&self) -> bool {
        self.event_time.is_some()
    }

    /// Drops from `rows` (a batch's on-time rows, in order) the rows whose keys `state` holds or
    /// an earlier row of the batch has; `watermark_ms` evicts the keys last seen before it.
    pub fn apply(&self, state: Option<DataFrame>, rows: DataFrame, watermark_ms: Option<i64>) -> Result<Deduplicated> {
        let polars = |what: &'static str| move |e| Error::Polars { what: format!("deduplication: {what}"), source: e };
        if let Some(missing) = self.keys.iter().find(|k| !rows.schema().contains(k)) {
            return Err(Error::Unsupported(format!("[dedup] key `{missing}` is not a column of the input")));
        }
        let before = rows.height() as u64;
        let first =
            rows.unique_stable(Some(&self.keys), UniqueKeepStrategy::First, None).map_err(polars("in the batch"))?;
        let new = match &state {
            Some(state) if state.height() > 0 => crate::frame::split_by_keys(first, state, &self.keys)?.1,
            _ => first,
        };
        let dropped = before - new.height() as u64;
        let mut columns: Vec<Expr> = self.keys.iter().map(|k| col(k.as_str())).collect();
        columns.push(match &self.event_time {
            Some(t) => col(t.as_str()).dt().timestamp(TimeUnit::Milliseconds).alias(SEEN),
            None => lit(NULL).cast(DataType::Int64).alias(SEEN),
        });
        let added = new.clone().lazy().select(columns).collect().map_err(polars("the keys seen"))?;
        let mut kept = match state {
            Some(state) if state.height() > 0 => {
                let added = added.lazy().select(
                    state
                        .schema()
                        .iter()
                        .map(|(name, dtype)| col(name.clone()).cast(dtype.clone()))
                        .collect::<Vec<_>>(),
                );
                concat([state.lazy(), added], UnionArgs::default()).map_err(polars("the keys seen"))?
            }
            _ => added.lazy(),
        };
        if let (Some(w), true) = (watermark_ms, self.evicts()) {
            kept = kept.filter(col(SEEN).gt_eq(lit(w)).fill_null(lit(true)));
        }
        let state = kept.collect().map_err(polars("the keys seen"))?;
        Ok(Deduplicated { rows: new, dropped, state })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(ids: &[&str], times_ms: &[i64]) -> DataFrame {
        let utc = DataType::Datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC));
        df!["id" => ids, "t" => times_ms, "n" => (0..ids.len() as i64).collect::<Vec<_>>()]
            .unwrap()
            .lazy()
            .with_column(col("t").cast(utc))
            .collect()
            .unwrap()
    }

    #[test]
    fn a_key_is_kept_once_across_batches_until_the_watermark_passes_it() {
        let dedup = Dedup::new(vec!["id".into()], Some("t".into()));
        let one = dedup.apply(None, rows(&["a", "b", "a"], &[10, 20, 30]), None).unwrap();
        assert_eq!((one.rows.height(), one.dropped, one.state.height()), (2, 1, 2));
        assert_eq!(one.rows.column("n").unwrap().i64().unwrap().get(1), Some(1), "the first of each key, in order");
        let two = dedup.apply(Some(one.state), rows(&["b", "c"], &[40, 50]), Some(15)).unwrap();
        assert_eq!((two.rows.height(), two.dropped), (1, 1), "b was seen");
        // a (seen at 10) is before the watermark 15: evicted; b and c stay.
        assert_eq!(two.state.height(), 2, "{}", two.state);
    }

    #[test]
    fn without_a_watermark_every_key_is_kept() {
        let dedup = Dedup::new(vec!["id".into()], None);
        let one = dedup.apply(None, rows(&["a"], &[1]), None).unwrap();
        let two = dedup.apply(Some(one.state), rows(&["a", "b"], &[2, 3]), Some(1_000)).unwrap();
        assert_eq!((two.rows.height(), two.dropped, two.state.height()), (1, 1, 2));
    }
}
