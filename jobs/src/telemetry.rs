//! Logging through `tracing`, to stderr. `RUST_LOG` overrides the verbosity flags.

use tracing_subscriber::EnvFilter;

pub fn init(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn,tidewater_core=info,tidewater_connectors=info,tidewater_jobs=info",
        (false, 1) => "info,tidewater_core=debug,tidewater_connectors=debug,tidewater_jobs=debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}
