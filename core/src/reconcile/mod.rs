//! The consistency checker's algorithms: compare two tables' rows, by key or as multisets, and
//! say where they differ. Plain functions over Polars frames; reading the tables is the caller's.
//!
//! # Rules
//! - Schemas are compared first (column presence and type, after `columns`/`ignore`); if they
//!   differ, no data is compared.
//! - Keyed: a key on one side only is missing/extra; a key on both sides whose values differ is
//!   changed, with the differing columns. A key present more than once on a side is reported as
//!   a duplicate (and its rows still take part in the comparison).
//! - Multiset (no key): each distinct row's multiplicity is compared; the surplus on either side
//!   is reported.
//! - Values: null equals null and differs from any value; NaN equals NaN; floats are equal when
//!   `|l - r| <= abs + rel * max(|l|, |r|)` (keyed comparison only: a multiset compares exactly).

pub mod buckets;
mod report;

// Moved to `crate::frame` (the sink shares them); re-exported here for the checker's callers.
pub use report::{Kind, Report, Sample, SchemaDifference, ValueDiff};

use crate::error::{Error, Result};
use crate::frame::fingerprint;
use polars::prelude::*;
use std::collections::BTreeMap;

const LEFT: &str = "__tw_left";
const RIGHT: &str = "__tw_right";
const SUFFIX: &str = "__tw_r";
const LABEL: &str = "__tw_partition";
const N_LEFT: &str = "__tw_n_left";
const N_RIGHT: &str = "__tw_n_right";

/// How to compare.
#[derive(Clone, Debug)]
pub struct DiffOptions {
    /// Key columns; empty for a multiset comparison.
    pub key: Vec<String>,
    /// Compare only these columns (plus the key); `None`: all.
    pub columns: Option<Vec<String>>,
    /// Columns never compared.
    pub ignore: Vec<String>,
    pub abs_tolerance: f64,
    pub rel_tolerance: f64,
    /// Samples kept per kind of difference.
    pub samples: usize,
    /// Columns that name a row's partition in the report.
    pub partition_by: Vec<String>,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            key: Vec::new(),
            columns: None,
            ignore: Vec::new(),
            abs_tolerance: 0.0,
            rel_tolerance: 0.0,
            samples: 10,
            partition_by: Vec::new(),
        }
    }
}

/// Compares `left` and `right` (named in the report as given).
pub fn diff(left: DataFrame, right: DataFrame, names: (&str, &str), opts: &DiffOptions) -> Result<Report> {
    let mut report = Report {
        left: names.0.to_string(),
        right: names.1.to_string(),
        key: opts.key.clone(),
        left_rows: left.height() as u64,
        right_rows: right.height() as u64,
        rows_read: (left.height() + right.height()) as u64,
        ..Report::default()
    };
    let columns = compared_columns(left.schema(), right.schema(), opts);
    for name in &columns {
        let (l, r) = (left.schema().get(name.as_str()), right.schema().get(name.as_str()));
        if l != r {
            report.schema.push(SchemaDifference {
                column: name.clone(),
                left: l.map(ToString::to_string),
                right: r.map(ToString::to_string),
            });
        }
    }
    for k in &opts.key {
        if !columns.contains(k) {
            return Err(Error::Unsupported(format!("key column `{k}` is in neither table")));
        }
    }
    report.columns_compared = columns.clone();
    if !report.schema.is_empty() {
        return Ok(report);
    }
    let partition_by: Vec<String> = opts.partition_by.iter().filter(|p| columns.contains(p)).cloned().collect();
    if opts.key.is_empty() {
        multiset(left, right, &columns, &partition_by, opts, &mut report)?;
    } else {
        keyed(left, right, &columns, &partition_by, opts, &mut report)?;
    }
    Ok(report)
}

