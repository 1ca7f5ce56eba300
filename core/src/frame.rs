//! Frame helpers shared by the sink, the operators and the consistency checker: plain functions
//! over Polars frames, with no IO, below every module that uses them.
//!
//! - [`split_by_keys`]: the rows of a frame whose key is (or is not) among a set of keys; the
//!   sink's copy-on-write by key, the late rule's exclusions, dedup and the checker use it.
//! - [`fingerprint`]: order-independent content fingerprints of sets of rows; the sink records
//!   one per data file, the checker compares tables by them.
//!
//! # Invariant
//! Each function is deterministic in its input rows (not their order or layout): the same rows
//! give the same split and the same fingerprint, so a replayed batch writes the same bytes.

pub mod fingerprint;

use crate::error::{Error, Result};
use polars::prelude::*;

/// Splits `rows` into those whose `key` columns equal a row of `keys` (nulls equal) and the rest.
pub fn split_by_keys(rows: DataFrame, keys: &DataFrame, key: &[String]) -> Result<(DataFrame, DataFrame)> {
    if keys.height() == 0 || rows.height() == 0 {
        return Ok((rows.clear(), rows));
    }
    const MARK: &str = "__tw_member";
    let names: Vec<Expr> = rows.get_column_names().into_iter().map(|n| col(n.clone())).collect();
    let schema = rows.schema().clone();
    let cast: Vec<Expr> = key
        .iter()
        .map(|k| {
            let dtype = schema.get(k.as_str()).cloned().unwrap_or(DataType::Null);
            col(k.as_str()).cast(dtype)
        })
        .chain([lit(true).alias(MARK)])
        .collect();
    let marks = keys.clone().lazy().select(cast).unique(None, UniqueKeepStrategy::Any);
    let on: Vec<Expr> = key.iter().map(|k| col(k.as_str())).collect();
    let mut args = JoinArgs::new(JoinType::Left);
    args.nulls_equal = true;
    let marked = rows.lazy().join(marks, on.clone(), on, args).collect().map_err(polars_err("split by key"))?;
    let pick = |member: bool| {
        let is_member = col(MARK).is_not_null();
        marked
            .clone()
            .lazy()
            .filter(if member { is_member } else { is_member.not() })
            .select(names.clone())
            .collect()
            .map_err(polars_err("split by key"))
    };
    Ok((pick(true)?, pick(false)?))
}

fn polars_err(what: &str) -> impl FnOnce(PolarsError) -> Error + '_ {
    // The checker's wording, kept from when this lived there.
    move |source| Error::Polars { what: format!("reconcile: {what}"), source }
}
