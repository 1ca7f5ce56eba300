//! The job-file loader's tests: files that load, and the message each mistake gets (file, key
//! path, problem).

use super::*;
use std::time::Duration;
use tidewater_connectors::StartingVersion;
use tidewater_connectors::kafka::StartingOffsets;
use tidewater_connectors::rate::RateSpec;
use tidewater_core::Trigger;

const ISSUE_JOB: &str = r#"
name = "events"
checkpoint = "/data/checkpoints/events"

[source]
kind = "files"
path = "/data/landing/events"
format = "ndjson"
max_files_per_trigger = 10

[source.schema]
event_id = "string"
user_id = "int64"
event_time = "timestamp"
category = "string"
amount = "float64"

[transform]
sql = "SELECT event_id, user_id, event_time, category, amount, CAST(event_time AS DATE) AS date FROM input WHERE amount >= 0"

[sink]
table = "/data/tables/events"
mode = "append"
partition_by = ["date"]
quarantine = "/data/tables/events_quarantine"

[trigger]
kind = "processing-time"
interval = "2s"
"#;

fn load_text(text: &str) -> Result<JobSpec, SpecError> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.toml");
    std::fs::write(&file, text).unwrap();
    load(&file)
}

#[test]
fn the_issue_job_file_loads_as_is() {
    let job = load_text(ISSUE_JOB).unwrap();
    assert_eq!(job.trigger, Trigger::ProcessingTime(Duration::from_secs(2)));
    let SourceSpec::Files(files) = &job.source else { panic!("files source") };
    assert_eq!(files.max_files_per_trigger, 10);
    assert_eq!(files.schema.as_ref().unwrap().columns.len(), 5);
    assert_eq!(job.sink.partition_by, ["date"]);
}

#[test]
fn errors_name_the_file_and_the_key() {
    let cases = [
        (ISSUE_JOB.replace("int64", "int65"), "source.schema.user_id: unknown type `int65`"),
        (ISSUE_JOB.replace("/data/tables/events\"", "hdfs://nn/events\""), "sink.table: hdfs://nn/events: unsupported"),
        (ISSUE_JOB.replace("\"2s\"", "\"soon\""), "trigger.interval: `soon`"),
        (
            ISSUE_JOB.replace("kind = \"processing-time\"", "kind = \"once\""),
            "trigger.interval: a `once` trigger has no interval",
        ),
        (ISSUE_JOB.replace("mode = \"append\"", "mode = \"append\"\ncolour = 1"), "unknown field `colour`"),
        (ISSUE_JOB.replace("checkpoint = \"/data/checkpoints/events\"", ""), "checkpoint: missing"),
        (
            ISSUE_JOB.replace("max_files_per_trigger = 10", "files_per_chunk = 10"),
            "source.files_per_chunk: is not a key of a `files` source",
        ),
        (
            format!("{ISSUE_JOB}\n[watermark]\ncolumn = \"ts\"\ndelay = \"1h\"\n"),
            "watermark.column: `ts` is not a column",
        ),
        (
            format!("{ISSUE_JOB}\n[watermark]\ncolumn = \"event_time\"\ndelay = \"an hour\"\n"),
            "watermark.delay: `an hour`",
        ),
    ];
    for (text, expected) in cases {
        let e = load_text(&text).unwrap_err().to_string();
        assert!(e.contains("job.toml: "), "{e}");
        assert!(e.contains(expected), "expected `{expected}` in: {e}");
    }
}

/// The bronze → silver job of issue 15, as written there.
const SILVER_JOB: &str = r#"
name = "silver"
checkpoint = "/data/checkpoints/silver"

[source]
kind = "delta"
table = "/data/tables/bronze"          # partitioned by date
max_files_per_trigger = 8

[transform]
sql = "SELECT event_id, user_id, category, amount * 2 AS amount2, date FROM input WHERE amount >= 0"

[sink]
table = "/data/tables/silver"
mode = "append"
partition_by = ["date"]
key = ["event_id"]
"#;

