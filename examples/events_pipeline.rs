//! The example job in Rust: a landing directory of NDJSON events, a transform written as a Rust
//! function over Polars, streamed into a Delta table, reprocessed in batch into a second one, and
//! the two checked identical by the consistency checker; then that table streamed as a Delta
//! source into a third, and a day of it backfilled beside that stream. The README's Rust blocks are excerpts of
//! this file (a test keeps them verbatim), and scripts/test.sh runs it.
//!
//! ```sh
//! cargo run -p tidewater-examples --example events_pipeline -- /tmp/events-example
//! ```
//! The landing directory is `<dir>/landing` (the program writes three files there if it is empty).

use polars::prelude::*;
use std::path::Path;
use tidewater_connectors::files::{FileFormat, FileSpec, InputSchema};
use tidewater_connectors::{DeltaSourceProvider, DeltaSpec, FileSourceProvider, Reconciler};
use tidewater_core::{BatchContext, BatchOptions, Granularity, Pipeline, RangeScope, Result, RunOptions, Trigger};

/// The transform: keep non-negative amounts, derive the UTC date, and stamp the batch's logical
/// time (from the context, never from the wall clock, so a replay writes the same rows).
fn enrich(input: LazyFrame, ctx: &BatchContext) -> Result<LazyFrame> {
    Ok(input
        .filter(col("amount").gt_eq(lit(0.0)))
        .with_column(col("event_time").cast(DataType::Date).alias("date"))
        .with_column(lit(ctx.batch_time_ms()).alias("batch_time_ms")))
}

/// Three NDJSON files of 100 events each, 10 of them with a negative amount, unless `landing`
/// already has files.
fn write_sample_events(landing: &Path) -> std::io::Result<()> {
    if landing.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(landing)?;
    for f in 0..3 {
        let lines: String = (0..100)
            .map(|i| {
                format!(
                    "{{\"event_id\":\"e{f}-{i}\",\"user_id\":{i},\"event_time\":\"2024-03-0{}T10:15:00.250Z\",\"category\":\"c\",\"amount\":{}}}\n",
                    1 + i % 3,
                    f64::from(i) - 10.0
                )
            })
            .collect();
        std::fs::write(landing.join(format!("part-{f}.json")), lines)?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "events-example".into()));
    let at = |p: &str| dir.join(p).display().to_string();
    write_sample_events(&dir.join("landing"))?;

    let schema = [
        ("event_id", "string"),
        ("user_id", "int64"),
        ("event_time", "timestamp"),
        ("category", "string"),
        ("amount", "float64"),
    ];
    let schema = schema.iter().map(|(name, ty)| InputSchema::parse_column(name, ty)).collect::<Result<_, _>>()?;
    let source = FileSpec::new(at("landing"), FileFormat::Ndjson)
        .with_schema(InputSchema::new(schema))
        .with_max_files_per_trigger(1);
    let pipeline = Pipeline::new("events", FileSourceProvider::new(source))
        .with_transform(enrich)
        .with_table(at("tables/events"))
        .with_partition_by(["date"])
        .with_key(["event_id"])
        .with_checkpoint(at("checkpoint"));

    // Stream: everything in the landing directory now, one file per micro-batch, then stop.
    let streamed = pipeline.run(Trigger::AvailableNow).await?;
    println!("streamed {} batches, {} rows", streamed.batches.len(), streamed.total(|b| b.output_rows));

    // Reprocess the same input with the same transform, into a second table.
    let options = BatchOptions { into: Some(at("tables/events_batch")), ..BatchOptions::default() };
    let batched = pipeline.batch(&options, &|_, _| {}).await?;
    println!("batched {} chunks, {} rows", batched.chunks.len(), batched.total(|b| b.output_rows));

    // Check that they agree, by the key recorded in the tables (event_id).
    let report =
        Reconciler::new(at("tables/events"), at("tables/events_batch")).ignore(["batch_time_ms"]).run().await?;
    print!("{report}");

    // Silver: the events table streamed as a Delta source into another table, then a day of its
    // history reprocessed by a backfill beside that stream (each chunk one replacing commit).
    let bronze = DeltaSourceProvider::new(DeltaSpec::new(at("tables/events")));
    let silver = Pipeline::new("silver", bronze)
        .with_transform(|input: LazyFrame, _: &BatchContext| {
            Ok(input.with_column((col("amount") * lit(2)).alias("amount2")))
        })
        .with_table(at("tables/silver"))
        .with_partition_by(["date"])
        .with_checkpoint(at("silver-checkpoint"));
    let streamed = silver.run(Trigger::AvailableNow).await?;
    println!("silver: streamed {} rows from the events table", streamed.total(|b| b.output_rows));
    let day = chrono::NaiveDate::from_ymd_opt(2024, 3, 2).ok_or("not a date")?;
    let backfill = silver.plan_backfill(RangeScope::new(None, day, day, Granularity::Day)?).await?;
    backfill.run(&RunOptions { parallel: 2, worker: None }, &|_| {}).await?;
    for chunk in backfill.status().await? {
        println!("backfill chunk {} ({}): {}, {} rows", chunk.chunk, chunk.range, chunk.state, chunk.rows.unwrap_or(0));
    }
    Ok(())
}