/// The keys whose rows differ between `left` and `right` over `columns` (a key present on one
/// side only, a different number of rows, or different values): the key columns, one row each.
pub fn differing_keys(left: &DataFrame, right: &DataFrame, key: &[String], columns: &[String]) -> Result<DataFrame> {
    const N: &str = "__tw_n";
    const H: &str = "__tw_h";
    let summary = |df: &DataFrame| -> Result<LazyFrame> {
        // 32-bit row hashes summed per key: no overflow below 2^32 rows per key.
        let hashes: Vec<u64> = fingerprint::row_hashes(df, columns)?.into_iter().map(|h| h >> 32).collect();
        let mut df = df.select(key.iter().map(String::as_str)).map_err(polars_err("differing keys"))?;
        df.with_column(Column::new(H.into(), hashes)).map_err(polars_err("differing keys"))?;
        Ok(df
            .lazy()
            .group_by(key.iter().map(|k| col(k.as_str())).collect::<Vec<_>>())
            .agg([len().cast(DataType::UInt64).alias(N), col(H).sum().alias(H)]))
    };
    let (l, r) =
        (summary(left)?, summary(right)?.rename([N, H], [format!("{N}{SUFFIX}"), format!("{H}{SUFFIX}")], true));
    let on: Vec<Expr> = key.iter().map(|k| col(k.as_str())).collect();
    let side = |name: &str| col(name).fill_null(lit(u64::MAX));
    let differs = side(N).neq(side(&format!("{N}{SUFFIX}"))).or(side(H).neq(side(&format!("{H}{SUFFIX}"))));
    l.join(r, on.clone(), on, full_join_args())
        .filter(differs)
        .select(key.iter().map(|k| col(k.as_str())).collect::<Vec<_>>())
        .collect()
        .map_err(polars_err("differing keys"))
}

/// Keeps the rows matching an SQL condition (`date >= '2024-01-01'`).
pub fn filter_rows(df: DataFrame, condition: &str) -> Result<DataFrame> {
    let mut ctx = polars::sql::SQLContext::new();
    ctx.register("t", df.lazy());
    ctx.execute(&format!("SELECT * FROM t WHERE {condition}"))
        .and_then(|q| q.collect())
        .map_err(|source| Error::Polars { what: format!("--where {condition}"), source })
}

/// The columns a comparison looks at: every column of either side, less `ignore`, or only
/// `columns` and the key.
pub fn compared_columns(left: &Schema, right: &Schema, opts: &DiffOptions) -> Vec<String> {
    let mut all: Vec<String> = left.iter_names().map(|s| s.to_string()).collect();
    for name in right.iter_names() {
        if !all.iter().any(|c| c == name.as_str()) {
            all.push(name.to_string());
        }
    }
    all.into_iter()
        .filter(|c| !opts.ignore.contains(c))
        .filter(|c| opts.columns.as_ref().is_none_or(|only| only.contains(c) || opts.key.contains(c)))
        .collect()
}

fn polars_err(what: &str) -> impl FnOnce(PolarsError) -> Error + '_ {
    move |source| Error::Polars { what: format!("reconcile: {what}"), source }
}

/// `date=2024-03-01/…` for a row, from the partition columns (value columns taken from whichever
/// side has the row).
fn partition_label(partition_by: &[String], suffixed: &[String]) -> Expr {
    let parts: Vec<Expr> = partition_by
        .iter()
        .map(|p| {
            let value = if suffixed.contains(p) {
                coalesce(&[col(p.as_str()), col(format!("{p}{SUFFIX}"))])
            } else {
                col(p.as_str())
            };
            concat_str([lit(format!("{p}=")), value.cast(DataType::String).fill_null(lit("null"))], "", false)
        })
        .collect();
    if parts.is_empty() { lit("") } else { concat_str(parts, "/", false) }
}

