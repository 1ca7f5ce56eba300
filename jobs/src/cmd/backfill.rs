//! `tidewater backfill plan|run|status|list|cancel JOB.toml`: slices of history reprocessed into
//! the job's own sink table, chunk by chunk.

use crate::cli::OutputArgs;
use crate::cli::{BackfillCommand, BackfillPlanArgs, BackfillRunArgs};
use crate::job::{Registry, pipeline_for};
use crate::output::{CliError, emit, out, thousands};
use crate::output::{EXIT_ERROR, EXIT_OK};
use crate::spec::load;
use std::path::Path;
use tidewater_core::{Backfill, BackfillPlan, ChunkState, ChunkStatus, Granularity, Pipeline, RangeScope};
use tidewater_core::{RunOptions, Scope, Writes};

pub async fn backfill(command: BackfillCommand, registry: &Registry) -> Result<i32, CliError> {
    let pipeline = |job: &Path| -> Result<Pipeline, CliError> { Ok(pipeline_for(&load(job)?, registry)?) };
    match command {
        BackfillCommand::Plan(args) => plan(&pipeline(&args.job)?, &args).await,
        BackfillCommand::Run(args) => run(&pipeline(&args.job)?, &args).await,
        BackfillCommand::Status(args) => {
            let pipeline = pipeline(&args.job)?;
            let backfill = pipeline.backfill(args.id.as_deref()).await?;
            let status = backfill.status().await?;
            emit(&args.output, &status, || status_table(backfill.plan(), &status))?;
            Ok(EXIT_OK)
        }
        BackfillCommand::List(args) => {
            let plans = pipeline(&args.job)?.backfill_plans().await?;
            emit(&args.output, &plans, || {
                let mut text = String::new();
                for p in &plans {
                    text.push_str(&format!("{}  {}, {} chunks{}\n", p.id, p.scope, p.chunks.len(), at_version(p)));
                }
                if plans.is_empty() {
                    text.push_str("no backfills planned\n");
                }
                text
            })?;
            Ok(EXIT_OK)
        }
        BackfillCommand::Cancel(args) => {
            let pipeline = pipeline(&args.job)?;
            let backfill = pipeline.backfill(Some(&args.id)).await?;
            backfill.cancel().await?;
            out(format_args!("backfill {}: cancelled; no new chunk starts, running chunks finish", args.id));
            Ok(EXIT_OK)
        }
    }
}

fn date(flag: &str, value: Option<&str>) -> Result<chrono::NaiveDate, CliError> {
    let value = value.ok_or_else(|| CliError::Usage(format!("{flag} DATE is required")))?;
    value.parse().map_err(|_| CliError::Usage(format!("{flag} {value}: expected a date as YYYY-MM-DD")))
}

/// ` at version N` of a plan's source, when it has versions.
fn at_version(plan: &BackfillPlan) -> String {
    plan.source_version.map_or_else(String::new, |v| format!(" at version {v}"))
}

/// `--versions A..B` (both inclusive).
fn versions(text: &str) -> Result<Scope, CliError> {
    let bad = || CliError::Usage(format!("--versions {text}: expected A..B, two table versions, such as 10..250"));
    let (from, to) = text.split_once("..").ok_or_else(bad)?;
    let (from, to) =
        (from.trim().parse().map_err(|_| bad())?, to.trim().trim_start_matches('=').parse().map_err(|_| bad())?);
    Ok(Scope::Versions { from, to })
}

async fn plan(pipeline: &Pipeline, args: &BackfillPlanArgs) -> Result<i32, CliError> {
    let scope = if let Some(text) = &args.versions {
        versions(text)?
    } else if args.files {
        Scope::Files
    } else {
        let by: Granularity = args.by.parse().map_err(|e| CliError::Usage(format!("--by {}: {e}", args.by)))?;
        let (from, to) = (date("--from", args.from.as_deref())?, date("--to", args.to.as_deref())?);
        Scope::Range(RangeScope::new(args.on.clone(), from, to, by)?)
    };
    let backfill = pipeline.plan_backfill(scope).await?;
    let plan = backfill.plan();
    emit(&args.output, plan, || {
        let mut text = format!(
            "backfill {}: {} chunks over {} of {}{}, into {}{}\n",
            plan.id,
            plan.chunks.len(),
            plan.scope,
            plan.source,
            at_version(plan),
            plan.target,
            match &plan.writes {
                Writes::Keys(key) => format!(", replacing the rows of its keys [{}]", key.join(", ")),
                _ => String::new(),
            }
        );
        text.push_str(&format!(
            "{:>6}  {:<24} {:>7} {:>14} {:>12}\n",
            "chunk", "range", "files", "est. rows", "est. MiB"
        ));
        for (k, c) in plan.chunks.iter().enumerate() {
            text.push_str(&format!(
                "{k:>6}  {:<24} {:>7} {:>14} {:>12.1}\n",
                c.range,
                c.files,
                thousands(c.estimated_rows),
                c.estimated_bytes as f64 / (1 << 20) as f64
            ));
        }
        text.push_str(&format!(
            "plan recorded at {}/plan.json; run it with `tidewater backfill run`\n",
            backfill.location()
        ));
        text
    })?;
    Ok(EXIT_OK)
}

