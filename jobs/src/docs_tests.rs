//! The README and docs/ say what runs, so their code blocks are checked: every job file loads
//! (and its SQL plans), every `tidewater …` command line parses, and every Rust block is the
//! runnable example's code verbatim (scripts/test.sh runs that example).

use crate::cli::Cli;
use clap::Parser as _;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The documents whose code blocks a user copies.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md"), root().join("table-tests/README.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

/// The fenced code blocks of a markdown text: (language tag, first line number, body).
fn blocks(text: &str) -> Vec<(String, usize, String)> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(tag)) => open = Some((tag.trim().to_string(), i + 2, String::new())),
            (Some(_), Some(_)) => out.extend(open.take()),
            (Some((_, _, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

/// The `tidewater` argument lists in one shell line (several when commands are quoted in it).
fn command_lines(line: &str) -> Vec<Vec<String>> {
    let Some(words) = shlex::split(line.trim_end_matches('\\')) else { return Vec::new() };
    let mut found = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        let is_bin = word == "tidewater" || word.ends_with("/tidewater");
        if word.starts_with("tidewater ") {
            found.extend(command_lines(word));
        } else if is_bin && i > 0 && words[i - 1] == "--bin" {
            // `cargo run --bin tidewater -- ARGS`
            let rest = words.iter().skip_while(|w| *w != "--").skip(1).cloned();
            found.push(std::iter::once("tidewater".to_string()).chain(rest).collect());
            break;
        } else if is_bin {
            found.push(std::iter::once("tidewater".to_string()).chain(words[i + 1..].iter().cloned()).collect());
            break;
        }
        i += 1;
    }
    found
}

#[test]
fn every_documented_command_line_parses() {
    let mut checked = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        for (tag, first, body) in blocks(&text).into_iter().filter(|(tag, ..)| tag == "sh" || tag == "bash") {
            for (n, line) in body.lines().enumerate() {
                for args in command_lines(line) {
                    let help = |e: &clap::Error| {
                        matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion)
                    };
                    if let Ok(cli) = Cli::try_parse_from(&args) {
                        // Old spellings parse (to be refused with the new one named): not in docs.
                        let old = match &cli.command {
                            crate::cli::Command::Batch(b) => b.old_version.is_some(),
                            crate::cli::Command::Reconcile(r) => r.stray.is_some(),
                            crate::cli::Command::Verify(v) => v.stray.is_some(),
                            _ => false,
                        };
                        assert!(!old, "{}:{}: `{}` uses an old spelling", doc.display(), first + n, args.join(" "));
                    }
                    if let Err(e) =
                        Cli::try_parse_from(&args).map(drop).or_else(|e| if help(&e) { Ok(()) } else { Err(e) })
                    {
                        panic!("{}:{}: `{}` ({tag}) does not parse:\n{e}", doc.display(), first + n, args.join(" "));
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 10, "only {checked} command lines found: is the block parser broken?");
}

#[test]
fn every_documented_job_file_loads_and_plans() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        for (_, first, body) in blocks(&text).into_iter().filter(|(tag, ..)| tag == "toml") {
            let file = dir.path().join(format!("doc-{checked}.toml"));
            std::fs::write(&file, &body).unwrap();
            let job = crate::spec::load(&file).unwrap_or_else(|e| panic!("{}:{first}: {e}", doc.display()));
            crate::pipeline_for(&job, &crate::Registry::builtin())
                .unwrap_or_else(|e| panic!("{}:{first}: {e}", doc.display()));
            checked += 1;
        }
    }
    assert!(checked >= 1, "the README's job file was not found");
}

#[test]
fn every_rust_block_in_the_readme_is_the_runnable_example_verbatim() {
    let example = std::fs::read_to_string(root().join("examples/events_pipeline.rs")).unwrap();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let rust: Vec<_> = blocks(&readme).into_iter().filter(|(tag, ..)| tag == "rust").collect();
    assert!(!rust.is_empty(), "the README has no Rust block");
    for (_, first, body) in rust {
        // The README shows the example's lines without their indentation.
        let lines: Vec<&str> = body.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let source: Vec<&str> = example.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let found = source.windows(lines.len()).any(|w| w == lines.as_slice());
        assert!(found, "README.md:{first}: this Rust block is not a verbatim excerpt of examples/events_pipeline.rs");
    }
}