/// The report's name of a partition (`date=2024-03-01`), from a data file's partition values as
/// Delta records them; the same text `diff` gives its rows.
pub fn partition_name(partition_by: &[String], values: &std::collections::HashMap<String, Option<String>>) -> String {
    partition_by
        .iter()
        .map(|p| format!("{p}={}", values.get(p).cloned().flatten().unwrap_or_else(|| "null".into())))
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether two values count as equal under the rules in the module doc.
fn equal(l: Expr, r: Expr, dtype: &DataType, opts: &DiffOptions) -> Expr {
    let both_null = l.clone().is_null().and(r.clone().is_null());
    let same = if dtype.is_float() {
        let both_nan = l.clone().is_nan().and(r.clone().is_nan());
        let (la, ra) = (l.clone().abs(), r.clone().abs());
        let larger = when(la.clone().gt(ra.clone())).then(la).otherwise(ra);
        let close = (l.clone() - r.clone()).abs().lt_eq(lit(opts.abs_tolerance) + lit(opts.rel_tolerance) * larger);
        both_nan.or(close).or(l.eq(r))
    } else {
        l.eq(r)
    };
    both_null.or(same.fill_null(lit(false)))
}

fn text(value: AnyValue<'_>) -> String {
    match value {
        AnyValue::Null => "null".to_string(),
        AnyValue::String(s) => s.to_string(),
        AnyValue::StringOwned(s) => s.to_string(),
        other => other.to_string(),
    }
}

fn row_of(df: &DataFrame, i: usize, columns: &[String]) -> Result<BTreeMap<String, String>> {
    columns
        .iter()
        .map(|c| {
            let v = df.column(c.as_str()).and_then(|s| s.get(i)).map_err(polars_err("sample"))?;
            Ok((c.clone(), text(v)))
        })
        .collect()
}

fn count_true(df: &DataFrame, flag: &str) -> Result<u64> {
    let c = df.column(flag).map_err(polars_err("count"))?;
    Ok(c.bool().map_err(polars_err("count"))?.sum().unwrap_or(0) as u64)
}

fn add_partition_counts(
    report: &mut Report,
    df: &DataFrame,
    flags: &[(Kind, &str)],
    weight: Option<&str>,
) -> Result<()> {
    if df.column(LABEL).is_err() {
        return Ok(());
    }
    let aggs: Vec<Expr> = flags
        .iter()
        .map(|(_, flag)| match weight {
            Some(w) => when(col(*flag)).then(col(w)).otherwise(lit(0i64)).sum().alias(*flag),
            None => col(*flag).cast(DataType::Int64).sum().alias(*flag),
        })
        .collect();
    let grouped = df.clone().lazy().group_by([col(LABEL)]).agg(aggs).collect().map_err(polars_err("partitions"))?;
    for i in 0..grouped.height() {
        let label = text(grouped.column(LABEL).and_then(|c| c.get(i)).map_err(polars_err("partitions"))?);
        for (kind, flag) in flags {
            let n = grouped.column(flag).and_then(|c| c.get(i)).map_err(polars_err("partitions"))?;
            let n = n.extract::<i64>().unwrap_or(0);
            if n > 0 && !label.is_empty() {
                *report.by_partition.entry(label.clone()).or_default().entry(*kind).or_default() += n as u64;
            }
        }
    }
    Ok(())
}

/// A full outer join on equal keys, nulls matching nulls, key columns coalesced.
fn full_join_args() -> JoinArgs {
    let mut args = JoinArgs::new(JoinType::Full).with_coalesce(JoinCoalesce::CoalesceColumns);
    args.nulls_equal = true;
    args
}

fn keyed(
    left: DataFrame,
    right: DataFrame,
    columns: &[String],
    partition_by: &[String],
    opts: &DiffOptions,
    report: &mut Report,
) -> Result<()> {
    let key: Vec<Expr> = opts.key.iter().map(|k| col(k.as_str())).collect();
    for (df, kind) in [(&left, Kind::DuplicateKeyLeft), (&right, Kind::DuplicateKeyRight)] {
        let dups = df
            .clone()
            .lazy()
            .group_by(key.clone())
            .agg([len().alias(N_LEFT)])
            .filter(col(N_LEFT).gt(lit(1)))
            .sort(opts.key.clone(), SortMultipleOptions::default())
            .collect()
            .map_err(polars_err("duplicate keys"))?;
        report.counts.insert(kind, dups.height() as u64);
        for i in 0..dups.height().min(opts.samples) {
            let count = dups.column(N_LEFT).and_then(|c| c.get(i)).map_err(polars_err("sample"))?;
            report.samples.push(Sample {
                kind,
                row: row_of(&dups, i, &opts.key)?,
                count: count.extract::<u64>().unwrap_or(0),
                values: Vec::new(),
            });
        }
    }
    let values: Vec<String> = columns.iter().filter(|c| !opts.key.contains(c)).cloned().collect();
    let schema = left.schema().clone();
    let l = left
        .lazy()
        .select(columns.iter().map(|c| col(c.as_str())).collect::<Vec<_>>())
        .with_column(lit(true).alias(LEFT));
    let mut right_cols: Vec<Expr> = opts.key.iter().map(|k| col(k.as_str())).collect();
    right_cols.extend(values.iter().map(|v| col(v.as_str()).alias(format!("{v}{SUFFIX}"))));
    let r = right.lazy().select(right_cols).with_column(lit(true).alias(RIGHT));
    let args = full_join_args();
    let mut flags = vec![
        col(RIGHT).is_null().alias("__tw_only_left"),
        col(LEFT).is_null().alias("__tw_only_right"),
        partition_label(partition_by, &values).alias(LABEL),
    ];
    let both = col(LEFT).is_not_null().and(col(RIGHT).is_not_null());
    let mut any_changed = lit(false);
    for (i, v) in values.iter().enumerate() {
        let dtype = schema.get(v.as_str()).cloned().unwrap_or(DataType::Null);
        let differs = both.clone().and(equal(col(v.as_str()), col(format!("{v}{SUFFIX}")), &dtype, opts).not());
        flags.push(differs.clone().alias(format!("__tw_diff_{i}")));
        any_changed = any_changed.or(differs);
    }
    flags.push(any_changed.alias("__tw_changed"));
    let joined = l.join(r, key.clone(), key, args).with_columns(flags).collect().map_err(polars_err("join"))?;

    let kinds = [
        (Kind::MissingInRight, "__tw_only_left"),
        (Kind::ExtraInRight, "__tw_only_right"),
        (Kind::Changed, "__tw_changed"),
    ];
    for (kind, flag) in kinds {
        report.counts.insert(kind, count_true(&joined, flag)?);
    }
    for (i, v) in values.iter().enumerate() {
        let n = count_true(&joined, &format!("__tw_diff_{i}"))?;
        if n > 0 {
            report.changed_columns.insert(v.clone(), n);
        }
    }
    add_partition_counts(report, &joined, &kinds, None)?;
    for (kind, flag) in kinds {
        let rows = joined
            .clone()
            .lazy()
            .filter(col(flag))
            .sort(opts.key.clone(), SortMultipleOptions::default())
            .limit(opts.samples as IdxSize)
            .collect()
            .map_err(polars_err("samples"))?;
        for i in 0..rows.height() {
            let mut diffs = Vec::new();
            if kind == Kind::Changed {
                for (j, v) in values.iter().enumerate() {
                    let differs =
                        rows.column(&format!("__tw_diff_{j}")).and_then(|c| c.get(i)).map_err(polars_err("sample"))?;
                    if matches!(differs, AnyValue::Boolean(true)) {
                        let get =
                            |c: &str| rows.column(c).and_then(|s| s.get(i)).map(text).map_err(polars_err("sample"));
                        diffs.push(ValueDiff {
                            column: v.clone(),
                            left: get(v)?,
                            right: get(&format!("{v}{SUFFIX}"))?,
                        });
                    }
                }
            }
            report.samples.push(Sample { kind, row: row_of(&rows, i, &opts.key)?, count: 1, values: diffs });
        }
    }
    Ok(())
}

fn multiset(
    left: DataFrame,
    right: DataFrame,
    columns: &[String],
    partition_by: &[String],
    opts: &DiffOptions,
    report: &mut Report,
) -> Result<()> {
    let cols: Vec<Expr> = columns.iter().map(|c| col(c.as_str())).collect();
    let l = left.lazy().group_by(cols.clone()).agg([len().cast(DataType::Int64).alias(N_LEFT)]);
    let r = right.lazy().group_by(cols.clone()).agg([len().cast(DataType::Int64).alias(N_RIGHT)]);
    let args = full_join_args();
    let surplus_left = (col(N_LEFT).fill_null(lit(0i64)) - col(N_RIGHT).fill_null(lit(0i64))).alias("__tw_surplus");
    let joined = l
        .join(r, cols.clone(), cols, args)
        .with_column(surplus_left)
        .with_columns([
            col("__tw_surplus").gt(lit(0i64)).alias("__tw_only_left"),
            col("__tw_surplus").lt(lit(0i64)).alias("__tw_only_right"),
            col("__tw_surplus").abs().alias("__tw_weight"),
            partition_label(partition_by, &[]).alias(LABEL),
        ])
        .collect()
        .map_err(polars_err("multiset join"))?;
    let kinds = [(Kind::MissingInRight, "__tw_only_left"), (Kind::ExtraInRight, "__tw_only_right")];
    for (kind, flag) in kinds {
        let rows = joined.clone().lazy().filter(col(flag)).collect().map_err(polars_err("multiset"))?;
        let total = rows.column("__tw_weight").map_err(polars_err("multiset"))?.as_materialized_series().sum::<i64>();
        report.counts.insert(kind, total.unwrap_or(0) as u64);
        let rows = rows.sort(columns.to_vec(), SortMultipleOptions::default()).map_err(polars_err("samples"))?;
        for i in 0..rows.height().min(opts.samples) {
            let weight = rows.column("__tw_weight").and_then(|c| c.get(i)).map_err(polars_err("sample"))?;
            report.samples.push(Sample {
                kind,
                row: row_of(&rows, i, columns)?,
                count: weight.extract::<u64>().unwrap_or(0),
                values: Vec::new(),
            });
        }
    }
    add_partition_counts(report, &joined, &kinds, Some("__tw_weight"))
}

#[cfg(test)]
mod tests;
