//! Order-independent content fingerprints of sets of rows.
//!
//! A row's hash is xxh3 over its values, column by column in name order, with a fixed encoding
//! per type (so the same rows give the same hash whatever the file layout or column order). A
//! set's fingerprint is its row count and the wrapping sum of its row hashes: adding rows adds
//! fingerprints, so the fingerprint of a partition is the sum of its files'. The sink records each
//! data file's fingerprint in its Delta `add.tags` (`tidewater.rows`, `tidewater.fingerprint`),
//! so two tables whose partitions agree can be compared from their logs alone.
//!
//! Equal fingerprints mean equal multisets of rows (up to a 2^-64 collision); different
//! fingerprints only say "look here", never "different": with a float tolerance the rows may
//! still be equal.

use crate::error::{Error, Result};
use polars::prelude::*;
use polars_arrow::array::Array as _;
use serde::Serialize;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

pub const ROWS_TAG: &str = "tidewater.rows";
pub const HASH_TAG: &str = "tidewater.fingerprint";

/// Row count and order-independent content hash of a set of rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Fingerprint {
    pub rows: u64,
    pub hash: u64,
}

impl Fingerprint {
    pub fn combine(self, other: Fingerprint) -> Fingerprint {
        Fingerprint { rows: self.rows + other.rows, hash: self.hash.wrapping_add(other.hash) }
    }

    /// The Delta `add.tags` entries recording it.
    pub fn to_tags(self) -> [(String, Option<String>); 2] {
        [(ROWS_TAG.into(), Some(self.rows.to_string())), (HASH_TAG.into(), Some(format!("{:016x}", self.hash)))]
    }

    /// Reads it back from `add.tags`; `None` when the file was written without one.
    pub fn from_tags(tags: &std::collections::HashMap<String, Option<String>>) -> Option<Fingerprint> {
        let rows = tags.get(ROWS_TAG)?.as_deref()?.parse().ok()?;
        let hash = u64::from_str_radix(tags.get(HASH_TAG)?.as_deref()?, 16).ok()?;
        Some(Fingerprint { rows, hash })
    }
}

/// Partition values as Delta writes them in `add.partitionValues`.
pub type PartitionValues = std::collections::BTreeMap<String, Option<String>>;

