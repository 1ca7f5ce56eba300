use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use table_tests::events::Fate;
use table_tests::{Row, events, read_rows};

/// The `tidewater` binary under test: `TIDEWATER_BIN`, or `target/<profile>/tidewater` beside this
/// test executable (scripts/test.sh builds it first).
pub fn bin() -> PathBuf {
    if let Ok(p) = std::env::var("TIDEWATER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(Path::parent).unwrap().join("tidewater");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p tidewater-jobs` (scripts/test.sh does)",
        path.display()
    );
    path
}

pub fn tidewater(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args).env("RUST_LOG", "warn,tidewater_core=info").env_remove("TIDEWATER_CRASH_AT");
    c
}

/// Runs to completion and returns the output, asserting the exit status is `code`.
pub fn expect_exit(mut cmd: Command, code: i32) -> Output {
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs with a crash point set and asserts the process died of SIGKILL.
pub fn expect_killed(mut cmd: Command, at: &str) {
    let out = cmd.env("TIDEWATER_CRASH_AT", at).output().unwrap();
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "expected SIGKILL at {at}, got {:?}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How long a test waits for another process to reach a state before it fails: far longer than
/// any of them takes on a loaded machine, so that only a state never reached fails the test.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// Polls `reached` every 50 ms until it holds (true) or [`PATIENCE`] has passed (false). Tests
/// wait on the state itself this way, never for a fixed time standing for "long enough"; the
/// caller asserts the result with a message saying what was not reached.
pub fn wait_until(mut reached: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if reached() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The highest batch id in a checkpoint's `commits/<N>.json` (written once the batch's Delta commit
/// landed), or `None` before the first; safe to call while the query runs.
pub fn last_committed_batch(checkpoint: &Path) -> Option<u64> {
    let entries = std::fs::read_dir(checkpoint.join("commits")).ok()?;
    entries.flatten().filter_map(|e| e.file_name().to_str()?.strip_suffix(".json")?.parse::<u64>().ok()).max()
}

pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The event ids of rows, sorted (duplicates kept).
pub fn ids(rows: &[Row]) -> Vec<String> {
    let mut v: Vec<String> = rows.iter().map(|r| r["event_id"].clone()).collect();
    v.sort();
    v
}

/// The event ids the table must hold exactly once.
pub fn expected_ids(lines: &[events::Line]) -> Vec<String> {
    let mut v: Vec<String> = lines.iter().filter(|l| l.fate == Fate::Kept).map(|l| l.event_id.clone()).collect();
    v.sort();
    v
}

/// Asserts the sink table holds every kept line exactly once, and nothing else.
pub fn assert_exactly_once(table: &Path, lines: &[events::Line]) {
    let got = ids(&read_rows(table));
    let want = expected_ids(lines);
    if got != want {
        let dupes: Vec<_> = got.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0].clone()).take(5).collect();
        panic!("table has {} rows, expected {}; duplicated e.g. {dupes:?}", got.len(), want.len());
    }
    table_tests::assert_txn_unique(table);
}

/// Asserts the quarantine table holds every invalid line exactly once, with its file and line.
pub fn assert_quarantined_once(quarantine: &Path, lines: &[events::Line]) {
    let mut got: Vec<(String, String, String)> = read_rows(quarantine)
        .into_iter()
        .map(|r| (r["origin"].clone(), r["position"].clone(), r["raw"].clone()))
        .collect();
    got.sort();
    let mut want: Vec<(String, String, String)> = lines
        .iter()
        .filter(|l| l.fate == Fate::Quarantined)
        .map(|l| (l.file.display().to_string(), l.number.to_string(), l.text.clone()))
        .collect();
    want.sort();
    assert_eq!(got, want, "quarantine table content");
    table_tests::assert_txn_unique(quarantine);
}

/// `scripts/delta_change.py` under the Python that has `deltalake` (scripts/test.sh installs it
/// and sets `TIDEWATER_PYTHON`): another engine changing a Delta table.
pub fn delta_change() -> Command {
    let python = std::env::var("TIDEWATER_PYTHON")
        .unwrap_or_else(|_| format!("{}/.cache/tidewater/venv/bin/python", std::env::var("HOME").unwrap_or_default()));
    assert!(
        Path::new(&python).exists(),
        "{python} is missing: these tests change tables with Python deltalake; run scripts/test.sh, which installs it"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/delta_change.py");
    let mut c = Command::new(python);
    c.arg(script);
    c
}
