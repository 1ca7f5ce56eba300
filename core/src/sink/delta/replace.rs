//! Copy-on-write replacement: a commit that removes files of the table and, in the same Delta
//! commit, adds the rows that replace theirs (a backfill chunk's slice, an aggregation's changed
//! keys, a repair).
//!
//! [`DeltaSink::slice`] and [`DeltaSink::all_files`] choose the files from one version of the
//! table (the read version); [`Change::Replace`] carries them, that version, and what the commit
//! may write ([`Within`]). At commit time `rows_and_removes` goes back to the read version and
//! completes the change: for a span of a data column, the rows of the removed files outside the
//! span are written again; for keys, every file holding one of the keys is removed too, and its
//! rows with other keys are written again; a partition column's span and a repair remove whole
//! files and keep nothing.
//!
//! # Invariant
//! At its read version, a replacing commit removes every file that may hold a row it replaces
//! and writes again every other row of the files it removes: once it lands, each row outside
//! the span or keys is in the table as before, once, and each row within them is one of the
//! commit's. A new row outside the span or keys is an error, and nothing is written. The commit
//! is built on the read version, so what was committed since is seen by the conflict check of
//! `commit.rs`, within the limits its doc states.

use super::DeltaSink;
use crate::error::{Error, Result};
use crate::scope::Span;
use crate::table_files::DataFile;
use deltalake::DeltaTable;
use deltalake::kernel::Remove;
use polars::prelude::{DataFrame, DataType, Expr, IntoLazy as _, NULL, col, lit};

/// What a commit does to the table besides adding the batch's rows.
#[derive(Clone, Debug)]
pub enum Change {
    /// Nothing else: a blind append.
    Append,
    /// Remove these files, chosen from the table at `read_version`: the commit is built on that
    /// snapshot, so Delta's conflict check sees any commit since that touched them (a repair, a
    /// backfill chunk's slice).
    /// `read_version` is `None` when the table did not exist yet (nothing to remove).
    /// `within` says which new rows may be written, and which other rows of removed files are
    /// written again.
    Replace { removes: Vec<Remove>, predicate: String, read_version: Option<u64>, within: Within },
}

/// What a replacing commit replaces, beyond its removes.
#[derive(Clone, Debug)]
pub enum Within {
    /// Any rows; the removed files, whole (a repair).
    Anything,
    /// New rows only in `span`; the rows of the `rewrite` files (among the removed) outside it
    /// are written again (copy-on-write of a slice by a data column).
    Span { span: Span, rewrite: Vec<DataFile> },
    /// New rows only with one of `keys` (in the sink's key `columns`); the files of the read
    /// version holding any of them are removed too, and their rows with other keys written
    /// again (copy-on-write by key).
    Keys { columns: Vec<String>, keys: DataFrame },
}

impl Change {
    /// The predicate a replacing commit is recorded with (`None`: a blind append).
    pub(super) fn predicate(&self) -> Option<String> {
        match self {
            Change::Append => None,
            Change::Replace { predicate, .. } => Some(predicate.clone()),
        }
    }
}

/// A span of a table as one version holds it (see [`DeltaSink::slice`]).
#[derive(Clone, Debug)]
pub struct Slice {
    pub version: u64,
    /// Removes of the files that may hold rows of the span.
    pub removes: Vec<Remove>,
    /// Those of them whose other rows must be written again: all of them for a span of a data
    /// column, none for a partition column.
    pub rewrite: Vec<DataFile>,
    /// The txn version the asked-for app id has at `version`.
    pub recorded: Option<i64>,
}

impl Slice {
    /// The change replacing `span` as `slice` holds it (`None`: the table does not exist yet):
    /// its removes, checked against commits since its version, its files' other rows kept, and
    /// new rows only within the span.
    pub fn replace(slice: Option<Slice>, span: Span) -> Change {
        let (removes, rewrite, read_version) =
            slice.map_or((Vec::new(), Vec::new(), None), |s| (s.removes, s.rewrite, Some(s.version)));
        Change::Replace { removes, predicate: span.predicate(), read_version, within: Within::Span { span, rewrite } }
    }
}

