//! The data files of a commit, written by Polars: the batch's rows checked against the table's
//! schema and cast to its types, split by its partition columns, each part one Parquet file
//! (zstd, as Polars writes by default), and the part's `add` action: its partition values, the
//! statistics Delta readers skip files by, and its fingerprint.

use crate::bridge::{arrow_schema, polars_dtype, to_record_batches};
use crate::error::{Error, Result};
use crate::frame::fingerprint;
use delta_kernel::expressions::Scalar;
use deltalake::arrow::datatypes::DataType as A;
use deltalake::kernel::Add;
use deltalake::kernel::scalars::ScalarExt as _;
use deltalake::table::state::DeltaTableState;
use object_store::ObjectStoreExt as _;
use object_store::path::Path;
use polars::prelude::*;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// Delta's default number of leading data columns with statistics (`delta.dataSkippingNumIndexedCols`).
const INDEXED_COLUMNS: usize = 32;

/// delta-rs' target size of a data file (`delta.targetFileSize`): a partition's rows beyond it in
/// memory are written as several files.
const TARGET_FILE_SIZE: usize = 104_857_600;

/// What the files of a commit are written for: the table's columns (as Delta and as Polars
/// types), partition columns, and the columns with statistics.
pub(super) struct FileLayout {
    table: String,
    arrow: deltalake::arrow::datatypes::SchemaRef,
    polars: Schema,
    partition_columns: Vec<String>,
    stats_columns: Vec<String>,
    target_file_size: usize,
}

/// Whether a column of type `a` can be written into one of type `b`: the same type, up to
/// nullability and the names of list items (as delta-rs' own writer compares them).
fn same_type(a: &A, b: &A) -> bool {
    match (a, b) {
        (A::Struct(x), A::Struct(y)) => {
            x.len() == y.len()
                && x.iter().zip(y.iter()).all(|(f, g)| f.name() == g.name() && same_type(f.data_type(), g.data_type()))
        }
        (A::List(x), A::List(y)) | (A::LargeList(x), A::LargeList(y)) => same_type(x.data_type(), y.data_type()),
        (A::FixedSizeList(x, n), A::FixedSizeList(y, m)) => n == m && same_type(x.data_type(), y.data_type()),
        (A::Map(x, sx), A::Map(y, sy)) => sx == sy && same_type(x.data_type(), y.data_type()),
        _ => a == b,
    }
}

/// One part of a batch: its partition values and its rows without the partition columns.
struct Part {
    values: Vec<(String, Scalar)>,
    rows: DataFrame,
}

