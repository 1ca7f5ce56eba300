//! Kafka → Delta against a real Kafka-protocol broker (scripts/test.sh starts one and sets
//! TIDEWATER_TEST_KAFKA): exactly once through kills at each crash point and at random moments
//! while a producer writes, stream ≡ batch, and three processes sharing the partitions through
//! the consumer group, one killed and restarted.

use crate::common::{PATIENCE, expect_exit, expect_killed, last_committed_batch, path, tidewater, wait_until};
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

/// The broker that keeps its record batches in the S3 test server, one object each, and where.
fn s3_broker() -> (String, String) {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: this test needs the S3-backed Kafka-protocol broker that scripts/test.sh starts beside the S3 test server")
        })
    };
    (var("TIDEWATER_TEST_KAFKA_S3"), var("TIDEWATER_TEST_KAFKA_S3_STORAGE"))
}

fn create_topic(topic: &str, partitions: i32) {
    create_topic_on(&broker(), topic, partitions);
}

fn create_topic_on(bootstrap: &str, topic: &str, partitions: i32) {
    try_create_topic_on(bootstrap, topic, partitions).unwrap();
}

/// Creates `topic`, or says why the broker refused (the name is still taken, say).
fn try_create_topic_on(bootstrap: &str, topic: &str, partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let done = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .map_err(|e| e.to_string())?;
    for r in done {
        r.map_err(|(name, code)| format!("{name}: {code}"))?;
    }
    Ok(())
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
    produce_on(&broker(), topic, range, pause_every);
}

/// [`produce`] to the broker at `bootstrap`; the messages before each pause end a record batch.
fn produce_on(bootstrap: &str, topic: &str, range: std::ops::Range<u64>, pause_every: u64) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
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
    // Each member logs its partitions' changes to its own file: the test follows the group there.
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log_of = |name: &str| logs.join(format!("{name}.log"));
    let read_log_of = |name: &str| std::fs::read_to_string(log_of(name)).unwrap_or_default();
    let member = |name: &str, log: &str| {
        tidewater(&["run", path(&file), "--member", name])
            .env("RUST_LOG", "warn,tidewater_core=info,tidewater_connectors=info")
            .stderr(std::fs::File::create(log_of(log)).unwrap())
            .spawn()
            .unwrap()
    };
    let mut members = vec![member("m1", "m1"), member("m2", "m2"), member("m3", "m3")];
    let producer = {
        let topic = topic.clone();
        std::thread::spawn(move || produce(&topic, 0..n, 40))
    };
    // The group has shared the partitions (each member owns one) and m2 has committed a batch.
    let shared = wait_until(|| {
        ["m1", "m2", "m3"].iter().all(|m| !owned_partitions(&read_log_of(m)).is_empty())
            && last_committed_batch(&dir.path().join("cp/members/m2")).is_some()
    });
    assert!(shared, "the members did not share the partitions in {PATIENCE:?}; m2's log:\n{}", read_log_of("m2"));
    members[1].kill().unwrap();
    members[1].wait().unwrap();
    // m2 comes back at once: it replays the batch it had planned, then the group rebalances
    // with it, and the partition it is given resumes where the table is.
    members[1] = member("m2", "m2-again");
    let back = wait_until(|| !owned_partitions(&read_log_of("m2-again")).is_empty());
    assert!(back, "the restarted m2 was given no partition in {PATIENCE:?}:\n{}", read_log_of("m2-again"));
    producer.join().unwrap();
    let table = dir.path().join("orders");
    wait_for_rows(&table, (0..n).filter(|&i| is_good(i)).count());
    for m in &mut members {
        m.kill().unwrap();
        m.wait().unwrap();
    }
    // (Shown if the test fails: the test harness prints what a test wrote to stderr.)
    for name in ["m1", "m2", "m3", "m2-again"] {
        eprintln!("{name}'s log:\n{}", read_log_of(name));
    }
    assert_each_message_once(dir.path(), n);
    // Every member wrote, each in its own offset log.
    for name in ["m1", "m2", "m3"] {
        assert!(dir.path().join("cp/members").join(name).join("offsets").exists(), "{name} planned no batch");
    }
}

/// The partitions listed in `field=[("topic", 0), ...]` of a log line.
fn listed(line: &str, field: &str) -> Vec<i32> {
    let Some(at) = line.find(&format!("{field}=[")) else { return Vec::new() };
    let rest = &line[at + field.len() + 2..];
    let list = &rest[..rest.find(']').unwrap_or(rest.len())];
    list.split(')').filter_map(|t| t.rsplit(", ").next()?.trim().parse().ok()).collect()
}

