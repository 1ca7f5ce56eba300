use super::*;

fn base() -> DataFrame {
    df![
        "id" => [1i64, 2, 3, 4],
        "date" => ["d1", "d1", "d2", "d2"],
        "name" => [Some("a"), Some("b"), None, Some("d")],
        "x" => [1.0f64, 2.0, f64::NAN, 4.0],
    ]
    .unwrap()
}

fn keyed_opts() -> DiffOptions {
    DiffOptions { key: vec!["id".into()], partition_by: vec!["date".into()], ..DiffOptions::default() }
}

fn run(left: DataFrame, right: DataFrame, opts: &DiffOptions) -> Report {
    diff(left, right, ("left", "right"), opts).unwrap()
}

#[test]
fn the_same_rows_in_another_order_are_identical_nan_and_null_included() {
    let shuffled = base().reverse();
    assert!(run(base(), shuffled.clone(), &keyed_opts()).is_identical());
    assert!(run(base(), shuffled, &DiffOptions::default()).is_identical(), "multiset");
}

#[test]
fn a_missing_an_extra_and_a_changed_row_are_found_and_localised() {
    let right = df![
        "id" => [1i64, 2, 3, 5],
        "date" => ["d1", "d1", "d2", "d2"],
        "name" => [Some("a"), Some("B"), None, Some("e")],
        "x" => [1.0f64, 2.0, f64::NAN, 5.0],
    ]
    .unwrap();
    let r = run(base(), right, &keyed_opts());
    assert_eq!(r.counts[&Kind::MissingInRight], 1);
    assert_eq!(r.counts[&Kind::ExtraInRight], 1);
    assert_eq!(r.counts[&Kind::Changed], 1);
    assert_eq!(r.changed_columns, BTreeMap::from([("name".to_string(), 1)]));
    let changed = r.samples.iter().find(|s| s.kind == Kind::Changed).unwrap();
    assert_eq!(changed.row["id"], "2");
    assert_eq!(changed.values, vec![ValueDiff { column: "name".into(), left: "b".into(), right: "B".into() }]);
    assert_eq!(r.by_partition["date=d1"], BTreeMap::from([(Kind::Changed, 1)]));
    assert_eq!(r.by_partition["date=d2"], BTreeMap::from([(Kind::MissingInRight, 1), (Kind::ExtraInRight, 1)]));
}

#[test]
fn floats_compare_within_tolerance_and_null_differs_from_a_value() {
    let mut right = base();
    right.replace("x", Series::new("x".into(), [1.0 + 1e-12, 2.0, f64::NAN, 4.1]).into_column()).unwrap();
    let opts = DiffOptions { abs_tolerance: 1e-9, ..keyed_opts() };
    let r = run(base(), right.clone(), &opts);
    assert_eq!(r.counts[&Kind::Changed], 1, "only 4.0 -> 4.1 is beyond 1e-9");
    assert_eq!(r.samples.iter().find(|s| s.kind == Kind::Changed).unwrap().row["id"], "4");
    assert_eq!(run(base(), right, &keyed_opts()).counts[&Kind::Changed], 2, "exact without tolerance");

    let mut nulled = base();
    nulled.replace("name", Series::new("name".into(), [Some("a"), None, None, Some("d")]).into_column()).unwrap();
    let r = run(base(), nulled, &keyed_opts());
    assert_eq!(r.counts[&Kind::Changed], 1);
    assert_eq!(r.samples.iter().find(|s| s.kind == Kind::Changed).unwrap().values[0].right, "null");
}

#[test]
fn duplicates_are_reported_by_key_and_by_multiplicity() {
    let doubled = base().vstack(&base().head(Some(1))).unwrap();
    let r = run(base(), doubled.clone(), &keyed_opts());
    assert_eq!(r.counts[&Kind::DuplicateKeyRight], 1);
    assert_eq!(r.samples.iter().find(|s| s.kind == Kind::DuplicateKeyRight).unwrap().count, 2);
    let r = run(base(), doubled, &DiffOptions { partition_by: vec!["date".into()], ..DiffOptions::default() });
    assert_eq!(r.counts[&Kind::ExtraInRight], 1);
    assert_eq!(r.counts[&Kind::MissingInRight], 0);
    assert_eq!(r.by_partition["date=d1"], BTreeMap::from([(Kind::ExtraInRight, 1)]));
}

