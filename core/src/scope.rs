//! What a bounded run covers: the [`Chunk`]s a bounded source plans, and for a backfill its
//! [`Scope`] (a date range cut by [`Granularity`], a commit range, or every file), the
//! [`SliceChunk`]s a source plans for it ([`SlicePlan`]), and the [`Span`] of the sink table each
//! replaces. Plain data and pure functions: no IO.
//!
//! # Invariant
//! A range's slices ([`RangeScope::slices`]) cover its days exactly, without overlap, so the
//! chunks of a plan replace every row of the range once.

use crate::error::{Error, Result};
use chrono::{Datelike, Months, NaiveDate, NaiveDateTime, NaiveTime};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

/// One piece of a bounded input, as planned once by [`BoundedSource::plan`] and recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// For people: `files 0..10 of 42`, `version 12, files 20..40`.
    pub describe: String,
    /// For the source: what to read, in its own JSON shape.
    pub spec: serde_json::Value,
}

/// How a date range is cut into chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Hour,
    Day,
    Month,
}

impl std::str::FromStr for Granularity {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "hour" => Ok(Granularity::Hour),
            "day" => Ok(Granularity::Day),
            "month" => Ok(Granularity::Month),
            other => Err(format!("unknown granularity `{other}`; expected hour, day or month")),
        }
    }
}

/// A date range over one column of the source, cut into chunks: the days `[from, to]`, both
/// inclusive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeScope {
    /// The source's date partition column, or a date or timestamp data column (an event time:
    /// files chosen by their statistics, rows filtered); `None`: the only partition column.
    pub column: Option<String>,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub by: Granularity,
}

impl RangeScope {
    /// Refuses a range that ends before it starts.
    pub fn new(column: Option<String>, from: NaiveDate, to: NaiveDate, by: Granularity) -> Result<Self> {
        if from > to {
            return Err(Error::Unsupported(format!("--from {from} is after --to {to}")));
        }
        Ok(RangeScope { column, from, to, by })
    }

    /// The chunks' half-open ranges `[start, end)`, covering the days `[from, to]` exactly.
    pub fn slices(&self) -> Vec<(NaiveDateTime, NaiveDateTime)> {
        let midnight = |d: NaiveDate| d.and_time(NaiveTime::MIN);
        let end = midnight(self.to.succ_opt().unwrap_or(self.to));
        let mut out = Vec::new();
        let mut start = midnight(self.from);
        while start < end {
            let next = match self.by {
                Granularity::Hour => start + chrono::Duration::hours(1),
                Granularity::Day => start + chrono::Duration::days(1),
                Granularity::Month => {
                    let first = NaiveDate::from_ymd_opt(start.year(), start.month(), 1).unwrap_or(start.date());
                    first.checked_add_months(Months::new(1)).map_or(end, midnight)
                }
            };
            out.push((start, next.min(end)));
            start = next;
        }
        out
    }
}

/// What a backfill reprocesses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    /// The days `[from, to]` of a date or timestamp column: each chunk replaces its slice.
    Range(RangeScope),
    /// The data files commits `from..=to` of a Delta source added.
    Versions { from: u64, to: u64 },
    /// Every file of the source at plan time (a landing directory's, a Delta snapshot's).
    Files,
}

impl From<RangeScope> for Scope {
    fn from(range: RangeScope) -> Self {
        Scope::Range(range)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Range(r) => {
                let column = r.column.as_deref().unwrap_or("the partition column");
                let by = match r.by {
                    Granularity::Hour => "hour",
                    Granularity::Day => "day",
                    Granularity::Month => "month",
                };
                write!(f, "{column} {}..={} by {by}", r.from, r.to)
            }
            Scope::Versions { from, to } => write!(f, "versions {from}..={to}"),
            Scope::Files => f.write_str("files"),
        }
    }
}

/// One planned chunk of a backfill: what to read, and its estimated size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceChunk {
    /// For people: `2024-03-02`, `2024-03-02T05:00`, `versions 10..=14, files 0..64 of 80`.
    pub range: String,
    /// The slice of the sink it replaces, in a range plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<Span>,
    pub files: usize,
    /// From the Delta log's file statistics (`numRecords`), where the writer recorded them.
    pub estimated_rows: u64,
    pub estimated_bytes: u64,
    pub read: Chunk,
}

impl SliceChunk {
    /// The chunk over `span`.
    pub fn over(span: Span, files: usize, estimated_rows: u64, estimated_bytes: u64, read: Chunk) -> Self {
        let range = describe_range(span.from, span.until);
        SliceChunk { range, span: Some(span), files, estimated_rows, estimated_bytes, read }
    }
}

/// What a source planned for a backfill.
#[derive(Clone, Debug)]
pub struct SlicePlan {
    /// The source version every chunk reads (`None`: the source has no versions).
    pub version: Option<u64>,
    /// The column a range plan is over (the scope's, or the source's partition column).
    pub column: Option<String>,
    pub chunks: Vec<SliceChunk>,
}

/// The chunk's range as people read it: `2024-01-01` for a day, `2024-01-01T05:00` for an hour,
/// `2024-01-01..2024-02-01`.
pub fn describe_range(from: NaiveDateTime, until: NaiveDateTime) -> String {
    let text = |t: NaiveDateTime| {
        if t.time() == NaiveTime::MIN { t.date().to_string() } else { t.format("%Y-%m-%dT%H:%M").to_string() }
    };
    if from.time() == NaiveTime::MIN && until == from + chrono::Duration::days(1) {
        from.date().to_string()
    } else if until == from + chrono::Duration::hours(1) {
        from.format("%Y-%m-%dT%H:%M").to_string()
    } else {
        format!("{}..{}", text(from), text(until))
    }
}

