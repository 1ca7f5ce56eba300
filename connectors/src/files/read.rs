//! Turning one landing file's bytes into rows and rejected records.
//!
//! Every format ends in [`conform`]: columns read as text are parsed to their declared type with
//! a non-strict cast, and a row whose value did not parse, or whose required value is missing, is
//! rejected with a reason instead of failing the file. NDJSON has a fast path (the whole file
//! through Polars' parallel reader) and, only for a file the fast path refuses (a malformed line,
//! a value of the wrong JSON type), a line-by-line path that finds the bad lines.

use super::schema::{ColumnType, InputSchema};
use polars::prelude::*;
use std::io::Cursor;
use tidewater_core::{Error, Rejected, Result, SourceBatch};

/// A landing file's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Ndjson,
    Csv,
    Parquet,
}

impl std::str::FromStr for FileFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "ndjson" | "jsonl" | "json" => Ok(FileFormat::Ndjson),
            "csv" => Ok(FileFormat::Csv),
            "parquet" => Ok(FileFormat::Parquet),
            other => Err(format!("unknown format `{other}`; expected ndjson, csv or parquet")),
        }
    }
}

fn source_err(origin: &str, problem: impl std::fmt::Display) -> Error {
    Error::Source { source_name: origin.to_string(), problem: problem.to_string() }
}

/// Whether a line holds anything but blanks.
fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r'))
}

/// The lines of a text file (found with memchr): (1-based line number, byte range).
fn lines(bytes: &[u8]) -> impl Iterator<Item = (u64, std::ops::Range<usize>)> + '_ {
    let ends = memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len()));
    ends.scan(0, |start, end| {
        let range = *start..end;
        *start = end + 1;
        Some(range)
    })
    .enumerate()
    .map(|(n, range)| (n as u64 + 1, range))
}

/// The non-blank lines of a text file: (1-based line number, byte range).
fn line_spans(bytes: &[u8]) -> Vec<(u64, std::ops::Range<usize>)> {
    lines(bytes).filter(|(_, range)| !is_blank(&bytes[range.clone()])).collect()
}

/// How many non-blank lines a text file has.
fn count_lines(bytes: &[u8]) -> usize {
    lines(bytes).filter(|(_, range)| !is_blank(&bytes[range.clone()])).count()
}

fn raw_text(bytes: &[u8], range: std::ops::Range<usize>) -> String {
    String::from_utf8_lossy(&bytes[range]).trim_end_matches('\r').to_string()
}

/// Reads one file.
pub fn read_file(bytes: &[u8], origin: &str, format: FileFormat, schema: &InputSchema) -> Result<SourceBatch> {
    match format {
        FileFormat::Ndjson => read_ndjson(bytes, origin, schema),
        FileFormat::Csv => read_csv(bytes, origin, schema),
        FileFormat::Parquet => read_parquet(bytes, origin, schema),
    }
}

/// Infers a schema from one file's content (every column optional).
pub fn infer_schema(bytes: &[u8], origin: &str, format: FileFormat) -> Result<InputSchema> {
    let df = match format {
        FileFormat::Ndjson => JsonReader::new(Cursor::new(bytes))
            .with_json_format(JsonFormat::JsonLines)
            .infer_schema_len(std::num::NonZeroUsize::new(1000))
            .with_ignore_errors(true)
            .finish(),
        FileFormat::Csv => {
            CsvReadOptions::default().with_has_header(true).into_reader_with_file_handle(Cursor::new(bytes)).finish()
        }
        FileFormat::Parquet => ParquetReader::new(Cursor::new(bytes)).finish(),
    }
    .map_err(|e| source_err(origin, format!("cannot infer a schema: {e}")))?;
    InputSchema::from_inferred(df.schema()).map_err(|e| source_err(origin, e))
}