/// The least and greatest value of each date or timestamp column of `keys` (UTC), for pruning
/// files by their statistics; columns with nulls are left out (a null key may be in any file).
fn moment_ranges(
    keys: &DataFrame,
    columns: &[String],
) -> Result<Vec<(String, (chrono::NaiveDateTime, chrono::NaiveDateTime))>> {
    let mut out = Vec::new();
    for column in columns {
        let Ok(values) = keys.column(column) else { continue };
        if values.null_count() > 0 || values.is_empty() {
            continue;
        }
        let micros = match values.dtype() {
            DataType::Date => values.cast(&DataType::Datetime(polars::prelude::TimeUnit::Microseconds, None)),
            DataType::Datetime(..) => values.cast(&DataType::Datetime(polars::prelude::TimeUnit::Microseconds, None)),
            _ => continue,
        }
        .map_err(Error::polars("key ranges"))?;
        let physical = micros.as_materialized_series().to_physical_repr().into_owned();
        let (lo, hi) = (
            physical.min::<i64>().map_err(Error::polars("key ranges"))?,
            physical.max::<i64>().map_err(Error::polars("key ranges"))?,
        );
        let at = |us: Option<i64>| us.and_then(chrono::DateTime::from_timestamp_micros).map(|t| t.naive_utc());
        if let (Some(lo), Some(hi)) = (at(lo), at(hi)) {
            out.push((column.clone(), (lo, hi)));
        }
    }
    Ok(out)
}

/// For each key column that partitions the table (and whose type renders as Delta writes
/// partition values: strings, integers, dates, booleans), the partition values its keys have.
fn partition_values_of(
    keys: &DataFrame,
    columns: &[String],
    partitions: &[String],
) -> Result<Vec<(String, std::collections::HashSet<Option<String>>)>> {
    let mut out = Vec::new();
    for column in columns.iter().filter(|c| partitions.contains(c)) {
        let Ok(values) = keys.column(column) else { continue };
        let renders = matches!(
            values.dtype(),
            DataType::String
                | DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::Date
                | DataType::Boolean
        );
        if !renders {
            continue;
        }
        let text = values.cast(&DataType::String).map_err(Error::polars("partition values of the keys"))?;
        let text = text.str().map_err(Error::polars("partition values of the keys"))?;
        out.push((column.clone(), text.iter().map(|v| v.map(str::to_owned)).collect()));
    }
    Ok(out)
}

/// `rows` (read back from the table) in the columns and types of the rows being written: a
/// column they lack is null.
fn aligned_to(rows: DataFrame, schema: &polars::prelude::Schema) -> Result<DataFrame> {
    let columns: Vec<Expr> = schema
        .iter()
        .map(|(name, dtype)| {
            if rows.schema().contains(name) {
                col(name.clone()).cast(dtype.clone())
            } else {
                lit(NULL).cast(dtype.clone()).alias(name.clone())
            }
        })
        .collect();
    rows.lazy().select(columns).collect().map_err(Error::polars("aligning the kept rows"))
}

impl DeltaSink {
    /// The snapshot a replace's removes were chosen from, if the sink still holds it: the txn
    /// check brings the table to its latest version, and the commit goes back to this one.
    pub(super) fn read_snapshot(&self, change: &Change) -> Option<DeltaTable> {
        match change {
            Change::Replace { read_version: Some(v), .. } => {
                self.table.as_ref().filter(|t| t.version() == Some(*v)).cloned()
            }
            Change::Append | Change::Replace { read_version: None, .. } => None,
        }
    }

    /// The rows a commit writes and the files it removes. An append writes its rows and removes
    /// nothing. A replace puts the sink's table back at its read version (`at_read` when the sink
    /// held it, else loaded), so the commit is built on it and the conflict check covers every
    /// commit since, then checks the new rows against [`Within`] and adds the rows it keeps.
    pub(super) async fn rows_and_removes(
        &mut self,
        rows: DataFrame,
        change: Change,
        at_read: Option<DeltaTable>,
        range: &str,
    ) -> Result<(DataFrame, Vec<Remove>)> {
        let Change::Replace { mut removes, read_version, within, .. } = change else {
            return Ok((rows, Vec::new()));
        };
        if let Some(at_read) = at_read {
            self.table = Some(at_read);
        }
        let table = self.table.as_mut().ok_or_else(|| Error::Internal("table vanished".into()))?;
        if let Some(read_version) = read_version
            && table.version() != Some(read_version)
        {
            table.load_version(read_version).await.map_err(Error::delta(&self.url, "load the version read"))?;
        }
        let rows = match &within {
            Within::Anything => rows,
            Within::Span { span, rewrite } => self.with_kept_rows(rows, span, rewrite, range).await?,
            Within::Keys { columns, keys } => {
                let (with_kept, rewritten) = self.replace_keys(rows, columns, keys, range).await?;
                removes.extend(rewritten);
                with_kept
            }
        };
        Ok((rows, removes))
    }