impl FileLayout {
    pub(super) fn of(snapshot: &DeltaTableState, table: &str) -> Result<FileLayout> {
        let config = snapshot.metadata().configuration();
        if let Some(mode) = config.get("delta.columnMapping.mode").filter(|m| m.as_str() != "none") {
            return Err(Error::Unsupported(format!(
                "table {table} uses column mapping (delta.columnMapping.mode = {mode}), which Tidewater does not write"
            )));
        }
        let arrow = snapshot.snapshot().arrow_schema();
        let mut polars = Schema::default();
        for field in arrow.fields() {
            polars.insert(field.name().as_str().into(), polars_dtype(field)?);
        }
        let partition_columns = snapshot.metadata().partition_columns().to_vec();
        let data: Vec<String> =
            arrow.fields().iter().map(|f| f.name().clone()).filter(|name| !partition_columns.contains(name)).collect();
        let stats_columns = match config.get("delta.dataSkippingStatsColumns") {
            Some(list) => {
                let named: Vec<&str> = list.split(',').map(str::trim).collect();
                data.into_iter().filter(|c| named.contains(&c.as_str())).collect()
            }
            None => {
                let indexed = match config.get("delta.dataSkippingNumIndexedCols").map(|n| n.trim().parse::<i64>()) {
                    Some(Ok(n)) if n < 0 => usize::MAX,
                    Some(Ok(n)) => n as usize,
                    _ => INDEXED_COLUMNS,
                };
                data.into_iter().take(indexed).collect()
            }
        };
        let target_file_size = config
            .get("delta.targetFileSize")
            .and_then(|n| n.trim().parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(TARGET_FILE_SIZE);
        Ok(FileLayout { table: table.to_string(), arrow, polars, partition_columns, stats_columns, target_file_size })
    }

    fn mismatch(&self, problem: String) -> Error {
        Error::SchemaMismatch { table: self.table.clone(), problem }
    }

    /// `rows` in the table's columns and types: every column of the table and no other, each of
    /// the Delta type of the table's (the casts of [`arrow_schema`]: a u32 column into a `long`
    /// one, a time-zoned timestamp into UTC); anything else is a schema mismatch, never a silent
    /// cast. Nulls in a column the table declares non-nullable are refused.
    fn conform(&self, rows: DataFrame) -> Result<DataFrame> {
        let written = arrow_schema(&rows)?;
        let mut problems = Vec::new();
        for field in written.fields() {
            if self.arrow.field_with_name(field.name()).is_err() {
                problems.push(format!("the output has a column `{}` the table lacks", field.name()));
            }
        }
        let mut columns = Vec::with_capacity(self.polars.len());
        for (field, (name, dtype)) in self.arrow.fields().iter().zip(self.polars.iter()) {
            let Ok(out) = written.field_with_name(name) else {
                problems.push(format!("the output lacks the table's column `{name}` ({})", field.data_type()));
                continue;
            };
            if !same_type(out.data_type(), field.data_type()) {
                problems.push(format!(
                    "column `{name}` is {} in the output and {} in the table",
                    out.data_type(),
                    field.data_type()
                ));
                continue;
            }
            let column = rows.column(name).map_err(Error::polars("conforming the batch"))?;
            let column = if column.dtype() == dtype {
                column.clone()
            } else {
                // Strict: a value that does not fit is an error, never a silent null.
                column.strict_cast(dtype).map_err(Error::polars(format!("the output column `{name}` to {dtype}")))?
            };
            if !field.is_nullable() && column.null_count() > 0 {
                problems.push(format!(
                    "column `{name}` is not nullable in the table, and {} rows of the output are null",
                    column.null_count()
                ));
            }
            columns.push(column);
        }
        if !problems.is_empty() {
            return Err(self.mismatch(problems.join("; ")));
        }
        DataFrame::new(rows.height(), columns).map_err(Error::polars("conforming the batch"))
    }

    /// The parts of conformed `rows`, one per partition value, in order of first appearance.
    fn parts(&self, rows: DataFrame) -> Result<Vec<Part>> {
        let polars = |source: PolarsError| Error::Polars { what: "splitting the batch by partition".into(), source };
        if self.partition_columns.is_empty() {
            return Ok(vec![Part { values: Vec::new(), rows }]);
        }
        let keys = rows.select(self.partition_columns.iter().map(String::as_str)).map_err(polars)?;
        let firsts: Vec<IdxSize>;
        let mut frames = Vec::new();
        {
            let grouped = keys.group_by_stable(self.partition_columns.iter().map(String::as_str)).map_err(polars)?;
            let groups = grouped.get_groups();
            if groups.len() == 1 {
                // One partition (a backfill chunk's, most stream batches'): no copy.
                frames.push(rows.clone());
                firsts = vec![0];
            } else {
                firsts = groups.iter().map(|g| g.first()).collect();
                for group in groups.iter() {
                    frames.push(match group {
                        GroupsIndicator::Idx((_, idx)) => {
                            let idx = IdxCa::from_vec("rows".into(), idx.to_vec());
                            rows.take(&idx).map_err(polars)?
                        }
                        GroupsIndicator::Slice([first, len]) => rows.slice(first as i64, len as usize),
                    });
                }
            }
        }
        // The partition values, rendered by delta-rs as it renders them in the log and paths.
        let mut firsts_frame = keys.take(&IdxCa::from_vec("firsts".into(), firsts)).map_err(polars)?;
        let batches = to_record_batches(&mut firsts_frame)?;
        let batch = batches.first().ok_or_else(|| Error::Internal("a batch with no partition values".into()))?;
        let mut parts = Vec::with_capacity(frames.len());
        for (i, frame) in frames.into_iter().enumerate() {
            let mut values = Vec::with_capacity(self.partition_columns.len());
            for (c, name) in self.partition_columns.iter().enumerate() {
                let value = Scalar::from_array(batch.column(c).as_ref(), i).ok_or_else(|| {
                    self.mismatch(format!("partition column `{name}` has no Delta partition value type"))
                })?;
                values.push((name.clone(), value));
            }
            parts.push(Part { values, rows: frame.drop_many(self.partition_columns.iter().map(String::as_str)) });
        }
        Ok(parts)
    }

    /// The `stats` of an `add` for `rows` (a part), written as `file`: row count, and for the
    /// columns with statistics the null count and, where Delta has a JSON form for the type, min
    /// and max. Taken from the file's footer, where Polars' writer put them, not computed again.
    fn stats(&self, rows: &DataFrame, file: &bytes::Bytes) -> Result<String> {
        use deltalake::parquet::file::metadata::ParquetMetaDataReader;
        let footer = ParquetMetaDataReader::new()
            .parse_and_finish(file)
            .map_err(|e| Error::Internal(format!("reading back the footer of a data file just written: {e}")))?;
        let leaves = footer.file_metadata().schema_descr();
        let (mut min, mut max, mut nulls) = (Map::new(), Map::new(), Map::new());
        for name in &self.stats_columns {
            let Some(dtype) = self.polars.get(name.as_str()).filter(|t| !t.is_nested()) else { continue };
            let Some(leaf) = (0..leaves.num_columns()).find(|&i| leaves.column(i).path().parts() == [name.clone()])
            else {
                continue;
            };
            let mut merged = Merged::default();
            for group in footer.row_groups() {
                merged.add(group.column(leaf).statistics(), group.num_rows());
            }
            if let Some(count) = merged.nulls {
                nulls.insert(name.clone(), json!(count));
            }
            let merged = merged.bounds();
            let nan = || -> Result<bool> {
                let column = rows.column(name).map_err(Error::polars("file statistics"))?;
                let floats = column.cast(&DataType::Float64).map_err(Error::polars("file statistics"))?;
                Ok(floats.f64().map_err(Error::polars("file statistics"))?.is_nan().any())
            };
            let bounds = match (dtype, merged) {
                (_, None) => None,
                (DataType::Float32 | DataType::Float64, Some(_)) if nan()? => None,
                (dtype, Some((lo, hi))) => json_bounds(dtype, lo, hi),
            };
            if let Some((lo, hi)) = bounds {
                min.insert(name.clone(), lo);
                max.insert(name.clone(), hi);
            }
        }
        let stats = json!({"numRecords": rows.height(), "minValues": min, "maxValues": max, "nullCount": nulls});
        Ok(stats.to_string())
    }
}

/// A value of a Parquet column chunk's statistics, by physical type.
#[derive(Clone, Debug, PartialEq, PartialOrd)]
enum Stat {
    Bool(bool),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
}

/// A column's statistics over the row groups of a file: bounds only if every row group with a
/// value has them, a null count only if every row group has one.
struct Merged {
    bounds: Option<(Stat, Stat)>,
    bounded: bool,
    nulls: Option<u64>,
}

impl Default for Merged {
    fn default() -> Self {
        Merged { bounds: None, bounded: true, nulls: Some(0) }
    }
}

impl Merged {
    fn add(&mut self, stats: Option<&deltalake::parquet::file::statistics::Statistics>, rows: i64) {
        use deltalake::parquet::file::statistics::Statistics as S;
        let Some(stats) = stats else {
            (self.bounded, self.nulls) = (false, None);
            return;
        };
        let count = stats.null_count_opt();
        self.nulls = self.nulls.zip(count).map(|(n, c)| n + c);
        let int = |v: i64| Stat::Int(v);
        let (lo, hi) = match stats {
            S::Boolean(v) => (v.min_opt().copied().map(Stat::Bool), v.max_opt().copied().map(Stat::Bool)),
            S::Int32(v) => (v.min_opt().map(|x| int((*x).into())), v.max_opt().map(|x| int((*x).into()))),
            S::Int64(v) => (v.min_opt().copied().map(int), v.max_opt().copied().map(int)),
            S::Float(v) => {
                (v.min_opt().map(|x| Stat::Float((*x).into())), v.max_opt().map(|x| Stat::Float((*x).into())))
            }
            S::Double(v) => (v.min_opt().copied().map(Stat::Float), v.max_opt().copied().map(Stat::Float)),
            S::ByteArray(v) => (
                v.min_opt().map(|x| Stat::Bytes(x.data().to_vec())),
                v.max_opt().map(|x| Stat::Bytes(x.data().to_vec())),
            ),
            _ => (None, None),
        };
        match (lo, hi) {
            (Some(lo), Some(hi)) => {
                self.bounds = Some(match self.bounds.take() {
                    None => (lo, hi),
                    Some((a, b)) => (if a <= lo { a } else { lo }, if b >= hi { b } else { hi }),
                });
            }
            // A row group of nulls only has no bounds, and takes none away.
            (None, None) if count.is_some_and(|c| i64::try_from(c).is_ok_and(|c| c == rows)) => {}
            _ => self.bounded = false,
        }
    }

