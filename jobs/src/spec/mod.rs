//! Job files: parsed in two steps, as ripgrep parses its arguments. [`raw`] reads the TOML as
//! written; [`validate`] turns it into a typed [`JobSpec`] or a [`SpecError`] naming the file, the
//! key and what is wrong.

pub mod raw;
mod validate;

pub use validate::{JobSpec, SinkKind, SinkSpec, SourceSpec, SpecError, TransformSpec, load};
