//! Kafka messages into rows: the value decoded (JSON by the job's schema, or kept as bytes), and
//! the message's own columns beside it.

use crate::files::InputSchema;
use deltalake::arrow::array::{
    Array as _, ArrayRef, BinaryBuilder, Int32Array, Int64Array, ListBuilder, StringArray, StringBuilder,
    StructBuilder, TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType as ArrowType, Field, Fields, Schema, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;
use polars::prelude::DataFrame;
use std::sync::Arc;
use tidewater_core::{Error, Rejected, Result, SourceBatch};

/// The columns every row of a Kafka source carries besides its value's, in order.
pub const KAFKA_COLUMNS: [&str; 6] =
    ["kafka_key", "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "kafka_headers"];

/// How a message's value becomes columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KafkaFormat {
    /// A JSON object per message, read by the schema (as NDJSON files are): a message that does
    /// not fit goes to quarantine with its reason.
    Json(InputSchema),
    /// No decoding: `key` and `value` as bytes (`kafka_key` and `value`, binary).
    Raw,
}

impl KafkaFormat {
    /// The schema of the rows a batch gives the transform: the value's columns, then the
    /// `kafka_*` columns.
    pub fn row_schema(&self) -> Result<polars::prelude::Schema> {
        Ok(decode(&[], self)?.rows.schema().as_ref().clone())
    }
}

/// One message as read, owned.
#[derive(Clone, Debug)]
pub struct Message {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Milliseconds since the epoch (the producer's create time or the broker's log append time).
    pub timestamp_ms: Option<i64>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Message {
    pub fn origin(&self) -> String {
        format!("{}/{}", self.topic, self.partition)
    }

    fn rejected(&self, reason: impl Into<String>) -> Rejected {
        let raw = self.value.as_deref().map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
        Rejected { origin: self.origin(), position: self.offset.max(0) as u64, raw, reason: reason.into() }
    }
}

/// Decodes `messages` (in the order they are given: partition by partition, by offset).
pub fn decode(messages: &[Message], format: &KafkaFormat) -> Result<SourceBatch> {
    match format {
        KafkaFormat::Raw => {
            let columns = columns(messages.iter(), true)?;
            let rows = with_value_column(columns, messages)?;
            Ok(SourceBatch { rows, rejected: Vec::new(), input_records: messages.len() as u64 })
        }
        KafkaFormat::Json(schema) => decode_json(messages, schema),
    }
}

fn decode_json(messages: &[Message], schema: &InputSchema) -> Result<SourceBatch> {
    let mut rejected = Vec::new();
    // The messages given to the JSON reader, one line each (a value's own line breaks are JSON
    // whitespace, turned into spaces so that line n is message n).
    let mut lines = Vec::with_capacity(messages.len());
    let mut text = Vec::with_capacity(messages.iter().map(|m| m.value.as_ref().map_or(0, Vec::len) + 1).sum());
    for message in messages {
        if message.key.as_deref().is_some_and(|k| std::str::from_utf8(k).is_err()) {
            rejected.push(message.rejected("the key is not UTF-8 text (format = \"raw\" keeps keys as bytes)"));
            continue;
        }
        match message.value.as_deref() {
            None => rejected.push(message.rejected("no value (a tombstone)")),
            Some(v) if v.iter().all(u8::is_ascii_whitespace) => rejected.push(message.rejected("an empty value")),
            Some(v) => {
                if v.iter().any(|&b| b == b'\n' || b == b'\r') {
                    text.extend(v.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }));
                } else {
                    text.extend_from_slice(v);
                }
                text.push(b'\n');
                lines.push(message);
            }
        }
    }
    let read = if lines.is_empty() {
        SourceBatch { rows: DataFrame::empty_with_schema(&schema.polars_schema()), ..SourceBatch::default() }
    } else {
        crate::files::read::read_ndjson(&text, "kafka messages", schema)?
    };
    // The reader rejects by line (1-based); the rest are the rows, in line order.
    let mut bad_lines = std::collections::HashSet::new();
    for r in read.rejected {
        let message = lines[(r.position - 1) as usize];
        bad_lines.insert(r.position - 1);
        rejected.push(message.rejected(r.reason));
    }
    let kept = lines.iter().enumerate().filter(|(i, _)| !bad_lines.contains(&(*i as u64))).map(|(_, m)| *m);
    let meta = columns(kept, false)?;
    if meta.height() != read.rows.height() {
        return Err(Error::Internal(format!(
            "decoded {} rows from {} good messages",
            read.rows.height(),
            meta.height()
        )));
    }
    let mut rows = read.rows;
    rows.hstack_mut(meta.columns()).map_err(Error::polars("adding the kafka columns"))?;
    rejected.sort_by(|a, b| (&a.origin, a.position).cmp(&(&b.origin, b.position)));
    Ok(SourceBatch { rows, input_records: messages.len() as u64, rejected })
}

