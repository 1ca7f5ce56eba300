//! The `rate` source (Spark's): `rows_per_second` generated rows of `value` (0, 1, 2, …) and
//! `timestamp`, for trying a job without any data. Row `i`'s timestamp is the stream's start plus
//! `i / rows_per_second` seconds, so a batch's rows follow from its offsets alone: a replayed
//! batch generates the same rows, and the source is exactly once like any other.
//!
//! # Offsets
//! `{"rows": <rows due so far>}`; a batch reads rows `[start.rows, end.rows)`. The stream's start
//! is recorded in its checkpoint directory (`sources/0/start.json`) when it first opens.

use async_trait::async_trait;
use polars::prelude::*;
use tidewater_core::checkpoint::Checkpoint;
use tidewater_core::{
    BoundedSource, Error, Offset, OffsetRange, Result, SinkOutcome, Source, SourceBatch, SourceProvider,
};

/// The columns of a rate source's rows.
pub const RATE_COLUMNS: [&str; 2] = ["value", "timestamp"];

/// A configured rate source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateSpec {
    pub rows_per_second: u64,
}

impl RateSpec {
    pub fn new(rows_per_second: u64) -> Self {
        RateSpec { rows_per_second }
    }

    fn describe(&self) -> String {
        format!("rate {} rows/s", self.rows_per_second)
    }

    fn err(&self, problem: impl std::fmt::Display) -> Error {
        Error::Source { source_name: self.describe(), problem: problem.to_string() }
    }

    /// The rows `[from, to)` of a stream started at `start_ms`.
    pub fn rows(&self, start_ms: i64, from: u64, to: u64) -> Result<DataFrame> {
        let value: Vec<i64> = (from as i64..to as i64).collect();
        let per_second = self.rows_per_second.max(1) as i128;
        let timestamp: Vec<i64> =
            value.iter().map(|&i| (start_ms as i128 * 1000 + i as i128 * 1_000_000 / per_second) as i64).collect();
        let utc = DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
        let timestamp = Series::new("timestamp".into(), timestamp).cast(&utc).map_err(Error::polars("rate rows"))?;
        DataFrame::new_infer_height(vec![Series::new("value".into(), value).into_column(), timestamp.into_column()])
            .map_err(Error::polars("rate rows"))
    }
}

/// The rows due at a rate offset.
fn rows_at(spec: &RateSpec, offset: &Offset) -> Result<u64> {
    offset.value()["rows"].as_u64().ok_or_else(|| spec.err(format!("offset {offset} is not a rate source's")))
}

fn offset(rows: u64) -> Offset {
    Offset::new(serde_json::json!({ "rows": rows }))
}

/// Opens a [`RateSpec`] as a stream (it has no bounded view).
pub struct RateSourceProvider {
    spec: RateSpec,
}

impl RateSourceProvider {
    pub fn new(spec: RateSpec) -> Self {
        RateSourceProvider { spec }
    }
}

/// What the source keeps in its checkpoint directory: when the stream started.
#[derive(serde::Serialize, serde::Deserialize)]
struct Started {
    start_ms: i64,
}

#[async_trait]
impl SourceProvider for RateSourceProvider {
    fn describe(&self) -> String {
        self.spec.describe()
    }

    async fn open_stream(&self, state: Checkpoint) -> Result<Box<dyn Source>> {
        // The start is durable before any offset is handed out (a racing first run loses the
        // put-if-absent and reads the winner's).
        let started = match state.get_json::<Started>("start.json").await? {
            Some(started) => started,
            None => {
                match state.create_json("start.json", &Started { start_ms: now_ms() }).await {
                    // Written, or another first run wrote it first: its start is read below.
                    Ok(()) | Err(Error::ConcurrentQuery { .. }) => {}
                    Err(e) => return Err(e),
                }
                state.get_json::<Started>("start.json").await?.ok_or_else(|| {
                    self.spec.err(format!("{}/start.json: cannot record the stream's start", state.url()))
                })?
            }
        };
        Ok(Box::new(RateStream { spec: self.spec.clone(), start_ms: started.start_ms }))
    }

    async fn open_bounded(&self, _version: Option<u64>) -> Result<Box<dyn BoundedSource>> {
        Err(Error::Unsupported(format!(
            "{}: a rate source generates rows as time passes and has no history to read as a batch; stream it",
            self.describe()
        )))
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

struct RateStream {
    spec: RateSpec,
    /// When the stream started (epoch ms), from its checkpoint.
    start_ms: i64,
}

impl RateStream {
    /// The rows due now.
    fn due(&self) -> u64 {
        let elapsed = (now_ms() - self.start_ms).max(0) as u128;
        (elapsed * self.spec.rows_per_second as u128 / 1000) as u64
    }
}

#[async_trait]
impl Source for RateStream {
    async fn latest_offset(&mut self, start: Option<&Offset>, until: Option<&Offset>) -> Result<Option<Offset>> {
        let due = match until {
            Some(until) => rows_at(&self.spec, until)?,
            None => self.due(),
        };
        let from = start.map(|s| rows_at(&self.spec, s)).transpose()?;
        if from.is_none() && due == 0 {
            return Ok(None);
        }
        Ok(Some(offset(due.max(from.unwrap_or(0)))))
    }

    async fn available_end(&mut self) -> Result<Option<Offset>> {
        Ok(Some(offset(self.due())))
    }

    async fn read(&mut self, range: &OffsetRange) -> Result<SourceBatch> {
        let to = rows_at(&self.spec, &range.end)?;
        let from = range.start.as_ref().map(|s| rows_at(&self.spec, s)).transpose()?.unwrap_or(0);
        let (spec, start_ms) = (self.spec.clone(), self.start_ms);
        let rows =
            tidewater_core::compute::blocking("generating rate rows", move || spec.rows(start_ms, from, to)).await?;
        Ok(SourceBatch { input_records: rows.height() as u64, rows, rejected: Vec::new() })
    }

    async fn acknowledge(&mut self, _end: &Offset, _outcome: &SinkOutcome) -> Result<()> {
        Ok(())
    }

    fn lanes(&mut self) -> Option<&mut dyn tidewater_core::Lanes> {
        None
    }

    fn history(&mut self) -> Option<&mut dyn tidewater_core::History> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_from_their_offsets() {
        let spec = RateSpec::new(4);
        let rows = spec.rows(1_000, 2, 6).unwrap();
        let value: Vec<i64> = rows.column("value").unwrap().i64().unwrap().into_no_null_iter().collect();
        assert_eq!(value, [2, 3, 4, 5]);
        let ts = rows.column("timestamp").unwrap().as_materialized_series().to_physical_repr().into_owned();
        let ts: Vec<i64> = ts.i64().unwrap().into_no_null_iter().collect();
        // Four rows a second from t = 1 s: row 2 at 1.5 s, row 5 at 2.25 s.
        assert_eq!(ts, [1_500_000, 1_750_000, 2_000_000, 2_250_000]);
        assert_eq!(spec.rows(1_000, 2, 6).unwrap(), rows, "the same offsets give the same rows");
    }
}
