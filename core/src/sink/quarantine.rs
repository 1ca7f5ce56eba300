//! The quarantine (dead-letter) table: records a source could not read, with where they came from
//! and why. It is written by a [`super::DeltaSink`] with the same app id and batch id as the batch
//! they belong to, so a replayed batch never quarantines a record twice.

use crate::batch::Rejected;
use crate::context::BatchContext;
use crate::error::{Error, Result};
use polars::prelude::*;

/// The quarantine table's columns, in order.
pub const QUARANTINE_COLUMNS: [&str; 6] = ["batch_id", "batch_time", "origin", "position", "raw", "reason"];

/// The rows a batch adds to the quarantine table.
pub fn quarantine_frame(rejected: &[Rejected], ctx: &BatchContext) -> Result<DataFrame> {
    let n = rejected.len();
    let batch_id = Series::new("batch_id".into(), vec![ctx.batch_id.get() as i64; n]);
    let batch_time = Series::new("batch_time".into(), vec![ctx.batch_time_ms * 1000; n])
        .cast(&DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)))
        .map_err(Error::polars("quarantine batch_time"))?;
    let origin = Series::new("origin".into(), rejected.iter().map(|r| r.origin.as_str()).collect::<Vec<_>>());
    let position = Series::new("position".into(), rejected.iter().map(|r| r.position as i64).collect::<Vec<_>>());
    let raw = Series::new("raw".into(), rejected.iter().map(|r| r.raw.as_str()).collect::<Vec<_>>());
    let reason = Series::new("reason".into(), rejected.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>());
    DataFrame::new_infer_height(
        [batch_id, batch_time, origin, position, raw, reason].into_iter().map(IntoColumn::into_column).collect(),
    )
    .map_err(Error::polars("quarantine frame"))
}
