//! SQL into an [`AggregateQuery`]: a `SELECT keys…, agg(arg)… FROM input WHERE … GROUP BY keys…`
//! read, checked and split into its row-wise pre-projection, its groups and its aggregates.
//!
//! The invariant: a query is accepted only when it can be computed batch by batch and merged
//! (see [`super::algebra`]); anything else (HAVING, ORDER BY, a window function, an aggregate
//! that does not merge, a key left out of the `SELECT`, …) is refused with the reason.

use super::algebra::{
    Aggregate, AggregateQuery, Closes, Function, GLOBAL_KEY, ORDER_TIME, WINDOW_END, WINDOW_START, WINDOW_TIME, Window,
    argument,
};
use sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Query, Select, SelectItem, SetExpr,
    Statement, TableFactor, Value as SqlValue,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserOptions};
use std::time::Duration;

/// A part of the query, or the reason it is refused.
type Refused<T> = std::result::Result<T, String>;

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
        let query = one_statement(sql)?;
        let SetExpr::Select(select) = query.body.as_ref() else { return Ok(None) };
        let group_by = group_by_expressions(select)?;
        if group_by.is_empty() && !select.projection.iter().filter_map(selected).any(|(e, _)| is_aggregate(e)) {
            return Ok(None);
        }
        refuse_clauses_that_cannot_stream(&query, select)?;
        let from = input_relation(select, statics)?;
        let group_by = resolve_aliases_and_positions(select, group_by)?;
        let (window, keys) = window_and_keys(&group_by)?;
        let selection = read_selection(select, &keys, window.is_some(), order_by)?;
        let key_columns = key_columns(&keys, &selection.key_names)?;
        let closes = closes(window.as_ref(), order_by, &keys, &key_columns);
        let columns = pre_columns(&keys, &key_columns, &selection, window.as_ref(), order_by);
        let filter = select.selection.as_ref().map(|w| format!(" WHERE {w}")).unwrap_or_default();
        Ok(Some(AggregateQuery {
            pre: format!("SELECT {} FROM {from}{filter}", columns.join(", ")),
            keys: key_columns,
            window,
            aggregates: selection.aggregates,
            output: selection.output,
            order_by: order_by.map(str::to_string),
            closes,
        }))
    }
}

/// A grouping key of the `GROUP BY`.
struct Key {
    /// Its expression's text, as [`text`] gives it.
    text: String,
    /// Its SQL.
    sql: String,
}

/// What the `SELECT` asks for.
struct Selection {
    aggregates: Vec<Aggregate>,
    /// The pre-projection's argument columns (`expr AS "__a<i>"`), for the aggregates that take one.
    arguments: Vec<String>,
    /// The name each key is selected by (by its index in the keys); `None`: not selected.
    key_names: Vec<Option<String>>,
    /// The output columns, in the `SELECT`'s order.
    output: Vec<String>,
}

/// The one statement of `sql`, a query.
fn one_statement(sql: &str) -> Refused<Box<Query>> {
    let mut statements = Parser::new(&GenericDialect)
        .with_options(ParserOptions { trailing_commas: true, ..Default::default() })
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| format!("cannot parse the query: {e}"))?;
    match (statements.pop(), statements.is_empty()) {
        (Some(Statement::Query(query)), true) => Ok(query),
        _ => Err("expected one SELECT statement".into()),
    }
}

/// The `GROUP BY`'s expressions as written (none without a `GROUP BY`).
fn group_by_expressions(select: &Select) -> Refused<Vec<&SqlExpr>> {
    match &select.group_by {
        GroupByExpr::Expressions(exprs, _) => Ok(exprs.iter().collect()),
        GroupByExpr::All(_) => Err("GROUP BY ALL: name the grouping keys".into()),
    }
}

/// Refuses what a stream's result, a table updated batch by batch, cannot hold: WITH, ORDER BY,
/// LIMIT, HAVING, SELECT DISTINCT.
fn refuse_clauses_that_cannot_stream(query: &Query, select: &Select) -> Refused<()> {
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
    Ok(())
}

/// The `FROM`, as SQL: `input`, joined only with static tables.
fn input_relation(select: &Select, statics: &[String]) -> Refused<String> {
    match select.from.as_slice() {
        [t] if matches!(&t.relation, TableFactor::Table { name, .. } if name.to_string().eq_ignore_ascii_case("input")) =>
        {
            if let Some(join) = crate::transform::static_join(t, statics) {
                return Err(format!("an aggregation reads `input`, joined only with static tables: {join}"));
            }
            Ok(t.to_string())
        }
        _ => {
            Err("an aggregation reads `input` (FROM input, joined only with static tables declared under [tables])"
                .into())
        }
    }
}

