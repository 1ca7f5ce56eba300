//! `tidewater verify JOB.toml`: recompute the job in batch into a scratch table and reconcile it
//! with the job's sink table.

use super::reconcile::with_options;
use crate::cli::VerifyArgs;
use crate::job::{Registry, pipeline_for};
use crate::output::{CliError, emit, out, refuse_stray};
use crate::output::{EXIT_DIFFERENT, EXIT_OK};
use crate::spec::load;
use polars::prelude::DataFrame;
use tidewater_connectors::{Reconciler, TableVersion, read_snapshot};
use tidewater_core::BatchOptions;
use tidewater_core::default_quarantine;
use tidewater_core::ops::watermark::{LATE_BATCH_COLUMN, LATE_WATERMARK_COLUMN};

/// A side table's rows (quarantine, late), `None` when it was never created (nothing set aside).
async fn table_rows(location: &str) -> Result<Option<DataFrame>, CliError> {
    match read_snapshot(location, TableVersion::Latest).await {
        Ok(snapshot) => Ok(Some(snapshot.rows)),
        Err(tidewater_core::Error::InvalidLocation { .. } | tidewater_core::Error::Source { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub async fn verify(args: VerifyArgs, registry: &Registry) -> Result<i32, CliError> {
    refuse_stray(args.stray.as_deref(), &args.output)?;
    let job = load(&args.job)?;
    let pipeline = pipeline_for(&job, registry)?;
    let Some(sink_table) = job.sink.table.clone() else {
        return Err(CliError::Usage(format!(
            "{}: verify compares the job's Delta table with a recomputation, and this job's sink is not a table",
            job.file.display()
        )));
    };
    let scratch =
        format!("{}/verify/{}", job.checkpoint.trim_end_matches('/'), chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"));
    let table = format!("{scratch}/table");
    // Rows the stream set aside as late (older than its watermark) are in its late table: the
    // recomputation leaves exactly those input rows out, and counts them.
    let late_table = pipeline.late_table()?;
    let stream_late = match &late_table {
        Some(late) => table_rows(late).await?,
        None => None,
    };
    let exclude_late = stream_late
        .as_ref()
        .map(|rows| rows.drop_many([LATE_BATCH_COLUMN, LATE_WATERMARK_COLUMN]))
        .map(std::sync::Arc::new);
    // An append-mode aggregation has written the groups its stream's watermark closed: the
    // recomputation writes those, and counts the others as pending.
    let append = job.sink.mode == tidewater_core::ops::aggregate::OutputMode::Append && pipeline.aggregates();
    let closed_by_ms = if append { pipeline.stream_watermark().await? } else { None };
    let options = BatchOptions {
        into: Some(table.clone()),
        replan: true,
        quarantine: Some(format!("{scratch}/quarantine")),
        exclude_late,
        closed_by_ms: closed_by_ms.or(append.then_some(i64::MIN)),
        ..BatchOptions::default()
    };
    let batch = pipeline.batch(&options, &super::batch::progress_printer()).await?;
    let batch_quarantined = batch.total(|c| c.quarantined);
    let batch_late = batch.total(|c| c.late);
    let pending = batch.chunks.iter().filter_map(|c| c.state_rows).sum::<u64>();

    let mut compare = args.compare;
    if compare.key.is_empty() && !compare.no_key {
        compare.key = job.sink.key.clone();
    }
    if args.repair {
        // The recomputation is the truth; the sink table is repaired.
        let reconciler = with_options(Reconciler::new(table.clone(), sink_table.clone()), compare);
        let code = super::reconcile::repair(reconciler, args.dry_run, &args.output).await?;
        if !args.output.json {
            out(format_args!("recomputed table kept at {table}"));
        }
        return Ok(code);
    }
    let report = with_options(Reconciler::new(sink_table.clone(), table.clone()), compare).run().await?;

    // What the stream set aside: its quarantine table and its late table.
    let stream_quarantine = job.sink.quarantine.clone().unwrap_or_else(|| default_quarantine(&sink_table));
    let stream_quarantined = table_rows(&stream_quarantine).await?.map_or(0, |rows| rows.height() as u64);
    emit(&args.output, &report, || {
        let mut text = report.to_string();
        text.push_str(&format!(
            "quarantined: stream {stream_quarantined}, recomputation {batch_quarantined}{}\n",
            if stream_quarantined == batch_quarantined {
                ""
            } else {
                " (they differ: has the stream processed every file?)"
            }
        ));
        if append {
            let at = closed_by_ms
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map_or_else(|| "none yet".to_string(), |w| w.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
            text.push_str(&format!(
                "pending (groups the stream's watermark, {at}, has not closed; append mode writes them when it does): {pending}, not compared\n"
            ));
        }
        text.push_str(&match (&late_table, &stream_late) {
            (None, _) => "late (set aside by the watermark): none (this job has no watermark)\n".to_string(),
            (Some(late), rows) => format!(
                "late (set aside by the watermark): stream {} in {late}, left out of the recomputation {batch_late}\n",
                rows.as_ref().map_or(0, |r| r.height()),
            ),
        });
        text
    })?;
    let scratch_dir = tidewater_core::location::parse_location(&scratch)?.to_file_path().ok();
    if let Some(dir) = scratch_dir.filter(|_| report.is_identical() && !args.keep) {
        std::fs::remove_dir_all(&dir).map_err(CliError::io(dir.display()))?;
    } else if !args.output.json {
        out(format_args!("recomputed table kept at {table}"));
    }
    Ok(if report.is_identical() { EXIT_OK } else { EXIT_DIFFERENT })
}
