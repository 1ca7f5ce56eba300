//! `tidewater verify JOB.toml`: recompute the job in batch into a scratch table and reconcile it
//! with the job's sink table.

use super::CliError;
use super::reconcile::print_report;
use crate::cli::VerifyArgs;
use crate::spec::load;
use crate::{EXIT_DIFFERENT, EXIT_OK, Registry, pipeline_for};
use tidewater_connectors::{Reconciler, TableVersion, read_snapshot};
use tidewater_core::BatchOptions;
use tidewater_core::pipeline::default_quarantine;

pub async fn verify(args: VerifyArgs, registry: &Registry) -> Result<i32, CliError> {
    let job = load(&args.job)?;
    let pipeline = pipeline_for(&job, registry)?;
    let scratch =
        format!("{}/verify/{}", job.checkpoint.trim_end_matches('/'), chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"));
    let table = format!("{scratch}/table");
    let options = BatchOptions {
        into: Some(table.clone()),
        replan: true,
        quarantine: Some(format!("{scratch}/quarantine")),
        ..BatchOptions::default()
    };
    let batch = pipeline.batch(&options, &super::batch::progress_printer()).await?;
    let batch_quarantined = batch.total(|c| c.quarantined);

    if args.repair {
        // The recomputation is the truth; the sink table is repaired.
        let mut reconciler = Reconciler::new(table.clone(), job.sink.table.clone())
            .key(job.sink.key.clone())
            .ignore(args.ignore.clone());
        if let Some(condition) = args.filter.clone() {
            reconciler = reconciler.filter(condition);
        }
        let code = super::reconcile::repair(reconciler, args.dry_run, args.json.as_deref()).await?;
        println!("recomputed table kept at {table}");
        return Ok(code);
    }
    let mut reconciler = Reconciler::new(job.sink.table.clone(), table.clone())
        .key(job.sink.key.clone())
        .ignore(args.ignore)
        .tolerance(args.tolerance, 0.0);
    if let Some(condition) = args.filter {
        reconciler = reconciler.filter(condition);
    }
    let report = reconciler.run().await?;
    print_report(&report, args.json.as_deref())?;

    // What the stream set aside: its quarantine table; late rows need a watermark (none yet).
    let stream_quarantine = job.sink.quarantine.clone().unwrap_or_else(|| default_quarantine(&job.sink.table));
    let stream_quarantined = match read_snapshot(&stream_quarantine, TableVersion::Latest).await {
        Ok(snapshot) => snapshot.rows.height() as u64,
        // No record was ever quarantined: the table was never created.
        Err(tidewater_core::Error::InvalidLocation { .. } | tidewater_core::Error::Source { .. }) => 0,
        Err(e) => return Err(e.into()),
    };
    if args.json.as_deref().is_none_or(|p| p.as_os_str() != "-") {
        println!(
            "quarantined: stream {stream_quarantined}, recomputation {batch_quarantined}{}\nlate (dropped by watermark): 0 (this job has no watermark)",
            if stream_quarantined == batch_quarantined {
                ""
            } else {
                " (they differ: has the stream processed every file?)"
            }
        );
    }
    let scratch_dir = tidewater_core::location::parse_location(&scratch)?.to_file_path().ok();
    if let Some(dir) = scratch_dir.filter(|_| report.is_identical() && !args.keep) {
        std::fs::remove_dir_all(&dir).map_err(CliError::io(dir.display()))?;
    } else if args.json.as_deref().is_none_or(|p| p.as_os_str() != "-") {
        println!("recomputed table kept at {table}");
    }
    Ok(if report.is_identical() { EXIT_OK } else { EXIT_DIFFERENT })
}
