//! Streaming aggregations: a `GROUP BY` query split into what each micro-batch can compute alone
//! and what must be kept between batches (issue 16, first part: the query and its state's algebra;
//! the state store, output modes and eviction come next).
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
//! `window_end`.

use crate::context::Tables;
use crate::error::{Error, Result};
use polars::prelude::*;
use sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, SelectItem, SetExpr, Statement,
    TableFactor, Value as SqlValue,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserOptions};
use std::time::Duration;

/// The column the pre-projection gives a window's event time.
const WINDOW_TIME: &str = "__window_time";
/// The columns a windowed query reads its window by.
pub const WINDOW_START: &str = "window_start";
pub const WINDOW_END: &str = "window_end";
/// The constant key of a query without `GROUP BY` (one group: the whole input).
const GLOBAL_KEY: &str = "__global";

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

    fn is_session(&self) -> bool {
        matches!(self.kind, WindowKind::Session { .. })
    }
}

/// A query that aggregates, split for a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateQuery {
    /// Row-wise SQL over `input`: the grouping keys by their output names, each aggregate's
    /// argument as `__a<i>`, a window's event time, and the event time `first`/`last` order by.
    pub pre: String,
    /// The grouping keys' columns (output names; `__k<i>` for a key the `SELECT` leaves out).
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

fn argument(i: usize) -> String {
    format!("__a{i}")
}

/// A partial result's columns for aggregate `i`.
fn part(i: usize, what: &str) -> String {
    format!("__p{i}_{what}")
}

/// The text of a SQL expression, compared to match a `SELECT` item to its `GROUP BY` key.
fn text(expr: &SqlExpr) -> String {
    expr.to_string().to_lowercase()
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A function call's name (lowercase) and plain arguments; `None` when `expr` is not a call.
fn call(expr: &SqlExpr) -> Option<(String, Vec<&FunctionArgExpr>, bool)> {
    let SqlExpr::Function(f) = expr else { return None };
    let name = f.name.0.last()?.as_ident()?.value.to_lowercase();
    let FunctionArguments::List(list) = &f.args else { return Some((name, Vec::new(), false)) };
    let distinct = matches!(list.duplicate_treatment, Some(sqlparser::ast::DuplicateTreatment::Distinct));
    let args = list
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(e) | FunctionArg::Named { arg: e, .. } | FunctionArg::ExprNamed { arg: e, .. } => e,
        })
        .collect();
    Some((name, args, distinct))
}

/// What a function call adds to its plain arguments that a merged aggregate would ignore.
fn modifier(expr: &SqlExpr) -> Option<&'static str> {
    let SqlExpr::Function(f) = expr else { return None };
    let clauses = matches!(&f.args, FunctionArguments::List(list) if !list.clauses.is_empty());
    if f.over.is_some() {
        Some("OVER (…)")
    } else if f.filter.is_some() {
        Some("FILTER (WHERE …)")
    } else if f.null_treatment.is_some() {
        Some("IGNORE/RESPECT NULLS")
    } else if !f.within_group.is_empty() {
        Some("WITHIN GROUP (…)")
    } else if clauses {
        Some("ORDER BY or LIMIT inside the arguments")
    } else {
        None
    }
}

/// A duration such as `'5 minutes'`.
fn duration(arg: &FunctionArgExpr, what: &str) -> std::result::Result<Duration, String> {
    let text = match arg {
        FunctionArgExpr::Expr(SqlExpr::Value(v)) => match &v.value {
            SqlValue::SingleQuotedString(s) => s.clone(),
            other => return Err(format!("{what} must be a quoted duration such as '5 minutes', not {other}")),
        },
        other => return Err(format!("{what} must be a quoted duration such as '5 minutes', not {other}")),
    };
    let d = humantime::parse_duration(&text).map_err(|e| format!("{what} '{text}': {e}"))?;
    if d.is_zero() {
        return Err(format!("{what} '{text}' must be longer than zero"));
    }
    Ok(d)
}

