//! Sinks: the idempotent Delta sink and the quarantine table built on it.

mod delta;
mod files;
mod quarantine;

pub use delta::{Change, DeltaSink, KEY_PROPERTY, Slice, Within, WriteKind};
pub use quarantine::{QUARANTINE_COLUMNS, quarantine_frame};