    /// Every file of the table's latest version, as removes, and that version; `(None, [])`
    /// when the table does not exist yet.
    pub async fn all_files(&mut self) -> Result<(Option<u64>, Vec<Remove>)> {
        let url = self.url.clone();
        let Some(table) = self.refreshed().await? else {
            return Ok((None, Vec::new()));
        };
        let snapshot = table.snapshot().map_err(Error::delta(&url, "snapshot"))?;
        let removes = snapshot.snapshot().log_data().iter().map(|f| f.remove_action(true)).collect();
        Ok((Some(snapshot.version()), removes))
    }

    /// The files that may hold rows of `span` in the table's latest version (by partition value
    /// when the table is partitioned by its column, else by the files' statistics, files
    /// without them included), and what `app_id` has committed there (one snapshot: a stream's
    /// files beside a backfill are exactly those of its batches up to `recorded`). `None` when
    /// the table does not exist yet.
    /// Without a span, no file: the version and the txn alone.
    pub async fn slice(&mut self, span: Option<&Span>, app_id: Option<&str>) -> Result<Option<Slice>> {
        let url = self.url.clone();
        let Some(table) = self.refreshed().await? else {
            return Ok(None);
        };
        let snapshot = table.snapshot().map_err(Error::delta(&url, "snapshot"))?;
        let (mut removes, mut rewrite) = (Vec::new(), Vec::new());
        if let Some(span) = span {
            let by_partition = snapshot.metadata().partition_columns().contains(&span.column);
            if !by_partition && snapshot.schema().field(&span.column).is_none() {
                return Err(Error::Unsupported(format!(
                    "table {url}: a backfill replaces the rows of `{}`, and the table has no such column",
                    span.column
                )));
            }
            for f in snapshot.snapshot().log_data().iter() {
                let values = f.partition_values_map();
                let holds = if by_partition {
                    values.get(&span.column).cloned().flatten().and_then(|v| span.holds_partition_value(&v))
                        == Some(true)
                } else {
                    crate::table_files::column_bounds(&f, &span.column).is_none_or(|(min, max)| span.overlaps(min, max))
                };
                if holds {
                    removes.push(f.remove_action(true));
                    if !by_partition {
                        let size = u64::try_from(f.size()).unwrap_or_default();
                        rewrite.push(DataFile { path: f.path().into_owned(), partition_values: values, size });
                    }
                }
            }
        }
        let recorded = match app_id {
            Some(app_id) => snapshot
                .transaction_version(table.log_store().as_ref(), app_id)
                .await
                .map_err(Error::delta(&url, "read txn"))?,
            None => None,
        };
        Ok(Some(Slice { version: snapshot.version(), removes, rewrite, recorded }))
    }

    /// `rows` after checking that each is in `span`, with the rows of `rewrite` outside it.
    async fn with_kept_rows(
        &self,
        rows: DataFrame,
        span: &Span,
        rewrite: &[DataFile],
        range: &str,
    ) -> Result<DataFrame> {
        let Some(dtype) = rows.schema().get(&span.column).cloned() else {
            return Err(Error::Unsupported(format!(
                "table {}: {range} has no column `{}`, which the backfill slices by",
                self.url, span.column
            )));
        };
        let in_span = span.rows(&dtype)?;
        let (written, column) = (rows.clone(), span.column.clone());
        let outside = crate::compute::blocking("checking the rows' span", move || {
            written
                .lazy()
                .filter(in_span.not())
                .select([col(column.as_str())])
                .limit(1)
                .collect()
                .map_err(Error::polars("checking the rows' span"))
        })
        .await?;
        if outside.height() > 0 {
            let value = outside.column(&span.column).ok().and_then(|c| c.get(0).ok()).map(|v| v.to_string());
            return Err(Error::Unsupported(format!(
                "table {}: {range} writes a row with {} = {}, outside the slice {} it replaces; a backfill's transform must keep the value of the column the plan is over",
                self.url,
                span.column,
                value.unwrap_or_default(),
                span.predicate()
            )));
        }
        if rewrite.is_empty() {
            return Ok(rows);
        }
        let table = self.table.as_ref().ok_or_else(|| Error::Internal("table not open".into()))?;
        let reader = crate::table_files::FileReader::of(table, &format!("table {}", self.url))?;
        let kept = reader.read(rewrite).await?.rows;
        let kept_dtype = kept.schema().get(&span.column).cloned().unwrap_or(DataType::Null);
        let (outside, schema) = (span.rows(&kept_dtype)?.not(), rows.schema().clone());
        let kept = crate::compute::blocking("keeping the rewritten files' other rows", move || {
            let kept = kept
                .lazy()
                .filter(outside)
                .collect()
                .map_err(Error::polars("keeping the rewritten files' other rows"))?;
            aligned_to(kept, &schema)
        })
        .await?;
        tracing::info!(table = %self.url, files = rewrite.len(), kept = kept.height(), "rewriting the files of the slice with their rows outside it");
        let mut rows = rows;
        rows.vstack_mut_owned(kept).map_err(Error::polars("stacking the kept rows"))?;
        Ok(rows)
    }