impl AggregateQuery {
    /// Splits `sql` when it aggregates (a `GROUP BY`, or aggregate functions over the whole
    /// input); `Ok(None)` when it does not. `order_by` is the event-time column of the job's
    /// watermark, which `first`/`last` need. Refused, with the reason: what cannot be computed
    /// batch by batch and merged.
    /// `statics`: the job's static tables, which the input may be joined with (inner or left).
    pub fn parse(
        sql: &str,
        order_by: Option<&str>,
        statics: &[String],
    ) -> std::result::Result<Option<AggregateQuery>, String> {
        let statements = Parser::new(&GenericDialect)
            .with_options(ParserOptions { trailing_commas: true, ..Default::default() })
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statements())
            .map_err(|e| format!("cannot parse the query: {e}"))?;
        let [Statement::Query(query)] = statements.as_slice() else {
            return Err("expected one SELECT statement".into());
        };
        let SetExpr::Select(select) = query.body.as_ref() else { return Ok(None) };
        let group_by: Vec<&SqlExpr> = match &select.group_by {
            GroupByExpr::Expressions(exprs, _) => exprs.iter().collect(),
            GroupByExpr::All(_) => return Err("GROUP BY ALL: name the grouping keys".into()),
        };
        let is_aggregate = |e: &SqlExpr| {
            call(e).is_some_and(|(name, ..)| {
                matches!(name.as_str(), "count" | "sum" | "min" | "max" | "avg" | "mean" | "first" | "last")
            })
        };
        let aggregates_anything = select.projection.iter().any(|item| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => is_aggregate(e),
            _ => false,
        });
        if group_by.is_empty() && !aggregates_anything {
            return Ok(None);
        }
        if query.with.is_some() || query.order_by.is_some() || query.limit_clause.is_some() {
            return Err(
                "an aggregating query with WITH, ORDER BY or LIMIT: a stream's result is a table updated batch by batch; \
                 order or limit it when you read it"
                    .into(),
            );
        }
        if select.having.is_some() {
            return Err("HAVING over a streamed aggregation: filter the result table when you read it".into());
        }
        if select.distinct.is_some() {
            return Err("SELECT DISTINCT with GROUP BY: the groups are distinct already".into());
        }
        let from = match select.from.as_slice() {
            [t] if matches!(&t.relation, TableFactor::Table { name, .. } if name.to_string().eq_ignore_ascii_case("input")) =>
            {
                if let Some(join) = crate::transform::static_join(t, statics) {
                    return Err(format!("an aggregation reads `input`, joined only with static tables: {join}"));
                }
                t.to_string()
            }
            _ => {
                return Err(
                    "an aggregation reads `input` (FROM input, joined only with static tables declared under [tables])"
                        .into(),
                );
            }
        };

        // `GROUP BY alias` and `GROUP BY 2` name a SELECT item.
        let items: Vec<(&SqlExpr, Option<String>)> = select
            .projection
            .iter()
            .filter_map(|item| match item {
                SelectItem::UnnamedExpr(e) => Some((e, None)),
                SelectItem::ExprWithAlias { expr, alias } => Some((expr, Some(alias.value.clone()))),
                _ => None,
            })
            .collect();
        let group_by: Vec<&SqlExpr> = group_by
            .into_iter()
            .map(|g| match g {
                SqlExpr::Value(v) => match &v.value {
                    SqlValue::Number(n, _) => n
                        .parse::<usize>()
                        .ok()
                        .and_then(|n| n.checked_sub(1))
                        .and_then(|n| items.get(n))
                        .map(|(e, _)| *e)
                        .ok_or_else(|| format!("GROUP BY {n}: there is no SELECT item {n}")),
                    _ => Ok(g),
                },
                SqlExpr::Identifier(id) => Ok(items
                    .iter()
                    .find(|(e, alias)| alias.as_deref() == Some(id.value.as_str()) && !is_aggregate(e))
                    .map_or(g, |(e, _)| *e)),
                _ => Ok(g),
            })
            .collect::<std::result::Result<_, String>>()?;
        let mut window = None;
        let mut keys: Vec<(String, Option<String>)> = Vec::new(); // (expression text, SQL)
        for g in &group_by {
            if let Some((name, args, _)) = call(g).filter(|(name, ..)| name == "window" || name == "session_window") {
                if window.is_some() {
                    return Err("two windows in one GROUP BY".into());
                }
                let session = name == "session_window";
                let usage = if session {
                    "session_window(column, '30 minutes')"
                } else {
                    "window(column, '5 minutes'[, '1 minute'])"
                };
                let column = match args.first() {
                    Some(FunctionArgExpr::Expr(SqlExpr::Identifier(id))) => id.value.clone(),
                    _ => return Err(format!("{usage}: the first argument is a timestamp column")),
                };
                let size = duration(
                    args.get(1)
                        .ok_or_else(|| format!("{usage}: the {} is missing", if session { "gap" } else { "size" }))?,
                    if session { "the session gap" } else { "the window size" },
                )?;
                if session {
                    if args.len() > 2 {
                        return Err(format!("{usage}: a gap computed per row is not supported; give one duration"));
                    }
                    window = Some(Window::session(column, size));
                    continue;
                }
                if args.len() > 3 {
                    return Err(
                        "window(column, size[, slide]): a start offset (the fourth argument) is not supported".into()
                    );
                }
                let slide = match args.get(2) {
                    Some(a) => duration(a, "the window slide")?,
                    None => size,
                };
                if slide > size {
                    return Err(format!(
                        "window slide {slide:?} is longer than its size {size:?}: rows between windows would be dropped"
                    ));
                }
                window = Some(Window::fixed(column, size, slide));
                continue;
            }
            keys.push((text(g), Some(g.to_string())));
        }

        let mut pre = Vec::new();
        let mut key_names: Vec<Option<String>> = vec![None; keys.len()];
        let mut aggregates = Vec::new();
        let mut output = Vec::new();
        for item in &select.projection {
            let (expr, alias) = match item {
                SelectItem::UnnamedExpr(e) => (e, None),
                SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
                other => {
                    return Err(format!("`{other}` in an aggregating query: name each grouping key and aggregate"));
                }
            };
            if let Some((name, args, distinct)) = call(expr).filter(|_| is_aggregate(expr)) {
                if let Some(what) = modifier(expr) {
                    return Err(format!(
                        "`{expr}`: {what} on a streamed aggregate is not supported; write it in the WHERE or as a key"
                    ));
                }
                let i = aggregates.len();
                let out = alias.clone().unwrap_or_else(|| format!("{name}_{i}"));
                let function = match (name.as_str(), args.as_slice(), distinct) {
                    ("count", [FunctionArgExpr::Wildcard], false) => Function::CountRows,
                    ("count", [_], true) => Function::CountDistinct,
                    ("count", [_], false) => Function::Count,
                    ("sum", [_], false) => Function::Sum,
                    ("min", [_], false) => Function::Min,
                    ("max", [_], false) => Function::Max,
                    ("avg" | "mean", [_], false) => Function::Avg,
                    ("first", [_], false) => Function::First,
                    ("last", [_], false) => Function::Last,
                    _ => return Err(format!("`{expr}`: not an aggregate a stream can merge batch by batch")),
                };
                if matches!(function, Function::First | Function::Last) && order_by.is_none() {
                    return Err(format!(
                        "`{expr}` takes the value at the least or greatest event time: declare the event-time column in [watermark]"
                    ));
                }
                match args.first() {
                    Some(FunctionArgExpr::Expr(arg)) if function != Function::CountRows => {
                        pre.push(format!("{arg} AS {}", quoted(&argument(i))));
                    }
                    _ => {}
                }
                aggregates.push(Aggregate { name: out.clone(), function });
                output.push(out);
                continue;
            }
            let name = match (&alias, expr) {
                (Some(a), _) => a.clone(),
                (None, SqlExpr::Identifier(id)) => id.value.clone(),
                (None, _) => return Err(format!("`{expr}`: give the grouping key a name (AS …)")),
            };
            if window.is_some() && (name == WINDOW_START || name == WINDOW_END) && alias.is_none() {
                output.push(name);
                continue;
            }
            let Some(k) =
                keys.iter().position(|(t, _)| *t == text(expr) || alias.is_none() && *t == name.to_lowercase())
            else {
                return Err(format!(
                    "`{expr}` is neither a grouping key nor an aggregate: add it to the GROUP BY, or aggregate it"
                ));
            };
            if key_names[k].is_none() {
                key_names[k] = Some(name.clone());
            }
            output.push(name);
        }
        if aggregates.iter().any(|a| output.iter().filter(|o| **o == a.name).count() > 1) {
            return Err("two output columns with one name".into());
        }
        let mut key_columns = Vec::new();
        for (k, (_, sql)) in keys.iter().enumerate() {
            let Some(name) = key_names[k].clone() else {
                return Err(format!(
                    "GROUP BY {}: the key is not in the SELECT; select it (the result's rows are keyed by their groups)",
                    sql.as_deref().unwrap_or_default()
                ));
            };
            pre.insert(k, format!("{} AS {}", sql.as_deref().unwrap_or_default(), quoted(&name)));
            key_columns.push(name);
        }
        if let Some(w) = &window {
            pre.push(format!("{} AS {}", quoted(&w.column), quoted(WINDOW_TIME)));
        }
        let closes = if let Some(w) = &window {
            // Only the watermark's column closes a window: rows by another time never turn late.
            let at = if w.is_session() { Closes::SessionEnd } else { Closes::WindowEnd };
            order_by.filter(|t| *t == w.column).map(|_| at)
        } else {
            order_by.and_then(|t| {
                let by_date = format!("cast({} as date)", t.to_lowercase());
                keys.iter().position(|(k, _)| *k == by_date).map(|k| Closes::DayAfter(key_columns[k].clone()))
            })
        };
        let order_by = order_by.map(str::to_string);
        if let Some(t) = order_by
            .as_deref()
            .filter(|_| aggregates.iter().any(|a| matches!(a.function, Function::First | Function::Last)))
        {
            pre.push(format!("{} AS {}", quoted(t), quoted(&order_column())));
        }
        if pre.is_empty() {
            pre.push(format!("1 AS {}", quoted(GLOBAL_KEY)));
        }
        let filter = select.selection.as_ref().map(|w| format!(" WHERE {w}")).unwrap_or_default();
        let pre = format!("SELECT {} FROM {from}{filter}", pre.join(", "));
        Ok(Some(AggregateQuery { pre, keys: key_columns, window, aggregates, output, order_by, closes }))
    }

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
                Function::First | Function::Last => aggs.extend(at_time(&a.function, i, arg, col(order_column()))),
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

