//! Streaming aggregations: a `GROUP BY` query split into what each micro-batch can compute alone
//! and what must be kept between batches, and the operator that runs it batch by batch.
//!
//! A query `SELECT keys…, agg(arg)… FROM input WHERE … GROUP BY keys…` runs as:
//!
//! ```text
//!  input ──► pre (row-wise SQL: keys and arguments per row) ──► windows ──► partial (per batch)
//!                                                                             │
//!             state (per group: partial results so far) ◄── merge ◄───────────┘
//!                                                                │
//!                                                     finalize ──► output rows
//! ```
//!
//! Partial results merge: a count is a sum of counts, a sum a sum of sums (with the count of its
//! non-null values, so an all-null sum stays null), min and max their min and max, an average its
//! sum and count, an exact count distinct its set of values, `first`/`last` the value at the
//! least/greatest event time. So merging the partials of any split of the input into batches and
//! finalizing gives the batch `GROUP BY` over all of it.
//!
//! Windows are Spark's: `window(column, '5 minutes'[, '1 minute'])` in the `GROUP BY` assigns each
//! row to the windows `[start, start + size)` that hold it, starts aligned to the epoch every
//! `slide` (the size, for a tumbling window), and the query reads them as `window_start` and
//! `window_end`. `session_window(column, '30 minutes')` groups a key's events with less than the
//! gap between them; a batch's events may extend or join the sessions of the state.
//!
//! The output modes are Spark's ([`OutputMode`]): append writes a group's row once, when the
//! watermark closes it; update writes again the groups a batch changed (upserted by the group
//! columns); complete rewrites the whole result at every batch. A group closes ([`Closes`]) when
//! the watermark passes its window's end, its session's end, or the end of the day its date key
//! names (a key cast from the watermark column). In append and update modes closed groups leave
//! the state, so it stays bounded ([`Aggregation::evicts`]); without a closing time, or in
//! complete mode, it grows with the number of groups. The engine keeps the state in the
//! checkpoint after each batch with the [`Aggregation::fingerprint`] of the query and mode that
//! wrote it, and never reads a state written for another one.
//!
//! The parts: `algebra.rs` (the split query and its partial results: compute, merge, finalize),
//! `query.rs` (SQL into an [`AggregateQuery`]), `group_by.rs` ([`GroupBy`]: the same built in
//! Rust), and here the operator ([`Aggregation`]: a batch's step, a bounded run's fold, closing
//! and eviction).

mod algebra;
mod group_by;
mod query;
#[cfg(test)]
mod tests;

pub use algebra::{Aggregate, AggregateQuery, Closes, Function, WINDOW_END, WINDOW_START, Window, WindowKind};
pub use group_by::GroupBy;

use crate::context::Tables;
use crate::error::{Error, Result};
use polars::prelude::*;

/// How an aggregation's results reach the sink table (Spark's output modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputMode {
    /// A group's row is written once, when the watermark closes it.
    Append,
    /// The groups a batch changed are written again (upserted by the group columns).
    Update,
    /// The whole result replaces the table at every batch.
    Complete,
}

impl std::fmt::Display for OutputMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutputMode::Append => "append",
            OutputMode::Update => "update",
            OutputMode::Complete => "complete",
        })
    }
}

/// An aggregating job: its query and output mode.
#[derive(Clone, Debug)]
pub struct Aggregation {
    pub query: AggregateQuery,
    pub mode: OutputMode,
    /// Whether the job has a watermark (without one, no group ever closes).
    pub watermarked: bool,
}

/// What one batch of an aggregation does.
pub struct Step {
    /// The rows to write.
    pub output: DataFrame,
    /// The groups whose rows `output` holds (their group columns): in update mode the sink
    /// replaces these groups' rows.
    pub changed: DataFrame,
    /// The state after the batch.
    pub state: DataFrame,
}

impl Aggregation {
    /// Refuses a mode the query cannot hold (as Spark does): append needs groups the
    /// watermark closes (a window, or a date key cast from the watermark column).
    pub fn new(query: AggregateQuery, mode: OutputMode, watermark: Option<&str>) -> std::result::Result<Self, String> {
        if mode == OutputMode::Append && (watermark.is_none() || query.closes.is_none()) {
            return Err(
                "append mode writes a group's row once, when the watermark closes it: it needs a [watermark] and a window(…) (or a date key cast from the watermark column) in the GROUP BY; use mode = \"update\" otherwise"
                    .into(),
            );
        }
        if mode == OutputMode::Update && query.window.as_ref().is_some_and(Window::is_session) {
            return Err(
                "update mode with session_window: a batch may merge a key's sessions into one, so rows written for the sessions before would stay beside it (Spark refuses it too); use mode = \"append\" (each session written once, when the watermark passes its end) or \"complete\""
                    .into(),
            );
        }
        Ok(Aggregation { query, mode, watermarked: watermark.is_some() })
    }

