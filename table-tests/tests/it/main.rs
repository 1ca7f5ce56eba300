//! End-to-end tests: real `tidewater` processes on real Delta tables on local disk, read back by
//! the independent reader in `table_tests` (arrow-rs + the Delta log, no Tidewater code).

mod bad_input;
mod cli;
mod common;
mod crash;
mod stream_batch;