fn mix(h: u64, cell: u64) -> u64 {
    (h.rotate_left(23) ^ cell).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The encoding of a null cell.
const NULL: &[u8] = b"\0tidewater-null\0";

/// Mixes into `hashes[i]` the hash of row i's value of `ca`, encoded as `bytes` does (a null as
/// [`NULL`]). A column without nulls is read straight from its values.
fn put_fixed<T: PolarsNumericType>(
    hashes: &mut [u64],
    ca: &ChunkedArray<T>,
    seed: u64,
    bytes: impl Fn(T::Native) -> [u8; 8],
) {
    // Values first in each zip: a zip that ends on them has not taken a row it will not fill.
    let mut rows = hashes.iter_mut();
    for arr in ca.downcast_iter() {
        if arr.null_count() == 0 {
            for (v, h) in arr.values().iter().zip(rows.by_ref()) {
                *h = mix(*h, xxh3_64_with_seed(&bytes(*v), seed));
            }
        } else {
            for (v, h) in arr.iter().zip(rows.by_ref()) {
                let encoded = v.map(|v| bytes(*v));
                *h = mix(*h, xxh3_64_with_seed(encoded.as_ref().map_or(NULL, |b| &b[..]), seed));
            }
        }
    }
}

/// One hash per row of `df`, over `columns` (in name order).
pub fn row_hashes(df: &DataFrame, columns: &[String]) -> Result<Vec<u64>> {
    let err = |e: PolarsError| Error::Polars { what: "fingerprint".into(), source: e };
    let mut names = columns.to_vec();
    names.sort();
    let mut hashes = vec![0x5EED_u64; df.height()];
    for (ci, name) in names.iter().enumerate() {
        let seed = ci as u64;
        let mut series = df.column(name).map_err(err)?.as_materialized_series().clone();
        if let DataType::Datetime(unit, tz) = series.dtype()
            && *unit != TimeUnit::Microseconds
        {
            // Delta stores microseconds: hash what a reader will read back.
            series = series.cast(&DataType::Datetime(TimeUnit::Microseconds, tz.clone())).map_err(err)?;
        }
        let mut put = |i: usize, bytes: Option<&[u8]>| {
            hashes[i] = mix(hashes[i], xxh3_64_with_seed(bytes.unwrap_or(NULL), seed));
        };
        match series.dtype() {
            DataType::Int64 | DataType::Datetime(_, _) | DataType::Duration(_) => {
                let phys = series.to_physical_repr();
                put_fixed(&mut hashes, phys.i64().map_err(err)?, seed, i64::to_le_bytes);
            }
            DataType::Int32 | DataType::Date => {
                let phys = series.to_physical_repr();
                put_fixed(&mut hashes, phys.i32().map_err(err)?, seed, |v| i64::from(v).to_le_bytes());
            }
            DataType::Float64 | DataType::Float32 => {
                let f = series.cast(&DataType::Float64).map_err(err)?;
                // One encoding for every NaN, and for 0.0 and -0.0.
                let canon = |v: f64| {
                    let v = if v.is_nan() {
                        f64::NAN
                    } else if v == 0.0 {
                        0.0
                    } else {
                        v
                    };
                    v.to_bits().to_le_bytes()
                };
                put_fixed(&mut hashes, f.f64().map_err(err)?, seed, canon);
            }
            DataType::Boolean => {
                for (i, v) in series.bool().map_err(err)?.iter().enumerate() {
                    put(i, v.map(|b| [u8::from(b)]).as_ref().map(|b| &b[..]));
                }
            }
            DataType::String => {
                let mut rows = hashes.iter_mut();
                for arr in series.str().map_err(err)?.downcast_iter() {
                    if arr.null_count() == 0 {
                        for (v, h) in arr.values_iter().zip(rows.by_ref()) {
                            *h = mix(*h, xxh3_64_with_seed(v.as_bytes(), seed));
                        }
                    } else {
                        for (v, h) in arr.iter().zip(rows.by_ref()) {
                            *h = mix(*h, xxh3_64_with_seed(v.map_or(NULL, str::as_bytes), seed));
                        }
                    }
                }
            }
            _ => {
                let text = series.cast(&DataType::String).map_err(err)?;
                for (i, v) in text.str().map_err(err)?.iter().enumerate() {
                    put(i, v.map(str::as_bytes));
                }
            }
        }
    }
    Ok(hashes.into_iter().map(|h| xxh3_64(&h.to_le_bytes())).collect())
}

/// The fingerprint of all of `df`'s rows, over its `content` columns (a data file's: every
/// column but the partition columns, whose values the log holds).
pub fn fingerprint(df: &DataFrame, content: &[String]) -> Result<Fingerprint> {
    Ok(row_hashes(df, content)?
        .into_iter()
        .fold(Fingerprint::default(), |fp, hash| fp.combine(Fingerprint { rows: 1, hash })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> DataFrame {
        df!["id" => [1i64, 2, 3], "x" => [Some(0.0f64), Some(f64::NAN), None], "d" => ["a", "a", "b"]].unwrap()
    }

    fn of(df: &DataFrame) -> Fingerprint {
        let content: Vec<String> = df.get_column_names().iter().map(|c| c.to_string()).collect();
        fingerprint(df, &content).unwrap()
    }

    #[test]
    fn same_rows_in_any_order_and_column_order_give_the_same_fingerprint() {
        let df = frame();
        let reordered = df.reverse().select(["x", "d", "id"]).unwrap();
        assert_eq!(of(&df), of(&reordered));
        assert_eq!(of(&df).rows, 3);
        let neg_zero =
            df!["id" => [1i64, 2, 3], "x" => [Some(-0.0f64), Some(-f64::NAN), None], "d" => ["a", "a", "b"]].unwrap();
        assert_eq!(of(&df), of(&neg_zero), "0.0 = -0.0, NaN = NaN");
    }

    #[test]
    fn the_fingerprints_of_the_parts_of_a_set_add_up_to_the_whole() {
        let df = frame();
        let (a, b) = (df.slice(0, 1), df.slice(1, 2));
        assert_eq!(of(&a).combine(of(&b)), of(&df));
        assert_ne!(of(&a), of(&b));
    }

    #[test]
    fn any_changed_value_changes_the_fingerprint() {
        let changed =
            df!["id" => [1i64, 2, 4], "x" => [Some(0.0f64), Some(f64::NAN), None], "d" => ["a", "a", "b"]].unwrap();
        assert_ne!(of(&frame()), of(&changed));
        let null_vs_value =
            df!["id" => [1i64, 2, 3], "x" => [Some(0.0f64), Some(f64::NAN), Some(0.0)], "d" => ["a", "a", "b"]]
                .unwrap();
        assert_ne!(of(&frame()), of(&null_vs_value));
        let fp = of(&frame());
        let tags: std::collections::HashMap<_, _> = fp.to_tags().into_iter().collect();
        assert_eq!(Fingerprint::from_tags(&tags), Some(fp));
    }
}

#[cfg(test)]
mod pinned {
    use super::*;

    /// Fingerprints are stored in tables' logs: the hash of a row must never change. These are
    /// the values the first fingerprinting sink wrote, for columns with and without nulls, in
    /// one chunk and in several.
    #[test]
    fn row_hashes_are_those_the_logs_already_hold() {
        let mut df = df![
            "i" => [Some(1i64), None, Some(-7)],
            "n" => [1i64, 2, 3],
            "f" => [Some(-0.0f64), Some(f64::NAN), None],
            "g" => [0.5f64, 1.5, 2.5],
            "s" => [Some("a"), None, Some("ccc")],
            "t" => ["x", "y", "z"],
            "d" => [19_787i32, 19_788, 19_789],
            "b" => [Some(true), None, Some(false)],
        ]
        .unwrap();
        df = df.lazy().with_column(col("d").cast(DataType::Date)).collect().unwrap();
        let columns: Vec<String> = df.get_column_names().iter().map(|c| c.to_string()).collect();
        let hashes = row_hashes(&df, &columns).unwrap();
        let mut chunked = df.slice(0, 1);
        chunked.vstack_mut(&df.slice(1, 2)).unwrap();
        assert_eq!(row_hashes(&chunked, &columns).unwrap(), hashes, "chunks do not change a row's hash");
        assert_eq!(hashes, PINNED);
    }

    const PINNED: [u64; 3] = [9_141_672_411_737_532_190, 4_411_220_569_469_921_178, 9_227_513_151_858_256_213];
}