    fn bounds(self) -> Option<(Stat, Stat)> {
        self.bounds.filter(|_| self.bounded)
    }
}

/// Bounds from a file's statistics as Delta's JSON holds them for `dtype`; `None` for types
/// Delta readers would compare wrongly (decimals: the footer's bytes are not a JSON number
/// without loss; binaries). Long strings come as Polars' writer bounds them: a prefix for the
/// min and a prefix bumped up for the max, still bounds of every value. Timestamps are kept to the millisecond, as the protocol asks: the min
/// rounded down and the max up, so the bounds still hold every value.
fn json_bounds(dtype: &DataType, lo: Stat, hi: Stat) -> Option<(Value, Value)> {
    match (dtype, lo, hi) {
        (DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64, Stat::Int(lo), Stat::Int(hi)) => {
            Some((json!(lo), json!(hi)))
        }
        (DataType::Float32 | DataType::Float64, Stat::Float(lo), Stat::Float(hi)) => {
            (lo.is_finite() && hi.is_finite()).then(|| (json!(lo), json!(hi)))
        }
        (DataType::Date, Stat::Int(lo), Stat::Int(hi)) => {
            let day = |d: i64| {
                chrono::NaiveDate::default()
                    .checked_add_signed(chrono::Duration::days(d))
                    .map(|d| json!(d.format("%Y-%m-%d").to_string()))
            };
            day(lo).zip(day(hi))
        }
        (DataType::Datetime(unit, tz), Stat::Int(lo), Stat::Int(hi)) => {
            let per_ms = match unit {
                TimeUnit::Nanoseconds => 1_000_000,
                TimeUnit::Microseconds => 1_000,
                TimeUnit::Milliseconds => 1,
            };
            let format = if tz.is_some() { "%Y-%m-%dT%H:%M:%S%.3fZ" } else { "%Y-%m-%d %H:%M:%S%.3f" };
            let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).map(|t| json!(t.format(format).to_string()));
            at(lo.div_euclid(per_ms)).zip(at(hi.div_euclid(per_ms) + i64::from(hi.rem_euclid(per_ms) != 0)))
        }
        (DataType::Boolean, Stat::Bool(lo), Stat::Bool(hi)) => Some((json!(lo), json!(hi))),
        (DataType::String, Stat::Bytes(lo), Stat::Bytes(hi)) => {
            Some((json!(String::from_utf8(lo).ok()?), json!(String::from_utf8(hi).ok()?)))
        }
        _ => None,
    }
}

