//! Transforms given as SQL (Polars SQL) over a table named `input`.

use crate::context::BatchContext;
use crate::contract::Transform;
use crate::error::{Error, Result};
use polars::prelude::*;
use polars::sql::SQLContext;

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
    fn bad_sql_is_refused_before_running() {
        let schema = Schema::from_iter([Field::new("a".into(), DataType::Int64)]);
        let err = SqlTransform::new("SELECT nope FROM input").check(&schema).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
