//! Sinks: the idempotent Delta sink and the quarantine table built on it; the console and memory
//! sinks for development.

mod delta;
mod files;
mod quarantine;
mod rows;

pub use delta::{Change, DeltaSink, KEY_PROPERTY, Slice, Within, WriteKind};
pub use quarantine::{QUARANTINE_COLUMNS, quarantine_frame};
pub(crate) use rows::Output;
pub use rows::{ConsoleSink, MemorySink, show_whole_batches};
