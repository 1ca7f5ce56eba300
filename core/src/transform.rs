//! Transforms given as SQL (Polars SQL) over a table named `input`.
//!
//! A stream runs its transform on each micro-batch alone, so only a row-wise query (each output
//! row from one input row: projections, filters, casts, `UNION ALL`) gives the same table streamed
//! and batched. [`SqlTransform::check_row_wise`] refuses the rest (aggregates, `GROUP BY`,
//! `DISTINCT`, windows, joins, `LIMIT`) when a job loads, naming the construct.

use crate::context::BatchContext;
use crate::contract::Transform;
use crate::error::{Error, Result};
use polars::prelude::*;
use polars::sql::SQLContext;
use sqlparser::ast::{
    Expr as SqlExpr, GroupByExpr, JoinOperator, Query, Select, SetExpr, SetOperator, SetQuantifier, TableFactor,
    TableWithJoins, Visit, Visitor,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserOptions};
use std::ops::ControlFlow;

/// Polars SQL's aggregate and window functions: over a micro-batch they see only that batch.
const NOT_ROW_WISE_FUNCTIONS: &[&str] = &[
    "array_agg",
    "avg",
    "corr",
    "count",
    "covar",
    "covar_pop",
    "covar_samp",
    "dense_rank",
    "first",
    "first_value",
    "group_concat",
    "lag",
    "last",
    "last_value",
    "lead",
    "listagg",
    "max",
    "median",
    "min",
    "quantile_cont",
    "quantile_disc",
    "rank",
    "row_number",
    "stddev",
    "stddev_samp",
    "stdev",
    "stdev_samp",
    "string_agg",
    "sum",
    "total",
    "var",
    "var_samp",
    "variance",
];

/// Finds the first construct that makes a query depend on more than one input row. Joins with the
/// job's static tables (lowercase names) keep a query row-wise while the stream is the side whose
/// rows are kept.
#[derive(Default)]
struct RowWise {
    statics: Vec<String>,
}

impl RowWise {
    fn is_static(&self, table: &TableFactor) -> bool {
        matches!(table, TableFactor::Table { name, .. } if self.statics.contains(&name.to_string().to_lowercase()))
    }

    /// A join of the stream with a static table: the stream first, joined to static tables by
    /// inner, left outer, semi or anti joins.
    fn join(&self, from: &TableWithJoins) -> Option<String> {
        if from.joins.is_empty() {
            return None;
        }
        if self.is_static(&from.relation) {
            return Some(format!(
                "a join that starts from the static table `{}` (write `FROM input JOIN {} …`: the stream's rows are the ones kept)",
                from.relation, from.relation
            ));
        }
        for join in &from.joins {
            if !self.is_static(&join.relation) {
                return Some(format!(
                    "a join with `{}` (each side would be one micro-batch; join the stream with a static table declared under [tables])",
                    join.relation
                ));
            }
            let kept = matches!(
                join.join_operator,
                JoinOperator::Join(_)
                    | JoinOperator::Inner(_)
                    | JoinOperator::Left(_)
                    | JoinOperator::LeftOuter(_)
                    | JoinOperator::CrossJoin(_)
                    | JoinOperator::Semi(_)
                    | JoinOperator::LeftSemi(_)
                    | JoinOperator::Anti(_)
                    | JoinOperator::LeftAnti(_)
            );
            if !kept {
                return Some(format!(
                    "a right or full outer join with the static table `{}` (its unmatched rows would be written once per micro-batch; use an inner or left join)",
                    join.relation
                ));
            }
        }
        None
    }

    fn select(&self, select: &Select) -> Option<String> {
        if select.distinct.is_some() {
            return Some("SELECT DISTINCT".into());
        }
        let grouped = match &select.group_by {
            GroupByExpr::All(_) => true,
            GroupByExpr::Expressions(exprs, _) => !exprs.is_empty(),
        };
        if grouped {
            return Some("GROUP BY".into());
        }
        if select.having.is_some() {
            return Some("HAVING".into());
        }
        if select.qualify.is_some() {
            return Some("QUALIFY".into());
        }
        if let [first, more @ ..] = select.from.as_slice()
            && !more.is_empty()
            && (self.is_static(&first.relation) || more.iter().any(|t| !self.is_static(&t.relation)))
        {
            return Some("a join (each side would be one micro-batch)".into());
        }
        if let Some(join) = select.from.iter().find_map(|t| self.join(t)) {
            return Some(join);
        }
        if select.from.is_empty() {
            return Some("a SELECT without FROM (its rows would be written once per micro-batch)".into());
        }
        None
    }

    fn set_expr(body: &SetExpr) -> Option<String> {
        match body {
            SetExpr::Values(_) => Some("VALUES (its rows would be written once per micro-batch)".into()),
            SetExpr::SetOperation { op, set_quantifier, left, right } => {
                let all = matches!(set_quantifier, SetQuantifier::All | SetQuantifier::AllByName);
                if *op != SetOperator::Union || !all {
                    return Some(format!("{op} {set_quantifier}").trim().replace("  ", " "));
                }
                Self::set_expr(left).or_else(|| Self::set_expr(right))
            }
            _ => None,
        }
    }
}

