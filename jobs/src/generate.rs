//! Generated event data for the demo, the benchmarks and the tests: deterministic for a seed.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::path::{Path, PathBuf};

const CATEGORIES: [&str; 8] = ["books", "games", "music", "garden", "tools", "food", "toys", "sports"];

/// What a generated landing directory holds.
#[derive(Debug, Default, Clone, Copy)]
pub struct Generated {
    pub files: usize,
    pub lines: usize,
    /// Lines that are not valid records (malformed JSON, wrong type, missing field, bad time).
    pub malformed: usize,
    /// Valid records with a negative amount (filtered by the example transform).
    pub negative: usize,
    pub bytes: u64,
}

/// Writes `files` NDJSON files of `rows_per_file` lines into `dir`. With `bad_every = Some(n)`,
/// every n-th line is malformed in one of four ways.
pub fn write_events(
    dir: &Path,
    files: usize,
    rows_per_file: usize,
    bad_every: Option<usize>,
    seed: u64,
) -> std::io::Result<Generated> {
    std::fs::create_dir_all(dir)?;
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut g = Generated { files, ..Generated::default() };
    for f in 0..files {
        let path: PathBuf = dir.join(format!("events-{seed:04}-{f:05}.json"));
        let tmp = dir.join(format!(".events-{seed:04}-{f:05}.json.tmp"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        for i in 0..rows_per_file {
            let id = format!("e{seed}-{f}-{i}");
            let user = rng.random_range(1..50_000i64);
            let day = rng.random_range(1..=28);
            let (h, m, s, ms) =
                (rng.random_range(0..24), rng.random_range(0..60), rng.random_range(0..60), rng.random_range(0..1000));
            let time = if ms % 3 == 0 {
                format!("2024-03-{day:02}T{h:02}:{m:02}:{s:02}Z")
            } else {
                format!("2024-03-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
            };
            let category = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
            let amount = (rng.random_range(-1_000..100_000) as f64) / 100.0;
            let line = match bad_every {
                Some(n) if i % n == n - 1 => {
                    g.malformed += 1;
                    match (i / n) % 4 {
                        0 => {
                            format!(r#"{{"event_id":"{id}","user_id":{user},"event_time":"{time}""#)
                        }
                        1 => format!(
                            r#"{{"event_id":"{id}","user_id":"u{user}","event_time":"{time}","category":"{category}","amount":{amount}}}"#
                        ),
                        2 => format!(
                            r#"{{"user_id":{user},"event_time":"{time}","category":"{category}","amount":{amount},"note":"{id}"}}"#
                        ),
                        _ => format!(
                            r#"{{"event_id":"{id}","user_id":{user},"event_time":"March {day}","category":"{category}","amount":{amount}}}"#
                        ),
                    }
                }
                _ => {
                    if amount < 0.0 {
                        g.negative += 1;
                    }
                    format!(
                        r#"{{"event_id":"{id}","user_id":{user},"event_time":"{time}","category":"{category}","amount":{amount}}}"#
                    )
                }
            };
            g.bytes += line.len() as u64 + 1;
            writeln!(out, "{line}")?;
            g.lines += 1;
        }
        out.flush()?;
        drop(out);
        // Land atomically, as an upload tool would: the source ignores dot-files.
        std::fs::rename(&tmp, &path)?;
    }
    Ok(g)
}

/// The example job's schema and transform, as a job file.
pub fn events_job(name: &str, landing: &Path, table: &Path, checkpoint: &Path, max_files: usize) -> String {
    format!(
        r#"name = "{name}"
checkpoint = "{checkpoint}"

[source]
kind = "files"
path = "{landing}"
format = "ndjson"
max_files_per_trigger = {max_files}

[source.schema]
event_id = "string"
user_id = "int64"
event_time = "timestamp"
category = "string"
amount = "float64"

[transform]
sql = "SELECT event_id, user_id, event_time, category, amount, CAST(event_time AS DATE) AS date FROM input WHERE amount >= 0"

[sink]
table = "{table}"
mode = "append"
partition_by = ["date"]
key = ["event_id"]

[trigger]
kind = "processing-time"
interval = "1s"
"#,
        checkpoint = checkpoint.display(),
        landing = landing.display(),
        table = table.display(),
    )
}
