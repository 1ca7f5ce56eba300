//! `kind = "socket"`: lines read from a TCP server (not replayable: for demos).

use crate::spec::file::{JobFile, SpecError};
use serde::Deserialize;
use tidewater_connectors::socket::SocketSpec;

/// The keys of a socket source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSocketSource {
    pub host: Option<String>,
    pub port: Option<i64>,
}

impl RawSocketSource {
    pub(super) fn validate(self, file: &JobFile) -> Result<SocketSpec, SpecError> {
        let host = self.host.unwrap_or_else(|| "localhost".into());
        let port =
            self.port.ok_or_else(|| file.err("source.port", "missing: the port of the server to read lines from"))?;
        let port = u16::try_from(port)
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| file.err("source.port", format!("{port} is not a TCP port")))?;
        Ok(SocketSpec { host, port })
    }
}
