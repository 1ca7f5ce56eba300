//! The state's algebra: what a split aggregation is ([`AggregateQuery`]), and how its partial
//! results are computed per batch, merged across batches and finished into output rows.
//!
//! The invariant: merging the partials of any split of the input into batches, in order, and
//! finalizing gives the batch `GROUP BY` over all of it. A partial result holds, per aggregate
//! `i`, the columns `__p<i>_…` that merge: a count (`n`), a sum with its count of non-null values
//! (`s`, `n`), a min, max or exact set of distinct values (`v`), a value with its event time
//! (`v`, `t`). The rows this module reads are those of the query's pre-projection: the keys by
//! their output names, each aggregate's argument as `__a<i>`, a window's event time and the
//! event time `first`/`last` order by, under the names defined here.

use crate::error::{Error, Result};
use polars::prelude::*;
use std::time::Duration;

/// The column the pre-projection gives a window's event time.
pub(super) const WINDOW_TIME: &str = "__window_time";
/// The columns a windowed query reads its window by.
pub const WINDOW_START: &str = "window_start";
pub const WINDOW_END: &str = "window_end";
/// The constant key of a query without `GROUP BY` (one group: the whole input).
pub(super) const GLOBAL_KEY: &str = "__global";
/// The pre-projection's event-time column for `first`/`last`.
pub(super) const ORDER_TIME: &str = "__order_time";

/// An aggregate function whose partial results merge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Function {
    /// `count(*)`.
    CountRows,
    /// `count(x)`: the non-null values.
    Count,
    Sum,
    Min,
    Max,
    Avg,
    /// `count(DISTINCT x)`, exact.
    CountDistinct,
    /// `first(x)` / `last(x)`: the value at the least / greatest event time.
    First,
    Last,
}

/// One aggregate of the query's `SELECT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aggregate {
    /// The output column.
    pub name: String,
    pub function: Function,
}

/// A window over an event-time column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub column: String,
    pub kind: WindowKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// `window(column, size[, slide])`: tumbling (`slide == size`) or sliding.
    Fixed { size: Duration, slide: Duration },
    /// `session_window(column, gap)`: a key's events with less than `gap` between them (Spark's
    /// rule: an event at or before the session's end joins it), `[first event, last event + gap)`.
    Session { gap: Duration },
}

impl Window {
    /// A tumbling (`slide == size`) or sliding window.
    pub fn fixed(column: impl Into<String>, size: Duration, slide: Duration) -> Self {
        Window { column: column.into(), kind: WindowKind::Fixed { size, slide } }
    }

    pub fn session(column: impl Into<String>, gap: Duration) -> Self {
        Window { column: column.into(), kind: WindowKind::Session { gap } }
    }

    pub(super) fn is_session(&self) -> bool {
        matches!(self.kind, WindowKind::Session { .. })
    }
}

/// A query that aggregates, split for a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateQuery {
    /// Row-wise SQL over `input`: the grouping keys by their output names, each aggregate's
    /// argument as `__a<i>`, a window's event time, and the event time `first`/`last` order by.
    pub pre: String,
    /// The grouping keys' columns: their names in the `SELECT` (which selects every key).
    pub keys: Vec<String>,
    pub window: Option<Window>,
    pub aggregates: Vec<Aggregate>,
    /// The output columns, in the `SELECT`'s order.
    pub output: Vec<String>,
    /// The event-time column `first`/`last` order by (the job's watermark column).
    pub order_by: Option<String>,
    /// When a group is closed for good: at its window's end, or a day after a date key cast
    /// from the event-time column (`CAST(event_time AS DATE)`); `None`: never, so the state is
    /// never evicted.
    pub closes: Option<Closes>,
}

/// What closes a group: the watermark passing this moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Closes {
    /// Its window's end.
    WindowEnd,
    /// Once the watermark is past its session's end (an event at the end still joins it).
    SessionEnd,
    /// The end of the day its date key (this column) names.
    DayAfter(String),
}

/// The pre-projection's column for aggregate `i`'s argument.
pub(super) fn argument(i: usize) -> String {
    format!("__a{i}")
}

/// A partial result's columns for aggregate `i`.
fn part(i: usize, what: &str) -> String {
    format!("__p{i}_{what}")
}

impl AggregateQuery {
    /// The columns a group is known by in the state: its keys, and its window.
    pub fn group_columns(&self) -> Vec<String> {
        let mut columns = self.keys.clone();
        if self.window.is_some() {
            columns.extend([WINDOW_START.to_string(), WINDOW_END.to_string()]);
        }
        if columns.is_empty() {
            columns.push(GLOBAL_KEY.to_string());
        }
        columns
    }