/// An aggregation written in Rust, as Spark's `groupBy(…).agg(…)`: grouping columns (of the rows
/// the pipeline's transform gives, so derived keys are computed there), an optional window, and
/// aggregates by output name. It builds the same [`AggregateQuery`] as the SQL it stands for, so
/// the two run alike.
///
/// ```
/// # use tidewater_core::aggregate::{Function, GroupBy, Window};
/// # use std::time::Duration;
/// let query = GroupBy::new(["category"])
///     .window(Window::fixed("event_time", Duration::from_secs(300), Duration::from_secs(300)))
///     .agg("n", Function::CountRows, None)
///     .agg("total", Function::Sum, Some("amount"))
///     .query(Some("event_time"))
///     .unwrap();
/// assert_eq!(query.group_columns(), ["category", "window_start", "window_end"]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct GroupBy {
    keys: Vec<String>,
    window: Option<Window>,
    aggregates: Vec<(String, Function, Option<String>)>,
}

impl GroupBy {
    /// Groups by these columns (none: one group, the whole input).
    pub fn new<S: Into<String>>(keys: impl IntoIterator<Item = S>) -> Self {
        GroupBy { keys: keys.into_iter().map(Into::into).collect(), ..Default::default() }
    }

    /// Groups by a window too: its rows are read as `window_start` and `window_end`.
    pub fn window(mut self, window: Window) -> Self {
        self.window = Some(window);
        self
    }

