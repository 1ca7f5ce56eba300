//! `kind = "console"`: each batch printed, its first rows (for trying a job).

use super::SinkKind;
use crate::spec::file::{JobFile, SpecError};
use serde::Deserialize;

/// The keys of a console sink (besides those every sink takes).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsoleSink {
    pub num_rows: Option<i64>,
}

impl RawConsoleSink {
    pub(super) fn validate(self, file: &JobFile) -> Result<SinkKind, SpecError> {
        let num_rows = match self.num_rows {
            None => tidewater_core::sink::ConsoleSink::DEFAULT_ROWS,
            Some(n) => {
                usize::try_from(n).map_err(|_| file.err("sink.num_rows", format!("{n} is not a number of rows")))?
            }
        };
        Ok(SinkKind::Console { num_rows })
    }
}