/// The `kafka_*` columns of `messages` (the key as text, or as bytes when `raw`).
fn columns<'a>(messages: impl Iterator<Item = &'a Message>, raw: bool) -> Result<DataFrame> {
    let messages: Vec<&Message> = messages.collect();
    let key: ArrayRef = if raw {
        let mut b = BinaryBuilder::new();
        for m in &messages {
            b.append_option(m.key.as_deref());
        }
        Arc::new(b.finish())
    } else {
        Arc::new(
            messages
                .iter()
                .map(|m| m.key.as_deref().map(|k| std::str::from_utf8(k).unwrap_or_default()))
                .collect::<StringArray>(),
        )
    };
    let topic: StringArray = messages.iter().map(|m| Some(&*m.topic)).collect();
    let partition: Int32Array = messages.iter().map(|m| Some(m.partition)).collect();
    let offset: Int64Array = messages.iter().map(|m| Some(m.offset)).collect();
    let timestamp = messages
        .iter()
        .map(|m| m.timestamp_ms.map(|t| t * 1000))
        .collect::<TimestampMicrosecondArray>()
        .with_timezone("UTC");
    let header_fields = header_fields();
    let mut headers = ListBuilder::new(StructBuilder::from_fields(header_fields.clone(), 0));
    for m in &messages {
        let entries = headers.values();
        for (k, v) in &m.headers {
            if let Some(b) = entries.field_builder::<StringBuilder>(0) {
                b.append_value(k);
            }
            if let Some(b) = entries.field_builder::<BinaryBuilder>(1) {
                b.append_option(v.as_deref());
            }
            entries.append(true);
        }
        headers.append(true);
    }
    let headers = headers.finish();
    let key_type = if raw { ArrowType::Binary } else { ArrowType::Utf8 };
    let schema = Schema::new(vec![
        Field::new("kafka_key", key_type, true),
        Field::new("kafka_topic", ArrowType::Utf8, true),
        Field::new("kafka_partition", ArrowType::Int32, true),
        Field::new("kafka_offset", ArrowType::Int64, true),
        Field::new("kafka_timestamp", ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
        Field::new("kafka_headers", headers.data_type().clone(), true),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![key, Arc::new(topic), Arc::new(partition), Arc::new(offset), Arc::new(timestamp), Arc::new(headers)],
    )
    .map_err(|source| Error::Arrow { what: "the kafka columns".into(), source })?;
    tidewater_core::bridge::to_polars(&batch)
}

/// A header: `key` (text) and `value` (bytes, null when absent), as Spark's Kafka source has it.
fn header_fields() -> Fields {
    Fields::from(vec![Field::new("key", ArrowType::Utf8, true), Field::new("value", ArrowType::Binary, true)])
}

/// A raw message's frame: its value as bytes first, then the `kafka_*` columns.
fn with_value_column(meta: DataFrame, messages: &[Message]) -> Result<DataFrame> {
    let mut b = BinaryBuilder::new();
    for m in messages {
        b.append_option(m.value.as_deref());
    }
    let value: ArrayRef = Arc::new(b.finish());
    let batch =
        RecordBatch::try_new(Arc::new(Schema::new(vec![Field::new("value", ArrowType::Binary, true)])), vec![value])
            .map_err(|source| Error::Arrow { what: "the value column".into(), source })?;
    let mut rows = tidewater_core::bridge::to_polars(&batch)?;
    rows.hstack_mut(meta.columns()).map_err(Error::polars("adding the kafka columns"))?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(partition: i32, offset: i64, value: &str) -> Message {
        Message {
            topic: "orders".into(),
            partition,
            offset,
            key: Some(format!("k{offset}").into_bytes()),
            value: Some(value.as_bytes().to_vec()),
            timestamp_ms: Some(1_700_000_000_000 + offset),
            headers: vec![("trace".into(), Some(b"abc".to_vec()))],
        }
    }

    fn schema() -> InputSchema {
        InputSchema::new(vec![
            InputSchema::parse_column("order_id", "string").unwrap(),
            InputSchema::parse_column("total", "float64").unwrap(),
        ])
    }

    #[test]
    fn bad_messages_are_rejected_with_their_partition_offset_and_reason_and_the_rest_keep_theirs() {
        let mut tombstone = message(1, 7, "");
        tombstone.value = None;
        let messages = vec![
            message(0, 5, r#"{"order_id": "a", "total": 1.5}"#),
            message(0, 6, "{not json"),
            message(0, 7, "{\n \"order_id\": \"b\",\n \"total\": 2}"),
            tombstone,
            message(1, 8, r#"{"order_id": "c", "total": "lots"}"#),
            message(1, 9, r#"{"order_id": "d", "total": 4}"#),
        ];
        let read = decode(&messages, &KafkaFormat::Json(schema())).unwrap();
        assert_eq!(read.input_records, 6);
        assert_eq!(read.rows.height() + read.rejected.len(), 6);
        let bad: Vec<(String, u64)> = read.rejected.iter().map(|r| (r.origin.clone(), r.position)).collect();
        assert_eq!(bad, [("orders/0".into(), 6), ("orders/1".into(), 7), ("orders/1".into(), 8)]);
        assert!(read.rejected[0].reason.contains("malformed JSON"), "{:?}", read.rejected[0]);
        assert!(read.rejected[1].reason.contains("tombstone"));
        assert!(read.rejected[2].reason.contains("total"), "{:?}", read.rejected[2]);
        let ids: Vec<&str> = read.rows.column("order_id").unwrap().str().unwrap().iter().map(Option::unwrap).collect();
        assert_eq!(ids, ["a", "b", "d"]);
        let offsets: Vec<i64> = read.rows.column("kafka_offset").unwrap().i64().unwrap().into_no_null_iter().collect();
        assert_eq!(offsets, [5, 7, 9]);
        let keys: Vec<&str> =
            read.rows.column("kafka_key").unwrap().str().unwrap().iter().map(Option::unwrap).collect();
        assert_eq!(keys, ["k5", "k7", "k9"]);
        for name in KAFKA_COLUMNS {
            assert!(read.rows.schema().contains(name), "{name}");
        }
    }

    #[test]
    fn raw_messages_keep_their_bytes() {
        let mut odd = message(2, 3, "");
        odd.value = Some(vec![0xff, 0x00, b'x']);
        let read = decode(&[odd], &KafkaFormat::Raw).unwrap();
        assert_eq!(read.rows.height(), 1);
        let value = read.rows.column("value").unwrap().binary().unwrap().get(0).unwrap().to_vec();
        assert_eq!(value, [0xff, 0x00, b'x']);
        assert_eq!(read.rows.get_column_names()[0].as_str(), "value");
    }
}
