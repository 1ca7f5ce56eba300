//! End-to-end tests: real `tidewater` processes on real Delta tables on local disk, read back by
//! the independent reader in `table_tests` (arrow-rs + the Delta log, no Tidewater code).

// Test code: helpers panic on purpose to fail the test with context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod aggregate;
mod backfill;
mod bad_input;
mod cli;
mod common;
mod crash;
mod data_files;
mod delta_stream;
mod dev_io;
mod kafka;
mod property;
mod reconcile;
mod s3;
mod sink;
mod static_join;
mod stream_batch;
mod types;
