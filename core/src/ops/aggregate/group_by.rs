//! [`GroupBy`]: an aggregation written in Rust, built into the same [`AggregateQuery`] as the
//! SQL it stands for (it writes that SQL and parses it), so the two run alike.

use super::algebra::{AggregateQuery, Function, WINDOW_END, WINDOW_START, Window, WindowKind};
use super::query::quoted;
use std::time::Duration;

/// An aggregation written in Rust, as Spark's `groupBy(…).agg(…)`: grouping columns (of the rows
/// the pipeline's transform gives, so derived keys are computed there), an optional window, and
/// aggregates by output name. It builds the same [`AggregateQuery`] as the SQL it stands for, so
/// the two run alike.
///
/// ```
/// # use tidewater_core::ops::aggregate::{Function, GroupBy, Window};
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
