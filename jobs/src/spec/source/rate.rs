//! `kind = "rate"`: generated rows at a steady rate, for trying a job without data.

use crate::spec::file::{JobFile, SpecError};
use serde::Deserialize;
use tidewater_connectors::rate::RateSpec;

/// The keys of a rate source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateSource {
    pub rows_per_second: Option<i64>,
}

impl RawRateSource {
    pub(super) fn validate(self, file: &JobFile) -> Result<RateSpec, SpecError> {
        let n = self.rows_per_second.ok_or_else(|| file.err("source.rows_per_second", "missing: such as 100"))?;
        Ok(RateSpec::new(file.positive("source.rows_per_second", n)? as u64))
    }
}
