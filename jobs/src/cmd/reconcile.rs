//! `tidewater reconcile LEFT RIGHT`: the consistency checker over two Delta tables.

use super::CliError;
use crate::cli::ReconcileArgs;
use crate::{EXIT_DIFFERENT, EXIT_OK};
use tidewater_connectors::{Reconciler, TableVersion};
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
    let (left, left_at) = parse_table_ref(&args.left)?;
    let (right, right_at) = parse_table_ref(&args.right)?;
    let mut reconciler = args
        .memory
        .apply(Reconciler::new(left, right))
        .at(left_at, right_at)
        .key(args.key)
        .ignore(args.ignore)
        .tolerance(args.tolerance, args.rel_tolerance)
        .samples(args.samples);
    if let Some(columns) = args.columns {
        reconciler = reconciler.columns(columns);
    }
    if let Some(condition) = args.filter {
        reconciler = reconciler.filter(condition);
    }
    if args.repair {
        return repair(reconciler, args.dry_run, args.json.as_deref()).await;
    }
    let report = reconciler.run().await?;
    print_report(&report, args.json.as_deref())?;
    Ok(if report.is_identical() { EXIT_OK } else { EXIT_DIFFERENT })
}

/// Repairs RIGHT from LEFT and prints what happened; exit 0 when RIGHT ends identical.
pub(crate) async fn repair(
    reconciler: Reconciler,
    dry_run: bool,
    json: Option<&std::path::Path>,
) -> Result<i32, CliError> {
    let repaired = reconciler.repair(dry_run).await?;
    let text = serde_json::to_string_pretty(&repaired).unwrap_or_default();
    if let Some(path) = json.filter(|p| p.as_os_str() != "-") {
        std::fs::write(path, &text).map_err(CliError::io(path.display()))?;
    }
    if json.is_some_and(|p| p.as_os_str() == "-") {
        println!("{text}");
    } else {
        print!("{}", repaired.before);
        if repaired.before.is_identical() {
            println!("nothing to repair");
        } else {
            let what = match repaired.keys {
                Some(keys) => format!("the rows of {keys} differing key(s)"),
                None => format!("{} partition(s) [{}]", repaired.partitions.len(), repaired.partitions.join(", ")),
            };
            println!(
                "{} {what}: {} file(s) removed, {} row(s) written{}",
                if dry_run { "would replace" } else { "replaced" },
                repaired.files_removed,
                repaired.rows_written,
                repaired.committed_version.map_or_else(
                    || if dry_run { String::new() } else { " (already recorded: no new commit)".into() },
                    |v| format!(", committed as version {v}")
                ),
            );
        }
        if let Some(after) = &repaired.after {
            print!("after the repair:\n{after}");
        }
    }
    let ok = repaired.after.as_ref().map_or(repaired.before.is_identical(), Report::is_identical);
    Ok(if ok { EXIT_OK } else { EXIT_DIFFERENT })
}

/// Prints the summary, and the JSON where `json` says (`-`: stdout, instead of the summary).
pub(crate) fn print_report(report: &Report, json: Option<&std::path::Path>) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(report).unwrap_or_default();
    match json {
        Some(path) if path.as_os_str() == "-" => println!("{text}"),
        Some(path) => {
            std::fs::write(path, &text).map_err(CliError::io(path.display()))?;
            print!("{report}");
        }
        None => print!("{report}"),
    }
    Ok(())
}
