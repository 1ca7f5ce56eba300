//! `tidewater bench …`: each bench in its own file, and the harness they share: what a child
//! process cost (wall, CPU seconds, peak RSS from `wait4`), this process's CPU time and peak RSS,
//! medians and quantiles, and the scratch directory. Every bench measures Tidewater beside a
//! plain-Polars baseline run on the same input in the same run, so the two share the machine's
//! state.

mod backfill;
mod delta_stream;
mod ingest;
mod kafka;
mod reconcile;
mod windowed;

use crate::cli::BenchCommand;
use crate::output::CliError;
use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the bench `command` names; its exit status.
pub async fn dispatch(command: BenchCommand) -> Result<i32, CliError> {
    match command {
        BenchCommand::Ingest(args) => ingest::ingest(args).await,
        BenchCommand::Reconcile(args) => reconcile::reconcile(args).await,
        BenchCommand::DeltaStream(args) => delta_stream::delta_stream(args).await,
        BenchCommand::Backfill(args) => backfill::backfill(args).await,
        BenchCommand::Windowed(args) => windowed::windowed(args).await,
        BenchCommand::Kafka(args) => kafka::kafka(args).await,
    }
}

/// What the kernel measured of one child process.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Usage {
    pub(crate) wall: Duration,
    pub(crate) cpu: Duration,
    pub(crate) peak_rss_bytes: u64,
}

/// Runs `command` to completion; its stdout, and its wall time, CPU time (user + system) and peak
/// RSS from `wait4`.
pub(crate) fn measure(what: &str, command: &mut Command, stderr: &Path) -> Result<(Usage, String), CliError> {
    let log = std::fs::File::create(stderr).map_err(CliError::io(stderr.display()))?;
    let started = Instant::now();
    let mut child =
        command.stdout(Stdio::piped()).stderr(log).spawn().map_err(CliError::io(format!("starting {what}")))?;
    let mut stdout = String::new();
    if let Some(mut pipe) = child.stdout.take()
        && let Err(e) = pipe.read_to_string(&mut stdout)
    {
        let _ = child.kill();
        let _ = child.wait();
        return Err(CliError::io(format!("reading the output of {what}"))(e));
    }
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: wait4 fills the status and rusage we own; `pid` is our unreaped child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        return Err(CliError::io(format!("waiting for {what}"))(std::io::Error::last_os_error()));
    }
    let wall = started.elapsed();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        let log = std::fs::read_to_string(stderr).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        return Err(CliError::Usage(format!(
            "{what} failed (wait status {status}); the end of {}:\n{}",
            stderr.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )));
    }
    let time = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    let cpu = time(usage.ru_utime) + time(usage.ru_stime);
    Ok((Usage { wall, cpu, peak_rss_bytes: usage.ru_maxrss as u64 * 1024 }, stdout))
}

/// CPU time of this process so far (user + system).
pub(crate) fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Peak RSS of this process so far, in MiB.
pub(crate) fn peak_rss_mb() -> f64 {
    // SAFETY: getrusage fills the struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

/// The middle value (the upper one of an even count).
pub(crate) fn median<T: Copy + Ord + Default>(mut v: Vec<T>) -> T {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// The value at quantile `q` (nearest rank).
pub(crate) fn quantile(mut v: Vec<Duration>, q: f64) -> Duration {
    v.sort();
    let rank = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len().max(1));
    v.get(rank - 1).copied().unwrap_or_default()
}

/// A duration in milliseconds.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A scratch directory: the one given (kept), or a temporary one (removed on drop).
pub(crate) fn tempfile_dir(dir: Option<&Path>) -> Result<tempfile::TempDir, CliError> {
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(CliError::io(d.display()))?;
            tempfile::Builder::new().prefix("bench-").tempdir_in(d).map_err(CliError::io(d.display()))
        }
        None => tempfile::tempdir().map_err(CliError::io("temporary directory")),
    }
}