async fn run(pipeline: &Pipeline, args: &BackfillRunArgs) -> Result<i32, CliError> {
    let options = RunOptions {
        parallel: usize::from(args.parallel),
        worker: args.worker.as_deref().map(super::worker).transpose()?,
    };
    let backfill = pipeline.backfill(args.id.as_deref()).await?;
    let plan = backfill.plan();
    if args.dry_run {
        let chunks = backfill.dry_run(&options).await?;
        let mut text = format!("backfill {} (dry run: nothing is committed)\n", plan.id);
        for (status, replaced) in &chunks {
            let c = &plan.chunks[status.chunk];
            let replaces = match (replaced, &plan.writes) {
                (Some(n), _) => format!("replaces {n} files of {} where {}", plan.target, c.read.describe),
                (None, Writes::Keys(key)) => {
                    format!("replaces the rows of {} whose key [{}] its rows have", plan.target, key.join(", "))
                }
                (None, _) => format!("appends to {}", plan.target),
            };
            text.push_str(&format!(
                "chunk {:>4}  {:<24} {}: reads {} files (~{} rows) of {}{}; {replaces}\n",
                status.chunk,
                status.range,
                status.state,
                c.files,
                thousands(c.estimated_rows),
                plan.source,
                at_version(plan),
            ));
        }
        emit(&args.output, &chunks.iter().map(|(s, r)| (s, r)).collect::<Vec<_>>(), || text)?;
        return Ok(EXIT_OK);
    }
    execute(&backfill, &options, &args.output).await
}

/// Runs `backfill`'s chunks of this worker's share with a progress bar, and reports: exit 0 when
/// every chunk of the share is committed, 2 (naming each) when some failed.
pub(crate) async fn execute(backfill: &Backfill, options: &RunOptions, output: &OutputArgs) -> Result<i32, CliError> {
    let plan = backfill.plan();
    let total = plan.chunks.len();
    let share: Vec<ChunkStatus> = backfill.status().await?.into_iter().filter(|c| options.takes(c.chunk)).collect();
    let bar = super::batch::progress_bar(share.len() as u64, &format!("backfill {}", plan.id));
    bar.set_position(share.iter().filter(|c| c.state == ChunkState::Done).count() as u64);
    let started = std::time::Instant::now();
    let rows = std::sync::atomic::AtomicU64::new(0);
    let progress = |status: &ChunkStatus| {
        let r =
            rows.fetch_add(status.rows.unwrap_or(0), std::sync::atomic::Ordering::Relaxed) + status.rows.unwrap_or(0);
        bar.set_message(format!("{} rows/s", thousands((r as f64 / started.elapsed().as_secs_f64().max(1e-3)) as u64)));
        bar.inc(1);
    };
    let report = backfill.run(options, &progress).await?;
    bar.finish();
    let failed: Vec<&ChunkStatus> = report.failed().collect();
    emit(output, &report, || {
        let committed = report.chunks.iter().filter(|c| c.state == ChunkState::Done).count();
        let mut text = format!(
            "backfill {}: {committed} chunks committed, {} failed, {} already done before (of {total}) into {}{}\n",
            report.id,
            failed.len(),
            report.already_done,
            report.target,
            if report.cancelled { "; cancelled: the other chunks did not start" } else { "" }
        );
        if committed == 0 && failed.is_empty() && !report.cancelled {
            text = format!(
                "backfill {}: nothing to do: every chunk of this share is committed to {}\n",
                report.id, report.target
            );
        }
        text
    })?;
    for f in &failed {
        tracing::error!(
            "backfill {} chunk {} ({}) failed: {}",
            report.id,
            f.chunk,
            f.range,
            f.error.as_deref().unwrap_or("?")
        );
    }
    if !failed.is_empty() {
        eprintln!(
            "tidewater: error: backfill {}: {} chunks failed: {}; run it again to retry them",
            report.id,
            failed.len(),
            failed
                .iter()
                .map(|f| format!("chunk {} ({}): {}", f.chunk, f.range, f.error.as_deref().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join("; ")
        );
        return Ok(EXIT_ERROR);
    }
    Ok(EXIT_OK)
}

fn status_table(plan: &BackfillPlan, status: &[ChunkStatus]) -> String {
    let mut text = format!("backfill {}: {} into {}\n", plan.id, plan.scope, plan.target);
    text.push_str(&format!(
        "{:>6}  {:<24} {:<8} {:>12} {:>10} {:>8}\n",
        "chunk", "range", "state", "rows", "ms", "version"
    ));
    for s in status {
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        text.push_str(&format!(
            "{:>6}  {:<24} {:<8} {:>12} {:>10} {:>8}{}\n",
            s.chunk,
            s.range,
            s.state.to_string(),
            s.rows.map_or_else(|| "-".to_string(), thousands),
            opt(s.duration_ms),
            opt(s.version),
            s.error.as_deref().map(|e| format!("  {e}")).unwrap_or_default()
        ));
    }
    let count = |state| status.iter().filter(|s| s.state == state).count();
    text.push_str(&format!(
        "{} done, {} running, {} failed, {} pending\n",
        count(ChunkState::Done),
        count(ChunkState::Running),
        count(ChunkState::Failed),
        count(ChunkState::Pending)
    ));
    text
}
