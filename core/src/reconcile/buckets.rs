//! Key-hash buckets: how the checker compares rows it must read within a memory limit.
//!
//! A row's bucket is a hash of its key columns (keyed comparison) or of every compared column
//! (multiset comparison), so a key, or an equal row, lands in the same bucket on both sides and
//! in the same bucket whatever partition it sits in: a bucket pair holds everything needed to
//! find the key's differences, its duplicates and a key that moved between partitions. Each bucket
//! pair is compared by fingerprint (row count plus order-independent row hash, [`BucketPrints`]);
//! only the rows of buckets whose fingerprints differ are joined row by row, and when even those
//! do not fit in memory they are spilled to Parquet files by bucket ([`Spill`]) and joined a
//! bucket at a time.

use crate::error::{Error, Result};
use crate::frame::fingerprint::{Fingerprint, row_hashes};
use polars::prelude::*;
use std::path::{Path, PathBuf};

/// Which table a spilled piece belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
}

impl Side {
    fn dir(self) -> &'static str {
        match self {
            Side::Left => "left",
            Side::Right => "right",
        }
    }
}

/// Rows of both sides, spread over `buckets` directories of Parquet files.
#[derive(Debug)]
pub struct Spill {
    dir: PathBuf,
    buckets: u32,
    hash_columns: Vec<String>,
    pieces: u64,
}

impl Spill {
    /// Spills into `dir` (which must exist and be empty), hashing `hash_columns` to pick a bucket.
    pub fn new(dir: &Path, buckets: u32, hash_columns: Vec<String>) -> Self {
        Spill { dir: dir.to_path_buf(), buckets: buckets.max(1), hash_columns, pieces: 0 }
    }

    pub fn buckets(&self) -> u32 {
        self.buckets
    }

    fn bucket_dir(&self, side: Side, bucket: u32) -> PathBuf {
        self.dir.join(side.dir()).join(format!("{bucket:05}"))
    }

    /// Writes `rows` of one side to their buckets, one Parquet file per non-empty bucket.
    pub fn add(&mut self, side: Side, rows: &DataFrame) -> Result<()> {
        if rows.height() == 0 {
            return Ok(());
        }
        let hashes = row_hashes(rows, &self.hash_columns)?;
        let mut members: Vec<Vec<IdxSize>> = vec![Vec::new(); self.buckets as usize];
        for (i, h) in hashes.into_iter().enumerate() {
            // The low bits: rows of one fingerprint bucket (the high bits) spread over every
            // spill bucket, so spilling the differing buckets' rows does split them.
            members[bucket_of(h.rotate_left(32), self.buckets) as usize].push(i as IdxSize);
        }
        self.pieces += 1;
        for (bucket, idx) in members.into_iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            let dir = self.bucket_dir(side, bucket as u32);
            std::fs::create_dir_all(&dir).map_err(Error::io(&dir, "create spill directory"))?;
            let mut part = rows
                .take(&IdxCa::from_vec("idx".into(), idx))
                .map_err(Error::polars(format!("reconcile spill: bucket {bucket}")))?;
            let path = dir.join(format!("{:08}.parquet", self.pieces));
            let file = std::fs::File::create(&path).map_err(Error::io(&path, "create spill file"))?;
            ParquetWriter::new(file)
                .with_compression(ParquetCompression::Lz4Raw)
                .finish(&mut part)
                .map_err(Error::polars(format!("reconcile spill: write {}", path.display())))?;
        }
        Ok(())
    }

    /// One side's rows of one bucket (an empty frame of `schema` when it has none).
    pub fn read(&self, side: Side, bucket: u32, schema: &Schema) -> Result<DataFrame> {
        let dir = self.bucket_dir(side, bucket);
        let mut out = DataFrame::empty_with_schema(schema);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(out);
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let file = std::fs::File::open(&path).map_err(Error::io(&path, "open spill file"))?;
            let what = || format!("reconcile spill: read {}", path.display());
            let part = ParquetReader::new(file).finish().map_err(Error::polars(what()))?;
            out.vstack_mut_owned(part).map_err(Error::polars(what()))?;
        }
        out.rechunk_mut();
        Ok(out)
    }

    /// Deletes one bucket's files (both sides) once compared, so the spill shrinks as it goes.
    pub fn drop_bucket(&self, bucket: u32) {
        for side in [Side::Left, Side::Right] {
            let _ = std::fs::remove_dir_all(self.bucket_dir(side, bucket));
        }
    }
}