#[test]
fn schema_differences_come_before_data_and_ignored_columns_do_not_count() {
    let right = base().drop("name").unwrap();
    let r = run(base(), right.clone(), &keyed_opts());
    assert_eq!(r.schema, vec![SchemaDifference { column: "name".into(), left: Some("str".into()), right: None }]);
    assert!(!r.is_identical());
    assert!(r.counts.is_empty(), "no data compared");
    let opts = DiffOptions { ignore: vec!["name".into()], ..keyed_opts() };
    assert!(run(base(), right, &opts).is_identical());

    let mut retyped = base();
    retyped.replace("x", Series::new("x".into(), [1.0f32, 2.0, f32::NAN, 4.0]).into_column()).unwrap();
    assert_eq!(run(base(), retyped, &keyed_opts()).schema[0].column, "x");
}

mod property {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Mutation {
        Remove(usize),
        Duplicate(usize),
        Change(usize),
        Null(usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            any::<usize>().prop_map(Mutation::Remove),
            any::<usize>().prop_map(Mutation::Duplicate),
            any::<usize>().prop_map(Mutation::Change),
            any::<usize>().prop_map(Mutation::Null),
        ]
    }

    fn frame(rows: &[(i64, i32, Option<f64>)]) -> DataFrame {
        df![
            "id" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            "part" => rows.iter().map(|r| format!("p{}", r.1)).collect::<Vec<_>>(),
            "x" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        ]
        .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Random rows, split into random pieces stacked in another order (another file layout),
        /// with one random mutation: always detected, by key and as a multiset, and localised to
        /// the mutated row's key and partition.
        #[test]
        fn a_single_mutation_is_always_found_and_localised(
            values in prop::collection::vec((0i32..4, prop::option::of(-1e6f64..1e6)), 1..60),
            cut in any::<prop::sample::Index>(),
            m in mutation(),
        ) {
            let rows: Vec<(i64, i32, Option<f64>)> = values.iter().enumerate().map(|(i, (p, x))| (i as i64, *p, *x)).collect();
            let cut = cut.index(rows.len() + 1);
            let mut right_rows = [&rows[cut..], &rows[..cut]].concat();
            let (idx, expected) = match m {
                Mutation::Remove(i) => { let i = i % right_rows.len(); (right_rows.remove(i), Kind::MissingInRight) }
                Mutation::Duplicate(i) => { let r = right_rows[i % right_rows.len()]; right_rows.push(r); (r, Kind::DuplicateKeyRight) }
                Mutation::Change(i) => {
                    let i = i % right_rows.len();
                    right_rows[i].2 = Some(right_rows[i].2.map_or(1.0, |x| x + 1.0));
                    (right_rows[i], Kind::Changed)
                }
                Mutation::Null(i) => {
                    let i = i % right_rows.len();
                    right_rows[i].2 = if right_rows[i].2.is_some() { None } else { Some(0.5) };
                    (right_rows[i], Kind::Changed)
                }
            };
            let (left, right) = (frame(&rows), frame(&right_rows));
            let opts = DiffOptions { key: vec!["id".into()], partition_by: vec!["part".into()], ..DiffOptions::default() };
            let keyed = diff(left.clone(), right.clone(), ("l", "r"), &opts).unwrap();
            prop_assert!(!keyed.is_identical());
            let nonzero: Vec<Kind> = keyed.counts.iter().filter(|(_, n)| **n > 0).map(|(k, _)| *k).collect();
            prop_assert_eq!(nonzero, vec![expected]);
            let sample = keyed.samples.iter().find(|s| s.kind == expected).unwrap();
            prop_assert_eq!(&sample.row["id"], &idx.0.to_string());
            let partition = format!("part=p{}", idx.1);
            let localised: Vec<&String> = keyed.by_partition.keys().collect();
            if expected == Kind::DuplicateKeyRight {
                prop_assert!(localised.is_empty(), "a duplicate key is not a row difference");
            } else {
                prop_assert_eq!(localised, vec![&partition]);
            }
            let multiset_opts = DiffOptions { partition_by: vec!["part".into()], ..DiffOptions::default() };
            let unkeyed = diff(left, right, ("l", "r"), &multiset_opts).unwrap();
            prop_assert!(!unkeyed.is_identical());
            prop_assert_eq!(unkeyed.by_partition.keys().collect::<Vec<_>>(), vec![&partition]);
        }
    }
}
