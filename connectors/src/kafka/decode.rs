//! Kafka messages into rows: the value decoded (JSON by the job's schema, or kept as bytes), and
//! the message's own columns beside it.

use crate::files::InputSchema;
use deltalake::arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, Int32Array, Int64Array, ListBuilder, StringArray,
    StringBuilder, StructBuilder, TimestampMicrosecondArray,
};
use deltalake::arrow::compute::{cast, concat, filter};
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
        Ok(decode(Messages::default(), self)?.rows.schema().as_ref().clone())
    }
}

/// One message as the client hands it over, borrowed from its buffers.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// Milliseconds since the epoch (the producer's create time or the broker's log append time).
    pub timestamp_ms: Option<i64>,
}

/// Builds a [`Run`]: messages of one partition, pushed by offset. Nothing is allocated per
/// message: keys, values and headers go straight into Arrow buffers.
pub struct RunBuilder {
    topic: Arc<str>,
    partition: i32,
    offsets: Vec<i64>,
    timestamps: Vec<Option<i64>>,
    keys: BinaryBuilder,
    values: BinaryBuilder,
    headers: ListBuilder<StructBuilder>,
}

impl RunBuilder {
    pub fn new(topic: &str, partition: i32) -> RunBuilder {
        RunBuilder {
            topic: Arc::from(topic),
            partition,
            offsets: Vec::new(),
            timestamps: Vec::new(),
            keys: BinaryBuilder::new(),
            values: BinaryBuilder::new(),
            headers: ListBuilder::new(StructBuilder::from_fields(header_fields(), 0)),
        }
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Appends `message` (at an offset after the last one's) and its headers (key, value).
    pub fn push<'h>(&mut self, message: Message<'_>, headers: impl IntoIterator<Item = (&'h str, Option<&'h [u8]>)>) {
        self.offsets.push(message.offset);
        self.timestamps.push(message.timestamp_ms);
        self.keys.append_option(message.key);
        self.values.append_option(message.value);
        let entries = self.headers.values();
        for (key, value) in headers {
            if let Some(b) = entries.field_builder::<StringBuilder>(0) {
                b.append_value(key);
            }
            if let Some(b) = entries.field_builder::<BinaryBuilder>(1) {
                b.append_option(value);
            }
            entries.append(true);
        }
        self.headers.append(true);
    }

    pub fn finish(mut self) -> Run {
        let n = self.offsets.len();
        let timestamps = self.timestamps.iter().map(|t| t.map(|t| t * 1000));
        Run {
            topic: Arc::new(std::iter::repeat_n(Some(&*self.topic), n).collect::<StringArray>()),
            partition: Arc::new(Int32Array::from(vec![self.partition; n])),
            offsets: Int64Array::from(self.offsets),
            timestamps: Arc::new(timestamps.collect::<TimestampMicrosecondArray>().with_timezone("UTC")),
            keys: self.keys.finish(),
            values: self.values.finish(),
            headers: Arc::new(self.headers.finish()),
            order: (self.topic, self.partition),
        }
    }
}

/// Messages of one partition by offset, as Arrow arrays: slicing one copies nothing.
#[derive(Clone)]
pub struct Run {
    topic: ArrayRef,
    partition: ArrayRef,
    offsets: Int64Array,
    timestamps: ArrayRef,
    keys: BinaryArray,
    values: BinaryArray,
    headers: ArrayRef,
    /// Topic and partition: the runs' order in a batch.
    order: (Arc<str>, i32),
}

impl Run {
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// The messages' offsets, ascending.
    pub fn offsets(&self) -> &[i64] {
        self.offsets.values()
    }

    /// Messages `[at, at + len)` of the run.
    pub fn slice(&self, at: usize, len: usize) -> Run {
        Run {
            topic: self.topic.slice(at, len),
            partition: self.partition.slice(at, len),
            offsets: self.offsets.slice(at, len),
            timestamps: self.timestamps.slice(at, len),
            keys: self.keys.slice(at, len),
            values: self.values.slice(at, len),
            headers: self.headers.slice(at, len),
            order: self.order.clone(),
        }
    }

