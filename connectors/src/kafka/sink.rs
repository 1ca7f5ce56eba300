//! The Kafka sink: each batch's rows as messages of one topic, for derived topics and alerts.
//!
//! A row becomes a message whose value is the row as a JSON object (every column but the
//! headers column), whose key is the `key_column`'s value as text (none when unset or null) and
//! whose headers are the `headers_column`'s `{key, value}` entries (the shape of a Kafka
//! source's `kafka_headers`, so a topic-to-topic job can pass them on).
//!
//! # Guarantee: at least once
//! The producer is idempotent (`enable.idempotence`, `acks=all`): its own retries never
//! duplicate a message. A batch is delivered, every message acknowledged by the broker, before
//! the engine writes its done entry (`commits/N`); a crash between the two replays the batch, and its
//! messages are sent again. So every row reaches the topic, and a batch cut short by a crash may
//! reach it twice. Consumers that need exactly once deduplicate by key (or by the columns a
//! row carries, such as `kafka_partition` and `kafka_offset` of a Kafka source).

use async_trait::async_trait;
use polars::prelude::*;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tidewater_core::{BatchId, Error, Result, Sink, SinkOutcome, SinkProvider};

/// A configured Kafka sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSinkSpec {
    pub bootstrap_servers: String,
    pub topic: String,
    /// The column whose value (as text) keys each message.
    pub key_column: Option<String>,
    /// A `list<struct{key, value}>` column sent as the message's headers.
    pub headers_column: Option<String>,
    /// librdkafka producer properties (security, timeouts), by librdkafka's names.
    pub options: BTreeMap<String, String>,
    /// How long a batch may wait for its messages to be acknowledged.
    pub timeout: Duration,
}

impl KafkaSinkSpec {
    pub fn new(bootstrap_servers: impl Into<String>, topic: impl Into<String>) -> Self {
        KafkaSinkSpec {
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            key_column: None,
            headers_column: None,
            options: BTreeMap::new(),
            timeout: Duration::from_secs(60),
        }
    }

    pub fn describe(&self) -> String {
        format!("kafka {} topic {}", self.bootstrap_servers, self.topic)
    }

    fn err(&self, problem: impl std::fmt::Display) -> Error {
        Error::Internal(format!("{}: {problem}", self.describe()))
    }

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("linger.ms", "5");
        for (k, v) in &self.options {
            config.set(k, v);
        }
        // What the guarantee rests on, after the options (a job file cannot set these).
        config.set("bootstrap.servers", &self.bootstrap_servers).set("enable.idempotence", "true").set("acks", "all");
        config
    }

    /// The producer properties a job file may not set: the guarantee rests on them.
    pub const FIXED_OPTIONS: [&str; 4] = ["bootstrap.servers", "enable.idempotence", "acks", "transactional.id"];

    /// Whether librdkafka accepts the options (no client is created, no broker contacted).
    pub fn check_options(&self) -> std::result::Result<(), String> {
        self.config().create_native_config().map(drop).map_err(|e| e.to_string())
    }
}

/// Counts the broker's acknowledgements and keeps the first failure.
#[derive(Clone, Default)]
struct Delivery {
    /// The first failure. (A panic while it was locked breaks nothing an `Option` keeps: a
    /// poisoned lock is used as it is, so no failure is lost.)
    failed: Arc<Mutex<Option<String>>>,
}

impl ClientContext for Delivery {}

impl ProducerContext for Delivery {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
            failed.get_or_insert_with(|| e.to_string());
        }
    }
}

/// Whether a column of this type holds bytes anywhere (JSON has no bytes).
fn has_binary(dtype: &DataType) -> bool {
    match dtype {
        DataType::Binary | DataType::BinaryOffset => true,
        DataType::List(inner) => has_binary(inner),
        DataType::Struct(fields) => fields.iter().any(|f| has_binary(f.dtype())),
        _ => false,
    }
}

/// A message's headers: key, value.
type Headers = Vec<(String, Option<Vec<u8>>)>;

/// The messages of a batch: value, key, headers.
type Messages = Vec<(Vec<u8>, Option<String>, Headers)>;

