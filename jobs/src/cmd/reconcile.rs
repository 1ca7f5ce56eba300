//! `tidewater reconcile LEFT RIGHT`: the consistency checker over two Delta tables.

use crate::cli::{CompareArgs, OutputArgs, ReconcileArgs};
use crate::output::{CliError, emit, refuse_stray};
use crate::output::{EXIT_DIFFERENT, EXIT_OK};
use tidewater_connectors::{Reconciler, RepairReport, TableVersion};
use tidewater_core::reconcile::Report;

/// Splits `path@42` or `path@2024-03-01T00:00:00Z` into the location and the version.
pub(crate) fn parse_table_ref(raw: &str) -> Result<(&str, TableVersion), CliError> {
    let Some((path, at)) = raw.rsplit_once('@') else { return Ok((raw, TableVersion::Latest)) };
    if let Ok(v) = at.parse::<u64>() {
        return Ok((path, TableVersion::Version(v)));
    }
    match chrono::DateTime::parse_from_rfc3339(at) {
        Ok(t) => Ok((path, TableVersion::AsOf(t.with_timezone(&chrono::Utc)))),
        Err(e) => Err(CliError::Usage(format!(
            "{raw}: `@{at}` is neither a table version (@42) nor an RFC 3339 instant (@2024-03-01T00:00:00Z): {e}"
        ))),
    }
}

pub async fn reconcile(args: ReconcileArgs) -> Result<i32, CliError> {
    refuse_stray(args.stray.as_deref(), &args.output)?;
    let (left, left_at) = parse_table_ref(&args.left)?;
    let (right, right_at) = parse_table_ref(&args.right)?;
    let reconciler = with_options(Reconciler::new(left, right).at(left_at, right_at), args.compare);
    if args.repair {
        return repair(reconciler, args.dry_run, &args.output).await;
    }
    let report = reconciler.run().await?;
    emit(&args.output, &report, || report.to_string())?;
    Ok(if report.is_identical() { EXIT_OK } else { EXIT_DIFFERENT })
}

/// Sets the comparison options (`reconcile`'s and `verify`'s) on a reconciler.
pub(crate) fn with_options(reconciler: Reconciler, compare: CompareArgs) -> Reconciler {
    let memory = compare.memory;
    let mut reconciler = reconciler.memory_limit(memory.memory.as_u64());
    if let Some(dir) = memory.spill_dir {
        reconciler = reconciler.spill_dir(dir);
    }
    let mut reconciler = reconciler
        .key(compare.key)
        .use_recorded_key(!compare.no_key)
        .ignore(compare.ignore)
        .tolerance(compare.tolerance, compare.rel_tolerance)
        .samples(compare.samples);
    if let Some(columns) = compare.columns {
        reconciler = reconciler.columns(columns);
    }
    if let Some(condition) = compare.filter {
        reconciler = reconciler.filter(condition);
    }
    reconciler
}

/// Repairs RIGHT from LEFT and prints what happened; exit 0 when RIGHT ends identical.
pub(crate) async fn repair(reconciler: Reconciler, dry_run: bool, output: &OutputArgs) -> Result<i32, CliError> {
    let repaired = reconciler.repair(dry_run).await?;
    emit(output, &repaired, || repair_summary(&repaired, dry_run))?;
    let ok = repaired.after.as_ref().map_or(repaired.before.is_identical(), Report::is_identical);
    Ok(if ok { EXIT_OK } else { EXIT_DIFFERENT })
}

fn repair_summary(repaired: &RepairReport, dry_run: bool) -> String {
    let mut text = repaired.before.to_string();
    if repaired.before.is_identical() {
        text.push_str("nothing to repair\n");
    } else {
        let what = match repaired.keys {
            Some(keys) => format!("the rows of {keys} differing key(s)"),
            None => format!("{} partition(s) [{}]", repaired.partitions.len(), repaired.partitions.join(", ")),
        };
        text.push_str(&format!(
            "{} {what}: {} file(s) removed, {} row(s) written{}\n",
            if dry_run { "would replace" } else { "replaced" },
            repaired.files_removed,
            repaired.rows_written,
            repaired.committed_version.map_or_else(
                || if dry_run { String::new() } else { " (already recorded: no new commit)".into() },
                |v| format!(", committed as version {v}")
            ),
        ));
    }
    if let Some(after) = &repaired.after {
        text.push_str(&format!("after the repair:\n{after}"));
    }
    text
}
