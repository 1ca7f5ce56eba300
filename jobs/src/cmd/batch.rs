//! `tidewater batch JOB.toml [--into TABLE] [--source-version N]`: the same transform over a bounded input.

use crate::cli::BatchArgs;
use crate::job::{Registry, pipeline_for};
use crate::output::EXIT_OK;
use crate::output::{CliError, emit, thousands};
use crate::spec::load;
use std::io::IsTerminal;
use tidewater_core::{BatchOptions, BatchReport, BatchRunReport};

pub async fn batch(args: BatchArgs, registry: &Registry) -> Result<i32, CliError> {
    if let Some(n) = &args.old_version {
        return Err(CliError::Usage(format!(
            "`--version {n}` is now `--source-version {n}` (the Delta source's table version; \
             `tidewater --version` prints the program's)"
        )));
    }
    let mut job = load(&args.job)?;
    if args.from.is_some() || args.to.is_some() {
        let crate::spec::SourceSpec::Kafka(kafka) = &mut job.source else {
            return Err(CliError::Usage(format!(
                "--from/--to select a Kafka source's messages by time; {}'s source is not Kafka (a backfill selects by date: `tidewater backfill plan --from --to`)",
                job.file.display()
            )));
        };
        kafka.bounded_ms = (args.from, args.to);
    }
    let pipeline = pipeline_for(&job, registry)?;
    let options = BatchOptions {
        into: args.into,
        source_version: args.source_version,
        replan: args.replan,
        ..BatchOptions::default()
    };
    let report = pipeline.batch(&options, &progress_printer()).await?;
    emit(&args.output, &report, || summary(&job.name, &report) + "\n")?;
    Ok(EXIT_OK)
}

/// A progress bar of chunks on stderr when it is a terminal (hidden otherwise: the logs say the
/// same), with the rate and the time left.
pub(crate) fn progress_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    let template = format!("  {what} [{{bar:30}}] {{pos}}/{{len}} chunks {{msg}} ETA {{eta}}");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// `progress(done, total)` of a batch run, on a progress bar.
pub(crate) fn progress_printer() -> impl Fn(usize, usize) {
    let bar = std::sync::OnceLock::new();
    move |done, total| {
        let bar = bar.get_or_init(|| progress_bar(total as u64, "batch"));
        bar.set_position(done as u64);
        if done == total {
            bar.finish();
        }
    }
}

pub(crate) fn summary(name: &str, report: &BatchRunReport) -> String {
    if report.is_noop() {
        return format!(
            "{name}: nothing to do: all {} chunks of this batch run are already committed to {} (backfill {}); use --replan to plan a new run",
            report.chunks_total, report.target, report.backfill
        );
    }
    let t = |f: fn(&BatchReport) -> u64| thousands(report.total(f));
    let version = report.chunks.iter().rev().find_map(|b| b.table_version);
    format!(
        "{name}: batch run of {} chunks ({} already committed before), {} records in: {} rows written, {} filtered, {} quarantined\n  table      {} (version {})\n  quarantine {}\n  backfill   {}\n  plan       {}",
        report.chunks_total,
        report.chunks_already_done,
        t(|b| b.input_records),
        t(|b| b.output_rows),
        t(|b| b.filtered),
        t(|b| b.quarantined),
        report.target,
        version.map_or_else(|| "unchanged".to_string(), |v| v.to_string()),
        report.quarantine,
        report.backfill,
        report.plan,
    )
}
