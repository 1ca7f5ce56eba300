//! `tidewater demo`: the README's first command. Generates a landing directory, streams it into a
//! Delta table, reprocesses it in batch into a second table, and says what it did.

use super::{batch, run};
use crate::cli::DemoArgs;
use crate::generate::{events_job, write_events};
use crate::job::{Registry, pipeline_for};
use crate::output::EXIT_OK;
use crate::output::{CliError, out, thousands};
use crate::spec::load;
use tidewater_core::{BatchOptions, Trigger};

/// The file that marks a directory as the demo's own: only such a directory is ever deleted.
pub const DEMO_MARKER: &str = ".tidewater-demo";

/// Makes `dir` an empty directory marked as the demo's. An earlier demo's directory (it holds the
/// marker) is replaced; an empty one is used; anything else is refused, and nothing is deleted.
fn prepare_dir(dir: &std::path::Path) -> Result<(), CliError> {
    let marker = dir.join(DEMO_MARKER);
    if marker.is_file() {
        std::fs::remove_dir_all(dir).map_err(CliError::io(dir.display()))?;
    } else if dir.exists() {
        let mut entries = dir.read_dir().map_err(CliError::io(dir.display()))?;
        if entries.next().is_some() {
            return Err(CliError::Usage(format!(
                "{}: exists, is not empty and was not made by `tidewater demo` (it has no {DEMO_MARKER} file); \
                 nothing was changed: choose another --dir, or empty it yourself",
                dir.display()
            )));
        }
    }
    std::fs::create_dir_all(dir).map_err(CliError::io(dir.display()))?;
    std::fs::write(&marker, "made by `tidewater demo`: `tidewater demo` may delete and replace this directory\n")
        .map_err(CliError::io(marker.display()))
}

pub async fn demo(args: DemoArgs, registry: &Registry) -> Result<i32, CliError> {
    let dir = std::path::absolute(&args.dir).map_err(CliError::io(args.dir.display()))?;
    prepare_dir(&dir)?;
    let job_file = dir.join("events.toml");
    let landing = dir.join("landing/events");
    let table = dir.join("tables/events");
    let batch_table = dir.join("tables/events_batch");
    let generated =
        write_events(&landing, args.files, args.rows_per_file, Some(97), 1).map_err(CliError::io(landing.display()))?;
    std::fs::write(&job_file, events_job("events", &landing, &table, &dir.join("checkpoints/events"), 4))
        .map_err(CliError::io(job_file.display()))?;
    out(format_args!(
        "generated {} NDJSON files in {}: {} lines ({} malformed, {} with a negative amount)\njob file  {}\n",
        generated.files,
        landing.display(),
        thousands(generated.lines as u64),
        generated.malformed,
        generated.negative,
        job_file.display()
    ));

    let job = load(&job_file)?;
    let pipeline = pipeline_for(&job, registry)?;
    out(format_args!("1. stream: tidewater run {} --trigger available-now", job_file.display()));
    let streamed = pipeline.run(Trigger::AvailableNow).await?;
    out(format_args!("{}\n", run::summary("events", &streamed)));

    out(format_args!("2. reprocess: tidewater batch {} --into {}", job_file.display(), batch_table.display()));
    let options = BatchOptions { into: Some(batch_table.display().to_string()), ..BatchOptions::default() };
    let batched = pipeline.batch(&options, &batch::progress_printer()).await?;
    out(format_args!("{}\n", batch::summary("events", &batched)));

    let (s, b) = (streamed.total(|r| r.output_rows), batched.total(|r| r.output_rows));
    out(format_args!(
        "stream wrote {} rows in {} commits, batch wrote {} rows in {} commits{}",
        thousands(s),
        streamed.batches.len(),
        thousands(b),
        batched.chunks.len(),
        if s == b { "" } else { " (they differ!)" }
    ));
    out(format_args!(
        "\nTry next:\n  tidewater run {job} --trigger available-now     # a no-op: nothing new\n  tidewater batch {job} --into {bt}   # a no-op: the run is complete\n  tidewater run {job}      # keeps streaming; drop files into {landing}, Ctrl-C to stop",
        job = job_file.display(),
        bt = batch_table.display(),
        landing = landing.display()
    ));
    Ok(EXIT_OK)
}
