use super::*;
use crate::files::schema::Column;

fn events_schema() -> InputSchema {
    let cols = [
        ("event_id", "string"),
        ("user_id", "int64"),
        ("event_time", "timestamp"),
        ("category", "string?"),
        ("amount", "float64"),
    ];
    InputSchema::new(cols.iter().map(|(n, t)| InputSchema::parse_column(n, t).unwrap()).collect::<Vec<Column>>())
}

const GOOD: &str = r#"{"event_id":"a","user_id":1,"event_time":"2024-03-01T10:15:00.250Z","category":"x","amount":1.5}
{"event_id":"b","user_id":2,"event_time":"2024-03-02T00:00:00Z","category":"y","amount":-2}

{"event_id":"c","user_id":3,"event_time":"2024-03-02T23:59:59.999999Z","category":null,"amount":0,"extra":true}
"#;

#[test]
fn good_ndjson_takes_the_fast_path_with_mixed_timestamp_precisions() {
    let batch = read_file(GOOD.as_bytes(), "f.json", FileFormat::Ndjson, &events_schema()).unwrap();
    assert_eq!(batch.input_records, 3);
    assert!(batch.rejected.is_empty(), "{:?}", batch.rejected);
    let t = batch.rows.column("event_time").unwrap().datetime().unwrap().physical().clone();
    assert_eq!(t.get(0), Some(1_709_288_100_250_000));
    assert_eq!(t.get(1), Some(1_709_337_600_000_000));
    assert_eq!(t.get(2), Some(1_709_423_999_999_999));
    assert_eq!(batch.rows.column("amount").unwrap().f64().unwrap().get(1), Some(-2.0));
}