    fn rejected(&self, i: usize, reason: impl Into<String>) -> Rejected {
        let raw = match self.values.is_valid(i) {
            true => String::from_utf8_lossy(self.values.value(i)).into_owned(),
            false => String::new(),
        };
        let position = self.offsets.value(i).max(0) as u64;
        let origin = format!("{}/{}", self.order.0, self.order.1);
        Rejected { origin, position, raw, reason: reason.into() }
    }
}

/// The messages of a batch: runs of partitions.
#[derive(Default)]
pub struct Messages {
    runs: Vec<Run>,
}

impl Messages {
    pub fn len(&self) -> usize {
        self.runs.iter().map(Run::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.iter().all(Run::is_empty)
    }

    /// Adds `run` (after any earlier run of its partition).
    pub fn push(&mut self, run: Run) {
        self.runs.push(run);
    }

    /// The runs in (topic, partition) order, each partition's in the order pushed.
    fn into_runs(mut self) -> Vec<Run> {
        self.runs.sort_by(|a, b| a.order.cmp(&b.order));
        if self.runs.is_empty() {
            self.runs.push(RunBuilder::new("", 0).finish());
        }
        self.runs
    }
}

/// Decodes `messages`: the rows partition by partition, each by offset.
pub fn decode(messages: Messages, format: &KafkaFormat) -> Result<SourceBatch> {
    let input_records = messages.len() as u64;
    let runs = messages.into_runs();
    match format {
        KafkaFormat::Raw => {
            let values = concat_arrays(runs.iter().map(|r| &r.values as &dyn Array))?;
            let mut rows = to_polars(vec![(Field::new("value", ArrowType::Binary, true), values)])?;
            let meta = columns(&runs, None, true)?;
            rows.hstack_mut(meta.columns()).map_err(Error::polars("adding the kafka columns"))?;
            Ok(SourceBatch { rows, rejected: Vec::new(), input_records })
        }
        KafkaFormat::Json(schema) => decode_json(&runs, schema, input_records),
    }
}

fn decode_json(runs: &[Run], schema: &InputSchema, input_records: u64) -> Result<SourceBatch> {
    let mut rejected = Vec::new();
    // Which messages become rows; the messages given to the JSON reader, one line each (a
    // value's own line breaks are JSON whitespace, turned into spaces so that line n is one
    // message), as (run, index).
    let mut keep = Vec::with_capacity(input_records as usize);
    let mut lines = Vec::with_capacity(input_records as usize);
    let mut text = Vec::with_capacity(runs.iter().map(|r| r.values.values().len() + r.values.len()).sum());
    for (r, run) in runs.iter().enumerate() {
        for i in 0..run.values.len() {
            let reason = if run.keys.is_valid(i) && std::str::from_utf8(run.keys.value(i)).is_err() {
                Some("the key is not UTF-8 text (format = \"raw\" keeps keys as bytes)")
            } else if run.values.is_null(i) {
                Some("no value (a tombstone)")
            } else if run.values.value(i).iter().all(u8::is_ascii_whitespace) {
                Some("an empty value")
            } else {
                None
            };
            if let Some(reason) = reason {
                rejected.push(run.rejected(i, reason));
                keep.push(false);
                continue;
            }
            let v = run.values.value(i);
            if memchr::memchr2(b'\n', b'\r', v).is_some() {
                text.extend(v.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }));
            } else {
                text.extend_from_slice(v);
            }
            text.push(b'\n');
            lines.push((r, i, keep.len()));
            keep.push(true);
        }
    }
    let read = if lines.is_empty() {
        SourceBatch { rows: DataFrame::empty_with_schema(&schema.polars_schema()), ..SourceBatch::default() }
    } else {
        crate::files::read::read_ndjson(&text, "kafka messages", schema)?
    };
    drop(text);
    // The reader rejects by line (1-based); the rest are the rows, in line order.
    for r in read.rejected {
        let (run, i, at) = lines[(r.position - 1) as usize];
        keep[at] = false;
        rejected.push(runs[run].rejected(i, r.reason));
    }
    let meta = columns(runs, Some(&BooleanArray::from(keep)), false)?;
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
    Ok(SourceBatch { rows, input_records, rejected })
}

