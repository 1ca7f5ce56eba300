//! `tidewater run JOB.toml`: the stream.

use super::stop_on_signals;
use crate::cli::RunArgs;
use crate::cli::TriggerKind;
use crate::job::{Registry, pipeline_for};
use crate::output::EXIT_OK;
use crate::output::{CliError, emit, thousands};
use crate::spec::load;
use std::time::Duration;
use tidewater_core::{BatchReport, RunReport, Trigger};

pub async fn run(args: RunArgs, registry: &Registry) -> Result<i32, CliError> {
    let mut job = load(&args.job)?;
    if args.output.json && matches!(job.sink.kind, crate::spec::SinkKind::Console { .. }) {
        return Err(CliError::Usage(format!(
            "{}: a console sink prints its batches to stdout, where --json writes the report: run without --json",
            job.file.display()
        )));
    }
    job.trigger = override_trigger(job.trigger, args.trigger, args.interval).map_err(CliError::Usage)?;
    scale_out(&mut job, args.worker.as_deref(), args.member.as_deref())?;
    let pipeline = pipeline_for(&job, registry)?;
    stop_on_signals(pipeline.stop_handle());
    let report = pipeline.run(job.trigger).await?;
    emit(&args.output, &report, || summary(&job.name, &report) + "\n")?;
    Ok(EXIT_OK)
}

/// `--worker I/N` or `--member NAME`: this process's share of a Kafka job's partitions, and its
/// own offset log under the job's checkpoint.
fn scale_out(job: &mut crate::spec::JobSpec, worker: Option<&str>, member: Option<&str>) -> Result<(), CliError> {
    use tidewater_connectors::kafka::Assignment;
    let (assignment, lane) = match (worker, member) {
        (None, None) => return Ok(()),
        (Some(text), _) => {
            let (i, n) = super::worker(text)?;
            (Assignment::Worker { index: i as u32, count: n as u32 }, format!("workers/{i}-of-{n}"))
        }
        (None, Some(name)) => {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                return Err(CliError::Usage(format!(
                    "--member {name}: a member's name is letters, digits, '-', '_' and '.' (it names its offset log)"
                )));
            }
            (Assignment::Group { member: name.to_string() }, format!("members/{name}"))
        }
    };
    let crate::spec::SourceSpec::Kafka(kafka) = &mut job.source else {
        return Err(CliError::Usage(format!(
            "--worker and --member split a Kafka source's partitions; {}'s source is not Kafka",
            job.file.display()
        )));
    };
    kafka.assignment = assignment;
    job.checkpoint = format!("{}/{lane}", job.checkpoint.trim_end_matches('/'));
    Ok(())
}

/// The job's trigger with `--trigger` and `--interval` applied. Each flag changes only what it
/// names: `--trigger processing-time` keeps the job's interval, `--interval` changes the interval
/// of a processing-time trigger; an interval for a trigger that has none is refused.
pub(crate) fn override_trigger(
    job: Trigger,
    kind: Option<TriggerKind>,
    interval: Option<Duration>,
) -> Result<Trigger, String> {
    let kept_interval = match job {
        Trigger::ProcessingTime(every) => every,
        Trigger::Once | Trigger::AvailableNow => Duration::ZERO,
    };
    match (kind, interval) {
        (None, None) => Ok(job),
        (Some(TriggerKind::ProcessingTime), every) => Ok(Trigger::ProcessingTime(every.unwrap_or(kept_interval))),
        (Some(TriggerKind::Once), None) => Ok(Trigger::Once),
        (Some(TriggerKind::AvailableNow), None) => Ok(Trigger::AvailableNow),
        (Some(other @ (TriggerKind::Once | TriggerKind::AvailableNow)), Some(_)) => Err(format!(
            "--interval applies to the processing-time trigger only, not to --trigger {}: drop one of the two",
            flag_value(other)
        )),
        (None, Some(every)) => match job {
            Trigger::ProcessingTime(_) => Ok(Trigger::ProcessingTime(every)),
            Trigger::Once | Trigger::AvailableNow => Err(format!(
                "--interval sets the processing-time trigger's interval, but this job's trigger is `{job}`: \
                 add --trigger processing-time to stream a batch every {}",
                humantime::format_duration(every)
            )),
        },
    }
}

/// How `--trigger` spells `kind`.
fn flag_value(kind: TriggerKind) -> &'static str {
    match kind {
        TriggerKind::ProcessingTime => "processing-time",
        TriggerKind::Once => "once",
        TriggerKind::AvailableNow => "available-now",
    }
}

pub(crate) fn summary(name: &str, report: &RunReport) -> String {
    let t = |f: fn(&BatchReport) -> u64| thousands(report.total(f));
    let version = report.batches.iter().rev().find_map(|b| b.table_version);
    let late = report.late.as_ref().map_or_else(String::new, |_| format!(", {} late", t(|b| b.late)));
    let late_table = report.late.as_ref().map_or_else(String::new, |l| format!("\n  late       {l}"));
    let last = report.batches.last();
    let state = match (last.and_then(|b| b.state_rows), last.and_then(|b| b.state_bytes)) {
        (Some(rows), Some(bytes)) => format!("\n  state      {} groups, {} bytes", thousands(rows), thousands(bytes)),
        _ => String::new(),
    };
    let watermark = last
        .and_then(|b| b.watermark_ms)
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(String::new, |w| format!("\n  watermark  {}", w.format("%Y-%m-%dT%H:%M:%S%.3fZ")));
    format!(
        "{name}: {} batches ({}), {} records in: {} rows written, {} filtered, {} quarantined{late}\n  table      {} (version {})\n  quarantine {}{late_table}{watermark}{state}\n  query id   {}",
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

#[cfg(test)]
mod tests {
    use super::*;

    const S2: Duration = Duration::from_secs(2);
    const MS500: Duration = Duration::from_millis(500);

    #[test]
    fn each_flag_changes_only_what_it_names() {
        let every_2s = Trigger::ProcessingTime(S2);
        let cases = [
            (every_2s, None, None, Ok(every_2s)),
            (every_2s, Some(TriggerKind::ProcessingTime), None, Ok(every_2s)),
            (every_2s, Some(TriggerKind::ProcessingTime), Some(MS500), Ok(Trigger::ProcessingTime(MS500))),
            (every_2s, None, Some(MS500), Ok(Trigger::ProcessingTime(MS500))),
            (every_2s, Some(TriggerKind::AvailableNow), None, Ok(Trigger::AvailableNow)),
            (
                Trigger::AvailableNow,
                Some(TriggerKind::ProcessingTime),
                None,
                Ok(Trigger::ProcessingTime(Duration::ZERO)),
            ),
            (Trigger::AvailableNow, Some(TriggerKind::Once), None, Ok(Trigger::Once)),
            (Trigger::AvailableNow, None, Some(MS500), Err("this job's trigger is `available-now`")),
            (Trigger::Once, None, Some(MS500), Err("add --trigger processing-time")),
            (every_2s, Some(TriggerKind::Once), Some(MS500), Err("not to --trigger once")),
            (every_2s, Some(TriggerKind::AvailableNow), Some(MS500), Err("not to --trigger available-now")),
        ];
        for (job, kind, interval, want) in cases {
            let got = override_trigger(job, kind, interval);
            match (&got, want) {
                (Ok(t), Ok(w)) => assert_eq!(*t, w, "{job} {kind:?} {interval:?}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{job} {kind:?} {interval:?}: {e}"),
                _ => panic!("{job} {kind:?} {interval:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
