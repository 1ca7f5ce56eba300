//! The commit protocol against a real local Delta table, with the other writer injected between
//! the sink's read of the table and its commit: the sink's crash hook at
//! [`CrashPoint::AfterDataFiles`] (its data files are written, its commit not made) runs that
//! writer, another [`DeltaSink`] on a runtime and a thread of its own, to completion.
//!
//! The table is read back with deltalake (its log: version, txns, live files) and Polars over the
//! live data files, not through the sink.

use super::{Change, DeltaSink, Slice, WriteKind};
use crate::batch::{Lane, SinkOutcome};
use crate::crash::{CrashPoint, StepHook};
use crate::id::BatchId;
use crate::scope::Span;
use deltalake::DeltaTable;
use polars::prelude::*;
use std::future::Future;
use std::sync::{Arc, Mutex};
use url::Url;

/// 2024-01-01 and 2024-01-02, as days since 1970-01-01.
const DAY1: i32 = 19_723;
const DAY2: i32 = DAY1 + 1;

fn batch(n: u64) -> BatchId {
    BatchId::new(n)
}

/// The span of 2024-01-01 in the `day` column.
fn first_day() -> Span {
    let midnight = |d: u32| chrono::NaiveDate::from_ymd_opt(2024, 1, d).unwrap().and_hms_opt(0, 0, 0).unwrap();
    Span::new("day", midnight(1), midnight(2))
}

/// Rows `ids` on `day`, each written `by` one writer.
fn rows(ids: std::ops::Range<i64>, day: i32, by: &str) -> DataFrame {
    let ids: Vec<i64> = ids.collect();
    let n = ids.len();
    df!["id" => ids, "day" => vec![day; n], "by" => vec![by; n]]
        .unwrap()
        .lazy()
        .with_column(col("day").cast(DataType::Date))
        .collect()
        .unwrap()
}

fn both(mut a: DataFrame, b: DataFrame) -> DataFrame {
    a.vstack_mut_owned(b).unwrap();
    a
}

/// `(id, writer)` for each of `ids`, in order: what the table should hold.
fn by(ids: std::ops::Range<i64>, writer: &str) -> Vec<(i64, String)> {
    ids.map(|id| (id, writer.to_string())).collect()
}

/// A Delta table in a temporary directory.
struct Table {
    dir: tempfile::TempDir,
    url: Url,
}

impl Table {
    fn new() -> Table {
        let dir = tempfile::tempdir().unwrap();
        let url = Url::from_directory_path(dir.path()).unwrap();
        Table { dir, url }
    }

    fn sink(&self, app_id: &str) -> DeltaSink {
        DeltaSink::new(self.url.clone(), app_id, WriteKind::Stream)
    }

    async fn open(&self) -> DeltaTable {
        deltalake::open_table(self.url.clone()).await.unwrap()
    }

    async fn version(&self) -> Option<u64> {
        self.open().await.version()
    }

    async fn txn(&self, app_id: &str) -> Option<i64> {
        let table = self.open().await;
        table.snapshot().unwrap().transaction_version(table.log_store().as_ref(), app_id).await.unwrap()
    }

    /// `(id, by)` of every row of the table's latest version, sorted.
    async fn rows(&self) -> Vec<(i64, String)> {
        let table = self.open().await;
        let mut out = Vec::new();
        for uri in table.get_file_uris().unwrap() {
            let path = match Url::parse(&uri) {
                Ok(url) => url.to_file_path().unwrap(),
                Err(_) => std::path::PathBuf::from(uri),
            };
            let file = ParquetReader::new(std::fs::File::open(path).unwrap()).finish().unwrap();
            let (ids, writers) = (file.column("id").unwrap().i64().unwrap(), file.column("by").unwrap().str().unwrap());
            out.extend((0..file.height()).map(|i| (ids.get(i).unwrap(), writers.get(i).unwrap().to_string())));
        }
        out.sort();
        out
    }