impl Visitor for RowWise {
    type Break = String;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        if query.limit_clause.is_some() || query.fetch.is_some() {
            return ControlFlow::Break("LIMIT/OFFSET/FETCH".into());
        }
        Self::set_expr(&query.body).map_or(ControlFlow::Continue(()), ControlFlow::Break)
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<String> {
        self.select(select).map_or(ControlFlow::Continue(()), ControlFlow::Break)
    }

    fn pre_visit_table_factor(&mut self, table: &TableFactor) -> ControlFlow<String> {
        match table {
            // `input`, or a CTE / derived table over it (visited in turn).
            TableFactor::Table { args: None, .. } | TableFactor::Derived { .. } => ControlFlow::Continue(()),
            other => ControlFlow::Break(format!("reading from `{other}` (only `input` is a micro-batch)")),
        }
    }

    fn pre_visit_expr(&mut self, expr: &SqlExpr) -> ControlFlow<String> {
        match expr {
            SqlExpr::InSubquery { .. } => return ControlFlow::Break("IN (SELECT …), a semi-join".into()),
            SqlExpr::Exists { .. } => return ControlFlow::Break("EXISTS (SELECT …), a semi-join".into()),
            SqlExpr::Subquery(_) => return ControlFlow::Break("a scalar subquery".into()),
            _ => {}
        }
        let SqlExpr::Function(function) = expr else { return ControlFlow::Continue(()) };
        let Some(last) = function.name.0.last().and_then(|part| part.as_ident()) else {
            return ControlFlow::Continue(());
        };
        let name = last.value.to_lowercase();
        if function.over.is_some() {
            return ControlFlow::Break(format!("the window function {name}(…) OVER (…)"));
        }
        if NOT_ROW_WISE_FUNCTIONS.contains(&name.as_str()) {
            return ControlFlow::Break(format!("the aggregate function {name}(…)"));
        }
        ControlFlow::Continue(())
    }
}

/// Why `from` is not the stream joined with static tables (inner, left, semi or anti joins, the
/// stream first), if it is not.
pub(crate) fn static_join(from: &TableWithJoins, statics: &[String]) -> Option<String> {
    RowWise { statics: statics.iter().map(|s| s.to_lowercase()).collect() }.join(from)
}

/// A transform written in SQL: `SELECT … FROM input …`.
#[derive(Clone, Debug)]
pub struct SqlTransform {
    sql: String,
}

impl SqlTransform {
    pub fn new(sql: impl Into<String>) -> Self {
        SqlTransform { sql: sql.into() }
    }

    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Refuses a query that is not row-wise, naming the construct: run per micro-batch it would
    /// write one partial result per batch (one row per group per batch for a `GROUP BY`), and the
    /// streamed table would never equal the batch result.
    /// `statics` names the job's static tables, which the query may join the stream with.
    pub fn check_row_wise(&self, statics: &[String]) -> std::result::Result<(), String> {
        let statements = Parser::new(&GenericDialect)
            .with_options(ParserOptions { trailing_commas: true, ..Default::default() })
            .try_with_sql(&self.sql)
            .and_then(|mut p| p.parse_statements())
            .map_err(|e| format!("cannot parse the query: {e}"))?;
        let mut visitor = RowWise { statics: statics.iter().map(|s| s.to_lowercase()).collect() };
        match statements.visit(&mut visitor) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(what) => Err(format!(
                "{what} is not row-wise: a stream runs the query on each micro-batch alone, so it would write \
                 one partial result per batch and never equal the batch run. Write a row-wise query (projections, \
                 filters, casts, UNION ALL, joins with static tables), or one aggregation `SELECT keys…, aggregates… \
                 FROM input GROUP BY keys…`, which runs with state"
            )),
        }
    }

    /// Plans the query over an empty input of `schema`, so a job with bad SQL is refused before it
    /// reads anything. Returns the output schema.
    pub fn check(&self, schema: &Schema) -> std::result::Result<Schema, PolarsError> {
        let mut ctx = SQLContext::new();
        ctx.register("input", DataFrame::empty_with_schema(schema).lazy());
        let mut plan = ctx.execute(&self.sql)?;
        Ok(plan.collect_schema()?.as_ref().clone())
    }
}