/// The `kafka_*` columns of `runs`, of the rows `keep` says (all when `None`); the key as text,
/// or as bytes when `raw`.
fn columns(runs: &[Run], keep: Option<&BooleanArray>, raw: bool) -> Result<DataFrame> {
    let column = |pick: fn(&Run) -> &dyn Array| concat_arrays(runs.iter().map(pick));
    let mut key = column(|r| &r.keys)?;
    if let Some(keep) = keep {
        // Only kept rows' keys are known to be text: the others are dropped before the cast.
        key = filter(&*key, keep).map_err(arrow_err("the kafka keys"))?;
    }
    if !raw {
        key = cast(&*key, &ArrowType::Utf8).map_err(arrow_err("the kafka keys"))?;
    }
    let headers = column(|r| &*r.headers)?;
    let key_type = if raw { ArrowType::Binary } else { ArrowType::Utf8 };
    let mut fields = vec![
        (Field::new("kafka_topic", ArrowType::Utf8, true), column(|r| &*r.topic)?),
        (Field::new("kafka_partition", ArrowType::Int32, true), column(|r| &*r.partition)?),
        (Field::new("kafka_offset", ArrowType::Int64, true), column(|r| &r.offsets)?),
        (
            Field::new("kafka_timestamp", ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
            column(|r| &*r.timestamps)?,
        ),
        (Field::new("kafka_headers", headers.data_type().clone(), true), headers),
    ];
    if let Some(keep) = keep {
        for (_, array) in &mut fields {
            *array = filter(&**array, keep).map_err(arrow_err("the kafka columns"))?;
        }
    }
    fields.insert(0, (Field::new("kafka_key", key_type, true), key));
    to_polars(fields)
}

fn concat_arrays<'a>(arrays: impl Iterator<Item = &'a dyn Array>) -> Result<ArrayRef> {
    let arrays: Vec<&dyn Array> = arrays.collect();
    match arrays.as_slice() {
        [one] => Ok(one.slice(0, one.len())),
        _ => concat(&arrays).map_err(arrow_err("the kafka columns")),
    }
}

fn arrow_err(what: &'static str) -> impl Fn(deltalake::arrow::error::ArrowError) -> Error {
    move |source| Error::Arrow { what: what.into(), source }
}

fn to_polars(fields: Vec<(Field, ArrayRef)>) -> Result<DataFrame> {
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = fields.into_iter().unzip();
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(arrow_err("the kafka columns"))?;
    tidewater_core::bridge::to_polars(&batch)
}

