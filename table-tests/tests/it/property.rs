//! Stream ≡ batch as a property: random landing files, random batch sizes, a random restart
//! point (files landing between two runs of the stream). Runs the library in-process; tables are
//! read back with the independent reader.

use polars::prelude::*;
use proptest::prelude::*;
use std::path::Path;
use table_tests::{events, multiset, read_log, read_rows};
use tidewater_connectors::FileSourceProvider;
use tidewater_connectors::files::{FileFormat, FileSpec, InputSchema};
use tidewater_core::{BatchContext, BatchOptions, Pipeline, Trigger};

fn pipeline(dir: &Path, max_files: usize) -> Pipeline {
    let schema = ["event_id:string", "user_id:int64", "event_time:timestamp", "category:string", "amount:float64"]
        .iter()
        .map(|c| c.split_once(':').unwrap())
        .map(|(n, t)| InputSchema::parse_column(n, t).unwrap())
        .collect();
    let source = FileSpec::new(dir.join("landing").display().to_string(), FileFormat::Ndjson)
        .with_schema(InputSchema::new(schema))
        .with_max_files_per_trigger(max_files);
    Pipeline::new("prop", FileSourceProvider::new(source))
        .with_transform(|input: LazyFrame, _: &BatchContext| {
            Ok(input
                .filter(col("amount").gt_eq(lit(0.0)))
                .with_column(col("event_time").cast(DataType::Date).alias("date")))
        })
        .with_table(dir.join("table").display().to_string())
        .with_partition_by(["date"])
        .with_checkpoint(dir.join("checkpoint").display().to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn stream_equals_batch(
        files_before in 0usize..4,
        files_after in 1usize..4,
        rows in 1usize..40,
        max_files in 1usize..4,
        bad_every in prop::option::of(3usize..9),
        seed in any::<u64>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let landing = dir.path().join("landing");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut lines = events::write(&landing, "p", files_before, rows, bad_every, seed);
        runtime.block_on(pipeline(dir.path(), max_files).run(Trigger::AvailableNow)).unwrap();
        lines.extend(events::write(&landing, "q", files_after, rows, bad_every, seed ^ 1));
        let report = runtime.block_on(pipeline(dir.path(), max_files).run(Trigger::AvailableNow)).unwrap();
        prop_assert_eq!(report.batches.len(), files_after.div_ceil(max_files));

        let into = dir.path().join("batch").display().to_string();
        runtime
            .block_on(pipeline(dir.path(), max_files).batch(&BatchOptions { into: Some(into), ..BatchOptions::default() }, &|_, _| {}))
            .unwrap();
        let streamed = read_rows(&dir.path().join("table"));
        let batched = read_rows(&dir.path().join("batch"));
        let kept = lines.iter().filter(|l| l.fate == events::Fate::Kept).count();
        prop_assert_eq!(streamed.len(), kept);
        prop_assert!(multiset(&streamed) == multiset(&batched));
        table_tests::assert_txn_unique(&dir.path().join("table"));
        prop_assert!(read_log(&dir.path().join("batch")).iter().all(|c| c.txns.len() <= 1));
    }
}