    /// What the state's layout depends on (the query split and the mode), as a hash recorded
    /// with each state: a state written for another query is never read as this one's.
    pub fn fingerprint(&self) -> String {
        let text = format!("{:?} {}", self.query, self.mode);
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
    }

    /// Whether the state is ever evicted (a closing group and a watermark); when not, it grows
    /// with the number of groups.
    pub fn evicts(&self) -> bool {
        self.watermarked && self.query.closes.is_some() && self.mode != OutputMode::Complete
    }

    /// Each state row's closing moment, in epoch microseconds.
    fn closing(&self) -> Option<Expr> {
        let utc = DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
        match self.query.closes.as_ref()? {
            Closes::WindowEnd => Some(col(WINDOW_END).cast(utc).dt().timestamp(TimeUnit::Microseconds)),
            Closes::SessionEnd => Some(col(WINDOW_END).cast(utc).dt().timestamp(TimeUnit::Microseconds) + lit(1i64)),
            Closes::DayAfter(key) => Some(
                col(key.as_str()).cast(DataType::Date).cast(utc).dt().timestamp(TimeUnit::Microseconds)
                    + lit(86_400_000_000i64),
            ),
        }
    }

    /// Whether `watermark_ms` closes a group of `state`.
    pub fn closes_any(&self, state: &DataFrame, watermark_ms: Option<i64>) -> Result<bool> {
        Ok(self.closed(state.clone(), watermark_ms)?.0.height() > 0)
    }

    /// The groups of `state` the watermark has closed, and the others.
    fn closed(&self, state: DataFrame, watermark_ms: Option<i64>) -> Result<(DataFrame, DataFrame)> {
        let (Some(closing), Some(w)) = (self.closing(), watermark_ms) else { return Ok((state.clear(), state)) };
        // A group without a closing time (a null date key) never closes.
        let closed = closing.lt_eq(lit(w.saturating_mul(1000))).fill_null(lit(false));
        let split = |keep: Expr| state.clone().lazy().filter(keep).collect().map_err(Error::polars("closing groups"));
        Ok((split(closed.clone())?, split(closed.not())?))
    }

    /// `input` (rows of the source) aggregated and merged into `state`: what a bounded run does
    /// chunk by chunk before it writes every group.
    pub fn fold(&self, state: Option<DataFrame>, input: DataFrame, tables: &Tables) -> Result<DataFrame> {
        let partial = self.partial(input, tables)?;
        self.merged(state, partial)
    }

    /// `input`'s partial results: the row-wise part (joined with the static `tables`), then one
    /// row per group.
    fn partial(&self, input: DataFrame, tables: &Tables) -> Result<DataFrame> {
        let mut ctx = polars::sql::SQLContext::new();
        ctx.register("input", input.lazy());
        for (name, frame) in tables.frames() {
            ctx.register(name, frame.clone().lazy());
        }
        let pre = ctx
            .execute(&self.query.pre)
            .and_then(LazyFrame::collect)
            .map_err(Error::polars("the aggregation's row-wise part"))?;
        self.query.partial(pre)
    }

    /// `partial` merged into `state` (none, or empty: `partial` itself).
    fn merged(&self, state: Option<DataFrame>, partial: DataFrame) -> Result<DataFrame> {
        match state {
            Some(state) if state.height() > 0 => self.query.merge(state, partial),
            _ => Ok(partial),
        }
    }

    /// One batch: `input` (its on-time rows) aggregated and merged into `state` (the state
    /// after the batch before); groups the batch's watermark closes are written (append) or
    /// dropped from the state (update).
    pub fn step(
        &self,
        state: Option<DataFrame>,
        input: DataFrame,
        watermark_ms: Option<i64>,
        tables: &Tables,
    ) -> Result<Step> {
        let q = &self.query;
        let partial = self.partial(input, tables)?;
        let merged = self.merged(state, partial.clone())?;
        let groups = q.group_columns();
        let changed = partial.select(groups.iter().map(String::as_str)).map_err(Error::polars("changed groups"))?;
        Ok(match self.mode {
            OutputMode::Update => {
                let (touched, _) = crate::frame::split_by_keys(merged.clone(), &changed, &groups)?;
                let (_, open) = self.closed(merged, watermark_ms)?;
                Step { output: q.finalize(&touched)?, changed, state: open }
            }
            OutputMode::Append => {
                let (closed, open) = self.closed(merged, watermark_ms)?;
                let changed =
                    closed.select(groups.iter().map(String::as_str)).map_err(Error::polars("closed groups"))?;
                Step { output: q.finalize(&closed)?, changed, state: open }
            }
            OutputMode::Complete => Step { output: q.finalize(&merged)?, changed, state: merged },
        })
    }
}