/// The partitions a member owns at the end of its log (its "partitions changed" lines replayed).
fn owned_partitions(log: &str) -> BTreeSet<i32> {
    let mut owned = BTreeSet::new();
    for line in log.lines().filter(|l| l.contains("partitions changed")) {
        for p in listed(line, "revoked") {
            owned.remove(&p);
        }
        owned.extend(listed(line, "assigned"));
    }
    owned
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

/// Produces messages `range` of `value`, each with a `trace` header `t<i>`.
fn produce_with_headers(topic: &str, range: std::ops::Range<u64>) {
    use rdkafka::message::{Header, OwnedHeaders};
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", broker()).create().unwrap();
    for i in range {
        let (key, value, trace) = (format!("k{i}"), value(i), format!("t{i}"));
        let headers = OwnedHeaders::new().insert(Header { key: "trace", value: Some(&trace) });
        let mut record = BaseRecord::to(topic).key(&key).payload(&value).headers(headers);
        while let Err((_, r)) = producer.send(record) {
            record = r;
            producer.poll(Duration::from_millis(10));
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// A message as read back: key, value, headers.
type Read = (String, String, Vec<(String, String)>);

/// Every message of `topic` (partitions `0..partitions`) until `want` have come or 30 s passed.
fn consume_all(topic: &str, partitions: i32, want: usize) -> Vec<Read> {
    use rdkafka::Message as _;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers as _;
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", broker()).set("group.id", "test-reader").create().unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, rdkafka::Offset::Beginning).unwrap();
    }
    consumer.assign(&list).unwrap();
    let (mut got, deadline) = (Vec::new(), Instant::now() + Duration::from_secs(30));
    // Past `want`, a little longer: a duplicate would show.
    let mut settle = None;
    while Instant::now() < deadline && settle.is_none_or(|s: Instant| Instant::now() < s) {
        if got.len() >= want {
            settle.get_or_insert_with(|| Instant::now() + Duration::from_secs(1));
        }
        let Some(m) = consumer.poll(Duration::from_millis(100)) else { continue };
        let m = m.unwrap();
        let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
        let headers =
            m.headers().map(|h| h.iter().map(|h| (h.key.to_string(), text(h.value))).collect()).unwrap_or_default();
        got.push((text(m.key()), text(m.payload()), headers));
    }
    got
}

#[test]
fn the_kafka_sink_delivers_each_row_with_its_key_and_headers_at_least_once_through_kills() {
    let dir = tempfile::tempdir().unwrap();
    let id = uuid::Uuid::new_v4().simple();
    let (input, output) = (format!("in-{id}"), format!("out-{id}"));
    create_topic(&input, 3);
    create_topic(&output, 2);
    let n = 600;
    produce_with_headers(&input, 0..n);
    let file = job(dir.path(), &input, "");
    let text = std::fs::read_to_string(&file).unwrap();
    let sink = format!(
        "[sink]\nkind = \"kafka\"\nbootstrap_servers = \"{}\"\ntopic = \"{output}\"\nkey_column = \"kafka_key\"\nheaders_column = \"kafka_headers\"\n",
        broker()
    );
    let text = text
        .replace(
            "CAST(placed_at AS DATE) AS date, kafka_topic, kafka_partition, kafka_offset FROM input",
            "kafka_key, kafka_headers, kafka_partition, kafka_offset FROM input",
        )
        .replace(
            &format!("[sink]\ntable = \"{}\"\npartition_by = [\"date\"]\n", dir.path().join("orders").display()),
            &sink,
        );
    std::fs::write(&file, text).unwrap();
    let run = || tidewater(&["run", path(&file), "--trigger", "available-now"]);
    // Killed before batch 1's rows are sent: the restart sends them, once. Killed after batch
    // 3's are delivered and before its commit-log entry: the restart sends them again (at
    // least once).
    expect_killed(run(), "after-offset-log:1");
    expect_killed(run(), "after-sink-delivery:3");
    expect_exit(run(), 0);

    let good: Vec<u64> = (0..n).filter(|&i| is_good(i)).collect();
    let got = consume_all(&output, 2, good.len());
    let mut orders = std::collections::BTreeMap::<String, usize>::new();
    for (key, value, headers) in &got {
        let row: serde_json::Value = serde_json::from_str(value).unwrap_or_else(|e| panic!("`{value}`: {e}"));
        let order = row["order_id"].as_str().unwrap().to_string();
        let i: u64 = order[1..].parse().unwrap();
        assert_eq!(key, &format!("k{i}"), "the key column keys the message");
        assert_eq!(headers, &[("trace".to_string(), format!("t{i}"))], "the headers column's entries");
        assert!(row.get("kafka_headers").is_none(), "the headers are not in the value: {value}");
        assert_eq!(row["total"].as_f64(), Some(i as f64 + 0.5));
        *orders.entry(order).or_default() += 1;
    }
    let sent: BTreeSet<String> = orders.keys().cloned().collect();
    assert_eq!(sent, good.iter().map(|i| format!("o{i}")).collect(), "every good message's row");
    assert!(orders.values().all(|&n| n <= 2), "no row sent more than twice");
    // The rows sent twice are batch 3's: one batch of at most 100 offsets.
    let twice = orders.values().filter(|&&n| n == 2).count();
    assert!(twice > 0 && twice <= 100, "{twice} rows sent twice; batch 3's rows, once more, expected");
    assert_eq!(got.len(), good.len() + twice);
    let quarantined = read_rows(&dir.path().join("cp/quarantine"));
    assert_eq!(quarantined.len() as u64, n - good.len() as u64, "the bad messages are in <checkpoint>/quarantine");
}

fn delete_topic(topic: &str) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", broker()).create().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for r in rt.block_on(admin.delete_topics(&[topic], &AdminOptions::new())).unwrap() {
        r.unwrap();
    }
}

/// Offsets deleted by retention are the data-loss rule's other half, unit-tested in the
/// connector (`lost`): the test broker (tansu 0.6, in-memory storage) does not implement
/// DeleteRecords. Here the topic is deleted and made again, so the offsets the table recorded no
/// longer exist; the job stops with the data-loss error, naming the partition and offsets,
/// instead of waiting silently for offsets that will never come.
#[test]
fn a_topic_made_again_under_the_job_stops_it_with_a_data_loss_error_naming_the_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("orders-{}", uuid::Uuid::new_v4().simple());
    create_topic(&topic, 2);
    produce(&topic, 0..200, 0);
    let file = job(dir.path(), &topic, "");
    let run = || tidewater(&["run", path(&file), "--trigger", "available-now"]);
    expect_exit(run(), 0);
    let table = dir.path().join("orders");
    let written = read_rows(&table).len();
    assert!(written > 0);
    delete_topic(&topic);
    // Made again as soon as the broker has finished deleting it and accepts the name.
    let mut refused = String::new();
    let made = wait_until(|| match try_create_topic_on(&broker(), &topic, 2) {
        Ok(()) => true,
        Err(e) => {
            refused = e;
            false
        }
    });
    assert!(made, "the broker still refuses to make {topic} again after {PATIENCE:?}: {refused}");
    produce(&topic, 0..30, 0);
    let out = expect_exit(run(), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("data loss") && stderr.contains(&format!("{topic}/")), "{stderr}");
    assert!(stderr.contains("was read up to offset") && stderr.contains("the partition now ends at"), "{stderr}");
    // fail_on_data_loss = false cannot skip to offsets that do not follow: still refused.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("format = \"json\"", "format = \"json\"\nfail_on_data_loss = false")).unwrap();
    expect_exit(run(), 2);
    assert_eq!(read_rows(&table).len(), written, "nothing written past the loss");
    // A new group id and checkpoint are a new progress: the new topic is read from its start.
    let text = std::fs::read_to_string(&file).unwrap();
    let again = text.replace("format = \"json\"", "format = \"json\"\ngroup_id = \"orders-again\"").replace(
        &format!("checkpoint = \"{}\"", dir.path().join("cp").display()),
        &format!("checkpoint = \"{}\"", dir.path().join("cp-again").display()),
    );
    assert_ne!(again, text);
    std::fs::write(&file, again).unwrap();
    expect_exit(run(), 0);
    let good_again = (0..30).filter(|&i| is_good(i)).count();
    assert_eq!(read_rows(&table).len(), written + good_again, "the new topic's messages, once");
}

