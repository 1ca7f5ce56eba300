//! Every Polars type a transform can produce lands as the Delta type a Spark user expects, the
//! same when the table is created and when a batch is written (regression for issue 13: a
//! `count(*)` column, UInt32 in Polars, failed its first batch). Read back by the independent
//! reader: the log's schemaString and the Parquet values.

use polars::prelude::*;
use serde_json::{Value, json};
use tidewater_core::sink::{DeltaSink, WriteKind};
use tidewater_core::{BatchId, SinkOutcome};

fn frame() -> DataFrame {
    let categorical = DataType::from_categories(Categories::global());
    let columns = vec![
        Series::new("s".into(), [Some("a"), None]),
        Series::new("cat".into(), [Some("x"), None]).cast(&categorical).unwrap(),
        Series::new("bin".into(), [Some(b"ab".as_slice()), None]),
        Series::new("b".into(), [Some(true), None]),
        Series::new("i8".into(), [Some(-8i8), None]),
        Series::new("i16".into(), [Some(-16i16), None]),
        Series::new("i32".into(), [Some(-32i32), None]),
        Series::new("i64".into(), [Some(-64i64), None]),
        Series::new("i128".into(), [Some(-(1i128 << 100)), None]),
        Series::new("n".into(), [Some(u32::MAX), None]),
        Series::new("u64".into(), [Some(u64::MAX), None]),
        Series::new("f32".into(), [Some(1.5f32), None]),
        Series::new("f64".into(), [Some(2.25f64), None]),
        Series::new("date".into(), [Some(19_800i32), None]).cast(&DataType::Date).unwrap(),
        Series::new("ts_ns".into(), [Some(1_700_000_000_123_456_789i64), None])
            .cast(&DataType::Datetime(TimeUnit::Nanoseconds, None))
            .unwrap(),
        Series::new("ts_ms_utc".into(), [Some(1_700_000_000_123i64), None])
            .cast(&DataType::Datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC)))
            .unwrap(),
        Series::new("ts_paris".into(), [Some(1_700_000_000_000_000i64), None])
            .cast(&DataType::Datetime(TimeUnit::Microseconds, TimeZone::opt_try_new(Some("Europe/Paris")).unwrap()))
            .unwrap(),
        Series::new("dec".into(), [Some(12_345i128), None]).cast(&DataType::Decimal(10, 2)).unwrap(),
        Series::new("list".into(), [Some(Series::new("".into(), ["p", "q"])), None]),
        Series::new("counts".into(), [Some(Series::new("".into(), [1u32, 2])), None]),
        Series::new("arr".into(), [Some(Series::new("".into(), [1i64, 2])), None])
            .cast(&DataType::Array(Box::new(DataType::Int64), 2))
            .unwrap(),
    ];
    let mut df = DataFrame::new_infer_height(columns.into_iter().map(IntoColumn::into_column).collect()).unwrap();
    let st = StructChunked::from_series(
        "st".into(),
        2,
        [Series::new("name".into(), [Some("k"), None]), Series::new("n".into(), [Some(7u32), None])].iter(),
    )
    .unwrap();
    df.with_column(st.into_series().into_column()).unwrap();
    df
}

fn element(t: &str) -> Value {
    json!({"type": "array", "elementType": t, "containsNull": true})
}

#[tokio::test]
async fn every_polars_type_lands_as_the_delta_type_a_spark_user_expects() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t");
    let url = url::Url::from_directory_path(&table).unwrap();
    let mut sink = DeltaSink::new(url, "types", WriteKind::Batch);
    for batch in 0..2 {
        let committed = sink.append(BatchId::new(batch), frame(), "types").await.unwrap();
        assert!(matches!(committed, SinkOutcome::Committed { rows: 2, .. }), "batch {batch}: {committed:?}");
    }

    let schema = table_tests::read_schema(&table);
    let expected: Vec<(&str, Value)> = vec![
        ("s", json!("string")),
        ("cat", json!("string")),
        ("bin", json!("binary")),
        ("b", json!("boolean")),
        ("i8", json!("byte")),
        ("i16", json!("short")),
        ("i32", json!("integer")),
        ("i64", json!("long")),
        ("i128", json!("decimal(38,0)")),
        ("n", json!("long")),
        ("u64", json!("decimal(20,0)")),
        ("f32", json!("float")),
        ("f64", json!("double")),
        ("date", json!("date")),
        ("ts_ns", json!("timestamp_ntz")),
        ("ts_ms_utc", json!("timestamp")),
        ("ts_paris", json!("timestamp")),
        ("dec", json!("decimal(10,2)")),
        ("list", element("string")),
        ("counts", element("long")),
        ("arr", element("long")),
    ];
    for (column, want) in &expected {
        assert_eq!(schema.get(*column), Some(want), "Delta type of `{column}` in {schema:?}");
    }
    let st = &schema["st"]["fields"];
    assert_eq!((st[0]["type"].clone(), st[1]["type"].clone()), (json!("string"), json!("long")), "{st}");

    let rows = table_tests::read_rows(&table);
    assert_eq!(rows.len(), 4, "two batches of two rows");
    let row = rows.iter().find(|r| r["s"] == "a").unwrap();
    for (column, want) in [
        ("cat", "x"),
        ("i128", "-1267650600228229401496703205376"),
        ("n", "4294967295"),
        ("u64", "18446744073709551615"),
        ("date", "2024-03-18"),
        ("ts_ns", "2023-11-14T22:13:20.123456"),
        ("ts_ms_utc", "2023-11-14T22:13:20.123Z"),
        ("ts_paris", "2023-11-14T22:13:20Z"),
        ("dec", "12345.00"),
        ("list", "[p, q]"),
        ("counts", "[1, 2]"),
        ("arr", "[1, 2]"),
    ] {
        assert_eq!(row[column], want, "value of `{column}`");
    }
    let empty = rows.iter().find(|r| r["s"] == "null").unwrap();
    assert!(expected.iter().all(|(c, _)| empty[*c] == "null"), "nulls stay null: {empty:?}");
}

#[tokio::test]
async fn types_delta_lacks_are_refused_naming_the_column() {
    let dir = tempfile::tempdir().unwrap();
    for (column, what) in [
        (Series::new("elapsed".into(), [1i64]).cast(&DataType::Duration(TimeUnit::Microseconds)).unwrap(), "duration"),
        (Series::new("at".into(), [1i64]).cast(&DataType::Time).unwrap(), "time of day"),
        (Series::new_null("nothing".into(), 1), "CAST(NULL AS STRING)"),
    ] {
        let name = column.name().to_string();
        let table = dir.path().join(&name);
        let url = url::Url::from_directory_path(&table).unwrap();
        let df = DataFrame::new_infer_height(vec![column.into_column()]).unwrap();
        let e = DeltaSink::new(url, "types", WriteKind::Batch).append(BatchId::new(0), df, "t").await.unwrap_err();
        let text = e.to_string();
        assert!(text.contains(&format!("`{name}`")) && text.contains(what), "{text}");
        assert!(!table.join("_delta_log").exists(), "nothing is created for a refused batch");
    }
}
