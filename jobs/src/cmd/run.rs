//! `tidewater run JOB.toml`: the stream.

use super::{CliError, stop_on_signals, thousands};
use crate::cli::RunArgs;
use crate::spec::{load, parse_trigger};
use crate::{EXIT_OK, Registry, pipeline_for};
use tidewater_core::{BatchReport, RunReport};

pub async fn run(args: RunArgs, registry: &Registry) -> Result<i32, CliError> {
    let mut job = load(&args.job)?;
    if args.trigger.is_some() || args.interval.is_some() {
        let kind = args.trigger.map(|t| t.name());
        job.trigger = parse_trigger(kind.or(Some("processing-time")), args.interval.as_deref())
            .map_err(|(key, problem)| CliError::Usage(format!("--{key}: {problem}")))?;
    }
    let pipeline = pipeline_for(&job, registry)?;
    stop_on_signals(pipeline.stop_handle());
    let report = pipeline.run(job.trigger).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        println!("{}", summary(&job.name, &report));
    }
    Ok(EXIT_OK)
}

pub(crate) fn summary(name: &str, report: &RunReport) -> String {
    let t = |f: fn(&BatchReport) -> u64| thousands(report.total(f));
    let version = report.batches.iter().rev().find_map(|b| b.table_version);
    let late = report.late.as_ref().map_or_else(String::new, |_| format!(", {} late", t(|b| b.late)));
    let late_table = report.late.as_ref().map_or_else(String::new, |l| format!("\n  late       {l}"));
    format!(
        "{name}: {} batches ({}), {} records in: {} rows written, {} filtered, {} quarantined{late}\n  table      {} (version {})\n  quarantine {}{late_table}\n  query id   {}",
        report.batches.len(),
        match (report.batches.first(), report.batches.last()) {
            (Some(a), Some(b)) => format!("{} to {}", a.batch, b.batch),
            _ => "nothing new".to_string(),
        },
        t(|b| b.input_records),
        t(|b| b.output_rows),
        t(|b| b.filtered),
        t(|b| b.quarantined),
        report.table,
        version.map_or_else(|| "unchanged".to_string(), |v| v.to_string()),
        report.quarantine,
        report.query.app_id(),
    )
}