/// Deletes the record batches of `topic`'s partition 0 that start before `offset` from the S3
/// broker's storage, as a broker's retention deletes a partition's oldest segments. Returns how
/// many it deleted.
fn delete_batches_before(storage: &str, topic: &str, offset: i64) -> usize {
    use futures::TryStreamExt as _;
    use object_store::ObjectStoreExt as _;
    let url = url::Url::parse(storage).unwrap();
    let (store, root) = tidewater_core::location::object_store_at(&url).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let all: Vec<_> = store.list(Some(&root)).try_collect().await.unwrap();
        let records = format!("/topics/{topic}/partitions/0000000000/records/");
        let mut deleted = 0;
        for object in all {
            let key = object.location.to_string();
            let Some(name) = key.split_once(&records).map(|(_, name)| name.to_string()) else { continue };
            let first: i64 = name[..20].parse().unwrap_or_else(|_| panic!("a record batch named {key}"));
            if first < offset {
                store.delete(&object.location).await.unwrap();
                deleted += 1;
            }
        }
        deleted
    })
}

#[test]
fn offsets_deleted_by_retention_before_they_were_read_stop_the_job_or_are_skipped_when_allowed() {
    let (bootstrap, storage) = s3_broker();
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("retained-{}", uuid::Uuid::new_v4().simple());
    create_topic_on(&bootstrap, &topic, 1);
    produce_on(&bootstrap, &topic, 0..30, 10);
    let file = job(dir.path(), &topic, "");
    let text = std::fs::read_to_string(&file).unwrap();
    let on_s3 =
        text.replace(&format!("bootstrap_servers = \"{}\"", broker()), &format!("bootstrap_servers = \"{bootstrap}\""));
    assert_ne!(on_s3, text);
    std::fs::write(&file, &on_s3).unwrap();
    let run = || tidewater(&["run", path(&file), "--trigger", "available-now"]);
    let table = dir.path().join("orders");
    let good = |r: std::ops::Range<u64>| r.filter(|&i| is_good(i)).count();
    // This broker's high watermark lags (it answers by objects' modification times, to the
    // second), so a run may see less than all of it at its start: run until it has read all.
    let read_all = |want: usize| {
        for _ in 0..10 {
            expect_exit(run(), 0);
            if read_rows(&table).len() >= want {
                break;
            }
        }
    };
    read_all(good(0..30));
    assert_eq!(read_rows(&table).len(), good(0..30));
    // Twenty more arrive while the job is down; then retention deletes every record batch
    // before offset 50, ten of them never read.
    produce_on(&bootstrap, &topic, 30..50, 10);
    produce_on(&bootstrap, &topic, 50..60, 0);
    let deleted = delete_batches_before(&storage, &topic, 50);
    assert!(deleted >= 4, "{deleted} record batches deleted");
    let out = expect_exit(run(), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("data loss"), "{stderr}");
    assert!(stderr.contains(&format!("{topic}/0 offsets 30..50 are no longer in the topic")), "{stderr}");
    assert!(stderr.contains("fail_on_data_loss = false skips them"), "{stderr}");
    assert_eq!(read_rows(&table).len(), good(0..30), "nothing written past the loss");
    // With fail_on_data_loss = false the job skips to the earliest offset left, and says so.
    std::fs::write(&file, on_s3.replace("format = \"json\"", "format = \"json\"\nfail_on_data_loss = false")).unwrap();
    let out = expect_exit(run(), 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("offsets 30..50 are no longer in the topic") && stderr.contains("skipped"), "{stderr}");
    read_all(good(0..30) + good(50..60));
    let offsets: BTreeSet<i64> = read_rows(&table).iter().map(|r| r["kafka_offset"].parse().unwrap()).collect();
    let want: BTreeSet<i64> = (0..30).chain(50..60).filter(|&i| is_good(i)).map(|i| i as i64).collect();
    assert_eq!(offsets, want, "what was read before, then from the earliest left");
}

