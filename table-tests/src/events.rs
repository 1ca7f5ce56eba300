//! Landing files with known content: which lines are good, filtered (negative amount) or bad.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

/// What the test expects of one generated line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Written to the table.
    Kept,
    /// Dropped by the transform's `WHERE amount >= 0`.
    Filtered,
    /// Quarantined: not a valid record.
    Quarantined,
}

#[derive(Debug, Clone)]
pub struct Line {
    pub file: PathBuf,
    /// 1-based line number in the file.
    pub number: u64,
    pub text: String,
    pub event_id: String,
    pub fate: Fate,
}

/// Writes `files` files of `rows` lines each into `dir` (names sort in write order). With
/// `bad_every = Some(n)` every n-th line is invalid, in rotation: truncated JSON, a string user id,
/// a missing event id, an unparsable time.
pub fn write(dir: &Path, prefix: &str, files: usize, rows: usize, bad_every: Option<usize>, seed: u64) -> Vec<Line> {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut lines = Vec::new();
    for f in 0..files {
        let path = dir.join(format!("{prefix}-{f:04}.json"));
        let mut text = String::new();
        for i in 0..rows {
            let id = format!("{prefix}-{f}-{i}");
            let user = rng.random_range(1..1000i64);
            let day = rng.random_range(1..=5);
            let ms = rng.random_range(0..1000);
            let time = if ms % 2 == 0 {
                format!("2024-03-0{day}T10:15:00Z")
            } else {
                format!("2024-03-0{day}T10:15:00.{ms:03}Z")
            };
            let amount = rng.random_range(-20..100) as f64 / 4.0;
            let (line, fate) = match bad_every {
                Some(n) if i % n == n - 1 => {
                    let line = match (i / n) % 4 {
                        0 => format!(r#"{{"event_id":"{id}","user_id":{user},"#),
                        1 => format!(
                            r#"{{"event_id":"{id}","user_id":"x{user}","event_time":"{time}","category":"c","amount":{amount}}}"#
                        ),
                        2 => {
                            format!(r#"{{"user_id":{user},"event_time":"{time}","category":"{id}","amount":{amount}}}"#)
                        }
                        _ => format!(
                            r#"{{"event_id":"{id}","user_id":{user},"event_time":"not a time","category":"c","amount":{amount}}}"#
                        ),
                    };
                    (line, Fate::Quarantined)
                }
                _ => {
                    let fate = if amount < 0.0 { Fate::Filtered } else { Fate::Kept };
                    (
                        format!(
                            r#"{{"event_id":"{id}","user_id":{user},"event_time":"{time}","category":"c{}","amount":{amount}}}"#,
                            user % 5
                        ),
                        fate,
                    )
                }
            };
            text.push_str(&line);
            text.push('\n');
            lines.push(Line { file: path.clone(), number: i as u64 + 1, text: line, event_id: id, fate });
        }
        let tmp = dir.join(format!(".{prefix}-{f:04}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }
    lines
}

/// The `[source.schema]` of the generated events, for job files.
pub const SOURCE_SCHEMA: &str = r#"[source.schema]
event_id = "string"
user_id = "int64"
event_time = "timestamp"
category = "string"
amount = "float64"
"#;

/// A job file for the issue's example transform, with `max_files` per trigger.
pub fn job(dir: &Path, landing: &Path, max_files: usize) -> PathBuf {
    let text = format!(
        r#"name = "events"
checkpoint = "{dir}/checkpoint"

[source]
kind = "files"
path = "{landing}"
format = "ndjson"
max_files_per_trigger = {max_files}

{SOURCE_SCHEMA}
[transform]
sql = "SELECT event_id, user_id, event_time, category, amount, CAST(event_time AS DATE) AS date FROM input WHERE amount >= 0"

[sink]
table = "{dir}/table"
mode = "append"
partition_by = ["date"]
quarantine = "{dir}/quarantine"

[trigger]
kind = "processing-time"
interval = "0s"
"#,
        dir = dir.display(),
        landing = landing.display()
    );
    let path = dir.join(format!("job-{max_files}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}
