//! Crash points: the steps of the micro-batch protocol where a process can die. Tests (and the
//! `TIDEWATER_CRASH_AT` setting of the binary) kill a real process at each of them to prove that
//! a restart is exactly once.

use crate::id::BatchId;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// A step boundary of the batch protocol, in the order the engine passes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrashPoint {
    /// `offsets/N` is written; nothing read yet.
    AfterOffsetLog,
    /// Data files are in the table directory, the Delta commit is not made.
    AfterDataFiles,
    /// The Delta commit (with its txn) is made, `commits/N` is not written.
    AfterDeltaCommit,
    /// A sink that is not a table (console, Kafka) has delivered batch N, `commits/N` is not
    /// written.
    AfterSinkDelivery,
    /// An aggregation's state after batch N is written, `commits/N` is not.
    AfterStateWrite,
    /// `commits/N` is written.
    AfterCommitLog,
}

impl CrashPoint {
    pub const ALL: [CrashPoint; 6] = [
        CrashPoint::AfterOffsetLog,
        CrashPoint::AfterDataFiles,
        CrashPoint::AfterDeltaCommit,
        CrashPoint::AfterSinkDelivery,
        CrashPoint::AfterStateWrite,
        CrashPoint::AfterCommitLog,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CrashPoint::AfterOffsetLog => "after-offset-log",
            CrashPoint::AfterDataFiles => "after-data-files",
            CrashPoint::AfterDeltaCommit => "after-delta-commit",
            CrashPoint::AfterSinkDelivery => "after-sink-delivery",
            CrashPoint::AfterStateWrite => "after-state-write",
            CrashPoint::AfterCommitLog => "after-commit-log",
        }
    }
}

impl fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CrashPoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        CrashPoint::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            let names: Vec<_> = CrashPoint::ALL.iter().map(|p| p.name()).collect();
            format!("unknown crash point `{s}`; expected one of {}", names.join(", "))
        })
    }
}

/// Called at every crash point with the batch passing it. The binary's hook kills the process.
pub type StepHook = Arc<dyn Fn(CrashPoint, BatchId) + Send + Sync>;

pub(crate) fn pass(hook: &Option<StepHook>, point: CrashPoint, batch: BatchId) {
    if let Some(hook) = hook {
        hook(point, batch);
    }
}