    fn by(&self) -> Vec<Expr> {
        self.group_columns().into_iter().map(col).collect()
    }

    /// Each row of `pre` (the pre-projection's rows) in every window that holds it; for session
    /// windows, in its own session `[t, t + gap)`, merged with its key's overlapping ones.
    fn windowed(&self, pre: LazyFrame) -> Result<LazyFrame> {
        let Some(w) = &self.window else {
            return Ok(if self.keys.is_empty() { pre.with_column(lit(1i32).alias(GLOBAL_KEY)) } else { pre });
        };
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        let utc = DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
        let t = col(WINDOW_TIME).cast(utc.clone()).dt().timestamp(TimeUnit::Microseconds);
        let (size, slide) = match w.kind {
            WindowKind::Fixed { size, slide } => (micros(size), micros(slide)),
            WindowKind::Session { gap } => {
                let own = pre
                    .filter(col(WINDOW_TIME).is_not_null())
                    .with_columns([t.clone().alias(WINDOW_START), (t + lit(micros(gap))).alias(WINDOW_END)])
                    .with_columns([col(WINDOW_START).cast(utc.clone()), col(WINDOW_END).cast(utc)]);
                return self.sessions(own);
            }
        };
        // The latest window start at or before t; the windows that hold t start at it and every
        // slide before it, while start + size > t.
        let last = t.clone() - (t.clone() % lit(slide) + lit(slide)) % lit(slide);
        let count = (size + slide - 1) / slide;
        let mut frames = Vec::new();
        for k in 0..count {
            let start = last.clone() - lit(k * slide);
            frames.push(
                pre.clone()
                    .filter(col(WINDOW_TIME).is_not_null())
                    .with_columns([start.clone().alias(WINDOW_START), (start + lit(size)).alias(WINDOW_END)])
                    .filter(col(WINDOW_END).gt(t.clone()))
                    .with_columns([col(WINDOW_START).cast(utc.clone()), col(WINDOW_END).cast(utc.clone())]),
            );
        }
        concat(frames, UnionArgs::default()).map_err(Error::polars("assigning windows"))
    }

    /// Rows holding sessions (`window_start`, `window_end`: single events, or partial results)
    /// with each key's overlapping sessions given their union's bounds: in start order, a session
    /// starting at or before the latest end so far joins the one before it (Spark's merge).
    fn sessions(&self, rows: LazyFrame) -> Result<LazyFrame> {
        let keys: Vec<Expr> = self.keys.iter().map(|k| col(k.as_str())).collect();
        let over = |e: Expr, by: &[Expr]| -> Result<Expr> {
            if by.is_empty() { Ok(e) } else { e.over(by).map_err(Error::polars("merging sessions")) }
        };
        let mut order: Vec<Expr> = keys.clone();
        order.push(col(WINDOW_START));
        let ended = over(col(WINDOW_END).cum_max(false).shift(lit(1)), &keys)?;
        let starts = ended.clone().is_null().or(col(WINDOW_START).gt(ended));
        let session = "__session";
        let mut within: Vec<Expr> = keys.clone();
        within.push(col(session));
        Ok(rows
            .sort_by_exprs(order, SortMultipleOptions::default().with_nulls_last(true).with_maintain_order(true))
            .with_column(over(starts.cast(DataType::UInt32).cum_sum(false), &keys)?.alias(session))
            .with_columns([
                over(col(WINDOW_START).min(), &within)?.alias(WINDOW_START),
                over(col(WINDOW_END).max(), &within)?.alias(WINDOW_END),
            ])
            .drop(cols([session])))
    }

