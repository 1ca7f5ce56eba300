//! Polars ⇄ arrow-rs at zero copy, through the Arrow C Data Interface.
//!
//! Both crates' `ArrowArray`/`ArrowSchema` are the C Data Interface's `#[repr(C)]` structs, so they
//! move across by value. This module holds the project's only `unsafe`. One step copies: Polars'
//! view strings and binaries become plain Utf8/Binary, which the Delta writer requires, and
//! nanosecond timestamps become microseconds, which Delta requires.

use crate::error::{Error, Result};
use deltalake::arrow::array::{Array as _, ArrayRef, make_array};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType as A, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi, to_ffi};
use deltalake::arrow::record_batch::RecordBatch;
use polars::prelude::{CompatLevel, DataFrame, IntoColumn, Series};
use std::sync::Arc;

/// The Delta-compatible Arrow type for a column coming out of Polars, if it must change.
fn delta_type(t: &A) -> Option<A> {
    match t {
        A::Utf8View | A::LargeUtf8 => Some(A::Utf8),
        A::BinaryView | A::LargeBinary => Some(A::Binary),
        A::Timestamp(TimeUnit::Nanosecond | TimeUnit::Millisecond | TimeUnit::Second, tz) => {
            Some(A::Timestamp(TimeUnit::Microsecond, tz.clone()))
        }
        _ => None,
    }
}

/// The arrow-rs schema (Delta-compatible types) of a Polars frame, known even with zero rows.
pub fn arrow_schema(df: &DataFrame) -> Result<SchemaRef> {
    let arrow = |source| Error::Arrow { what: "polars schema to arrow-rs".into(), source };
    let mut fields = Vec::with_capacity(df.width());
    for (name, dtype) in df.schema().iter() {
        let field = dtype.to_arrow_field(name.clone(), CompatLevel::newest());
        // SAFETY: see `to_record_batches`.
        let c_schema: FFI_ArrowSchema = unsafe { std::mem::transmute(polars_arrow::ffi::export_field_to_c(&field)) };
        let field = Field::try_from(&c_schema).map_err(arrow)?;
        let to = delta_type(field.data_type()).unwrap_or_else(|| field.data_type().clone());
        fields.push(field.with_data_type(to).with_nullable(true));
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Converts a Polars frame to arrow-rs record batches (one per chunk, none when empty) with
/// Delta-compatible types.
pub fn to_record_batches(df: &mut DataFrame) -> Result<Vec<RecordBatch>> {
    let arrow = |source| Error::Arrow { what: "polars frame to arrow-rs".into(), source };
    df.rechunk_mut();
    let mut out = Vec::new();
    if df.height() == 0 {
        return Ok(out);
    }
    for rb in df.iter_chunks(CompatLevel::newest(), false) {
        let mut fields = Vec::with_capacity(rb.width());
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(rb.width());
        for (array, field) in rb.columns().iter().zip(rb.schema().iter_values()) {
            // SAFETY: polars-arrow's and arrow-rs's C Data Interface structs are both the
            // `#[repr(C)]` structs of the Arrow specification; ownership moves with the value.
            let c_array: FFI_ArrowArray =
                unsafe { std::mem::transmute(polars_arrow::ffi::export_array_to_c(array.clone())) };
            let c_schema: FFI_ArrowSchema = unsafe { std::mem::transmute(polars_arrow::ffi::export_field_to_c(field)) };
            let mut field = Field::try_from(&c_schema).map_err(arrow)?;
            // SAFETY: `c_array` was just exported with the layout `c_schema` describes.
            let mut column = make_array(unsafe { from_ffi(c_array, &c_schema) }.map_err(arrow)?);
            if let Some(to) = delta_type(field.data_type()) {
                column = cast(&column, &to).map_err(arrow)?;
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
    let arrow = |source| Error::Arrow { what: "arrow-rs batch to polars".into(), source };
    let mut columns = Vec::with_capacity(rb.num_columns());
    for (array, field) in rb.columns().iter().zip(rb.schema().fields()) {
        let (c_array, _) = to_ffi(&array.to_data()).map_err(arrow)?;
        let c_schema = FFI_ArrowSchema::try_from(field.as_ref()).map_err(arrow)?;
        // SAFETY: as in `to_record_batches`, the structs are the same C layout.
        let c_array: polars_arrow::ffi::ArrowArray = unsafe { std::mem::transmute(c_array) };
        let c_schema: polars_arrow::ffi::ArrowSchema = unsafe { std::mem::transmute(c_schema) };
        let field = unsafe { polars_arrow::ffi::import_field_from_c(&c_schema) }
            .map_err(Error::polars("arrow-rs field to polars"))?;
        let array = unsafe { polars_arrow::ffi::import_array_from_c(c_array, field.dtype.clone()) }
            .map_err(Error::polars("arrow-rs array to polars"))?;
        let series =
            Series::from_arrow(field.name.clone(), array).map_err(Error::polars("arrow-rs array to polars"))?;
        columns.push(series.into_column());
    }
    DataFrame::new_infer_height(columns).map_err(Error::polars("arrow-rs batch to polars"))
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
