//! # The `tidewater` command
//!
//! Job files, the command line and its commands. A program that registers its own Rust transforms
//! calls [`main_with`] with a [`Registry`] and gets the same command line.

pub mod bench;
pub mod cli;
pub mod cmd;
pub mod generate;
pub mod job;
pub mod output;
pub mod spec;
pub mod telemetry;

#[cfg(test)]
mod docs_tests;

pub use job::{Registry, pipeline_for};

use clap::Parser;

pub use output::{EXIT_DIFFERENT, EXIT_ERROR, EXIT_OK};

/// Parses the command line, runs the command and returns the exit status.
pub fn main_with(registry: Registry) -> i32 {
    let cli = cli::Cli::parse();
    if let cli::Command::Backfill(cli::BackfillCommand::Run(args)) = &cli.command {
        // Before any other thread starts: it sets Polars' pool size in the environment.
        tidewater_core::compute::share_cores(usize::from(args.parallel));
    }
    if let cli::Command::Run(_) = &cli.command {
        // Before any other thread starts: a console sink prints its batches' rows whole.
        tidewater_core::sink::show_whole_batches();
    }
    telemetry::init(cli.verbose, cli.quiet);
    let compares = matches!(
        cli.command,
        cli::Command::Reconcile(_) | cli::Command::Verify(_) | cli::Command::Bench(cli::BenchCommand::Reconcile(_))
    );
    if compares {
        // Comparisons run under --memory: the allocator must not keep what they free per thread.
        tidewater_core::compute::bound_allocator();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            print_error(&format!("cannot start the runtime: {e}"));
            return EXIT_ERROR;
        }
    };
    match runtime.block_on(dispatch(cli.command, &registry)) {
        Ok(code) => code,
        Err(e) => {
            print_error(&tidewater_core::error::error_chain(&e, "\n  caused by: "));
            EXIT_ERROR
        }
    }
}

/// Writes `tidewater: error: …` to stderr; a closed stderr is not a reason to panic.
fn print_error(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "tidewater: error: {text}");
}

/// Runs `command`, returning its exit status.
async fn dispatch(command: cli::Command, registry: &Registry) -> Result<i32, output::CliError> {
    match command {
        cli::Command::Run(args) => cmd::run::run(args, registry).await,
        cli::Command::Batch(args) => cmd::batch::batch(args, registry).await,
        cli::Command::Backfill(command) => cmd::backfill::backfill(command, registry).await,
        cli::Command::Reconcile(args) => cmd::reconcile::reconcile(args).await,
        cli::Command::Verify(args) => cmd::verify::verify(args, registry).await,
        cli::Command::Demo(args) => cmd::demo::demo(args, registry).await,
        cli::Command::Bench(command) => crate::bench::dispatch(command).await,
    }
}