    /// The partial results of one batch's pre-projected rows, one row per group.
    pub fn partial(&self, pre: DataFrame) -> Result<DataFrame> {
        let mut aggs = Vec::new();
        for (i, a) in self.aggregates.iter().enumerate() {
            let mut arg = col(argument(i));
            // A sum of integers is a long (Spark's bigint): summed narrower, it would wrap.
            let integer = pre.schema().get(argument(i).as_str()).is_some_and(|t| t.is_integer());
            if a.function == Function::Sum && integer {
                arg = arg.cast(DataType::Int64);
            }
            match a.function {
                Function::CountRows => aggs.push(len().cast(DataType::Int64).alias(part(i, "n"))),
                Function::Count => aggs.push(arg.count().cast(DataType::Int64).alias(part(i, "n"))),
                Function::Sum | Function::Avg => {
                    let sum = if a.function == Function::Avg {
                        arg.clone().cast(DataType::Float64).sum()
                    } else {
                        arg.clone().sum()
                    };
                    aggs.push(sum.alias(part(i, "s")));
                    aggs.push(arg.count().cast(DataType::Int64).alias(part(i, "n")));
                }
                Function::Min => aggs.push(arg.min().alias(part(i, "v"))),
                Function::Max => aggs.push(arg.max().alias(part(i, "v"))),
                Function::CountDistinct => aggs.push(arg.drop_nulls().unique().alias(part(i, "v"))),
                Function::First | Function::Last => aggs.extend(at_time(&a.function, i, arg, col(ORDER_TIME))),
            }
        }
        self.windowed(pre.lazy())?
            .group_by_stable(self.by())
            .agg(aggs)
            .collect()
            .map_err(Error::polars("partial aggregation"))
    }

    /// `state` and `partial` (both partial results) merged: one row per group.
    pub fn merge(&self, state: DataFrame, partial: DataFrame) -> Result<DataFrame> {
        let mut aggs = Vec::new();
        for (i, a) in self.aggregates.iter().enumerate() {
            match a.function {
                Function::CountRows | Function::Count => aggs.push(col(part(i, "n")).sum().alias(part(i, "n"))),
                Function::Sum | Function::Avg => {
                    aggs.push(col(part(i, "s")).sum().alias(part(i, "s")));
                    aggs.push(col(part(i, "n")).sum().alias(part(i, "n")));
                }
                Function::Min => aggs.push(col(part(i, "v")).min().alias(part(i, "v"))),
                Function::Max => aggs.push(col(part(i, "v")).max().alias(part(i, "v"))),
                Function::CountDistinct => aggs.push(
                    col(part(i, "v"))
                        .explode(ExplodeOptions { empty_as_null: false, keep_nulls: false })
                        .drop_nulls()
                        .unique()
                        .alias(part(i, "v")),
                ),
                Function::First | Function::Last => {
                    aggs.extend(at_time(&a.function, i, col(part(i, "v")), col(part(i, "t"))));
                }
            }
        }
        let mut both =
            concat([state.lazy(), partial.lazy()], UnionArgs::default()).map_err(Error::polars("merging state"))?;
        if self.window.as_ref().is_some_and(Window::is_session) {
            // A batch's events may join sessions of the state, or bridge two of them.
            both = self.sessions(both)?;
        }
        both.group_by_stable(self.by()).agg(aggs).collect().map_err(Error::polars("merging state"))
    }

    /// The output rows of `state`'s groups.
    pub fn finalize(&self, state: &DataFrame) -> Result<DataFrame> {
        let mut columns = Vec::new();
        for name in &self.output {
            let expr = match self.aggregates.iter().position(|a| &a.name == name) {
                None => col(name.as_str()),
                Some(i) => match self.aggregates[i].function {
                    Function::CountRows | Function::Count => col(part(i, "n")),
                    Function::Sum => when(col(part(i, "n")).gt(lit(0))).then(col(part(i, "s"))).otherwise(lit(NULL)),
                    Function::Avg => when(col(part(i, "n")).gt(lit(0)))
                        .then(col(part(i, "s")) / col(part(i, "n")).cast(DataType::Float64))
                        .otherwise(lit(NULL)),
                    Function::Min | Function::Max | Function::First | Function::Last => col(part(i, "v")),
                    Function::CountDistinct => col(part(i, "v")).list().len().cast(DataType::Int64),
                },
            };
            columns.push(expr.alias(name.as_str()));
        }
        state.clone().lazy().select(columns).collect().map_err(Error::polars("finalizing the aggregation"))
    }
}

/// `first`/`last` (aggregate `i`): the `value` at the least or greatest time `t`, and that
/// time. Rows without a time take no part; ties go to the earliest row.
fn at_time(function: &Function, i: usize, value: Expr, t: Expr) -> [Expr; 2] {
    let timed = t.clone().is_not_null();
    let sorted = value.filter(timed.clone()).sort_by([t.clone().filter(timed)], stable());
    let (value, at) = if *function == Function::First { (sorted.first(), t.min()) } else { (sorted.last(), t.max()) };
    [value.alias(part(i, "v")), at.alias(part(i, "t"))]
}

/// A sort that keeps the order of equal keys (earlier batches first) and puts nulls last.
fn stable() -> SortMultipleOptions {
    SortMultipleOptions::default().with_maintain_order(true).with_nulls_last(true)
}