    /// `rows` after checking that each has one of `keys`, with the rows of the table's files
    /// holding any of `keys` that have other keys; and the removes of those files. The table is
    /// at the version the commit is built on.
    async fn replace_keys(
        &self,
        rows: DataFrame,
        columns: &[String],
        keys: &DataFrame,
        range: &str,
    ) -> Result<(DataFrame, Vec<Remove>)> {
        if let Some(missing) = columns.iter().find(|c| !rows.schema().contains(c)) {
            return Err(Error::Unsupported(format!(
                "table {}: {range} has no column `{missing}` of the key [{}] its rows are replaced by",
                self.url,
                columns.join(", ")
            )));
        }
        let (wanted, columns) = (keys.clone(), columns.to_vec());
        let checked = rows.clone();
        let (cols, url, what) = (columns.clone(), self.url.to_string(), range.to_string());
        crate::compute::blocking("checking the rows' keys", move || {
            let (_, strangers) = crate::frame::split_by_keys(checked, &wanted, &cols)?;
            match strangers.height() {
                0 => Ok(()),
                n => Err(Error::Unsupported(format!(
                    "table {url}: {what} writes {n} rows whose key [{}] is not the key of any source row it read; a transform reprocessed by key must keep the key",
                    cols.join(", ")
                ))),
            }
        })
        .await?;
        let table = self.table.as_ref().ok_or_else(|| Error::Internal("table not open".into()))?;
        let snapshot = table.snapshot().map_err(Error::delta(&self.url, "snapshot"))?;
        let reader = crate::table_files::FileReader::of(table, &format!("table {}", self.url))?;
        let mut kept = rows;
        let mut removes = Vec::new();
        // The keys' range in each date or timestamp key column: a file whose statistics lie
        // outside it holds none of them (a window's start, a day).
        let ranges = moment_ranges(keys, &columns)?;
        let files: Vec<(DataFile, Remove)> = snapshot
            .snapshot()
            .log_data()
            .iter()
            .filter(|f| {
                ranges.iter().all(|(column, (lo, hi))| {
                    // A millisecond of slack: writers that truncate timestamp statistics
                    // (delta-rs, Spark) record a max up to 1 ms below the true one.
                    crate::table_files::column_bounds(f, column)
                        .is_none_or(|(min, max)| max + chrono::Duration::milliseconds(1) >= *lo && min <= *hi)
                })
            })
            .map(|f| {
                let size = u64::try_from(f.size()).unwrap_or_default();
                (
                    DataFile { path: f.path().into_owned(), partition_values: f.partition_values_map(), size },
                    f.remove_action(true),
                )
            })
            .collect();
        let partitions = snapshot.metadata().partition_columns().to_vec();
        let by_partition = partition_values_of(keys, &columns, &partitions)?;
        for (file, remove) in files {
            // A file of a partition no key is in holds none of them: not read at all.
            let elsewhere = by_partition
                .iter()
                .any(|(column, values)| file.partition_values.get(column).is_some_and(|value| !values.contains(value)));
            if elsewhere {
                continue;
            }
            // The key columns first; the whole file only when it holds one of the keys.
            // Polars work goes to the blocking pool (it must not run on an async worker).
            let file_keys = reader.read_columns(std::slice::from_ref(&file), &columns).await?.rows;
            let (wanted, by) = (keys.clone(), columns.clone());
            let hits = crate::compute::blocking("finding the replaced keys", move || {
                Ok(crate::frame::split_by_keys(file_keys, &wanted, &by)?.0.height())
            })
            .await?;
            if hits == 0 {
                continue;
            }
            let all = reader.read(std::slice::from_ref(&file)).await?.rows;
            let (wanted, by, schema) = (keys.clone(), columns.clone(), kept.schema().clone());
            let aligned = crate::compute::blocking("keeping the other rows", move || {
                aligned_to(crate::frame::split_by_keys(all, &wanted, &by)?.1, &schema)
            })
            .await?;
            kept.vstack_mut_owned(aligned).map_err(Error::polars("stacking the kept rows"))?;
            removes.push(remove);
        }
        tracing::info!(table = %self.url, files = removes.len(), keys = keys.height(), "rewriting the files holding the replaced keys");
        Ok((kept, removes))
    }
}