fn parse_ndjson(bytes: &[u8], schema: &InputSchema) -> PolarsResult<DataFrame> {
    // Polars 0.55 samples line lengths from the start and from 75% into the input, and panics
    // (slice out of range, polars-io ndjson/core.rs `get_line_stats_json`) when the first line end
    // after that point is the input's last byte. A trailing blank line, which the reader skips,
    // avoids it; it is added only when the last quarter holds fewer than two line ends.
    let tail = &bytes[bytes.len() * 3 / 4..];
    let padded;
    let bytes = if tail.iter().filter(|&&b| b == b'\n').take(2).count() < 2 {
        padded = [bytes, b"\n\n"].concat();
        padded.as_slice()
    } else {
        bytes
    };
    JsonReader::new(Cursor::new(bytes))
        .with_json_format(JsonFormat::JsonLines)
        .with_schema(Arc::new(schema.read_schema(false)))
        .finish()
}

pub(crate) fn read_ndjson(bytes: &[u8], origin: &str, schema: &InputSchema) -> Result<SourceBatch> {
    let records = count_lines(bytes);
    if let Ok(df) = parse_ndjson(bytes, schema)
        && df.height() == records
    {
        // Where each line is, only if some row is rejected.
        let spans = std::cell::OnceCell::new();
        return conform(df, schema, records as u64, |row| {
            let (line, range) = spans.get_or_init(|| line_spans(bytes))[row].clone();
            Rejected { origin: origin.to_string(), position: line, raw: raw_text(bytes, range), reason: String::new() }
        });
    }
    // Slow path: some line is not what the schema says. Check each, keep the good ones.
    let spans = line_spans(bytes);
    let mut good = Vec::with_capacity(bytes.len());
    let mut good_lines = Vec::new();
    let mut rejected = Vec::new();
    for (line, range) in &spans {
        let text = &bytes[range.clone()];
        match check_json_line(text, schema) {
            Ok(()) => {
                good.extend_from_slice(text);
                good.push(b'\n');
                good_lines.push((*line, range.clone()));
            }
            Err(reason) => rejected.push(Rejected {
                origin: origin.to_string(),
                position: *line,
                raw: raw_text(bytes, range.clone()),
                reason,
            }),
        }
    }
    let df = if good_lines.is_empty() {
        DataFrame::empty_with_schema(&schema.read_schema(false))
    } else {
        parse_ndjson(&good, schema)
            .map_err(|e| source_err(origin, format!("unreadable after removing bad lines: {e}")))?
    };
    if df.height() != good_lines.len() {
        return Err(source_err(origin, format!("read {} rows from {} valid lines", df.height(), good_lines.len())));
    }
    let mut batch = conform(df, schema, good_lines.len() as u64, |row| {
        let (line, range) = good_lines[row].clone();
        Rejected { origin: origin.to_string(), position: line, raw: raw_text(bytes, range), reason: String::new() }
    })?;
    batch.input_records += rejected.len() as u64;
    rejected.append(&mut batch.rejected);
    rejected.sort_by_key(|r| r.position);
    batch.rejected = rejected;
    Ok(batch)
}

/// Why a JSON line does not fit the schema (the JSON types only; text values are parsed later).
fn check_json_line(text: &[u8], schema: &InputSchema) -> std::result::Result<(), String> {
    let value: serde_json::Value = serde_json::from_slice(text).map_err(|e| format!("malformed JSON: {e}"))?;
    let serde_json::Value::Object(map) = value else {
        return Err("not a JSON object".to_string());
    };
    for column in &schema.columns {
        let Some(v) = map.get(&column.name).filter(|v| !v.is_null()) else {
            continue;
        };
        let fits = match column.ty {
            ColumnType::String | ColumnType::Timestamp | ColumnType::Date => v.is_string(),
            ColumnType::Int32 | ColumnType::Int64 => v.is_i64() || v.is_u64(),
            ColumnType::Float32 | ColumnType::Float64 => v.is_number(),
            ColumnType::Boolean => v.is_boolean(),
        };
        if !fits {
            return Err(format!("field `{}`: expected {}, found {v}", column.name, column.ty));
        }
    }
    Ok(())
}