/// A slice of a table by one date or timestamp column: the rows with `column` in
/// `[from, until)` (UTC for a timestamp), as a backfill chunk reads and replaces it. The column
/// may be a partition column (whole files are in or out) or a data column (files are chosen by
/// their statistics and their rows filtered).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub column: String,
    pub from: NaiveDateTime,
    pub until: NaiveDateTime,
}

impl Span {
    pub fn new(column: impl Into<String>, from: NaiveDateTime, until: NaiveDateTime) -> Self {
        Span { column: column.into(), from, until }
    }

    /// Whether the moment `value` is in the span.
    pub fn contains(&self, value: NaiveDateTime) -> bool {
        value >= self.from && value < self.until
    }

    /// Whether a file whose column holds values in `[min, max]` may hold rows of the span.
    pub fn overlaps(&self, min: NaiveDateTime, max: NaiveDateTime) -> bool {
        min < self.until && max >= self.from
    }

    /// Whether a partition value (the log's text: a date, or a timestamp) is in the span;
    /// `None` when it is neither.
    pub fn holds_partition_value(&self, text: &str) -> Option<bool> {
        moment(text).map(|v| self.contains(v))
    }

    /// The span as a SQL predicate, for the commit's `operationParameters`.
    pub fn predicate(&self) -> String {
        let text = |t: NaiveDateTime| {
            if t.time() == NaiveTime::MIN { t.date().to_string() } else { t.format("%Y-%m-%d %H:%M:%S").to_string() }
        };
        format!("{c} >= '{}' AND {c} < '{}'", text(self.from), text(self.until), c = self.column)
    }

    /// An expression true for the rows in the span, false otherwise (null values included), for a
    /// column of type `dtype`; an error for a column that is neither a date nor a timestamp.
    pub fn rows(&self, dtype: &DataType) -> Result<Expr> {
        let column = col(self.column.as_str());
        let (from, until) = match dtype {
            DataType::Date => {
                // A date is in the span when its midnight is.
                let first_day = |t: NaiveDateTime| {
                    let day = if t.time() == NaiveTime::MIN { t.date() } else { t.date() + chrono::Days::new(1) };
                    lit((day - EPOCH).num_days() as i32).cast(DataType::Date)
                };
                (first_day(self.from), first_day(self.until))
            }
            DataType::Datetime(unit, tz) => {
                let physical = |t: NaiveDateTime| {
                    let t = t.and_utc();
                    let value = match unit {
                        TimeUnit::Milliseconds => t.timestamp_millis(),
                        TimeUnit::Microseconds => t.timestamp_micros(),
                        TimeUnit::Nanoseconds => t.timestamp_nanos_opt().unwrap_or(i64::MAX),
                    };
                    lit(value).cast(DataType::Datetime(*unit, tz.clone()))
                };
                (physical(self.from), physical(self.until))
            }
            other => {
                return Err(Error::Unsupported(format!(
                    "`{}` is of type {other}: a backfill slices by a date or timestamp column",
                    self.column
                )));
            }
        };
        Ok(column.clone().gt_eq(from).and(column.lt(until)).fill_null(lit(false)))
    }
}

/// Day 0 of Delta's dates.
pub(crate) const EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date");

/// A partition value or a statistic as a moment: `2024-01-01` (midnight), or a timestamp as the
/// Delta log writes them.
pub fn moment(text: &str) -> Option<NaiveDateTime> {
    if let Ok(date) = text.parse::<NaiveDate>() {
        return Some(date.and_time(NaiveTime::MIN));
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text.trim_end_matches('Z'), f).ok())
        .or_else(|| chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.naive_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn t(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn slices_cover_the_range_exactly() {
        let days = RangeScope::new(Some("date".into()), d("2024-01-30"), d("2024-02-02"), Granularity::Day).unwrap();
        assert_eq!(days.slices().len(), 4);
        assert_eq!(days.slices()[3], (t("2024-02-02 00:00"), t("2024-02-03 00:00")));
        let months =
            RangeScope::new(Some("date".into()), d("2024-01-15"), d("2024-03-31"), Granularity::Month).unwrap();
        assert_eq!(
            months.slices(),
            vec![
                (t("2024-01-15 00:00"), t("2024-02-01 00:00")),
                (t("2024-02-01 00:00"), t("2024-03-01 00:00")),
                (t("2024-03-01 00:00"), t("2024-04-01 00:00"))
            ]
        );
        let hours = RangeScope::new(Some("ts".into()), d("2024-03-02"), d("2024-03-02"), Granularity::Hour).unwrap();
        assert_eq!(hours.slices().len(), 24);
        assert_eq!(hours.slices()[23], (t("2024-03-02 23:00"), t("2024-03-03 00:00")));
        let e = RangeScope::new(Some("date".into()), d("2024-03-01"), d("2024-01-01"), Granularity::Day).unwrap_err();
        assert_eq!(e.to_string(), "--from 2024-03-01 is after --to 2024-01-01");
        assert!("week".parse::<Granularity>().unwrap_err().contains("expected hour, day or month"));
    }

    #[test]
    fn ranges_read_as_people_write_them() {
        assert_eq!(describe_range(t("2024-03-02 00:00"), t("2024-03-03 00:00")), "2024-03-02");
        assert_eq!(describe_range(t("2024-03-02 05:00"), t("2024-03-02 06:00")), "2024-03-02T05:00");
        assert_eq!(describe_range(t("2024-01-15 00:00"), t("2024-02-01 00:00")), "2024-01-15..2024-02-01");
    }
}
