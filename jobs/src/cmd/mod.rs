//! One module per subcommand; [`dispatch`] picks it and returns the exit status.

mod batch;
mod bench;
mod bench_reconcile;
mod demo;
mod reconcile;
mod run;
mod verify;

use crate::Registry;
use crate::cli::{BenchCommand, Command};

/// Anything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error(transparent)]
    Core(#[from] tidewater_core::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    pub fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> CliError {
        let what = what.to_string();
        move |source| CliError::Io { what, source }
    }
}

pub async fn dispatch(command: Command, registry: &Registry) -> Result<i32, CliError> {
    match command {
        Command::Run(args) => run::run(args, registry).await,
        Command::Batch(args) => batch::batch(args, registry).await,
        Command::Reconcile(args) => reconcile::reconcile(args).await,
        Command::Verify(args) => verify::verify(args, registry).await,
        Command::Demo(args) => demo::demo(args, registry).await,
        Command::Bench(BenchCommand::Ingest(args)) => bench::ingest(args).await,
        Command::Bench(BenchCommand::Reconcile(args)) => bench_reconcile::reconcile(args).await,
    }
}

/// Stops `stop` on Ctrl-C or SIGTERM, after the batch in flight.
pub(crate) fn stop_on_signals(stop: tidewater_core::Stop) {
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("signal received: finishing the batch in flight, then stopping");
        stop.request();
    });
}

/// `1234567` → `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
