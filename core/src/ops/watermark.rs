//! Event-time watermarks and late rows.
//!
//! As in Structured Streaming (`withWatermark(column, delay)`): after batch N the watermark is
//! `max(previous, max event time seen in N - delay)`; it is recorded in the commit log, written
//! into batch N+1's offset-log context before N+1 runs, and applied in N+1, so a replayed batch
//! splits its rows exactly as the first attempt did. A row whose event time is before the
//! watermark is late.
//!
//! Unlike Spark, where a stateless query ignores its watermark, a Tidewater job that declares one
//! sets its late rows aside before the transform: they go, unchanged and with the batch id and
//! watermark, to the job's late table (committed with the batch's txn, like the quarantine), are
//! counted in the batch's metrics, and are never lost. A table partitioned by event date thus
//! stops receiving rows for dates older than the watermark. Batch runs have no watermark: they
//! read everything, as Spark's batch queries do.

use crate::error::{Error, Result};
use polars::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// Column of the late table holding the batch that set the row aside.
pub const LATE_BATCH_COLUMN: &str = "_late_batch_id";
/// Column of the late table holding the watermark (UTC) the row was older than.
pub const LATE_WATERMARK_COLUMN: &str = "_late_watermark";

/// `withWatermark(column, delay)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watermark {
    pub column: String,
    pub delay: Duration,
}

/// What a batch does with rows that are late.
#[derive(Clone, Debug, Default)]
pub enum LateRule {
    /// Nothing is late (no watermark, or a batch run).
    #[default]
    None,
    /// A stream's watermark: rows older than the batch's watermark are set aside.
    Watermark(Watermark),
    /// A recomputation leaves out the rows a stream set aside (its late table's rows, bookkeeping
    /// columns dropped): every row equal to one of them, in every column, is left out.
    Exclude(Arc<DataFrame>),
}

/// A batch's input, split.
pub struct Split {
    pub on_time: DataFrame,
    pub late: DataFrame,
    /// The largest event time among the on-time rows, in epoch milliseconds.
    pub max_event_ms: Option<i64>,
}

fn err(what: &'static str) -> impl FnOnce(PolarsError) -> Error {
    move |source| Error::Polars { what: format!("watermark: {what}"), source }
}

fn event_ms(column: &str) -> Expr {
    col(column).dt().timestamp(TimeUnit::Milliseconds)
}

/// The largest event time in `rows`, in epoch milliseconds.
fn max_event(rows: &DataFrame, column: &str) -> Result<Option<i64>> {
    let max = rows.clone().lazy().select([event_ms(column).max()]).collect().map_err(err("max event time"))?;
    Ok(max.column(column).and_then(|c| c.get(0)).map_err(err("max event time"))?.extract::<i64>())
}

impl Watermark {
    pub fn new(column: impl Into<String>, delay: Duration) -> Self {
        Watermark { column: column.into(), delay }
    }

    /// The watermark after a batch whose on-time rows reached `max_event_ms`.
    pub fn advance(&self, previous: Option<i64>, max_event_ms: Option<i64>) -> Option<i64> {
        let delay = i64::try_from(self.delay.as_millis()).unwrap_or(i64::MAX);
        let candidate = max_event_ms.map(|m| m.saturating_sub(delay));
        match (previous, candidate) {
            (Some(p), Some(c)) => Some(p.max(c)),
            (p, c) => p.or(c),
        }
    }

    fn check(&self, rows: &DataFrame) -> Result<()> {
        match rows.schema().get(self.column.as_str()) {
            Some(DataType::Datetime(_, _) | DataType::Date) => Ok(()),
            Some(other) => Err(Error::Unsupported(format!(
                "watermark column `{}` is {other}; it must be a timestamp or a date",
                self.column
            ))),
            None => Err(Error::Unsupported(format!("watermark column `{}` is not in the input", self.column))),
        }
    }
}