    /// The output column `name`: `function` of `column` (none for [`Function::CountRows`]).
    pub fn agg(mut self, name: impl Into<String>, function: Function, column: Option<&str>) -> Self {
        self.aggregates.push((name.into(), function, column.map(str::to_string)));
        self
    }

    /// The query, split as [`AggregateQuery::parse`] splits SQL; `watermark` is the job's
    /// event-time column (first/last order by it, and a window over it closes).
    pub fn query(&self, watermark: Option<&str>) -> std::result::Result<AggregateQuery, String> {
        let mut select: Vec<String> = self.keys.iter().map(|k| quoted(k)).collect();
        let mut group: Vec<String> = select.clone();
        if let Some(w) = &self.window {
            select.extend([WINDOW_START.to_string(), WINDOW_END.to_string()]);
            let micros = |d: Duration| format!("'{}us'", d.as_micros());
            group.push(match &w.kind {
                WindowKind::Fixed { size, slide } => {
                    format!("window({}, {}, {})", quoted(&w.column), micros(*size), micros(*slide))
                }
                WindowKind::Session { gap } => format!("session_window({}, {})", quoted(&w.column), micros(*gap)),
            });
        }
        for (name, function, column) in &self.aggregates {
            let arg = match (function, column) {
                (Function::CountRows, _) => "*".to_string(),
                (_, Some(c)) => quoted(c),
                (_, None) => return Err(format!("aggregate `{name}`: {function:?} needs a column")),
            };
            let call = match function {
                Function::CountRows | Function::Count => format!("count({arg})"),
                Function::CountDistinct => format!("count(DISTINCT {arg})"),
                Function::Sum => format!("sum({arg})"),
                Function::Min => format!("min({arg})"),
                Function::Max => format!("max({arg})"),
                Function::Avg => format!("avg({arg})"),
                Function::First => format!("first({arg})"),
                Function::Last => format!("last({arg})"),
            };
            select.push(format!("{call} AS {}", quoted(name)));
        }
        let group = if group.is_empty() { String::new() } else { format!(" GROUP BY {}", group.join(", ")) };
        let sql = format!("SELECT {} FROM input{group}", select.join(", "));
        AggregateQuery::parse(&sql, watermark, &[])?.ok_or_else(|| "no aggregate and no grouping column".to_string())
    }
}

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
                let (touched, _) = crate::reconcile::split_by_keys(merged.clone(), &changed, &groups)?;
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

