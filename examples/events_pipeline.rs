//! The example job in Rust: a landing directory of NDJSON events, a transform written as a Rust
//! closure over Polars, streamed into a Delta table, then reprocessed in batch into a second one.
//!
//! ```sh
//! cargo run -p tidewater-examples --example events_pipeline -- /tmp/events-example
//! ```
//! The landing directory is `<dir>/landing` (the program writes a few files there if it is empty).

use polars::prelude::*;
use std::path::PathBuf;
use tidewater_connectors::FileSourceProvider;
use tidewater_connectors::files::{FileFormat, FileSpec, InputSchema};
use tidewater_core::{BatchContext, BatchOptions, Pipeline, Result, Trigger};

/// The transform: keep non-negative amounts, derive the UTC date, and stamp the batch's logical
/// time (from the context, never from the wall clock, so a replay writes the same rows).
fn enrich(input: LazyFrame, ctx: &BatchContext) -> Result<LazyFrame> {
    Ok(input
        .filter(col("amount").gt_eq(lit(0.0)))
        .with_column(col("event_time").cast(DataType::Date).alias("date"))
        .with_column(lit(ctx.batch_time_ms()).alias("batch_time_ms")))
}

#[tokio::main]
async fn main() -> Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "events-example".into()));
    let landing = dir.join("landing");
    if !landing.exists() {
        std::fs::create_dir_all(&landing).ok();
        for f in 0..3 {
            let lines: String = (0..100)
                .map(|i| format!("{{\"event_id\":\"e{f}-{i}\",\"user_id\":{i},\"event_time\":\"2024-03-0{}T10:15:00.250Z\",\"category\":\"c\",\"amount\":{}}}\n", 1 + i % 3, i as f64 - 10.0))
                .collect();
            std::fs::write(landing.join(format!("part-{f}.json")), lines).ok();
        }
    }
    let schema = InputSchema::new(
        [
            ("event_id", "string"),
            ("user_id", "int64"),
            ("event_time", "timestamp"),
            ("category", "string"),
            ("amount", "float64"),
        ]
        .iter()
        .filter_map(|(name, ty)| InputSchema::parse_column(name, ty).ok())
        .collect(),
    );
    let source = FileSpec::new(landing.display().to_string(), FileFormat::Ndjson)
        .with_schema(schema)
        .with_max_files_per_trigger(1);
    let pipeline = Pipeline::new("events-example", FileSourceProvider::new(source))
        .with_transform(enrich)
        .with_table(dir.join("tables/events").display().to_string())
        .with_partition_by(["date"])
        .with_checkpoint(dir.join("checkpoint").display().to_string());

    let streamed = pipeline.run(Trigger::AvailableNow).await?;
    println!("streamed {} batches, {} rows", streamed.batches.len(), streamed.total(|b| b.output_rows));

    let into = dir.join("tables/events_batch").display().to_string();
    let batched = pipeline.batch(&BatchOptions { into: Some(into), ..BatchOptions::default() }, &|_, _| {}).await?;
    println!("batched {} chunks, {} rows", batched.chunks.len(), batched.total(|b| b.output_rows));
    Ok(())
}