/// Encodes one data file of `rows` (with `values` for the partition columns), the `n`th of
/// this commit's files, and its `add` action (modified at `modified_ms`, the sink's clock).
fn encode(
    layout: &FileLayout,
    values: &[(String, Scalar)],
    mut rows: DataFrame,
    n: usize,
    writer: &uuid::Uuid,
    modified_ms: i64,
) -> Result<(Add, bytes::Bytes)> {
    let hive: Vec<String> = values.iter().map(|(k, v)| format!("{k}={}", v.serialize_encoded())).collect();
    let name = format!("part-{n:05}-{writer}-c000.zstd.parquet");
    let path = if hive.is_empty() { name } else { format!("{}/{name}", hive.join("/")) };
    let content: Vec<String> = rows.get_column_names().iter().map(|c| c.to_string()).collect();
    // Types the fingerprint cannot hash (lists of numbers) leave the file untagged: the checker
    // then compares it by its rows.
    let tags = match fingerprint::fingerprint(&rows, &content) {
        Ok(fp) => Some(fp.to_tags().into_iter().collect::<HashMap<_, _>>()),
        Err(e) => {
            tracing::warn!(file = %path, "written without a fingerprint: {e}");
            None
        }
    };
    let mut buffer = Vec::new();
    ParquetWriter::new(&mut buffer)
        .with_compression(ParquetCompression::Zstd(None))
        .finish(&mut rows)
        .map_err(Error::polars(format!("writing data file {path}")))?;
    let bytes = bytes::Bytes::from(buffer);
    let stats = layout.stats(&rows, &bytes)?;
    let add = Add {
        path,
        partition_values: values.iter().map(|(k, v)| (k.clone(), (!v.is_null()).then(|| v.serialize()))).collect(),
        size: bytes.len() as i64,
        modification_time: modified_ms,
        data_change: true,
        stats: Some(stats),
        tags,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    };
    Ok((add, bytes))
}

