//! Kafka → Delta against a real Kafka-protocol broker (scripts/test.sh starts one and sets
//! TIDEWATER_TEST_KAFKA): exactly once through kills at each crash point and at random moments
//! while a producer writes, stream ≡ batch, and three processes sharing the partitions through
//! the consumer group, one killed and restarted.

use crate::common::{expect_exit, expect_killed, path, tidewater};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};
use table_tests::read_rows;

fn broker() -> String {
    std::env::var("TIDEWATER_TEST_KAFKA").expect(
        "TIDEWATER_TEST_KAFKA is not set: these tests need the Kafka-protocol broker that scripts/test.sh installs and starts",
    )
}

fn create_topic(topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", broker()).create().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let done = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .unwrap();
    for r in done {
        r.unwrap();
    }
}

/// Message `i`: a keyed JSON order, or (every 37th) a malformed one.
fn value(i: u64) -> String {
    if i % 37 == 5 {
        format!("{{broken {i}")
    } else {
        format!(
            r#"{{"order_id": "o{i}", "customer_id": {}, "placed_at": "2024-03-0{}T10:00:00Z", "total": {}.5}}"#,
            i % 11,
            1 + i % 3,
            i
        )
    }
}

fn is_good(i: u64) -> bool {
    i % 37 != 5
}