fn read_csv(bytes: &[u8], origin: &str, schema: &InputSchema) -> Result<SourceBatch> {
    // Every column as text, named by the header (never by position: a file may order its columns
    // differently from the schema); `conform` parses and checks them by name.
    let mut df = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .with_parse_options(CsvParseOptions::default().with_truncate_ragged_lines(true))
        .into_reader_with_file_handle(Cursor::new(bytes))
        .finish()
        .map_err(|e| source_err(origin, e))?;
    for column in &schema.columns {
        if !df.schema().contains(&column.name) {
            let absent = Series::full_null(column.name.as_str().into(), df.height(), &DataType::String);
            df.with_column(absent.into_column()).map_err(|e| source_err(origin, e))?;
        }
    }
    let spans = line_spans(bytes);
    let data = spans.get(1..).unwrap_or_default();
    let n = df.height() as u64;
    conform(df, schema, n, |row| match data.get(row) {
        Some((line, range)) => Rejected {
            origin: origin.to_string(),
            position: *line,
            raw: raw_text(bytes, range.clone()),
            reason: String::new(),
        },
        None => {
            Rejected { origin: origin.to_string(), position: row as u64 + 2, raw: String::new(), reason: String::new() }
        }
    })
}

fn read_parquet(bytes: &[u8], origin: &str, schema: &InputSchema) -> Result<SourceBatch> {
    let df = ParquetReader::new(Cursor::new(bytes)).finish().map_err(|e| source_err(origin, e))?;
    let columns: Vec<Expr> = schema
        .columns
        .iter()
        .map(|c| match df.schema().get(c.name.as_str()) {
            Some(_) => col(c.name.as_str()),
            None => lit(NULL).cast(c.ty.dtype()).alias(c.name.as_str()),
        })
        .collect();
    let df = df.lazy().select(columns).collect().map_err(|e| source_err(origin, e))?;
    let n = df.height() as u64;
    conform(df, schema, n, |row| Rejected {
        origin: origin.to_string(),
        position: row as u64 + 1,
        raw: format!("parquet row {row}"),
        reason: String::new(),
    })
}

/// Timestamps from text: arrow-rs's RFC 3339 parser row by row (Polars' `to_datetime` parses
/// each row with chrono, re-reading the format string per row). Only the values it cannot read
/// (other ISO-8601 forms such as `2024-03-01T10:15`, `2024/03/01 10:15:00`) go to `to_datetime`,
/// whose format is then guessed from the first of them; a value neither reads is null.
fn parse_timestamp_text(text: &Series, options: StrptimeOptions) -> Result<Series> {
    let parsed = tidewater_core::bridge::parse_timestamps(text)?;
    let missed = text.is_not_null() & parsed.is_null();
    if !missed.any() {
        return Ok(parsed);
    }
    let name = text.name().clone();
    let leftover = text
        .zip_with(&missed, &Series::full_null(name.clone(), text.len(), &DataType::String))
        .map_err(Error::polars("timestamps"))?;
    let guess =
        col(name.clone()).str().to_datetime(Some(TimeUnit::Microseconds), Some(TimeZone::UTC), options, lit("raise"));
    // No format fits the first of them: they all stay unparsed (and are rejected).
    let Ok(guessed) = leftover.into_frame().lazy().select([guess]).collect() else {
        return Ok(parsed);
    };
    let guessed = guessed.column(&name).map_err(Error::polars("timestamps"))?.as_materialized_series();
    parsed.zip_with(&!&missed, guessed).map_err(Error::polars("timestamps"))
}

