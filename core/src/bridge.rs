//! Polars ⇄ arrow-rs at zero copy, through the Arrow C Data Interface.
//!
//! Both crates' `ArrowArray`/`ArrowSchema` are the C Data Interface's `#[repr(C)]` structs, so they
//! move across by value. This module holds the library's only `unsafe`. One step copies: a column
//! whose type Delta lacks is cast to the Delta type a Spark user expects ([`delta_type`]: view
//! strings to plain strings, unsigned integers to wider signed ones, timestamps to microseconds).

use crate::error::{Error, Result};
use deltalake::arrow::array::{Array as _, ArrayRef, AsArray as _, make_array};
use deltalake::arrow::compute::{CastOptions, cast_with_options};
use deltalake::arrow::datatypes::TimestampMicrosecondType;
use deltalake::arrow::datatypes::{DataType as A, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi, to_ffi};
use deltalake::arrow::record_batch::RecordBatch;
use polars::prelude::{CompatLevel, DataFrame, IntoColumn, Series};
use std::sync::Arc;

/// The Delta type a Spark user expects for each Arrow type Polars produces: the one place where
/// the table's schema (at creation) and each batch's columns (at write) get their types.
///
/// | Polars | Delta |
/// |---|---|
/// | String, Categorical, Enum | string |
/// | Binary | binary |
/// | UInt8, UInt16, UInt32 | the next wider signed integer: short, integer, long |
/// | UInt64 | decimal(20,0) (every value fits; long would not hold the top half) |
/// | Int128, UInt128 | decimal(38,0) (cast on the Polars side; a value beyond 38 digits is an error, never a null) |
/// | Float16 | float |
/// | Datetime (any unit) | timestamp (microseconds; with a time zone: UTC) or timestamp_ntz (none) |
/// | List, Array | array (of the mapped element type) |
/// | Struct | struct (of the mapped field types) |
/// | Time, Duration, Null | refused with a message: Delta has no such type |
///
/// Int8..Int64, Float32/64, Boolean, Date and Decimal keep their type. Returns `Ok(None)` when
/// the type is already Delta's.
fn delta_type(t: &A) -> std::result::Result<Option<A>, String> {
    let field = |f: &Field| -> std::result::Result<Field, String> {
        Ok(match delta_type(f.data_type())? {
            Some(to) => f.clone().with_data_type(to).with_nullable(true),
            None => f.clone().with_nullable(true),
        })
    };
    let to = match t {
        A::Utf8View | A::LargeUtf8 => A::Utf8,
        A::BinaryView | A::LargeBinary | A::FixedSizeBinary(_) => A::Binary,
        A::UInt8 => A::Int16,
        A::UInt16 => A::Int32,
        A::UInt32 => A::Int64,
        A::UInt64 => A::Decimal128(20, 0),
        A::Decimal128(p, s) if *p > 38 => return Err(format!("decimal({p},{s}) is wider than Delta's 38 digits")),
        A::Decimal256(p, s) if *p <= 38 => A::Decimal128(*p, *s),
        A::Decimal256(p, s) => return Err(format!("decimal({p},{s}) is wider than Delta's 38 digits")),
        A::Float16 => A::Float32,
        A::Dictionary(_, values) => delta_type(values)?.unwrap_or_else(|| values.as_ref().clone()),
        A::Timestamp(unit, tz) => {
            let utc = tz.as_ref().map(|_| Arc::<str>::from("UTC"));
            if *unit == TimeUnit::Microsecond && *tz == utc {
                return Ok(None);
            }
            A::Timestamp(TimeUnit::Microsecond, utc)
        }
        A::List(f) | A::LargeList(f) | A::ListView(f) | A::LargeListView(f) | A::FixedSizeList(f, _) => {
            A::List(Arc::new(field(f.as_ref())?))
        }
        A::Struct(fields) => {
            A::Struct(fields.iter().map(|f| field(f.as_ref())).collect::<std::result::Result<_, _>>()?)
        }
        A::Time32(_) | A::Time64(_) => {
            return Err("a time of day: Delta has no time type; cast it to a string, or combine it with a date into a timestamp".into());
        }
        A::Duration(_) | A::Interval(_) => {
            return Err(
                "a duration: Delta has no duration type; cast it to an integer (e.g. total microseconds)".into()
            );
        }
        A::Null => return Err("all null with no type: give it one, e.g. CAST(NULL AS STRING)".into()),
        _ => return Ok(None),
    };
    Ok((to != *t).then_some(to))
}