#[test]
fn the_delta_stream_job_loads_with_its_options() {
    let job = load_text(SILVER_JOB).unwrap();
    let SourceSpec::Delta(delta) = &job.source else { panic!("delta source") };
    assert_eq!(delta.stream.max_files_per_trigger, 8);
    assert_eq!(delta.stream.starting_version, StartingVersion::Snapshot);
    let with =
        |extra: &str| SILVER_JOB.replace("max_files_per_trigger = 8", &format!("max_files_per_trigger = 8\n{extra}"));
    let job =
        load_text(&with("starting_version = \"latest\"\nmax_bytes_per_trigger = \"1MiB\"\nskip_change_commits = true"))
            .unwrap();
    let SourceSpec::Delta(delta) = &job.source else { panic!("delta source") };
    assert_eq!(delta.stream.starting_version, StartingVersion::Latest);
    assert_eq!(delta.stream.max_bytes_per_trigger, Some(1 << 20));
    assert!(delta.stream.skip_change_commits && !delta.stream.ignore_deletes);
    let job = load_text(&with("starting_version = 12\nignore_deletes = true")).unwrap();
    let SourceSpec::Delta(delta) = &job.source else { panic!("delta source") };
    assert_eq!(delta.stream.starting_version, StartingVersion::Version(12));
    assert!(delta.stream.ignore_deletes);

    let cases = [
        (with("starting_version = \"earliest\""), "source.starting_version: expected a table version"),
        (with("starting_version = -1"), "source.starting_version: expected a table version"),
        (with("max_bytes_per_trigger = \"lots\""), "source.max_bytes_per_trigger: expected a positive size"),
        (SILVER_JOB.replace("= 8", "= 0"), "source.max_files_per_trigger: 0 is not a positive number"),
        (with("skip_change_commits = \"yes\""), "invalid type"),
        (
            ISSUE_JOB.replace("max_files_per_trigger = 10", "starting_version = 3"),
            "source.starting_version: is not a key of a `files` source",
        ),
    ];
    for (text, expected) in cases {
        let e = load_text(&text).unwrap_err().to_string();
        assert!(e.contains(expected), "expected `{expected}` in: {e}");
    }
}

const KAFKA_JOB: &str = r#"
name = "orders"
checkpoint = "/data/checkpoints/orders"

[source]
kind = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topics = ["orders"]
max_offsets_per_trigger = 100000

[source.schema]
order_id = "string"

[sink]
table = "/data/tables/orders"
"#;

#[test]
fn development_sources_and_other_sinks_load_and_their_mistakes_are_named() {
    const DEV: &str = "name = \"dev\"\ncheckpoint = \"/cp\"\n[source]\nkind = \"rate\"\nrows_per_second = 10\n[sink]\nkind = \"console\"\n";
    let job = load_text(DEV).unwrap();
    assert!(matches!(job.source, SourceSpec::Rate(RateSpec { rows_per_second: 10 })));
    assert!(matches!(job.sink.kind, SinkKind::Console { num_rows: 20 }));
    assert_eq!(job.sink.table, None);
    let socket = DEV.replace("kind = \"rate\"\nrows_per_second = 10", "kind = \"socket\"\nport = 9999");
    let job = load_text(&socket).unwrap();
    let SourceSpec::Socket(spec) = &job.source else { panic!("socket source") };
    assert_eq!((spec.host.as_str(), spec.port), ("localhost", 9999));
    let kafka_sink = DEV.replace(
        "kind = \"console\"\n",
        "kind = \"kafka\"\nbootstrap_servers = \"b:9092\"\ntopic = \"alerts\"\nkey_column = \"value\"\n",
    );
    let job = load_text(&kafka_sink).unwrap();
    let SinkKind::Kafka(kafka) = &job.sink.kind else { panic!("kafka sink") };
    assert_eq!((kafka.topic.as_str(), kafka.key_column.as_deref()), ("alerts", Some("value")));
    let cases = [
        (
            DEV.replace("rows_per_second = 10", "rows_per_second = 0"),
            "source.rows_per_second: 0 is not a positive number",
        ),
        (DEV.replace("rows_per_second = 10", ""), "source.rows_per_second: missing"),
        (
            DEV.replace("rows_per_second = 10", "rows_per_second = 10\npath = \"x\""),
            "source.path: is not a key of a `rate` source",
        ),
        (socket.replace("port = 9999", "port = 70000"), "source.port: 70000 is not a TCP port"),
        (socket.replace("port = 9999", ""), "source.port: missing"),
        (
            DEV.replace("kind = \"rate\"", "kind = \"tcp\""),
            "unknown kind `tcp`; expected `files`, `delta`, `kafka`, `rate`, `socket`",
        ),
        (
            DEV.replace("kind = \"console\"", "kind = \"console\"\ntable = \"/t\""),
            "sink.table: is not a key of a `console` sink",
        ),
        (
            DEV.replace("kind = \"console\"", "kind = \"console\"\ntopic = \"t\""),
            "sink.topic: is not a key of a `console` sink",
        ),
        (DEV.replace("kind = \"console\"", "kind = \"parquet\""), "sink.kind: unknown kind `parquet`"),
        (DEV.replace("kind = \"console\"\n", ""), "sink.table: missing"),
        (kafka_sink.replace("topic = \"alerts\"\n", ""), "sink.topic: missing"),
        (
            kafka_sink.replace("key_column", "partition_by = [\"x\"]\nheaders_column"),
            "sink.partition_by: is not a key of a `kafka` sink",
        ),
        (format!("{kafka_sink}[sink.options]\n\"no.such\" = 1\n"), "sink.options"),
        (format!("{kafka_sink}[sink.options]\nacks = \"1\"\n"), "sink.options.acks: is set by Tidewater"),
    ];
    for (text, expected) in cases {
        let e = load_text(&text).unwrap_err().to_string();
        assert!(e.contains(expected), "expected `{expected}` in: {e}");
    }
}