impl Transform for SqlTransform {
    fn apply(&self, input: LazyFrame, ctx: &BatchContext) -> Result<LazyFrame> {
        let mut sql = SQLContext::new();
        sql.register("input", input);
        for (name, frame) in ctx.tables.frames() {
            sql.register(name, frame.clone().lazy());
        }
        sql.execute(&self.sql).map_err(|source| Error::Transform { batch: ctx.batch_id, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Mode;
    use crate::id::BatchId;

    #[test]
    fn sql_filters_and_casts() {
        let input = df!["amount" => [1.0f64, -1.0, 2.0], "user_id" => [1i64, 2, 3]].unwrap().lazy();
        let t = SqlTransform::new("SELECT user_id, amount * 2 AS double FROM input WHERE amount >= 0");
        let ctx = BatchContext::new(BatchId::new(0), Mode::Stream, 0);
        let out = t.apply(input, &ctx).unwrap().collect().unwrap();
        assert_eq!(out.height(), 2);
        assert_eq!(out.column("double").unwrap().f64().unwrap().get(1), Some(4.0));
    }

    #[test]
    fn row_wise_queries_pass() {
        for sql in [
            "SELECT event_id, amount * 2 AS a, CAST(event_time AS DATE) AS date FROM input WHERE amount >= 0",
            "SELECT *, upper(category) AS c, coalesce(amount, 0) AS z FROM input ORDER BY event_id",
            "WITH x AS (SELECT * FROM input WHERE amount > 0) SELECT * FROM x",
            "SELECT a FROM input UNION ALL SELECT b AS a FROM input",
            "SELECT * FROM (SELECT a, greatest(a, b) AS g FROM input) WHERE g > 1",
            "SELECT CASE WHEN amount > 0 THEN 'pos' ELSE 'neg' END AS sign, count, max FROM input",
            "SELECT date_part('year', event_time) AS y, strftime(event_time, '%Y') AS s FROM input",
        ] {
            assert_eq!(SqlTransform::new(sql).check_row_wise(&[]), Ok(()), "{sql}");
        }
    }

    #[test]
    fn regression_13_non_row_wise_queries_are_refused_naming_the_construct() {
        for (sql, what) in [
            ("SELECT category, count(*) AS n FROM input GROUP BY category", "GROUP BY"),
            ("SELECT count(*) AS n FROM input", "aggregate function count"),
            ("SELECT SUM(amount) AS total FROM input", "aggregate function sum"),
            ("SELECT DISTINCT user_id FROM input", "SELECT DISTINCT"),
            ("SELECT * FROM input LIMIT 10", "LIMIT"),
            ("SELECT a, row_number() OVER (PARTITION BY b ORDER BY a) AS r FROM input", "window function row_number"),
            ("SELECT a, sum(a) OVER () AS s FROM input", "window function sum"),
            ("SELECT * FROM input WHERE amount > (SELECT avg(amount) FROM input)", "scalar subquery"),
            ("SELECT * FROM input WHERE a IN (SELECT a FROM input WHERE b > 0)", "IN (SELECT"),
            ("SELECT * FROM input i WHERE EXISTS (SELECT 1 FROM input j WHERE j.a = i.b)", "EXISTS"),
            ("SELECT a FROM input UNION ALL SELECT 'x' AS a", "without FROM"),
            ("SELECT 1 AS a", "without FROM"),
            ("SELECT * FROM read_parquet('f.parquet')", "reading from"),
            ("SELECT \"COUNT\"(*) AS n FROM input", "aggregate function count"),
            ("SELECT * FROM (SELECT user_id, max(amount) AS m FROM input GROUP BY user_id)", "GROUP BY"),
            ("SELECT l.a FROM input l JOIN input r ON l.a = r.a", "a join"),
            ("SELECT a FROM input UNION SELECT a FROM input", "UNION"),
            ("SELECT a FROM input EXCEPT SELECT a FROM input", "EXCEPT"),
        ] {
            let e = SqlTransform::new(sql).check_row_wise(&[]).unwrap_err();
            assert!(e.contains(what) && e.contains("not row-wise"), "{sql}: {e}");
        }
    }

    #[test]
    fn joins_with_static_tables_keep_the_stream_row_wise() {
        let statics = ["customers".to_string(), "regions".to_string()];
        for sql in [
            "SELECT i.order_id, c.tier FROM input i JOIN customers c ON i.customer_id = c.customer_id",
            "SELECT * FROM input LEFT JOIN customers USING (customer_id) LEFT JOIN regions USING (region)",
            "SELECT * FROM input i LEFT ANTI JOIN customers c ON i.customer_id = c.customer_id",
            "SELECT * FROM input, customers WHERE input.customer_id = customers.customer_id",
        ] {
            assert_eq!(SqlTransform::new(sql).check_row_wise(&statics), Ok(()), "{sql}");
        }
        for (sql, what) in [
            ("SELECT * FROM customers c JOIN input i ON i.customer_id = c.customer_id", "starts from the static table"),
            ("SELECT * FROM input i RIGHT JOIN customers c ON i.customer_id = c.customer_id", "right or full outer"),
            ("SELECT * FROM input i FULL OUTER JOIN customers c ON i.customer_id = c.customer_id", "right or full"),
            ("SELECT * FROM input i JOIN orders o ON i.customer_id = o.customer_id", "a join with `orders o`"),
            ("SELECT * FROM input a JOIN input b ON a.x = b.x", "a join with `input b`"),
        ] {
            let e = SqlTransform::new(sql).check_row_wise(&statics).unwrap_err();
            assert!(e.contains(what), "{sql}: {e}");
        }
    }

    #[test]
    fn bad_sql_is_refused_before_running() {
        let schema = Schema::from_iter([Field::new("a".into(), DataType::Int64)]);
        let err = SqlTransform::new("SELECT nope FROM input").check(&schema).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