/// The pre-projection's event-time column for `first`/`last`.
fn order_column() -> String {
    "__order_time".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::sql::SQLContext;

    const WINDOWED: &str = "SELECT window_start, window_end, category, count(*) AS n, sum(amount) AS total FROM input GROUP BY window(event_time, '5 minutes'), category";
    const ROLLUP: &str = "SELECT CAST(event_time AS DATE) AS date, user_id, category, count(*) AS event_count, sum(amount) AS total_amount, max(event_time) AS last_event_time FROM input WHERE category IS NOT NULL GROUP BY CAST(event_time AS DATE), user_id, category";

    fn events(n: usize, seed: u64) -> DataFrame {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut t, mut user, mut category, mut amount) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            // Within three days, out of order.
            t.push(1_700_000_000_000_000i64 + (next() % (3 * 86_400_000_000)) as i64);
            user.push((next() % 7) as i64);
            category.push(match next() % 4 {
                0 => None,
                c => Some(["a", "b", "c"][c as usize - 1]),
            });
            amount.push(if next() % 10 == 0 { None } else { Some((next() % 10_000) as f64 / 100.0) });
        }
        let utc = DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
        df!["event_time" => t, "user_id" => user, "category" => category, "amount" => amount]
            .unwrap()
            .lazy()
            .with_column(col("event_time").cast(utc))
            .collect()
            .unwrap()
    }

    fn sql(query: &str, input: DataFrame) -> DataFrame {
        let mut ctx = SQLContext::new();
        ctx.register("input", input.lazy());
        ctx.execute(query).unwrap().collect().unwrap()
    }

    /// The query streamed: its input split into `batches` (uneven, in order), each batch's
    /// partials merged into the state, the state finalized.
    fn streamed(q: &AggregateQuery, input: &DataFrame, cuts: &[usize]) -> DataFrame {
        let mut state: Option<DataFrame> = None;
        let mut from = 0;
        for &cut in cuts.iter().chain([input.height()].iter()) {
            let batch = input.slice(from as i64, cut - from);
            from = cut;
            let partial = q.partial(sql(&q.pre, batch)).unwrap();
            state = Some(match state {
                None => partial,
                Some(s) => q.merge(s, partial).unwrap(),
            });
        }
        q.finalize(&state.unwrap()).unwrap()
    }

    fn sorted(df: &DataFrame) -> DataFrame {
        let by: Vec<String> = df.get_column_names().iter().map(|c| c.to_string()).collect();
        df.sort(by, SortMultipleOptions::default().with_nulls_last(true)).unwrap()
    }

    fn assert_same(streamed: &DataFrame, batch: &DataFrame) {
        let (s, b) = (sorted(streamed), sorted(batch));
        assert_eq!(s.shape(), b.shape(), "{s}\n{b}");
        for (x, y) in s.columns().iter().zip(b.columns()) {
            assert_eq!(x.name(), y.name());
            let (x, y) = (x.as_materialized_series(), y.as_materialized_series());
            if x.dtype().is_float() {
                let (x64, y64) = (x.cast(&DataType::Float64).unwrap(), y.cast(&DataType::Float64).unwrap());
                let worst = x64
                    .f64()
                    .unwrap()
                    .iter()
                    .zip(y64.f64().unwrap().iter())
                    .map(|(a, b)| match (a, b) {
                        (Some(a), Some(b)) => (a - b).abs(),
                        (None, None) => 0.0,
                        _ => f64::INFINITY,
                    })
                    .fold(0.0, f64::max);
                assert!(worst < 1e-6, "{}: off by {worst}", x.name());
                assert_eq!(x.null_count(), y.null_count(), "{}", x.name());
            } else {
                assert!(x.equals_missing(&y.cast(x.dtype()).unwrap()), "{}:\n{x}\n{y}", x.name());
            }
        }
    }

    #[test]
    fn the_daily_rollup_streamed_in_any_split_equals_the_batch_group_by() {
        let q = AggregateQuery::parse(ROLLUP, Some("event_time"), &[]).unwrap().unwrap();
        assert_eq!(q.keys, ["date", "user_id", "category"]);
        assert_eq!(q.output, ["date", "user_id", "category", "event_count", "total_amount", "last_event_time"]);
        let input = events(2_000, 7);
        let batch = sql(ROLLUP, input.clone());
        for cuts in [vec![], vec![1, 2, 3], vec![500, 501, 1500], vec![1999]] {
            assert_same(&streamed(&q, &input, &cuts), &batch);
        }
    }

    #[test]
    fn mergeable_aggregates_equal_the_batch_ones() {
        let query = "SELECT user_id, count(*) AS n, count(amount) AS c, sum(amount) AS s, min(amount) AS lo, max(amount) AS hi, avg(amount) AS mean, count(DISTINCT category) AS kinds FROM input GROUP BY user_id";
        let q = AggregateQuery::parse(query, None, &[]).unwrap().unwrap();
        let input = events(1_000, 11);
        let batch = sql(query, input.clone());
        for cuts in [vec![10, 20, 900], vec![333, 666]] {
            assert_same(&streamed(&q, &input, &cuts), &batch);
        }
    }

    #[test]
    fn first_and_last_take_the_values_at_the_least_and_greatest_event_time() {
        let query = "SELECT user_id, first(amount) AS f, last(amount) AS l FROM input GROUP BY user_id";
        let q = AggregateQuery::parse(query, Some("event_time"), &[]).unwrap().unwrap();
        let input = events(500, 3).lazy().filter(col("amount").is_not_null()).collect().unwrap();
        let by_time = input.sort(["event_time"], SortMultipleOptions::default()).unwrap();
        let expected = by_time
            .lazy()
            .group_by([col("user_id")])
            .agg([col("amount").first().alias("f"), col("amount").last().alias("l")])
            .collect()
            .unwrap();
        assert_same(&streamed(&q, &input, &[100, 101, 400]), &expected);
    }

    #[test]
    fn tumbling_and_sliding_windows_equal_polars_group_by_dynamic_counts() {
        let q = AggregateQuery::parse(WINDOWED, None, &[]).unwrap().unwrap();
        assert_eq!(q.group_columns(), ["category", WINDOW_START, WINDOW_END]);
        let input = events(3_000, 5);
        let out = streamed(&q, &input, &[1000, 2000]);
        // Every row in exactly one 5-minute window, aligned to the epoch.
        let n: i64 = out.column("n").unwrap().as_materialized_series().sum().unwrap();
        assert_eq!(n, 3_000);
        let starts = out.column(WINDOW_START).unwrap().as_materialized_series().to_physical_repr().into_owned();
        assert!(starts.i64().unwrap().into_no_null_iter().all(|s| s % 300_000_000 == 0), "aligned to the epoch");

        let sliding = "SELECT window_start, window_end, count(*) AS n FROM input GROUP BY window(event_time, '10 minutes', '5 minutes')";
        let q = AggregateQuery::parse(sliding, None, &[]).unwrap().unwrap();
        let out = streamed(&q, &input, &[1500]);
        let n: i64 = out.column("n").unwrap().as_materialized_series().sum().unwrap();
        assert_eq!(n, 6_000, "every row in two windows of 10 minutes sliding by 5");
        // The same windows as a plain loop over the event times finds.
        let (size, slide) = (600_000_000i64, 300_000_000i64);
        let mut expected: std::collections::BTreeMap<i64, i64> = Default::default();
        let times = input.column("event_time").unwrap().as_materialized_series().to_physical_repr().into_owned();
        for t in times.i64().unwrap().into_no_null_iter() {
            let mut start = t.div_euclid(slide) * slide;
            while start + size > t {
                *expected.entry(start).or_default() += 1;
                start -= slide;
            }
        }
        let starts = out.column(WINDOW_START).unwrap().as_materialized_series().to_physical_repr().into_owned();
        let counts = out.column("n").unwrap().as_materialized_series().clone();
        let got: std::collections::BTreeMap<i64, i64> =
            starts.i64().unwrap().into_no_null_iter().zip(counts.i64().unwrap().into_no_null_iter()).collect();
        assert_eq!(got, expected);
        let ends = out.column(WINDOW_END).unwrap().as_materialized_series().to_physical_repr().into_owned();
        assert!(
            starts
                .i64()
                .unwrap()
                .into_no_null_iter()
                .zip(ends.i64().unwrap().into_no_null_iter())
                .all(|(s, e)| e - s == size)
        );
    }

    #[test]
    fn session_windows_streamed_in_any_split_equal_sessions_found_by_a_plain_loop() {
        let query = "SELECT user_id, window_start, window_end, count(*) AS n, sum(amount) AS s FROM input GROUP BY user_id, session_window(event_time, '2 hours')";
        let q = AggregateQuery::parse(query, Some("event_time"), &[]).unwrap().unwrap();
        assert_eq!(q.closes, Some(Closes::SessionEnd));
        let input = events(400, 21);
        // Each user's events in time order: a new session when an event comes after the end of
        // the one before (its last event + the gap), as Spark merges them.
        let gap = 2 * 3_600_000_000i64;
        let times = input.column("event_time").unwrap().as_materialized_series().to_physical_repr().into_owned();
        let users = input.column("user_id").unwrap().i64().unwrap().clone();
        let mut by_user: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
        for (u, t) in users.into_no_null_iter().zip(times.i64().unwrap().into_no_null_iter()) {
            by_user.entry(u).or_default().push(t);
        }
        let mut expected: std::collections::BTreeSet<(i64, i64, i64, i64)> = Default::default();
        for (u, mut ts) in by_user {
            ts.sort();
            let (mut start, mut end, mut n) = (ts[0], ts[0] + gap, 0);
            for t in ts {
                if t > end {
                    expected.insert((u, start, end, n));
                    (start, n) = (t, 0);
                }
                end = end.max(t + gap);
                n += 1;
            }
            expected.insert((u, start, end, n));
        }
        for cuts in [vec![], vec![1, 2, 3], vec![100, 101, 300], vec![399]] {
            let out = streamed(&q, &input, &cuts);
            let col = |name: &str| out.column(name).unwrap().as_materialized_series().to_physical_repr().into_owned();
            let (u, s, e, n) = (col("user_id"), col(WINDOW_START), col(WINDOW_END), col("n"));
            let got: std::collections::BTreeSet<(i64, i64, i64, i64)> = (0..out.height())
                .map(|i| {
                    let at = |c: &Series| c.i64().unwrap().get(i).unwrap();
                    (at(&u), at(&s), at(&e), at(&n))
                })
                .collect();
            assert_eq!(got.len(), out.height(), "one row per session");
            assert_eq!(got, expected, "cuts {cuts:?}");
        }
        // The sums match the batch engine's per session too.
        let batch = sql("SELECT user_id, count(*) AS n, sum(amount) AS s FROM input GROUP BY user_id", input.clone());
        let per_user = streamed(&q, &input, &[50])
            .lazy()
            .group_by([col("user_id")])
            .agg([col("n").sum(), col("s").sum()])
            .collect()
            .unwrap();
        assert_same(&per_user, &batch);
    }

    #[test]
    fn a_session_closes_once_the_watermark_is_past_its_end() {
        let query = "SELECT user_id, window_start, window_end, count(*) AS n FROM input GROUP BY user_id, session_window(event_time, '10 minutes')";
        let q = AggregateQuery::parse(query, Some("event_time"), &[]).unwrap().unwrap();
        assert!(
            Aggregation::new(q.clone(), OutputMode::Update, Some("event_time")).unwrap_err().contains("update mode")
        );
        let agg = Aggregation::new(q, OutputMode::Append, Some("event_time")).unwrap();
        let utc = DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
        let at = |minutes: &[i64]| {
            df!["event_time" => minutes.iter().map(|m| m * 60_000_000).collect::<Vec<_>>(), "user_id" => vec![1i64; minutes.len()]]
                .unwrap()
                .lazy()
                .with_column(col("event_time").cast(utc.clone()))
                .collect()
                .unwrap()
        };
        let none = Tables::default();
        // Events at 0 and 5 minutes: one session [0, 15m). A watermark at its end keeps it open
        // (an event at 15m would still join it).
        let step = agg.step(None, at(&[0, 5]), Some(15 * 60_000), &none).unwrap();
        assert_eq!((step.output.height(), step.state.height()), (0, 1));
        // An event at 15m joins it: [0, 25m). An event at 30m starts a new one.
        let step = agg.step(Some(step.state), at(&[15, 30]), Some(26 * 60_000), &none).unwrap();
        assert_eq!(step.output.height(), 1, "[0, 25m) is closed: {}", step.output);
        assert_eq!(step.output.column("n").unwrap().i64().unwrap().get(0), Some(3));
        let end = step.output.column(WINDOW_END).unwrap().as_materialized_series().to_physical_repr().into_owned();
        assert_eq!(end.i64().unwrap().get(0), Some(25 * 60_000_000));
        assert_eq!(step.state.height(), 1, "[30m, 40m) stays open");
    }

    #[test]
    fn an_aggregation_built_in_rust_is_the_sql_it_stands_for() {
        let built = GroupBy::new(["category"])
            .window(Window::fixed("event_time", Duration::from_secs(300), Duration::from_secs(300)))
            .agg("n", Function::CountRows, None)
            .agg("total", Function::Sum, Some("amount"))
            .query(Some("event_time"))
            .unwrap();
        let sql = "SELECT category, window_start, window_end, count(*) AS n, sum(amount) AS total FROM input GROUP BY category, window(event_time, '5 minutes')";
        let parsed = AggregateQuery::parse(sql, Some("event_time"), &[]).unwrap().unwrap();
        let input = events(1_000, 2);
        assert_same(&streamed(&built, &input, &[300, 600]), &streamed(&parsed, &input, &[]));
        assert_eq!((built.closes.clone(), built.output.clone()), (parsed.closes, parsed.output));

        let sessions = GroupBy::new(["user_id"])
            .window(Window::session("event_time", Duration::from_secs(1800)))
            .agg("f", Function::First, Some("amount"))
            .agg("kinds", Function::CountDistinct, Some("category"))
            .query(Some("event_time"))
            .unwrap();
        assert_eq!(sessions.closes, Some(Closes::SessionEnd));
        assert!(GroupBy::new(["k"]).agg("s", Function::Sum, None).query(None).unwrap_err().contains("needs a column"));
    }

    #[test]
    fn a_global_aggregate_is_one_group() {
        let query = "SELECT count(*) AS n, sum(amount) AS s FROM input";
        let q = AggregateQuery::parse(query, None, &[]).unwrap().unwrap();
        let input = events(100, 1);
        assert_same(&streamed(&q, &input, &[30, 60]), &sql(query, input.clone()));
    }

    #[test]
    fn group_by_an_alias_or_a_position_names_the_select_item() {
        let by_alias = "SELECT CAST(event_time AS DATE) AS date, user_id, count(*) AS n FROM input GROUP BY date, 2";
        let q = AggregateQuery::parse(by_alias, Some("event_time"), &[]).unwrap().unwrap();
        assert_eq!(q.keys, ["date", "user_id"]);
        assert_eq!(q.closes, Some(Closes::DayAfter("date".into())), "a date key of the watermark column closes");
        let input = events(300, 9);
        let expected = sql(
            "SELECT CAST(event_time AS DATE) AS date, user_id, count(*) AS n FROM input GROUP BY CAST(event_time AS DATE), user_id",
            input.clone(),
        );
        assert_same(&streamed(&q, &input, &[100]), &expected);
    }

    #[test]
    fn only_the_watermark_column_closes_a_window() {
        let q = AggregateQuery::parse(WINDOWED, Some("event_time"), &[]).unwrap().unwrap();
        assert_eq!(q.closes, Some(Closes::WindowEnd));
        let q = AggregateQuery::parse(WINDOWED, Some("ingested_at"), &[]).unwrap().unwrap();
        assert_eq!(q.closes, None, "rows by another time never turn late, so the window never closes");
        assert!(Aggregation::new(q, OutputMode::Append, Some("ingested_at")).is_err());
    }

    #[test]
    fn a_group_without_a_closing_time_stays_in_the_state() {
        let q = AggregateQuery::parse(
            "SELECT CAST(event_time AS DATE) AS date, count(*) AS n FROM input GROUP BY CAST(event_time AS DATE)",
            Some("event_time"),
            &[],
        )
        .unwrap()
        .unwrap();
        let agg = Aggregation::new(q, OutputMode::Update, Some("event_time")).unwrap();
        let utc = DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
        let input = df!["event_time" => [None, Some(0i64), Some(86_400_000_000 * 3)]]
            .unwrap()
            .lazy()
            .with_column(col("event_time").cast(utc))
            .collect()
            .unwrap();
        // The watermark has passed day 0 (closing at day 1), not day 3.
        let step = agg.step(None, input, Some(2 * 86_400_000), &Tables::default()).unwrap();
        assert_eq!(step.output.height(), 3, "every changed group is written");
        assert_eq!(step.state.height(), 2, "day 0 closed; day 3 and the null date stay: {}", step.state);
        assert_eq!(step.state.column("date").unwrap().null_count(), 1);
    }

    #[test]
    fn integer_sums_are_longs() {
        let q = AggregateQuery::parse("SELECT k, sum(v) AS s FROM input GROUP BY k", None, &[]).unwrap().unwrap();
        let big = df!["k" => [1i32, 1], "v" => [i32::MAX, i32::MAX]].unwrap();
        let out = streamed(&q, &big, &[1]);
        assert_eq!(out.column("s").unwrap().i64().unwrap().get(0), Some(2 * i64::from(i32::MAX)));
    }

    #[test]
    fn row_wise_queries_are_not_aggregations() {
        assert_eq!(AggregateQuery::parse("SELECT a, b * 2 AS c FROM input WHERE a > 0", None, &[]), Ok(None));
    }

    #[test]
    fn what_cannot_merge_is_refused_with_the_reason() {
        for (sql, what) in [
            ("SELECT category, count(*) AS n FROM input GROUP BY category HAVING count(*) > 1", "HAVING"),
            ("SELECT category, count(*) AS n FROM input GROUP BY category ORDER BY n LIMIT 3", "ORDER BY"),
            ("SELECT category, median(amount) AS m FROM input GROUP BY category", "neither a grouping key nor"),
            ("SELECT user_id, count(*) AS n FROM input GROUP BY category", "neither a grouping key"),
            ("SELECT user_id, first(amount) AS f FROM input GROUP BY user_id", "[watermark]"),
            (
                "SELECT count(*) AS n FROM input GROUP BY window(event_time, '1 minute', '5 minutes')",
                "longer than its size",
            ),
            ("SELECT count(*) AS n FROM input GROUP BY window(event_time, 'soon')", "window size"),
            ("SELECT count(*) AS n FROM input GROUP BY session_window(event_time)", "the gap is missing"),
            (
                "SELECT count(*) AS n FROM input GROUP BY window(event_time, '5 minutes'), session_window(event_time, '5 minutes')",
                "two windows",
            ),
            ("SELECT a.c, count(*) AS n FROM input a JOIN input b ON a.c = b.c GROUP BY a.c", "a join with `input b`"),
            ("SELECT c, count(*) AS n FROM other GROUP BY c", "FROM input"),
            ("SELECT count(*) AS n FROM input GROUP BY category", "not in the SELECT"),
            ("SELECT c, count(*) FILTER (WHERE a > 0) AS n FROM input GROUP BY c", "FILTER"),
            ("SELECT c, sum(a) OVER () AS n FROM input GROUP BY c", "OVER"),
            ("SELECT c, count(*) AS n FROM input GROUP BY 3", "no SELECT item 3"),
        ] {
            let e = AggregateQuery::parse(sql, None, &[]).unwrap_err();
            assert!(e.contains(what), "{sql}: {e}");
        }
    }
}