/// Produces messages `range` (idempotent producer), with a pause every `pause_every`.
fn produce(topic: &str, range: std::ops::Range<u64>, pause_every: u64) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for i in range {
        let (key, value) = (format!("k{i}"), value(i));
        loop {
            match producer.send(BaseRecord::to(topic).key(&key).payload(&value)) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        if pause_every > 0 && i % pause_every == 0 {
            producer.flush(Duration::from_secs(10)).unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn job(dir: &Path, topic: &str, extra: &str) -> std::path::PathBuf {
    let file = dir.join("orders.toml");
    std::fs::write(
        &file,
        format!(
            r#"name = "orders-{topic}"
checkpoint = "{cp}"

[source]
kind = "kafka"
bootstrap_servers = "{broker}"
topics = ["{topic}"]
starting_offsets = "earliest"
max_offsets_per_trigger = 100
format = "json"
{extra}

[source.schema]
order_id = "string"
customer_id = "int64"
placed_at = "timestamp"
total = "float64"

[transform]
sql = "SELECT order_id, customer_id, placed_at, total, CAST(placed_at AS DATE) AS date, kafka_topic, kafka_partition, kafka_offset FROM input"

[sink]
table = "{table}"
partition_by = ["date"]

[trigger]
kind = "processing-time"
interval = "0s"
"#,
            cp = dir.join("cp").display(),
            broker = broker(),
            table = dir.join("orders").display(),
        ),
    )
    .unwrap();
    file
}

/// Waits until `table` holds `want` rows or a minute has passed (the caller's assertions then
/// say what is missing).
fn wait_for_rows(table: &Path, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        // A commit being written is read on the next turn.
        if std::panic::catch_unwind(|| read_rows(table).len()).unwrap_or(0) >= want {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Asserts the table holds each good message of `0..n` once (by partition and offset, and by
/// order id) and the quarantine each malformed one once, with its partition and offset.
fn assert_each_message_once(dir: &Path, n: u64) {
    let rows = read_rows(&dir.join("orders"));
    let places: BTreeSet<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r["kafka_topic"].as_str(), r["kafka_partition"].as_str(), r["kafka_offset"].as_str()))
        .collect();
    assert_eq!(places.len(), rows.len(), "a (topic, partition, offset) is in the table twice");
    let ids: BTreeSet<String> = rows.iter().map(|r| r["order_id"].clone()).collect();
    let want: BTreeSet<String> = (0..n).filter(|&i| is_good(i)).map(|i| format!("o{i}")).collect();
    assert_eq!(ids.len(), rows.len(), "an order is in the table twice");
    assert_eq!(ids, want, "the table's orders");
    let quarantined = read_rows(&dir.join("orders_quarantine"));
    let bad: BTreeSet<(String, String)> =
        quarantined.iter().map(|r| (r["origin"].clone(), r["position"].clone())).collect();
    assert_eq!(bad.len(), quarantined.len(), "a message is quarantined twice");
    let raws: BTreeSet<String> = quarantined.iter().map(|r| r["raw"].clone()).collect();
    let want_bad: BTreeSet<String> = (0..n).filter(|&i| !is_good(i)).map(value).collect();
    assert_eq!(raws, want_bad, "the quarantine's messages");
    assert_eq!(rows.len() + quarantined.len(), n as usize, "every message is a row or quarantined");
    assert!(quarantined.iter().all(|r| r["reason"].contains("malformed JSON")));
}

#[test]
fn kafka_to_delta_is_exactly_once_through_kills_at_each_crash_point_and_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("orders-{}", uuid::Uuid::new_v4().simple());
    create_topic(&topic, 3);
    let n = 3000;
    produce(&topic, 0..1500, 0);
    let producer = {
        let topic = topic.clone();
        std::thread::spawn(move || produce(&topic, 1500..n, 100))
    };
    let file = job(dir.path(), &topic, "");
    let run = || tidewater(&["run", path(&file), "--trigger", "available-now"]);
    for at in ["after-offset-log:2", "after-data-files:5", "after-delta-commit:8", "after-commit-log:11"] {
        expect_killed(run(), at);
    }
    // Killed at moments no crash point names, while batches stream.
    for wait_ms in [350, 800] {
        let mut child = tidewater(&["run", path(&file)]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(wait_ms));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    producer.join().unwrap();
    expect_exit(run(), 0);
    assert_each_message_once(dir.path(), n);

    // Stream ≡ batch: the recomputation over the topic equals the streamed table.
    let out = expect_exit(tidewater(&["verify", path(&file)]), 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("IDENTICAL"), "{text}");
}

#[test]
fn three_members_of_a_group_share_the_partitions_and_a_killed_ones_partitions_resume_where_the_table_is() {
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("orders-{}", uuid::Uuid::new_v4().simple());
    create_topic(&topic, 3);
    let n = 2400;
    let file = job(
        dir.path(),
        &topic,
        "[source.options]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"",
    );
    let member = |name: &str| tidewater(&["run", path(&file), "--member", name]).spawn().unwrap();
    let mut members = vec![member("m1"), member("m2"), member("m3")];
    let producer = {
        let topic = topic.clone();
        std::thread::spawn(move || produce(&topic, 0..n, 40))
    };
    std::thread::sleep(Duration::from_secs(3));
    members[1].kill().unwrap();
    members[1].wait().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    members[1] = member("m2");
    producer.join().unwrap();
    let table = dir.path().join("orders");
    wait_for_rows(&table, (0..n).filter(|&i| is_good(i)).count());
    for m in &mut members {
        m.kill().unwrap();
        m.wait().unwrap();
    }
    assert_each_message_once(dir.path(), n);
    // Every member wrote, each in its own offset log.
    for name in ["m1", "m2", "m3"] {
        assert!(dir.path().join("cp/members").join(name).join("offsets").exists(), "{name} planned no batch");
    }
}

/// The test broker (tansu 0.6) has no CreatePartitions, so new partitions arrive here as a new
/// topic matching the job's `topic_pattern`: the same discovery, at every batch, of partitions the
/// job has not seen, read from their earliest offset.
#[test]
fn partitions_that_appear_while_the_job_runs_are_read_from_their_start() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("orders-{}", uuid::Uuid::new_v4().simple());
    let (first, second) = (format!("{prefix}-a"), format!("{prefix}-b"));
    create_topic(&first, 3);
    produce(&first, 0..300, 0);
    let file = job(dir.path(), &first, "");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace(&format!("topics = [\"{first}\"]"), &format!("topic_pattern = \"{prefix}-.*\"")),
    )
    .unwrap();
    let mut stream = tidewater(&["run", path(&file)]).spawn().unwrap();
    let table = dir.path().join("orders");
    wait_for_rows(&table, (0..300).filter(|&i| is_good(i)).count());
    create_topic(&second, 2);
    produce(&second, 300..900, 0);
    wait_for_rows(&table, (0..900).filter(|&i| is_good(i)).count());
    stream.kill().unwrap();
    stream.wait().unwrap();
    assert_each_message_once(dir.path(), 900);
    let partitions: BTreeSet<(String, String)> =
        read_rows(&table).iter().map(|r| (r["kafka_topic"].clone(), r["kafka_partition"].clone())).collect();
    assert_eq!(partitions.len(), 5, "rows from every partition of both topics: {partitions:?}");
}
