//! `tidewater reconcile LEFT RIGHT`: the consistency checker over two Delta tables.

use super::CliError;
use crate::cli::ReconcileArgs;
use crate::{EXIT_DIFFERENT, EXIT_OK};
use tidewater_connectors::{TableVersion, read_snapshot};
use tidewater_core::compute::blocking;
use tidewater_core::reconcile::{DiffOptions, diff, filter_rows};

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
    let (left_path, left_at) = parse_table_ref(&args.left)?;
    let (right_path, right_at) = parse_table_ref(&args.right)?;
    let (left, right) = tokio::try_join!(read_snapshot(left_path, left_at), read_snapshot(right_path, right_at))?;
    let names = (format!("{}@{}", left.url, left.version), format!("{}@{}", right.url, right.version));
    let mut partition_by = left.partition_by.clone();
    partition_by.extend(right.partition_by.iter().filter(|p| !left.partition_by.contains(p)).cloned());
    let options = DiffOptions {
        key: args.key,
        columns: args.columns,
        ignore: args.ignore,
        abs_tolerance: args.tolerance,
        rel_tolerance: args.rel_tolerance,
        samples: args.samples,
        partition_by,
    };
    let filter = args.filter.clone();
    let report = blocking("reconcile", move || {
        let (mut l, mut r) = (left.rows, right.rows);
        if let Some(condition) = &filter {
            l = filter_rows(l, condition)?;
            r = filter_rows(r, condition)?;
        }
        diff(l, r, (&names.0, &names.1), &options)
    })
    .await?;
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    match args.json.as_deref() {
        Some(path) if path.as_os_str() == "-" => println!("{json}"),
        Some(path) => {
            std::fs::write(path, &json).map_err(CliError::io(path.display()))?;
            print!("{report}");
        }
        None => print!("{report}"),
    }
    Ok(if report.is_identical() { EXIT_OK } else { EXIT_DIFFERENT })
}