/// Polars types the Arrow C Data Interface of arrow-rs cannot import (Polars exports 128-bit
/// integers as an extension type): cast on the Polars side first, to the Delta type of the table.
fn polars_side_type(dtype: &polars::prelude::DataType) -> Option<polars::prelude::DataType> {
    use polars::prelude::DataType as P;
    match dtype {
        P::Int128 | P::UInt128 => Some(P::Decimal(38, 0)),
        _ => None,
    }
}

/// [`delta_type`] for a named column, as the error this crate returns.
fn delta_column_type(name: &str, t: &A) -> Result<Option<A>> {
    delta_type(t).map_err(|problem| Error::Unsupported(format!("the output column `{name}` is {problem}")))
}

/// The arrow-rs schema (Delta-compatible types) of a Polars frame, known even with zero rows.
pub fn arrow_schema(df: &DataFrame) -> Result<SchemaRef> {
    let arrow = |source| Error::Arrow { what: "polars schema to arrow-rs".into(), source };
    let mut fields = Vec::with_capacity(df.width());
    for (name, dtype) in df.schema().iter() {
        let dtype = polars_side_type(dtype).unwrap_or_else(|| dtype.clone());
        let field = dtype.to_arrow_field(name.clone(), CompatLevel::newest());
        // SAFETY: see `to_record_batches`.
        let c_schema: FFI_ArrowSchema = unsafe { std::mem::transmute(polars_arrow::ffi::export_field_to_c(&field)) };
        let field = Field::try_from(&c_schema).map_err(arrow)?;
        let to = delta_column_type(field.name(), field.data_type())?.unwrap_or_else(|| field.data_type().clone());
        fields.push(field.with_data_type(to).with_nullable(true));
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Converts a Polars frame to arrow-rs record batches (one per chunk, none when empty) with
/// Delta-compatible types.
pub fn to_record_batches(df: &mut DataFrame) -> Result<Vec<RecordBatch>> {
    let arrow = |source| Error::Arrow { what: "polars frame to arrow-rs".into(), source };
    let cast: Vec<_> = df.schema().iter().filter_map(|(n, t)| Some((n.clone(), polars_side_type(t)?))).collect();
    for (name, to) in cast {
        let column = df.column(&name).map_err(Error::polars("polars frame to arrow-rs"))?;
        // Strict: a value that does not fit is an error, never a silent null.
        let column = column.strict_cast(&to).map_err(Error::polars(format!("the output column `{name}` to {to}")))?;
        df.with_column(column).map_err(Error::polars("polars frame to arrow-rs"))?;
    }
    df.rechunk_mut();
    let mut out = Vec::new();
    if df.height() == 0 {
        return Ok(out);
    }
    for rb in df.iter_chunks(CompatLevel::newest(), false) {
        let mut fields = Vec::with_capacity(rb.width());
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(rb.width());
        for (array, field) in rb.columns().iter().zip(rb.schema().iter_values()) {
            let (mut field, mut column) = export_column(array.clone(), field)?;
            if let Some(to) = delta_column_type(field.name(), field.data_type())? {
                // Not `safe`: a value that does not fit is an error, never a silent null.
                column = cast_with_options(&column, &to, &CastOptions { safe: false, ..CastOptions::default() })
                    .map_err(arrow)?;
                field = field.with_data_type(to);
            }
            fields.push(field.with_nullable(true));
            columns.push(column);
        }
        out.push(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(arrow)?);
    }
    Ok(out)
}

/// Converts an arrow-rs record batch to a Polars frame at zero copy.
pub fn to_polars(rb: &RecordBatch) -> Result<DataFrame> {
    let mut columns = Vec::with_capacity(rb.num_columns());
    for (array, field) in rb.columns().iter().zip(rb.schema().fields()) {
        columns.push(import_column(array, field)?.into_column());
    }
    DataFrame::new_infer_height(columns).map_err(Error::polars("arrow-rs batch to polars"))
}

/// One Polars array as an arrow-rs array, at zero copy.
fn export_column(
    array: polars_arrow::array::ArrayRef,
    field: &polars_arrow::datatypes::Field,
) -> Result<(Field, ArrayRef)> {
    let arrow = |source| Error::Arrow { what: "polars array to arrow-rs".into(), source };
    // SAFETY: polars-arrow's and arrow-rs's C Data Interface structs are both the `#[repr(C)]`
    // structs of the Arrow specification; ownership moves with the value.
    let c_array: FFI_ArrowArray = unsafe { std::mem::transmute(polars_arrow::ffi::export_array_to_c(array)) };
    let c_schema: FFI_ArrowSchema = unsafe { std::mem::transmute(polars_arrow::ffi::export_field_to_c(field)) };
    let field = Field::try_from(&c_schema).map_err(arrow)?;
    // SAFETY: `c_array` was just exported with the layout `c_schema` describes.
    let column = make_array(unsafe { from_ffi(c_array, &c_schema) }.map_err(arrow)?);
    Ok((field, column))
}

/// One arrow-rs array as a Polars series, at zero copy.
fn import_column(array: &ArrayRef, field: &Field) -> Result<Series> {
    let arrow = |source| Error::Arrow { what: "arrow-rs array to polars".into(), source };
    let (c_array, _) = to_ffi(&array.to_data()).map_err(arrow)?;
    let c_schema = FFI_ArrowSchema::try_from(field).map_err(arrow)?;
    // SAFETY: as in `export_column`, the structs are the same C layout.
    let c_array: polars_arrow::ffi::ArrowArray = unsafe { std::mem::transmute(c_array) };
    let c_schema: polars_arrow::ffi::ArrowSchema = unsafe { std::mem::transmute(c_schema) };
    let field = unsafe { polars_arrow::ffi::import_field_from_c(&c_schema) }
        .map_err(Error::polars("arrow-rs field to polars"))?;
    let array = unsafe { polars_arrow::ffi::import_array_from_c(c_array, field.dtype.clone()) }
        .map_err(Error::polars("arrow-rs array to polars"))?;
    Series::from_arrow(field.name.clone(), array).map_err(Error::polars("arrow-rs array to polars"))
}

/// Parses ISO-8601 / RFC 3339 text to UTC microsecond timestamps (`Datetime(us, UTC)`) with
/// arrow-rs's timestamp parser: `2024-03-05T12:34:56.789Z`, an offset (`+02:00`, `+0200`), a space
/// or `t` for the `T`, no offset (read as UTC), or a date alone (midnight UTC). A value that does
/// not parse becomes null. One byte-level pass per value: no format string is read per row and the
/// format is not guessed from the first value.
pub fn parse_timestamps(text: &Series) -> Result<Series> {
    let text = text.cast(&polars::prelude::DataType::String).map_err(Error::polars("timestamps as text"))?.rechunk();
    let name = text.name().clone();
    let mut parsed: Option<Series> = None;
    for chunk in text.chunks() {
        let field = polars_arrow::datatypes::Field::new(name.clone(), chunk.dtype().clone(), true);
        let (field, column) = export_column(chunk.clone(), &field)?;
        let micros = cast_with_options(
            &column,
            &A::Timestamp(TimeUnit::Microsecond, None),
            &CastOptions { safe: true, ..CastOptions::default() },
        )
        .map_err(|source| Error::Arrow { what: format!("parsing `{name}` as timestamps"), source })?;
        let utc: ArrayRef = Arc::new(micros.as_primitive::<TimestampMicrosecondType>().clone().with_timezone("UTC"));
        let series = import_column(&utc, &field.with_data_type(utc.data_type().clone()))?;
        match parsed.as_mut() {
            None => parsed = Some(series),
            Some(acc) => {
                acc.append_owned(series).map_err(Error::polars("timestamps"))?;
            }
        }
    }
    let utc = polars::prelude::DataType::Datetime(
        polars::prelude::TimeUnit::Microseconds,
        Some(polars::prelude::TimeZone::UTC),
    );
    Ok(parsed.unwrap_or_else(|| Series::new_empty(name, &utc)))
}

/// The Polars type of an arrow-rs field.
pub fn polars_dtype(field: &Field) -> Result<polars::prelude::DataType> {
    let c_schema = FFI_ArrowSchema::try_from(field)
        .map_err(|source| Error::Arrow { what: format!("field `{}` to polars", field.name()), source })?;
    // SAFETY: as in `to_record_batches`, the structs are the same C layout.
    let c_schema: polars_arrow::ffi::ArrowSchema = unsafe { std::mem::transmute(c_schema) };
    let field = unsafe { polars_arrow::ffi::import_field_from_c(&c_schema) }
        .map_err(Error::polars("arrow-rs field to polars"))?;
    Ok(polars::prelude::DataType::from_arrow_field(&field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::*;

    #[test]
    fn round_trip_keeps_the_frame() {
        let df = df![
            "s" => ["a", "bb", "ccc"],
            "i" => [1i64, 2, 3],
            "f" => [Some(1.5f64), None, Some(-2.0)],
        ]
        .unwrap();
        let mut copy = df.clone();
        let batches = to_record_batches(&mut copy).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].schema().field(0).data_type(), &A::Utf8);
        let back = to_polars(&batches[0]).unwrap();
        assert!(back.equals_missing(&df), "{back} != {df}");
    }
}