    /// How many data files are in the table's directory, referenced by the log or not.
    fn data_files(&self) -> usize {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "parquet"))
            .count()
    }
}

/// Runs `work` to completion on a runtime and a thread of its own: the other writer, while the
/// sink under test waits in its hook. Multi-threaded, as Polars' lazy frames require (as do the
/// tests themselves).
fn beside<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap().block_on(work)
    })
    .join()
    .unwrap()
}

/// A hook that runs `writer` once, beside the sink under test, when that sink's batch `at` has
/// written its data files and not yet committed; and what the writer's commits returned.
fn between_read_and_commit<F, W>(at: BatchId, writer: W) -> (Option<StepHook>, Arc<Mutex<Vec<SinkOutcome>>>)
where
    W: Fn() -> F + Send + Sync + 'static,
    F: Future<Output = SinkOutcome> + Send + 'static,
{
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let seen = outcomes.clone();
    let hook: StepHook = Arc::new(move |point, id| {
        let mut outcomes = seen.lock().unwrap();
        if point == CrashPoint::AfterDataFiles && id == at && outcomes.is_empty() {
            outcomes.push(beside(writer()));
        }
    });
    (Some(hook), outcomes)
}

/// A sink of `app_id` beside the one under test, committing `rows` as its batch `id`.
fn other_writer(
    url: &Url,
    app_id: &'static str,
    id: BatchId,
    rows: impl Fn() -> DataFrame + Send + Sync + 'static,
    lanes: Vec<Lane>,
) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = SinkOutcome> + Send>> + Send + Sync + 'static {
    let url = url.clone();
    move || {
        let (url, rows, lanes) = (url.clone(), rows(), lanes.clone());
        Box::pin(async move {
            let mut sink = DeltaSink::new(url, app_id, WriteKind::Stream);
            sink.commit(id, rows, "the other writer", Change::Append, &lanes).await.unwrap()
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_committed_twice_lands_once() {
    let t = Table::new();
    let mut sink = t.sink("q");
    let first = sink.commit(batch(0), rows(0..3, DAY1, "q"), "batch 0", Change::Append, &[]).await.unwrap();
    // Version 0 creates the table.
    assert_eq!(first, SinkOutcome::Committed { version: 1, rows: 3, files: 1 });

    let again = sink.commit(batch(0), rows(0..3, DAY1, "q"), "batch 0", Change::Append, &[]).await.unwrap();
    assert_eq!(again, SinkOutcome::Skipped { recorded: 0 }, "the same sink");
    // A restarted process: a new sink of the same app id reads the txn from the log.
    let replayed = t.sink("q").commit(batch(0), rows(0..3, DAY1, "q"), "batch 0", Change::Append, &[]).await.unwrap();
    assert_eq!(replayed, SinkOutcome::Skipped { recorded: 0 }, "a new sink of the same app id");

    assert_eq!(t.version().await, Some(1));
    assert_eq!(t.txn("q").await, Some(0));
    assert_eq!(t.rows().await, by(0..3, "q"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_beside_a_concurrent_writer_is_rebased_and_lands_once() {
    let t = Table::new();
    let mut ours = t.sink("ours");
    ours.commit(batch(0), rows(0..2, DAY1, "ours"), "batch 0", Change::Append, &[]).await.unwrap();
    let (hook, theirs) = between_read_and_commit(
        batch(1),
        other_writer(&t.url, "theirs", batch(0), || rows(100..103, DAY1, "theirs"), Vec::new()),
    );
    let mut ours = ours.with_hook(hook);

    // Our fast path finds version 2 taken: it re-reads the log and commits on top.
    let landed = ours.commit(batch(1), rows(2..4, DAY1, "ours"), "batch 1", Change::Append, &[]).await.unwrap();
    assert_eq!(*theirs.lock().unwrap(), [SinkOutcome::Committed { version: 2, rows: 3, files: 1 }]);
    assert_eq!(landed, SinkOutcome::Committed { version: 3, rows: 2, files: 1 });

    assert_eq!(t.version().await, Some(3));
    assert_eq!((t.txn("ours").await, t.txn("theirs").await), (Some(1), Some(0)));
    assert_eq!(t.rows().await, [by(0..4, "ours"), by(100..103, "theirs")].concat());
    // The sink goes on from what it knows.
    let next = ours.commit(batch(2), rows(4..5, DAY1, "ours"), "batch 2", Change::Append, &[]).await.unwrap();
    assert_eq!(next, SinkOutcome::Committed { version: 4, rows: 1, files: 1 });
    assert_eq!(t.txn("ours").await, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_lost_to_the_same_batch_of_the_same_app_id_is_skipped() {
    let t = Table::new();
    let mut ours = t.sink("q");
    ours.commit(batch(0), rows(0..2, DAY1, "q"), "batch 0", Change::Append, &[]).await.unwrap();
    // A zombie of the same query commits the same batch while ours is being written.
    let (hook, zombie) =
        between_read_and_commit(batch(1), other_writer(&t.url, "q", batch(1), || rows(2..4, DAY1, "q"), Vec::new()));
    let mut ours = ours.with_hook(hook);

    let lost = ours.commit(batch(1), rows(2..4, DAY1, "q"), "batch 1", Change::Append, &[]).await.unwrap();
    assert_eq!(*zombie.lock().unwrap(), [SinkOutcome::Committed { version: 2, rows: 2, files: 1 }]);
    assert_eq!(lost, SinkOutcome::Skipped { recorded: 1 });

    assert_eq!(t.version().await, Some(2));
    assert_eq!(t.txn("q").await, Some(1));
    assert_eq!(t.rows().await, by(0..4, "q"), "batch 1 once");
    let next = ours.commit(batch(2), rows(4..5, DAY1, "q"), "batch 2", Change::Append, &[]).await.unwrap();
    assert_eq!(next, SinkOutcome::Committed { version: 3, rows: 1, files: 1 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_lost_to_the_same_batch_of_the_same_app_id_is_skipped() {
    let t = Table::new();
    let mut ours = t.sink("q");
    ours.commit(batch(0), rows(0..2, DAY1, "q"), "batch 0", Change::Append, &[]).await.unwrap();
    let slice = ours.slice(Some(&first_day()), None).await.unwrap();
    assert_eq!(slice.as_ref().map(|s| (s.version, s.removes.len())), Some((1, 1)));
    let (hook, zombie) = between_read_and_commit(
        batch(1),
        other_writer(&t.url, "q", batch(1), || rows(10..12, DAY1, "zombie"), Vec::new()),
    );
    let mut ours = ours.with_hook(hook);

    // Built on version 1, the replace goes through delta-rs' checked commit, which fails on the
    // zombie's txn; re-checked against the log, that is a skip.
    let change = Slice::replace(slice, first_day());
    let lost = ours.commit(batch(1), rows(0..2, DAY1, "replaced"), "batch 1", change, &[]).await.unwrap();
    assert_eq!(*zombie.lock().unwrap(), [SinkOutcome::Committed { version: 2, rows: 2, files: 1 }]);
    assert_eq!(lost, SinkOutcome::Skipped { recorded: 1 });

    assert_eq!(t.version().await, Some(2));
    assert_eq!(t.txn("q").await, Some(1));
    assert_eq!(t.rows().await, [by(0..2, "q"), by(10..12, "zombie")].concat(), "nothing of ours replaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_keeps_the_rows_appended_between_its_read_and_its_commit() {
    let t = Table::new();
    let mut stream = t.sink("stream");
    let day1_and_2 = both(rows(0..4, DAY1, "stream"), rows(4..8, DAY2, "stream"));
    stream.commit(batch(0), day1_and_2, "batch 0", Change::Append, &[]).await.unwrap();

    // A backfill replacing day 1 reads the table: the stream's one file holds both days.
    let mut backfill = t.sink("backfill");
    let slice = backfill.slice(Some(&first_day()), Some("stream")).await.unwrap().unwrap();
    assert_eq!((slice.version, slice.removes.len(), slice.rewrite.len(), slice.recorded), (1, 1, 1, Some(0)));
    // The stream appends to both days before the backfill commits.
    let appended = || both(rows(8..10, DAY1, "stream"), rows(10..12, DAY2, "stream"));
    let (hook, stream_commits) =
        between_read_and_commit(batch(0), other_writer(&t.url, "stream", batch(1), appended, Vec::new()));
    let mut backfill = backfill.with_hook(hook);

    let change = Slice::replace(Some(slice), first_day());
    let landed = backfill.commit(batch(0), rows(0..4, DAY1, "backfill"), "chunk 0", change, &[]).await.unwrap();
    assert_eq!(*stream_commits.lock().unwrap(), [SinkOutcome::Committed { version: 2, rows: 4, files: 1 }]);
    // The replaced file's day-2 rows are written again beside the new day-1 rows.
    assert_eq!(landed, SinkOutcome::Committed { version: 3, rows: 8, files: 1 });

    assert_eq!((t.txn("stream").await, t.txn("backfill").await), (Some(1), Some(0)));
    // Day 1 of batch 0 replaced once, its day 2 kept once, the concurrent append whole.
    assert_eq!(t.rows().await, [by(0..4, "backfill"), by(4..12, "stream")].concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_lane_another_writer_moved_is_superseded_and_writes_nothing() {
    let t = Table::new();
    let lane = |from, to| Lane { app_id: "orders-0".into(), origin: "orders/0".into(), from, to };
    let mut ours = t.sink("ours");
    let first = ours.commit(batch(0), rows(0..2, DAY1, "ours"), "batch 0", Change::Append, &[lane(None, 5)]).await;
    assert_eq!(first.unwrap(), SinkOutcome::Committed { version: 1, rows: 2, files: 1 });
    assert_eq!(t.txn("orders-0").await, Some(5));

    // A writer whose lane starts where the table does not record it: found at the txn check.
    let files = t.data_files();
    let mut theirs = t.sink("theirs");
    let stale = theirs
        .commit(batch(0), rows(50..52, DAY1, "theirs"), "batch 0", Change::Append, &[lane(Some(3), 8)])
        .await
        .unwrap();
    assert_eq!(stale, SinkOutcome::Superseded { lane: "orders/0".into(), recorded: 5, expected: Some(3) });
    assert_eq!(t.data_files(), files, "no data file written");
    assert_eq!((t.version().await, t.txn("theirs").await), (Some(1), None));

    // Another writer moves the lane between our read and our commit: found when the commit is
    // lost (our data files stay unreferenced).
    let (hook, theirs) = between_read_and_commit(
        batch(1),
        other_writer(&t.url, "theirs", batch(0), || rows(100..102, DAY1, "theirs"), vec![lane(Some(5), 7)]),
    );
    let mut ours = ours.with_hook(hook);
    let moved = ours.commit(batch(1), rows(2..4, DAY1, "ours"), "batch 1", Change::Append, &[lane(Some(5), 9)]).await;
    assert_eq!(*theirs.lock().unwrap(), [SinkOutcome::Committed { version: 2, rows: 2, files: 1 }]);
    assert_eq!(moved.unwrap(), SinkOutcome::Superseded { lane: "orders/0".into(), recorded: 7, expected: Some(5) });

    assert_eq!(t.version().await, Some(2));
    assert_eq!((t.txn("ours").await, t.txn("orders-0").await), (Some(0), Some(7)));
    assert_eq!(t.rows().await, [by(0..2, "ours"), by(100..102, "theirs")].concat());
}
