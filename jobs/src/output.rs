//! What the commands share: the exit statuses, their error type, and how they print (a closed
//! pipe ends the output quietly; reports as JSON or a summary).

use crate::cli::OutputArgs;
use std::io::Write;

/// Exit status: success.
pub const EXIT_OK: i32 = 0;
/// Exit status: tables differ (consistency checks).
pub const EXIT_DIFFERENT: i32 = 1;
/// Exit status: an error.
pub const EXIT_ERROR: i32 = 2;

/// Anything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error(transparent)]
    Core(#[from] tidewater_core::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    pub fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> CliError {
        let what = what.to_string();
        move |source| CliError::Io { what, source }
    }
}

/// `1234567` → `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Writes `text` and a newline to stdout. A closed pipe (`tidewater … | head`) ends the output
/// quietly, as Unix tools do, instead of panicking.
pub(crate) fn out(text: impl std::fmt::Display) {
    out_raw(format_args!("{text}\n"));
}

/// Writes `text` to stdout as it is (see [`out`]).
pub(crate) fn out_raw(text: impl std::fmt::Display) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = write!(stdout, "{text}").and_then(|()| stdout.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        tracing::error!("cannot write to stdout: {e}");
    }
}

/// Emits a report as `output` says: its JSON into `--report FILE`, then the JSON (`--json`) or
/// the summary on stdout.
pub(crate) fn emit(
    output: &OutputArgs,
    report: &impl serde::Serialize,
    summary: impl FnOnce() -> String,
) -> Result<(), CliError> {
    let json = match (&output.report, output.json) {
        (None, false) => String::new(),
        _ => serde_json::to_string_pretty(report).map_err(|e| {
            CliError::Core(tidewater_core::Error::Internal(format!("the report does not serialize: {e}")))
        })?,
    };
    if let Some(path) = &output.report {
        std::fs::write(path, &json).map_err(CliError::io(path.display()))?;
    }
    if output.json {
        out(json);
    } else {
        out_raw(summary());
    }
    Ok(())
}

/// Refuses a stray positional argument, naming the new spelling of the old `--json FILE`; the
/// old `--json -` still works, with a deprecation warning.
pub(crate) fn refuse_stray(stray: Option<&str>, output: &OutputArgs) -> Result<(), CliError> {
    match stray {
        None => Ok(()),
        Some("-") if output.json => {
            tracing::warn!("`--json -` is deprecated: `--json` alone prints the JSON report on stdout");
            Ok(())
        }
        Some(file) if output.json => Err(CliError::Usage(format!(
            "unexpected argument `{file}`: --json takes no file now (it prints the JSON report on \
             stdout); if `{file}` was meant for the old `--json FILE`, use --report {file}"
        ))),
        Some(other) => Err(CliError::Usage(format!("unexpected argument `{other}` (see --help)"))),
    }
}