/// The bucket of a row hash: the high bits, scaled (so any bucket count splits evenly).
pub fn bucket_of(hash: u64, buckets: u32) -> u32 {
    (((hash >> 32) * u64::from(buckets)) >> 32) as u32
}

/// The key-hash buckets of both sides' rows, each with a fingerprint (row count plus
/// order-independent row hash), accumulated a group of rows at a time: only the rows of buckets
/// whose fingerprints differ need a row-by-row join.
#[derive(Clone, Debug)]
pub struct BucketPrints {
    hash_columns: Vec<String>,
    columns: Vec<String>,
    left: Vec<Fingerprint>,
    right: Vec<Fingerprint>,
}

impl BucketPrints {
    /// `buckets` buckets, picked by a hash of `hash_columns`, fingerprinted over `columns`.
    pub fn new(buckets: u32, hash_columns: Vec<String>, columns: Vec<String>) -> Self {
        let empty = vec![Fingerprint::default(); buckets.max(1) as usize];
        BucketPrints { hash_columns, columns, left: empty.clone(), right: empty }
    }

    pub fn buckets(&self) -> u32 {
        self.left.len() as u32
    }

    /// Adds one side's rows; returns each row's bucket.
    pub fn add(&mut self, side: Side, rows: &DataFrame) -> Result<Vec<u32>> {
        let keys = row_hashes(rows, &self.hash_columns)?;
        let assigned = self.bucket_each(&keys);
        // A multiset comparison hashes every compared column for both: the key hash is the row's.
        let hashes = if self.hash_columns == self.columns { keys } else { row_hashes(rows, &self.columns)? };
        let prints = match side {
            Side::Left => &mut self.left,
            Side::Right => &mut self.right,
        };
        for (b, hash) in assigned.iter().zip(hashes) {
            prints[*b as usize] = prints[*b as usize].combine(Fingerprint { rows: 1, hash });
        }
        Ok(assigned)
    }

    /// Each row's bucket, without fingerprinting (a second read of rows already added).
    pub fn assign(&self, rows: &DataFrame) -> Result<Vec<u32>> {
        Ok(self.bucket_each(&row_hashes(rows, &self.hash_columns)?))
    }

    fn bucket_each(&self, keys: &[u64]) -> Vec<u32> {
        let buckets = self.buckets();
        keys.iter().map(|h| bucket_of(*h, buckets)).collect()
    }

    /// Which buckets differ between the sides.
    pub fn differing(&self) -> Vec<bool> {
        self.left.iter().zip(&self.right).map(|(l, r)| l != r).collect()
    }

    /// Rows added per side: all of them, and those in the buckets `differs` marks.
    pub fn rows(&self, differs: &[bool]) -> [(u64, u64); 2] {
        let count = |prints: &[Fingerprint]| {
            let all = prints.iter().map(|p| p.rows).sum();
            let differing = prints.iter().zip(differs).filter(|(_, d)| **d).map(|(p, _)| p.rows).sum();
            (all, differing)
        };
        [count(&self.left), count(&self.right)]
    }
}

/// The rows of `rows` whose bucket (`assigned`, one per row) is marked in `differs`.
pub fn keep_differing(rows: &DataFrame, assigned: &[u32], differs: &[bool]) -> Result<DataFrame> {
    let mask: BooleanChunked = assigned.iter().map(|b| differs[*b as usize]).collect();
    rows.filter(&mask).map_err(Error::polars("reconcile: rows of the differing buckets"))
}