#[test]
fn a_kafka_job_loads_and_its_mistakes_are_named() {
    let job = load_text(KAFKA_JOB).unwrap();
    let SourceSpec::Kafka(kafka) = &job.source else { panic!("kafka source") };
    assert_eq!(kafka.group_id, "tidewater-orders");
    assert_eq!(kafka.max_offsets_per_trigger, Some(100_000));
    assert!(kafka.fail_on_data_loss);
    let exact = KAFKA_JOB.replace(
        "max_offsets_per_trigger = 100000",
        "starting_offsets = { orders = { \"0\" = 42, \"2\" = 7 } }\n[source.options]\n\"session.timeout.ms\" = 6000",
    );
    let job = load_text(&exact).unwrap();
    let SourceSpec::Kafka(kafka) = &job.source else { panic!("kafka source") };
    assert_eq!(
        kafka.starting_offsets,
        StartingOffsets::Exact([("orders".to_string(), [(0, 42), (2, 7)].into())].into())
    );
    assert_eq!(kafka.options["session.timeout.ms"], "6000");
    let cases = [
        (KAFKA_JOB.replace("bootstrap_servers = \"127.0.0.1:9092\"\n", ""), "source.bootstrap_servers: missing"),
        (KAFKA_JOB.replace("topics = [\"orders\"]", "topics = []"), "source.topics: name at least one topic"),
        (
            KAFKA_JOB.replace("topics = [\"orders\"]", "topics = [\"orders\"]\ntopic_pattern = \"o.*\""),
            "give either `topics` or `topic_pattern`",
        ),
        (KAFKA_JOB.replace("topics = [\"orders\"]", "topic_pattern = \"(\""), "source.topic_pattern: `(`"),
        (KAFKA_JOB.replace("[source.schema]\norder_id = \"string\"\n", ""), "source.schema: missing"),
        (
            KAFKA_JOB.replace("max_offsets_per_trigger = 100000", "starting_offsets = \"soon\""),
            "source.starting_offsets: not a starting point",
        ),
        (KAFKA_JOB.replace("= 100000", "= 0"), "source.max_offsets_per_trigger: 0 is not a positive number"),
        (
            format!("{KAFKA_JOB}\n[source.options]\n\"no.such.option\" = \"1\"\n").replace("\n[sink]", "\n[sink]"),
            "source.options",
        ),
        (
            KAFKA_JOB.replace("max_offsets_per_trigger = 100000", "max_files_per_trigger = 3"),
            "source.max_files_per_trigger: is not a key of a `kafka` source",
        ),
    ];
    for (text, expected) in cases {
        let e = load_text(&text).unwrap_err().to_string();
        assert!(e.contains(expected), "expected `{expected}` in: {e}");
    }
}