/// The `GROUP BY` with each `GROUP BY alias` and `GROUP BY 2` replaced by the `SELECT` item it
/// names.
fn resolve_aliases_and_positions<'a>(select: &'a Select, group_by: Vec<&'a SqlExpr>) -> Refused<Vec<&'a SqlExpr>> {
    let items: Vec<(&SqlExpr, Option<String>)> = select.projection.iter().filter_map(selected).collect();
    group_by
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
        .collect()
}

/// The `GROUP BY`'s window (at most one) and its other expressions, the grouping keys.
fn window_and_keys(group_by: &[&SqlExpr]) -> Refused<(Option<Window>, Vec<Key>)> {
    let mut window = None;
    let mut keys = Vec::new();
    for g in group_by {
        match call(g).filter(|(name, ..)| name == "window" || name == "session_window") {
            Some((name, args, _)) => {
                if window.is_some() {
                    return Err("two windows in one GROUP BY".into());
                }
                window = Some(window_call(&name, &args)?);
            }
            None => keys.push(Key { text: text(g), sql: g.to_string() }),
        }
    }
    Ok((window, keys))
}

/// The window of `window(column, size[, slide])` or `session_window(column, gap)` (`name`),
/// its arguments checked.
fn window_call(name: &str, args: &[&FunctionArgExpr]) -> Refused<Window> {
    let session = name == "session_window";
    let usage =
        if session { "session_window(column, '30 minutes')" } else { "window(column, '5 minutes'[, '1 minute'])" };
    let column = match args.first() {
        Some(FunctionArgExpr::Expr(SqlExpr::Identifier(id))) => id.value.clone(),
        _ => return Err(format!("{usage}: the first argument is a timestamp column")),
    };
    let size = duration(
        args.get(1).ok_or_else(|| format!("{usage}: the {} is missing", if session { "gap" } else { "size" }))?,
        if session { "the session gap" } else { "the window size" },
    )?;
    if session {
        if args.len() > 2 {
            return Err(format!("{usage}: a gap computed per row is not supported; give one duration"));
        }
        return Ok(Window::session(column, size));
    }
    if args.len() > 3 {
        return Err("window(column, size[, slide]): a start offset (the fourth argument) is not supported".into());
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
    Ok(Window::fixed(column, size, slide))
}

/// The `SELECT`'s items read in order: each an aggregate, a grouping key, or (windowed)
/// `window_start`/`window_end`.
fn read_selection(select: &Select, keys: &[Key], windowed: bool, order_by: Option<&str>) -> Refused<Selection> {
    let mut selection = Selection {
        aggregates: Vec::new(),
        arguments: Vec::new(),
        key_names: vec![None; keys.len()],
        output: Vec::new(),
    };
    for item in &select.projection {
        let Some((expr, alias)) = selected(item) else {
            return Err(format!("`{item}` in an aggregating query: name each grouping key and aggregate"));
        };
        if let Some(call) = aggregate_call(expr) {
            let i = selection.aggregates.len();
            let (aggregate, argument) = read_aggregate(expr, call, alias, i, order_by)?;
            selection.arguments.extend(argument);
            selection.output.push(aggregate.name.clone());
            selection.aggregates.push(aggregate);
            continue;
        }
        let name = match (&alias, expr) {
            (Some(a), _) => a.clone(),
            (None, SqlExpr::Identifier(id)) => id.value.clone(),
            (None, _) => return Err(format!("`{expr}`: give the grouping key a name (AS …)")),
        };
        if windowed && (name == WINDOW_START || name == WINDOW_END) && alias.is_none() {
            selection.output.push(name);
            continue;
        }
        let Some(k) =
            keys.iter().position(|k| k.text == text(expr) || alias.is_none() && k.text == name.to_lowercase())
        else {
            return Err(format!(
                "`{expr}` is neither a grouping key nor an aggregate: add it to the GROUP BY, or aggregate it"
            ));
        };
        if selection.key_names[k].is_none() {
            selection.key_names[k] = Some(name.clone());
        }
        selection.output.push(name);
    }
    let output = &selection.output;
    if selection.aggregates.iter().any(|a| output.iter().filter(|o| **o == a.name).count() > 1) {
        return Err("two output columns with one name".into());
    }
    Ok(selection)
}

/// Aggregate `i` of the `SELECT` (`expr`, the call `call`, named `alias`), and its argument as
/// a pre-projection column when it takes one.
fn read_aggregate(
    expr: &SqlExpr,
    (name, args, distinct): (String, Vec<&FunctionArgExpr>, bool),
    alias: Option<String>,
    i: usize,
    order_by: Option<&str>,
) -> Refused<(Aggregate, Option<String>)> {
    if let Some(what) = modifier(expr) {
        return Err(format!(
            "`{expr}`: {what} on a streamed aggregate is not supported; write it in the WHERE or as a key"
        ));
    }
    let out = alias.unwrap_or_else(|| format!("{name}_{i}"));
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
    let column = match args.first() {
        Some(FunctionArgExpr::Expr(arg)) if function != Function::CountRows => {
            Some(format!("{arg} AS {}", quoted(&argument(i))))
        }
        _ => None,
    };
    Ok((Aggregate { name: out, function }, column))
}

/// Each grouping key's output column: the name the `SELECT` gives it. A key the `SELECT` leaves
/// out is refused.
fn key_columns(keys: &[Key], names: &[Option<String>]) -> Refused<Vec<String>> {
    keys.iter()
        .zip(names)
        .map(|(key, name)| {
            name.clone().ok_or_else(|| {
                format!(
                    "GROUP BY {}: the key is not in the SELECT; select it (the result's rows are keyed by their groups)",
                    key.sql
                )
            })
        })
        .collect()
}

/// When a group closes for good: a window over the watermark's column at its end (only that
/// column: rows by another time never turn late), or a date key cast from the watermark column
/// a day after its date; `None` otherwise.
fn closes(window: Option<&Window>, order_by: Option<&str>, keys: &[Key], key_columns: &[String]) -> Option<Closes> {
    if let Some(w) = window {
        let at = if w.is_session() { Closes::SessionEnd } else { Closes::WindowEnd };
        return order_by.filter(|t| *t == w.column).map(|_| at);
    }
    order_by.and_then(|t| {
        let by_date = format!("cast({} as date)", t.to_lowercase());
        keys.iter().zip(key_columns).find(|(k, _)| k.text == by_date).map(|(_, c)| Closes::DayAfter(c.clone()))
    })
}

/// The pre-projection's columns, in order: the keys by their output names, the aggregates'
/// arguments, the window's event time, the event time `first`/`last` order by; a constant key
/// when there is none of these.
fn pre_columns(
    keys: &[Key],
    key_columns: &[String],
    selection: &Selection,
    window: Option<&Window>,
    order_by: Option<&str>,
) -> Vec<String> {
    let mut columns: Vec<String> =
        keys.iter().zip(key_columns).map(|(k, name)| format!("{} AS {}", k.sql, quoted(name))).collect();
    columns.extend(selection.arguments.iter().cloned());
    if let Some(w) = window {
        columns.push(format!("{} AS {}", quoted(&w.column), quoted(WINDOW_TIME)));
    }
    let ordered = selection.aggregates.iter().any(|a| matches!(a.function, Function::First | Function::Last));
    if let Some(t) = order_by.filter(|_| ordered) {
        columns.push(format!("{} AS {}", quoted(t), quoted(ORDER_TIME)));
    }
    if columns.is_empty() {
        columns.push(format!("1 AS {}", quoted(GLOBAL_KEY)));
    }
    columns
}

/// A `SELECT` item's expression and alias; `None` for a wildcard.
fn selected(item: &SelectItem) -> Option<(&SqlExpr, Option<String>)> {
    match item {
        SelectItem::UnnamedExpr(e) => Some((e, None)),
        SelectItem::ExprWithAlias { expr, alias } => Some((expr, Some(alias.value.clone()))),
        _ => None,
    }
}

/// A call of an aggregate function (its name, arguments and `DISTINCT`); `None` for any other
/// expression.
fn aggregate_call(expr: &SqlExpr) -> Option<(String, Vec<&FunctionArgExpr>, bool)> {
    call(expr).filter(|(name, ..)| {
        matches!(name.as_str(), "count" | "sum" | "min" | "max" | "avg" | "mean" | "first" | "last")
    })
}

fn is_aggregate(expr: &SqlExpr) -> bool {
    aggregate_call(expr).is_some()
}

/// The text of a SQL expression, compared to match a `SELECT` item to its `GROUP BY` key.
fn text(expr: &SqlExpr) -> String {
    expr.to_string().to_lowercase()
}

/// `name` as a quoted SQL identifier.
pub(super) fn quoted(name: &str) -> String {
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
fn duration(arg: &FunctionArgExpr, what: &str) -> Refused<Duration> {
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