/// Key-hash buckets for `parquet_bytes` of data files: about one per KiB of Parquet, from 256 to
/// 65,536 (1 MiB of fingerprints a side), so a few differing rows leave little to join.
pub fn buckets_for(parquet_bytes: u64) -> u32 {
    (parquet_bytes / 1024).clamp(256, 1 << 16) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(df: &DataFrame, columns: &[String]) -> Fingerprint {
        let hashes = row_hashes(df, columns).unwrap();
        Fingerprint { rows: hashes.len() as u64, hash: hashes.into_iter().fold(0u64, u64::wrapping_add) }
    }

    #[test]
    fn equal_keys_meet_in_one_bucket_and_every_row_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut spill = Spill::new(dir.path(), 7, vec!["id".into()]);
        let left =
            df!["id" => (0i64..1000).collect::<Vec<_>>(), "v" => (0i64..1000).map(|i| i * 2).collect::<Vec<_>>()]
                .unwrap();
        let right = left.reverse();
        spill.add(Side::Left, &left.slice(0, 400)).unwrap();
        spill.add(Side::Left, &left.slice(400, 600)).unwrap();
        spill.add(Side::Right, &right).unwrap();
        let schema = left.schema().as_ref().clone();
        let (mut total, mut non_empty) = (0, 0);
        for b in 0..spill.buckets() {
            let (l, r) = (spill.read(Side::Left, b, &schema).unwrap(), spill.read(Side::Right, b, &schema).unwrap());
            let cols = ["id".to_string(), "v".to_string()];
            assert_eq!(fingerprint(&l, &cols), fingerprint(&r, &cols), "bucket {b}");
            total += l.height();
            non_empty += usize::from(l.height() > 0);
        }
        assert_eq!(total, 1000);
        assert_eq!(non_empty, 7, "rows spread over every bucket");
    }

    #[test]
    fn only_the_bucket_holding_a_difference_differs() {
        let left = df!["id" => (0i64..500).collect::<Vec<_>>(), "v" => (0i64..500).collect::<Vec<_>>()].unwrap();
        let mut v: Vec<i64> = (0..500).collect();
        v[42] = -1;
        let right = df!["id" => (0i64..500).collect::<Vec<_>>(), "v" => v].unwrap().reverse();
        let mut prints = BucketPrints::new(64, vec!["id".into()], vec!["id".into(), "v".into()]);
        // The left side in two groups, the right in one: the fingerprints add up.
        let mut assigned = prints.add(Side::Left, &left.slice(0, 200)).unwrap();
        assigned.extend(prints.add(Side::Left, &left.slice(200, 300)).unwrap());
        let right_assigned = prints.add(Side::Right, &right).unwrap();
        assert_eq!(right_assigned, prints.assign(&right).unwrap(), "a second read finds the same buckets");
        let differs = prints.differing();
        assert_eq!(differs.iter().filter(|d| !**d).count(), 63);
        let [(all, l), (_, r)] = prints.rows(&differs);
        assert_eq!(all, 500);
        assert!(l < 30 && l == r, "{l}");
        let kept = keep_differing(&left, &assigned, &differs).unwrap();
        assert_eq!(kept.height() as u64, l);
        assert!(kept.column("id").unwrap().i64().unwrap().to_vec().contains(&Some(42)));
    }

    #[test]
    fn bucket_count_grows_with_the_data() {
        assert_eq!(buckets_for(1 << 10), 256);
        assert_eq!(buckets_for(1 << 30), 1 << 16);
        assert!(buckets_for(1 << 25) > buckets_for(1 << 20));
        assert!((0..1000u64).all(|h| bucket_of(h.wrapping_mul(0x9E37_79B9_7F4A_7C15), 5) < 5));
    }
}