#[test]
fn a_batch_run_with_from_reads_the_messages_timed_since() {
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("orders-{}", uuid::Uuid::new_v4().simple());
    create_topic(&topic, 3);
    produce(&topic, 0..150, 0);
    // The broker has these messages (`produce` waits for its acks), all timed before `since`; the
    // next ones are produced once the clock has passed it, so each is timed after.
    let since_ms = chrono::Utc::now().timestamp_millis() + 1;
    let passed = wait_until(|| chrono::Utc::now().timestamp_millis() > since_ms);
    assert!(passed, "the clock did not pass {since_ms} ms");
    let since =
        chrono::DateTime::from_timestamp_millis(since_ms).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    produce(&topic, 150..300, 0);
    let file = job(dir.path(), &topic, "");
    let into = dir.path().join("since");
    expect_exit(tidewater(&["batch", path(&file), "--into", path(&into), "--from", &since]), 0);
    let ids: BTreeSet<String> = read_rows(&into).iter().map(|r| r["order_id"].clone()).collect();
    let want: BTreeSet<String> = (150..300).filter(|&i| is_good(i)).map(|i| format!("o{i}")).collect();
    assert_eq!(ids, want, "the messages produced after {since}");
    // The same run again is done; another time range into the same table is refused, naming both.
    expect_exit(tidewater(&["batch", path(&file), "--into", path(&into), "--from", &since]), 0);
    let out = expect_exit(tidewater(&["batch", path(&file), "--into", path(&into), "--from", "2024-01-01"]), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("was planned over") && stderr.contains("2024-01-01T00:00:00.000Z"), "{stderr}");
    assert_eq!(read_rows(&into).len(), want.len(), "nothing appended");
    let out = expect_exit(tidewater(&["batch", path(&file), "--into", path(&into), "--from", "yesterday"]), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("`yesterday` is not a time"));
}
