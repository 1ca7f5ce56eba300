//! One module per subcommand (`bench`'s are in [`crate::bench`]); `crate::main_with` picks it.
//! What the commands share, their error type and their output, is in [`crate::output`].

pub(crate) mod backfill;
pub(crate) mod batch;
pub(crate) mod demo;
pub(crate) mod reconcile;
pub(crate) mod run;
pub(crate) mod verify;

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

/// `--worker I/N`: worker I of N.
pub(crate) fn worker(text: &str) -> Result<(usize, usize), crate::output::CliError> {
    let bad = || crate::output::CliError::Usage(format!("--worker {text}: expected I/N with 0 <= I < N, such as 0/3"));
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}