/// Writes `rows`, conformed to `layout`, as one Parquet file per partition under the table's
/// store, and returns their `add` actions, each tagged with its fingerprint.
pub(super) async fn write(
    store: Arc<dyn object_store::ObjectStore>,
    layout: Arc<FileLayout>,
    rows: DataFrame,
    modified_ms: i64,
) -> Result<Vec<Add>> {
    use futures::{StreamExt as _, TryStreamExt as _};
    let (writer, table) = (uuid::Uuid::new_v4(), layout.table.clone());
    let encoded = crate::compute::blocking("writing the data files", move || {
        let mut files = Vec::new();
        // An empty batch writes no file (and, as before, its types are not checked: a batch of
        // no rows may come from a transform that could not infer them).
        if rows.height() == 0 {
            return Ok(files);
        }
        let rows = layout.conform(rows)?;
        for part in layout.parts(rows)? {
            // A partition larger in memory than the target file size is written as several
            // files (each smaller on disk: the size before compression is the bound).
            let pieces = part.rows.estimated_size().div_ceil(layout.target_file_size).max(1);
            let per_file = part.rows.height().div_ceil(pieces);
            for piece in 0..pieces {
                let rows = part.rows.slice((piece * per_file) as i64, per_file);
                files.push(encode(&layout, &part.values, rows, files.len(), &writer, modified_ms)?);
            }
        }
        Ok(files)
    })
    .await?;
    // Uploaded two at a time, as the reader fetches.
    let uploads = encoded.into_iter().map(|(add, bytes)| {
        let (store, table) = (store.clone(), &table);
        async move {
            let location =
                Path::parse(&add.path).map_err(|e| Error::Internal(format!("data file path {}: {e}", add.path)))?;
            store.put(&location, bytes.into()).await.map_err(|e| Error::Store {
                path: format!("{}{}", table, add.path),
                op: "write a data file",
                source: Box::new(e),
            })?;
            Ok::<_, Error>(add)
        }
    });
    futures::stream::iter(uploads).buffered(2).try_collect().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statistics of column `name` over a file of row groups of two rows.
    fn merged(df: &mut DataFrame, name: &str) -> (Option<(Stat, Stat)>, Option<u64>) {
        use deltalake::parquet::file::metadata::ParquetMetaDataReader;
        let mut buffer = Vec::new();
        ParquetWriter::new(&mut buffer).with_row_group_size(Some(2)).finish(df).unwrap();
        let footer = ParquetMetaDataReader::new().parse_and_finish(&bytes::Bytes::from(buffer)).unwrap();
        assert!(footer.row_groups().len() > 1, "several row groups");
        let leaf = df.get_column_index(name).unwrap();
        let mut merged = Merged::default();
        for group in footer.row_groups() {
            merged.add(group.column(leaf).statistics(), group.num_rows());
        }
        let nulls = merged.nulls;
        (merged.bounds(), nulls)
    }

    #[test]
    fn statistics_merge_over_row_groups_and_a_group_of_nulls_takes_nothing_away() {
        let mut df = df![
            "i" => [Some(5i64), Some(9), None, None, Some(-3), Some(4)],
            "s" => [Some("m"), Some("c"), None, None, Some("z"), Some("k")],
        ]
        .unwrap();
        assert_eq!(merged(&mut df, "i"), (Some((Stat::Int(-3), Stat::Int(9))), Some(2)));
        let text = |s: &str| Stat::Bytes(s.as_bytes().to_vec());
        assert_eq!(merged(&mut df, "s"), (Some((text("c"), text("z"))), Some(2)));
    }

    #[test]
    fn timestamps_are_bounded_to_the_millisecond_outward() {
        let utc = DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
        let (lo, hi) = json_bounds(&utc, Stat::Int(1_000_999), Stat::Int(2_000_001)).unwrap();
        assert_eq!((lo, hi), (json!("1970-01-01T00:00:01.000Z"), json!("1970-01-01T00:00:02.001Z")));
        let ntz = DataType::Datetime(TimeUnit::Microseconds, None);
        let (lo, hi) = json_bounds(&ntz, Stat::Int(-1), Stat::Int(2_000_000)).unwrap();
        assert_eq!((lo, hi), (json!("1969-12-31 23:59:59.999"), json!("1970-01-01 00:00:02.000")));
        assert_eq!(json_bounds(&DataType::Boolean, Stat::Int(0), Stat::Int(1)), None);
    }
}