#[test]
fn bad_lines_are_rejected_with_their_line_and_reason_and_nothing_is_lost() {
    let text = format!(
        "{GOOD}{}\n{}\n{}\n{}\n{}\n",
        r#"{"event_id":"d","user_id":"abc","event_time":"2024-03-01T00:00:00Z","category":"x","amount":1}"#,
        r#"{"event_id":"e","user_id":5,"event_time":"2024-03-01T00:00:00Z","category":"x","amount":1"#,
        r#"{"user_id":6,"event_time":"2024-03-01T00:00:00Z","category":"x","amount":1}"#,
        r#"{"event_id":"g","user_id":7,"event_time":"yesterday","category":"x","amount":1}"#,
        r#"{"event_id":"h","user_id":8,"event_time":"2024-03-01T00:00:00Z","category":"x","amount":2}"#,
    );
    let batch = read_file(text.as_bytes(), "f.json", FileFormat::Ndjson, &events_schema()).unwrap();
    assert_eq!(batch.input_records, 8);
    assert_eq!(batch.rows.height(), 4);
    let got: Vec<(u64, &str)> = batch.rejected.iter().map(|r| (r.position, r.reason.as_str())).collect();
    assert_eq!(got.len(), 4, "{got:?}");
    // GOOD holds lines 1-4 (line 3 blank), so the appended lines are 5..=9.
    assert_eq!(got[0].0, 5);
    assert!(got[0].1.contains("user_id"), "{got:?}");
    assert_eq!(got[1].0, 6);
    assert!(got[1].1.starts_with("malformed JSON"), "{got:?}");
    assert_eq!(got[2], (7, "missing required field `event_id`"));
    assert_eq!(got[3], (8, "field `event_time`: not a valid timestamp"));
    assert!(batch.rejected[1].raw.starts_with(r#"{"event_id":"e""#));
}

#[test]
fn csv_values_that_do_not_parse_are_rejected() {
    let text = "event_id,user_id,event_time,category,amount\na,1,2024-03-01T10:15:00Z,x,1.5\nb,zz,2024-03-01T10:15:00Z,x,1.5\n";
    let batch = read_file(text.as_bytes(), "f.csv", FileFormat::Csv, &events_schema()).unwrap();
    assert_eq!(batch.rows.height(), 1);
    assert_eq!(batch.rejected.len(), 1);
    assert_eq!(batch.rejected[0].position, 3);
    assert_eq!(batch.rejected[0].reason, "field `user_id`: not a valid int64");
    assert_eq!(batch.rejected[0].raw, "b,zz,2024-03-01T10:15:00Z,x,1.5");
}

#[test]
fn a_short_file_whose_last_line_ends_the_sample_is_read() {
    // Polars' NDJSON line sampling panicked on such files (found by the stream = batch property).
    for text in [
        "{\"event_id\":\"a\",\"user_id\":1,\"event_time\":\"2024-03-01T10:15:00Z\",\"category\":\"x\",\"amount\":1.5}\n",
        "{\"event_id\":\"a\",\"user_id\":1,\"event_time\":\"2024-03-01T10:15:00Z\",\"amount\":1}\n{\"event_id\":\"bb\",\"user_id\":22,\"event_time\":\"2024-03-01T10:15:00Z\",\"category\":\"yy\",\"amount\":2.5}\n",
        "{\"event_id\":\"a\",\"user_id\":1,\"event_time\":\"2024-03-01T10:15:00Z\",\"amount\":1}",
    ] {
        let lines = text.lines().count();
        let batch = read_file(text.as_bytes(), "f.json", FileFormat::Ndjson, &events_schema()).unwrap();
        assert_eq!((batch.rows.height(), batch.rejected.len()), (lines, 0), "{text}");
    }
}

#[test]
fn csv_columns_are_matched_by_header_name_not_position() {
    // A job file's schema comes out in alphabetical order; the file's header decides.
    let sorted = {
        let mut columns = events_schema().columns;
        columns.sort_by(|a, b| a.name.cmp(&b.name));
        InputSchema::new(columns)
    };
    let text =
        "event_id,user_id,event_time,amount,extra\na,1,2024-03-01T10:15:00Z,1.5,zz\nb,2,2024-03-01T10:15:00Z,2.5,yy\n";
    let batch = read_file(text.as_bytes(), "f.csv", FileFormat::Csv, &sorted).unwrap();
    assert!(batch.rejected.is_empty(), "{:?}", batch.rejected);
    assert_eq!(batch.rows.column("user_id").unwrap().i64().unwrap().get(1), Some(2));
    assert_eq!(batch.rows.column("amount").unwrap().f64().unwrap().get(1), Some(2.5));
    assert_eq!(batch.rows.column("event_id").unwrap().str().unwrap().get(0), Some("a"));
    assert_eq!(batch.rows.column("category").unwrap().null_count(), 2, "an optional column the file lacks is null");

    let missing = "user_id,event_time,amount\n1,2024-03-01T10:15:00Z,1.5\n";
    let batch = read_file(missing.as_bytes(), "f.csv", FileFormat::Csv, &sorted).unwrap();
    assert_eq!(batch.rows.height(), 0);
    assert_eq!(batch.rejected[0].reason, "missing required field `event_id`");
}

#[test]
fn parquet_rows_are_typed_and_required_nulls_rejected() {
    use polars::prelude::*;
    let mut df = df![
        "event_id" => [Some("a"), None, Some("c")],
        "user_id" => [1i64, 2, 3],
        "event_time" => ["2024-03-01T10:15:00Z", "2024-03-01T10:15:00Z", "2024-03-01T10:15:00.5Z"],
        "category" => ["x", "y", "z"],
        "amount" => [1.0f64, 2.0, 3.0],
    ]
    .unwrap();
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes).finish(&mut df).unwrap();
    let batch = read_file(&bytes, "f.parquet", FileFormat::Parquet, &events_schema()).unwrap();
    assert_eq!(batch.input_records, 3);
    assert_eq!(batch.rows.height(), 2);
    assert_eq!(batch.rejected.len(), 1);
    assert_eq!(
        (batch.rejected[0].position, batch.rejected[0].reason.as_str()),
        (2, "missing required field `event_id`")
    );
    let t = batch.rows.column("event_time").unwrap().datetime().unwrap().physical().clone();
    assert_eq!(t.get(1), Some(1_709_288_100_500_000));
}

#[test]
fn lines_are_found_as_the_reader_counts_them() {
    assert_eq!(count_lines(b""), 0);
    assert_eq!(count_lines(b"\n\n \t\r\n"), 0, "blank lines are not records");
    assert_eq!(count_lines(b"a"), 1, "a last line without its newline");
    assert_eq!(line_spans(b"a\r\n\nb\n c"), [(1, 0..2), (3, 4..5), (4, 6..8)]);
}

#[test]
fn timestamps_parse_row_by_row_whatever_the_first_row_looks_like() {
    let row = |id: usize, time: &str| {
        format!(r#"{{"event_id":"{id}","user_id":{id},"event_time":"{time}","category":"x","amount":1}}"#)
    };
    // The first value has no time and no offset: Polars' format guess would take it as the
    // pattern for all. Each is parsed on its own.
    let times = [
        ("2024-03-01", Some(1_709_251_200_000_000)),
        ("2024-03-01T10:15:00+02:00", Some(1_709_280_900_000_000)),
        ("2024-03-01 10:15:00", Some(1_709_288_100_000_000)),
        ("2024-03-01t10:15:00.5z", Some(1_709_288_100_500_000)),
        ("2024-03-01T10:15:00.123456789Z", Some(1_709_288_100_123_456)),
        ("2024-03-01T10:15:00+0530", Some(1_709_268_300_000_000)),
        ("March 1", None),
        ("2024-13-01T00:00:00Z", None),
        ("2024-03-01T10:15:00Zjunk", None),
    ];
    let text: String = times.iter().enumerate().map(|(i, (t, _))| row(i, t) + "\n").collect();
    let batch = read_file(text.as_bytes(), "f.json", FileFormat::Ndjson, &events_schema()).unwrap();
    assert_eq!(batch.input_records, times.len() as u64);
    let kept: Vec<Option<i64>> =
        batch.rows.column("event_time").unwrap().datetime().unwrap().physical().iter().collect();
    let want: Vec<Option<i64>> = times.iter().filter_map(|(_, v)| v.map(Some)).collect();
    assert_eq!(kept, want);
    let rejected: Vec<(u64, &str)> = batch.rejected.iter().map(|r| (r.position, r.reason.as_str())).collect();
    let reason = "field `event_time`: not a valid timestamp";
    assert_eq!(rejected, [(7, reason), (8, reason), (9, reason)]);
    assert_eq!(
        batch.rows.column("event_time").unwrap().dtype(),
        &DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
    );
}

#[test]
fn iso_8601_forms_the_fast_parser_lacks_are_still_read() {
    let row = |id: usize, time: &str| {
        format!(r#"{{"event_id":"{id}","user_id":{id},"event_time":"{time}","category":"x","amount":1}}"#)
    };
    // Minutes without seconds: valid ISO-8601, not what arrow-rs's parser reads; Polars' format
    // guess (from the first such value) reads them, beside the RFC 3339 rows.
    let times = ["2024-03-01T10:15:00Z", "2024-03-01T10:15", "2024-03-02T11:30", "nope"];
    let text: String = times.iter().enumerate().map(|(i, t)| row(i, t) + "\n").collect();
    let batch = read_file(text.as_bytes(), "f.json", FileFormat::Ndjson, &events_schema()).unwrap();
    let kept: Vec<Option<i64>> =
        batch.rows.column("event_time").unwrap().datetime().unwrap().physical().iter().collect();
    assert_eq!(kept, [Some(1_709_288_100_000_000), Some(1_709_288_100_000_000), Some(1_709_379_000_000_000)]);
    let rejected: Vec<u64> = batch.rejected.iter().map(|r| r.position).collect();
    assert_eq!(rejected, [4]);
}
