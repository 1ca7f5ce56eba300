//! From a [`RawJob`] to a typed [`JobSpec`]: the top level's keys here, each source and sink kind's
//! in its own module; errors say `file: key: problem`.

use super::file::{JobFile, SpecError};
use super::raw::RawJob;
use super::sink::SinkSpec;
use super::source::SourceSpec;
use std::path::PathBuf;
use std::time::Duration;
use tidewater_connectors::files::FileSpec;
use tidewater_core::Trigger;

#[derive(Clone, Debug)]
pub enum TransformSpec {
    Identity,
    Sql(String),
    /// A Rust transform registered in the binary under this name.
    Rust(String),
}

/// A validated job.
#[derive(Clone, Debug)]
pub struct JobSpec {
    pub file: PathBuf,
    pub name: String,
    pub checkpoint: String,
    pub source: SourceSpec,
    pub transform: TransformSpec,
    pub sink: SinkSpec,
    pub trigger: Trigger,
    /// `[watermark]`: the event-time column and the delay.
    pub watermark: Option<(String, std::time::Duration)>,
    /// `[dedup] keys`: rows whose keys were seen within the watermark are dropped.
    pub dedup: Option<Vec<String>>,
    /// `[tables]`: static Delta tables the transform reads beside `input`, by name.
    pub tables: Vec<(String, String)>,
}

/// Checks what serde cannot: each section's values, and what one section says of another (the
/// watermark's column is in the source's schema, late rows need a watermark).
pub(crate) fn validate(raw: RawJob, file: &JobFile) -> Result<JobSpec, SpecError> {
    if raw.name.trim().is_empty() {
        return Err(file.err("name", "must not be empty"));
    }
    let checkpoint = raw
        .checkpoint
        .as_deref()
        .ok_or_else(|| file.err("checkpoint", "missing: say where the job keeps its offsets and commits"))
        .and_then(|c| file.location("checkpoint", c))?;
    let source = raw.source.validate(&raw.name, file)?;
    let transform = match (&raw.transform.sql, &raw.transform.rust) {
        (Some(_), Some(_)) => {
            return Err(file.err("transform", "give either `sql` or `rust`, not both"));
        }
        (Some(sql), None) if sql.trim().is_empty() => {
            return Err(file.err("transform.sql", "is empty"));
        }
        (Some(sql), None) => TransformSpec::Sql(sql.clone()),
        (None, Some(name)) => TransformSpec::Rust(name.clone()),
        (None, None) => TransformSpec::Identity,
    };
    let sink = raw.sink.validate(file)?;
    let watermark = match &raw.watermark {
        None if sink.late.is_some() => {
            return Err(file.err("sink.late", "late rows need a watermark: add a [watermark] section"));
        }
        None => None,
        Some(w) => {
            let column = w
                .column
                .clone()
                .filter(|c| !c.trim().is_empty())
                .ok_or_else(|| file.err("watermark.column", "missing: the event-time column"))?;
            if let SourceSpec::Files(files) = &source
                && let Some(schema) = &files.schema
                && !schema.columns.iter().any(|c| c.name == column)
            {
                return Err(file.err("watermark.column", format!("`{column}` is not a column of source.schema")));
            }
            let delay = w.delay.as_deref().ok_or_else(|| file.err("watermark.delay", "missing: such as \"10m\""))?;
            let delay =
                humantime::parse_duration(delay).map_err(|e| file.err("watermark.delay", format!("`{delay}`: {e}")))?;
            Some((column, delay))
        }
    };
    let trigger = parse_trigger(raw.trigger.kind.as_deref(), raw.trigger.interval.as_deref())
        .map_err(|(key, problem)| file.err(&format!("trigger.{key}"), problem))?;
    let dedup = match &raw.dedup {
        None => None,
        Some(d) if d.keys.is_empty() => {
            return Err(file.err("dedup.keys", "missing: the columns a duplicate shares, such as [\"event_id\"]"));
        }
        Some(d) => {
            if let SourceSpec::Files(FileSpec { schema: Some(schema), .. }) = &source
                && let Some(missing) = d.keys.iter().find(|k| !schema.polars_schema().contains(k.as_str()))
            {
                return Err(file.err("dedup.keys", format!("`{missing}` is not a column of source.schema")));
            }
            Some(d.keys.clone())
        }
    };
    let mut tables = Vec::new();
    for (name, at) in &raw.tables {
        let key = format!("tables.{name}");
        let plain = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !plain {
            return Err(file.err(&key, "a table's name is what the SQL reads it by: letters, digits and _"));
        }
        if name.eq_ignore_ascii_case("input") {
            return Err(file.err(&key, "`input` is the stream's name; call the static table something else"));
        }
        tables.push((name.clone(), file.location(&key, at)?));
    }
    Ok(JobSpec {
        file: file.path().to_path_buf(),
        name: raw.name,
        checkpoint,
        source,
        transform,
        sink,
        trigger,
        watermark,
        dedup,
        tables,
    })
}

/// Parses a trigger kind and interval; errors name the sub-key (`kind`, `interval`).
fn parse_trigger(kind: Option<&str>, interval: Option<&str>) -> Result<Trigger, (&'static str, String)> {
    let kind = kind.unwrap_or("processing-time");
    if interval.is_some() && matches!(kind, "once" | "available-now") {
        return Err((
            "interval",
            format!("a `{kind}` trigger has no interval: remove it, or use kind = \"processing-time\""),
        ));
    }
    match kind {
        "processing-time" => {
            let interval = match interval {
                None => Duration::ZERO,
                Some(text) => humantime::parse_duration(text).map_err(|e| ("interval", format!("`{text}`: {e}")))?,
            };
            Ok(Trigger::ProcessingTime(interval))
        }
        "once" => Ok(Trigger::Once),
        "available-now" => Ok(Trigger::AvailableNow),
        other => Err(("kind", format!("unknown trigger `{other}`; expected processing-time, once or available-now"))),
    }
}
