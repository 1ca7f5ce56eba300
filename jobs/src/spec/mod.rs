//! Job files: parsed in two steps, as ripgrep parses its arguments. [`raw`] reads the TOML as
//! written with serde, refusing unknown keys; validating turns it into a typed [`JobSpec`] or a
//! [`SpecError`] naming the file, the key path and the problem
//! (`jobs/orders.toml: sink.table: ftp://host/t: unsupported …`).
//!
//! Each connector kind owns its keys and their validation: [`source`] and [`sink`] hold one
//! module per kind, each a serde struct with `deny_unknown_fields` and its `validate`.
//! `[source]` and `[sink]` are read by their `kind` first, so every error keeps its key path,
//! which serde's internally tagged enums would lose (see `section.rs`).

mod file;
pub mod raw;
mod section;
pub mod sink;
pub mod source;
mod validate;

#[cfg(test)]
mod tests;

pub use file::SpecError;
pub use sink::{SinkKind, SinkSpec};
pub use source::SourceSpec;
pub use validate::{JobSpec, TransformSpec};

use std::path::Path;

/// Reads and validates a job file.
pub fn load(file: &Path) -> Result<JobSpec, SpecError> {
    let file = file::JobFile::read(file)?;
    let raw = raw::RawJob::read(&file)?;
    validate::validate(raw, &file)
}