impl LateRule {
    /// Splits `rows` under the batch's watermark (`None` before the first batch has committed).
    pub fn split(&self, rows: DataFrame, watermark_ms: Option<i64>) -> Result<Split> {
        match self {
            LateRule::None => Ok(Split { late: rows.clear(), on_time: rows, max_event_ms: None }),
            LateRule::Watermark(wm) => {
                wm.check(&rows)?;
                let max_event_ms = max_event(&rows, &wm.column)?;
                let Some(w) = watermark_ms else {
                    return Ok(Split { late: rows.clear(), on_time: rows, max_event_ms });
                };
                let is_late = event_ms(&wm.column).lt(lit(w)).fill_null(lit(false));
                let late = rows.clone().lazy().filter(is_late.clone()).collect().map_err(err("late rows"))?;
                let on_time = rows.lazy().filter(is_late.not()).collect().map_err(err("on-time rows"))?;
                let max_event_ms = if late.height() == 0 { max_event_ms } else { max_event(&on_time, &wm.column)? };
                Ok(Split { on_time, late, max_event_ms })
            }
            LateRule::Exclude(excluded) => {
                let columns: Vec<String> = rows.get_column_names().iter().map(|c| c.to_string()).collect();
                let (late, on_time) = crate::frame::split_by_keys(rows, excluded, &columns)?;
                Ok(Split { on_time, late, max_event_ms: None })
            }
        }
    }
}

/// The late table's rows for a batch: the late input rows with the batch id and the watermark.
pub fn late_frame(late: DataFrame, batch_id: i64, watermark_ms: i64) -> Result<DataFrame> {
    late.lazy()
        .with_columns([
            lit(batch_id).alias(LATE_BATCH_COLUMN),
            lit(watermark_ms * 1000)
                .cast(DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)))
                .alias(LATE_WATERMARK_COLUMN),
        ])
        .collect()
        .map_err(err("late table rows"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> DataFrame {
        let ms = [1_000i64, 5_000, 2_000, 9_000];
        df!["id" => [1i64, 2, 3, 4], "t" => ms.iter().map(|m| m * 1000).collect::<Vec<_>>()]
            .unwrap()
            .lazy()
            .with_column(col("t").cast(DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))))
            .collect()
            .unwrap()
    }

    #[test]
    fn rows_before_the_watermark_are_late_and_the_watermark_only_advances() {
        let rule = LateRule::Watermark(Watermark::new("t", Duration::from_secs(2)));
        let first = rule.split(rows(), None).unwrap();
        assert_eq!((first.on_time.height(), first.late.height(), first.max_event_ms), (4, 0, Some(9_000)));
        let LateRule::Watermark(wm) = &rule else { unreachable!() };
        let w = wm.advance(None, first.max_event_ms);
        assert_eq!(w, Some(7_000));
        let second = rule.split(rows(), w).unwrap();
        assert_eq!(second.late.column("id").unwrap().i64().unwrap().to_vec(), vec![Some(1), Some(2), Some(3)]);
        assert_eq!(second.max_event_ms, Some(9_000));
        assert_eq!(wm.advance(Some(8_000), Some(3_000)), Some(8_000), "never moves back");
    }

    #[test]
    fn exclusion_leaves_out_exactly_the_equal_rows() {
        let all = rows();
        let excluded = all.slice(1, 2);
        let split = LateRule::Exclude(Arc::new(excluded)).split(all, None).unwrap();
        assert_eq!(split.on_time.column("id").unwrap().i64().unwrap().to_vec(), vec![Some(1), Some(4)]);
        assert_eq!(split.late.height(), 2);
    }

    #[test]
    fn a_watermark_on_a_text_column_is_refused_by_name() {
        let rule = LateRule::Watermark(Watermark::new("id", Duration::from_secs(1)));
        let e = rule.split(rows(), Some(0)).err().unwrap().to_string();
        assert!(e.contains("watermark column `id`"), "{e}");
    }
}