/// What serde refuses in `[source]` and `[sink]`, read kind by kind, is said as the single struct of
/// all keys said it: at the line, in serde's words, listing every kind's keys. (A key's line is
/// the one before it: the span of a key starts its line, and the count stops at the newline.)
#[test]
fn serde_refusals_in_kinded_tables_keep_their_line_and_words() {
    const SOURCE_KEYS: &str = "`kind`, `path`, `table`, `format`, `max_files_per_trigger`, `files_per_chunk`, `max_bytes_per_trigger`, `starting_version`, `skip_change_commits`, `ignore_deletes`, `schema`, `bootstrap_servers`, `topics`, `topic_pattern`, `starting_offsets`, `max_offsets_per_trigger`, `fail_on_data_loss`, `group_id`, `options`, `rows_per_second`, `host`, `port`";
    const SINK_KEYS: &str = "`kind`, `table`, `mode`, `partition_by`, `key`, `quarantine`, `late`, `num_rows`, `bootstrap_servers`, `topic`, `key_column`, `headers_column`, `options`";
    let cases = [
        (
            ISSUE_JOB.replace("format = \"ndjson\"", "format = \"ndjson\"\ncolour = 1"),
            format!("job.toml: line 8: unknown field `colour`, expected one of {SOURCE_KEYS}"),
        ),
        (
            // A deleted `[trigger]` header: its keys are the sink's, one of them no kind's.
            ISSUE_JOB.replace("[trigger]\n", ""),
            format!("job.toml: line 27: unknown field `interval`, expected one of {SINK_KEYS}"),
        ),
        (ISSUE_JOB.replace("kind = \"files\"\n", ""), "job.toml: line 4: missing field `kind`".to_string()),
        (
            "name = \"x\"\ncheckpoint = \"/cp\"\nsource = 5\n[sink]\ntable = \"/t\"\n".to_string(),
            "job.toml: line 3: invalid type: integer `5`, expected struct RawSource".to_string(),
        ),
        (
            ISSUE_JOB.replace("max_files_per_trigger = 10", "max_files_per_trigger = \"10\""),
            "job.toml: line 9: invalid type: string \"10\", expected i64".to_string(),
        ),
        (
            ISSUE_JOB.replace("mode = \"append\"", "mode = 1"),
            "job.toml: line 23: invalid type: integer `1`, expected a string".to_string(),
        ),
        (
            // A files source turned into a socket one: of its keys left, the first in the order above.
            ISSUE_JOB.replace("kind = \"files\"", "kind = \"socket\""),
            "job.toml: source.path: is not a key of a `socket` source".to_string(),
        ),
        (
            // A wrong type in a key of the kind is named before a key of another kind.
            ISSUE_JOB.replace("max_files_per_trigger = 10", "max_files_per_trigger = \"10\"\nport = 1"),
            "job.toml: line 9: invalid type: string \"10\", expected i64".to_string(),
        ),
    ];
    for (text, expected) in cases {
        let e = load_text(&text).unwrap_err().to_string();
        assert!(e.ends_with(&expected), "expected `{expected}` at the end of: {e}");
    }
}

/// Every key the messages list is some kind's: a kind that takes it does not refuse it.
#[test]
fn every_listed_key_is_taken_by_some_kind() {
    const DEV: &str = "name = \"dev\"\ncheckpoint = \"/cp\"\n[source]\nkind = \"rate\"\nrows_per_second = 10\n[sink]\nkind = \"console\"\n";
    let refused = |e: &str| e.contains("is not a key of") || e.contains("unknown field");
    for key in source::ANY_KIND_KEYS.iter().filter(|k| **k != "kind") {
        let taken = ["files", "delta", "kafka", "rate", "socket"].iter().any(|kind| {
            let text = DEV.replace("kind = \"rate\"\nrows_per_second = 10", &format!("kind = \"{kind}\"\n{key} = 1"));
            load_text(&text).map_or_else(|e| !refused(&e.to_string()), |_| true)
        });
        assert!(taken, "no source kind takes `{key}`");
    }
    for key in sink::ANY_KIND_KEYS.iter().filter(|k| **k != "kind") {
        let taken = ["delta", "console", "kafka"].iter().any(|kind| {
            let text = DEV.replace("kind = \"console\"", &format!("kind = \"{kind}\"\n{key} = 1"));
            load_text(&text).map_or_else(|e| !refused(&e.to_string()), |_| true)
        });
        assert!(taken, "no sink kind takes `{key}`");
    }
}