/// A header: `key` (text) and `value` (bytes, null when absent), as Spark's Kafka source has it.
fn header_fields() -> Fields {
    Fields::from(vec![Field::new("key", ArrowType::Utf8, true), Field::new("value", ArrowType::Binary, true)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(run: &mut RunBuilder, offset: i64, value: Option<&[u8]>) {
        let key = format!("k{offset}");
        let message =
            Message { offset, key: Some(key.as_bytes()), value, timestamp_ms: Some(1_700_000_000_000 + offset) };
        run.push(message, [("trace", Some(&b"abc"[..]))]);
    }

    fn schema() -> InputSchema {
        InputSchema::new(vec![
            InputSchema::parse_column("order_id", "string").unwrap(),
            InputSchema::parse_column("total", "float64").unwrap(),
        ])
    }

    #[test]
    fn bad_messages_are_rejected_with_their_partition_offset_and_reason_and_the_rest_keep_theirs() {
        let (mut zero, mut one) = (RunBuilder::new("orders", 0), RunBuilder::new("orders", 1));
        push(&mut one, 7, None);
        push(&mut zero, 5, Some(br#"{"order_id": "a", "total": 1.5}"#));
        push(&mut zero, 6, Some(b"{not json"));
        push(&mut one, 8, Some(br#"{"order_id": "c", "total": "lots"}"#));
        push(&mut one, 9, Some(br#"{"order_id": "d", "total": 4}"#));
        push(&mut zero, 7, Some(b"{\n \"order_id\": \"b\",\n \"total\": 2}"));
        // Partition 1 first, and partition 0 in two slices: the rows come by partition, by offset.
        let (one, zero) = (one.finish(), zero.finish());
        let mut messages = Messages::default();
        messages.push(one);
        messages.push(zero.slice(0, 2));
        messages.push(zero.slice(2, 1));
        let read = decode(messages, &KafkaFormat::Json(schema())).unwrap();
        assert_eq!(read.input_records, 6);
        assert_eq!(read.rows.height() + read.rejected.len(), 6);
        let bad: Vec<(String, u64)> = read.rejected.iter().map(|r| (r.origin.clone(), r.position)).collect();
        assert_eq!(bad, [("orders/0".into(), 6), ("orders/1".into(), 7), ("orders/1".into(), 8)]);
        assert!(read.rejected[0].reason.contains("malformed JSON"), "{:?}", read.rejected[0]);
        assert_eq!(read.rejected[0].raw, "{not json");
        assert!(read.rejected[1].reason.contains("tombstone"));
        assert!(read.rejected[2].reason.contains("total"), "{:?}", read.rejected[2]);
        let ids: Vec<&str> = read.rows.column("order_id").unwrap().str().unwrap().iter().map(Option::unwrap).collect();
        assert_eq!(ids, ["a", "b", "d"]);
        let offsets: Vec<i64> = read.rows.column("kafka_offset").unwrap().i64().unwrap().into_no_null_iter().collect();
        assert_eq!(offsets, [5, 7, 9]);
        let partitions: Vec<i32> =
            read.rows.column("kafka_partition").unwrap().i32().unwrap().into_no_null_iter().collect();
        assert_eq!(partitions, [0, 0, 1]);
        let keys: Vec<&str> =
            read.rows.column("kafka_key").unwrap().str().unwrap().iter().map(Option::unwrap).collect();
        assert_eq!(keys, ["k5", "k7", "k9"]);
        let headers = read.rows.column("kafka_headers").unwrap().list().unwrap().get_as_series(2).unwrap();
        assert_eq!(headers.len(), 1);
        for name in KAFKA_COLUMNS {
            assert!(read.rows.schema().contains(name), "{name}");
        }
        assert_eq!(read.rows.schema().as_ref(), &KafkaFormat::Json(schema()).row_schema().unwrap());
    }

    #[test]
    fn a_key_that_is_not_text_is_rejected_and_kept_as_bytes_when_raw() {
        let mut run = RunBuilder::new("orders", 0);
        let message =
            Message { offset: 3, key: Some(&[0xff, 0xfe]), value: Some(br#"{"order_id": "a"}"#), timestamp_ms: None };
        run.push(message, []);
        let run = run.finish();
        let mut messages = Messages::default();
        messages.push(run.clone());
        let read = decode(messages, &KafkaFormat::Json(schema())).unwrap();
        assert_eq!((read.rows.height(), read.rejected.len()), (0, 1));
        assert!(read.rejected[0].reason.contains("UTF-8"), "{:?}", read.rejected[0]);
        let mut messages = Messages::default();
        messages.push(run);
        let read = decode(messages, &KafkaFormat::Raw).unwrap();
        let key = read.rows.column("kafka_key").unwrap().binary().unwrap().get(0).unwrap().to_vec();
        assert_eq!(key, [0xff, 0xfe]);
    }

    #[test]
    fn raw_messages_keep_their_bytes() {
        let mut run = RunBuilder::new("orders", 2);
        push(&mut run, 3, Some(&[0xff, 0x00, b'x']));
        let mut messages = Messages::default();
        messages.push(run.finish());
        let read = decode(messages, &KafkaFormat::Raw).unwrap();
        assert_eq!(read.rows.height(), 1);
        let value = read.rows.column("value").unwrap().binary().unwrap().get(0).unwrap().to_vec();
        assert_eq!(value, [0xff, 0x00, b'x']);
        assert_eq!(read.rows.get_column_names()[0].as_str(), "value");
        assert_eq!(read.rows.schema().as_ref(), &KafkaFormat::Raw.row_schema().unwrap());
    }
}