/// Parses text columns to their declared types and splits off the rows that fail, with a reason.
/// `locate(row)` gives a rejected row's origin, position and raw text.
///
/// One pass computes the typed columns and a per-row "bad" flag (an OR of the checks); only when
/// some row is bad is the reason (the first check that failed) computed, over those rows alone,
/// so a clean file never builds a per-row text column.
fn conform(
    mut df: DataFrame,
    schema: &InputSchema,
    input_records: u64,
    locate: impl Fn(usize) -> Rejected,
) -> Result<SourceBatch> {
    const BAD: &str = "__tidewater_bad";
    const REASON: &str = "__tidewater_reason";
    const PARSED: &str = "__tidewater_parsed_";
    let mut typed = Vec::with_capacity(schema.columns.len() + 1);
    let mut checks: Vec<(Expr, String)> = Vec::new();
    for column in &schema.columns {
        let name = column.name.as_str();
        let read = df.schema().get(name).cloned().unwrap_or(DataType::Null);
        let target = column.ty.dtype();
        let parsed = if read == target {
            col(name)
        } else {
            let text_options = StrptimeOptions { strict: false, exact: true, cache: true, format: None };
            let expr = match column.ty {
                ColumnType::Timestamp if read == DataType::String => {
                    // Parsed beside the frame; the select below only picks it up.
                    let parsed_name = format!("{PARSED}{name}");
                    let text = df.column(name).map_err(Error::polars("timestamps"))?.as_materialized_series();
                    let parsed = parse_timestamp_text(text, text_options.clone())?;
                    df.with_column(parsed.with_name(parsed_name.as_str().into()).into_column())
                        .map_err(Error::polars("timestamps"))?;
                    col(parsed_name.as_str())
                }
                ColumnType::Timestamp => col(name).str().to_datetime(
                    Some(TimeUnit::Microseconds),
                    Some(TimeZone::UTC),
                    text_options,
                    lit("raise"),
                ),
                ColumnType::Date => col(name).str().to_date(text_options),
                _ => col(name).strict_cast(DataType::String).cast(target.clone()),
            };
            checks.push((
                col(name).is_not_null().and(expr.clone().is_null()),
                format!("field `{name}`: not a valid {}", column.ty),
            ));
            expr
        };
        if column.required {
            checks.push((col(name).is_null(), format!("missing required field `{name}`")));
        }
        typed.push(parsed.alias(name));
    }
    let Some(bad) = checks.iter().map(|(check, _)| check.clone()).reduce(|a, b| a.or(b)) else {
        return Ok(SourceBatch { rows: df, rejected: Vec::new(), input_records });
    };
    typed.push(bad.alias(BAD));
    let mut checked = df
        .clone()
        .lazy()
        .select(typed)
        .collect()
        .map_err(|e| Error::Polars { what: "checking records against the schema".into(), source: e })?;
    let bad_mask = checked.column(BAD).and_then(|c| c.bool()).map_err(Error::polars("bad-row flag"))?.clone();
    let _ = checked.drop_in_place(BAD).map_err(Error::polars("bad-row flag"))?;
    if !bad_mask.any() {
        // Every row is valid: no reason column, no copy through a filter.
        return Ok(SourceBatch { rows: checked, rejected: Vec::new(), input_records });
    }
    let rows = checked.filter(&!&bad_mask).map_err(Error::polars("keeping valid rows"))?;
    // The reason of each bad row: the first check it fails, computed over the bad rows only.
    let reason = checks.into_iter().rev().fold(lit(NULL).cast(DataType::String), |otherwise, (check, text)| {
        when(check).then(lit(text)).otherwise(otherwise)
    });
    let positions: Vec<usize> =
        bad_mask.iter().enumerate().filter_map(|(i, b)| b.unwrap_or(false).then_some(i)).collect();
    let reasons = df
        .filter(&bad_mask)
        .map_err(Error::polars("collecting rejected rows"))?
        .lazy()
        .select([reason.alias(REASON)])
        .collect()
        .map_err(|e| Error::Polars { what: "the reasons of rejected records".into(), source: e })?;
    let reasons = reasons.column(REASON).and_then(|c| c.str()).map_err(Error::polars("reasons"))?;
    let rejected = positions
        .into_iter()
        .zip(reasons.iter())
        .map(|(row, reason)| Rejected { reason: reason.unwrap_or_default().to_string(), ..locate(row) })
        .collect();
    Ok(SourceBatch { rows, rejected, input_records })
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;