/// A batch's rows as messages.
fn messages(spec: &KafkaSinkSpec, rows: &DataFrame) -> Result<Messages> {
    let polars_err = |what: &str| Error::polars(format!("{}: {what}", spec.describe()));
    let keys: Option<Vec<Option<String>>> = match &spec.key_column {
        Some(name) => {
            let column = rows.column(name).map_err(polars_err("the key column"))?;
            let text = column.cast(&DataType::String).map_err(polars_err("the key column as text"))?;
            let text = text.str().map_err(polars_err("the key column as text"))?;
            Some(text.iter().map(|k| k.map(str::to_string)).collect())
        }
        None => None,
    };
    let headers: Option<Vec<Headers>> = match &spec.headers_column {
        Some(name) => {
            let column = rows.column(name).map_err(polars_err("the headers column"))?;
            let expected = DataType::List(Box::new(DataType::Struct(vec![
                Field::new("key".into(), DataType::Binary),
                Field::new("value".into(), DataType::Binary),
            ])));
            let list = column.cast(&expected).map_err(|_| {
                spec.err(format!("headers column `{name}` is not a list of {{key, value}} (as kafka_headers)"))
            })?;
            let list = list.list().map_err(polars_err("the headers column"))?;
            let mut out = Vec::with_capacity(rows.height());
            for entries in list.series_iter() {
                let mut row = Vec::new();
                if let Some(entries) = entries {
                    let fields = entries.struct_().map_err(polars_err("a headers entry"))?.fields_as_series();
                    let (k, v) = (
                        fields[0].binary().map_err(polars_err("a header key"))?,
                        fields[1].binary().map_err(polars_err("a header value"))?,
                    );
                    for (k, v) in k.iter().zip(v.iter()) {
                        row.push((String::from_utf8_lossy(k.unwrap_or_default()).into_owned(), v.map(<[u8]>::to_vec)));
                    }
                }
                out.push(row);
            }
            Some(out)
        }
        None => None,
    };
    let mut values = match &spec.headers_column {
        Some(name) => rows.drop(name).map_err(polars_err("the value columns"))?,
        None => rows.clone(),
    };
    if let Some(column) = values.columns().iter().find(|c| has_binary(c.dtype())) {
        return Err(spec.err(format!(
            "column `{}` holds bytes ({}), and a message's value is the row as JSON: CAST it to a string in the transform, or leave it out (a Kafka source's `kafka_headers` goes to `headers_column`)",
            column.name(),
            column.dtype()
        )));
    }
    let mut json = Vec::new();
    JsonWriter::new(&mut json)
        .with_json_format(JsonFormat::JsonLines)
        .finish(&mut values)
        .map_err(polars_err("the rows as JSON"))?;
    let lines = json.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    Ok(lines
        .enumerate()
        .map(|(i, value)| {
            let key = keys.as_ref().and_then(|k| k[i].clone());
            let headers = headers.as_ref().map(|h| h[i].clone()).unwrap_or_default();
            (value.to_vec(), key, headers)
        })
        .collect())
}

/// Opens a [`KafkaSinkSpec`]'s producer.
pub struct KafkaSinkProvider {
    spec: KafkaSinkSpec,
}

impl KafkaSinkProvider {
    pub fn new(spec: KafkaSinkSpec) -> Self {
        KafkaSinkProvider { spec }
    }
}

#[async_trait]
impl SinkProvider for KafkaSinkProvider {
    fn describe(&self) -> String {
        self.spec.describe()
    }

    async fn open(&self) -> Result<Box<dyn Sink>> {
        let delivery = Delivery::default();
        let producer = self
            .spec
            .config()
            .create_with_context(delivery.clone())
            .map_err(|e| self.spec.err(format!("cannot create a producer: {e}")))?;
        Ok(Box::new(KafkaSink { spec: Arc::new(self.spec.clone()), producer: Arc::new(producer), delivery }))
    }
}

struct KafkaSink {
    spec: Arc<KafkaSinkSpec>,
    producer: Arc<BaseProducer<Delivery>>,
    delivery: Delivery,
}

#[async_trait]
impl Sink for KafkaSink {
    fn describe(&self) -> String {
        self.spec.describe()
    }

    async fn add_batch(&mut self, id: BatchId, rows: DataFrame, _range: &str) -> Result<SinkOutcome> {
        let (spec, producer, failed) = (self.spec.clone(), self.producer.clone(), self.delivery.failed.clone());
        tidewater_core::compute::blocking("producing a batch to kafka", move || {
            let batch = messages(&spec, &rows)?;
            for (value, key, headers) in &batch {
                let mut owned = OwnedHeaders::new_with_capacity(headers.len());
                for (k, v) in headers {
                    owned = owned.insert(Header { key: k, value: v.as_deref() });
                }
                let mut record = BaseRecord::to(&spec.topic).payload(value).headers(owned);
                if let Some(key) = key {
                    record = record.key(key);
                }
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((
                            rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                            r,
                        )) => {
                            record = r;
                            producer.poll(Duration::from_millis(10));
                        }
                        Err((e, _)) => return Err(spec.err(format!("batch {id}: cannot produce: {e}"))),
                    }
                }
            }
            producer
                .flush(spec.timeout)
                .map_err(|e| spec.err(format!("batch {id}: messages not acknowledged: {e}")))?;
            if let Some(e) = failed.lock().unwrap_or_else(PoisonError::into_inner).take() {
                return Err(spec.err(format!("batch {id}: a message was not delivered: {e}")));
            }
            Ok(SinkOutcome::Delivered { rows: batch.len() as u64 })
        })
        .await
    }
}
