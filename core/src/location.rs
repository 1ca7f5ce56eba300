//! Where tables and checkpoints live: a local path, a `file://` URL or an `s3://` URL, refused
//! clearly when the scheme is unknown. All bytes go through `object_store`.
//!
//! S3 (and S3-compatible servers) take their settings from the standard environment variables:
//! `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL` (for a server
//! other than AWS), `AWS_ALLOW_HTTP=true` (for a plain-http endpoint). Delta commits rely on the
//! store's conditional put (`If-None-Match: *`), which S3 and the usual compatible servers have;
//! no locking provider is needed.

use crate::error::{Error, Result};
use object_store::ObjectStore;
use object_store::path::Path;
use std::sync::Arc;
use url::Url;

/// Turns what a user wrote (`/data/t`, `./t`, `file:///data/t`) into a URL, refusing unknown
/// schemes with a message that names the URL.
pub fn parse_location(raw: &str) -> Result<Url> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(Error::InvalidLocation { url: raw.into(), problem: "the location is empty".into() });
    }
    match Url::parse(raw) {
        Ok(url) if url.scheme().len() > 1 => match url.scheme() {
            "file" | "memory" | "s3" | "s3a" => Ok(url),
            "gs" | "az" | "abfss" => Err(Error::UnsupportedScheme {
                url: raw.into(),
                scheme: url.scheme().into(),
                hint: " (object stores other than local disk are not compiled into this build yet)",
            }),
            other => Err(Error::UnsupportedScheme { url: raw.into(), scheme: other.into(), hint: "" }),
        },
        // A relative or absolute local path (or a Windows drive letter, scheme of length 1).
        _ => {
            if raw.contains("://") {
                return Err(Error::InvalidLocation {
                    url: raw.into(),
                    problem: "looks like a URL but does not parse as one".into(),
                });
            }
            let path = std::path::absolute(raw)
                .map_err(|e| Error::InvalidLocation { url: raw.into(), problem: e.to_string() })?;
            Url::from_directory_path(&path).map_err(|()| Error::InvalidLocation {
                url: raw.into(),
                problem: "cannot be made into a file URL".into(),
            })
        }
    }
}

/// A table location as a URL delta-rs accepts (local directories are created).
pub fn table_url(raw: &str) -> Result<Url> {
    static S3: std::sync::Once = std::sync::Once::new();
    S3.call_once(|| deltalake::aws::register_handlers(None));
    let url = parse_location(raw)?;
    let invalid = |problem: String| Error::InvalidLocation { url: raw.into(), problem };
    let location = match url.scheme() {
        // A local directory: let delta-rs create and canonicalise it.
        "file" => url.to_file_path().map_err(|()| invalid("not a local path".into()))?.display().to_string(),
        _ => url.to_string(),
    };
    deltalake::ensure_table_uri(location).map_err(|e| invalid(e.to_string()))
}

/// A table location that must already exist (for reading): nothing is created.
pub fn existing_table_url(raw: &str) -> Result<Url> {
    let url = parse_location(raw)?;
    if url.scheme() == "file" {
        let path = url
            .to_file_path()
            .map_err(|()| Error::InvalidLocation { url: raw.into(), problem: "not a local path".into() })?;
        if !path.is_dir() {
            return Err(Error::InvalidLocation { url: raw.into(), problem: "no such table directory".into() });
        }
    }
    table_url(raw)
}

/// An object store and the root path inside it.
pub fn object_store_at(url: &Url) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let invalid = |problem: String| Error::InvalidLocation { url: url.to_string(), problem };
    if matches!(url.scheme(), "s3" | "s3a") {
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_url(url.as_str())
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        let path = Path::from_url_path(url.path()).map_err(|e| invalid(e.to_string()))?;
        return Ok((Arc::new(store), path));
    }
    let (store, path) = object_store::parse_url(url).map_err(|e| invalid(e.to_string()))?;
    Ok((Arc::from(store), path))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Plain case tables, not rstest: its macros need syn's `visit` feature, which made every
    // crate built on a proc macro (serde, tokio, Polars, delta-rs) build twice on a fresh
    // machine, once for `cargo run` and once for the tests.

    #[test]
    fn accepts_local_locations() {
        for (case, raw, url) in [
            ("absolute path", "/data/t", "file:///data/t/"),
            ("file url", "file:///data/t", "file:///data/t"),
            ("s3", "s3://bucket/tables/t", "s3://bucket/tables/t"),
        ] {
            assert_eq!(parse_location(raw).unwrap().as_str(), url, "{case}");
        }
    }

    #[test]
    fn refuses_others_and_says_why() {
        for (case, raw, says) in [
            ("unknown", "hdfs://nn/t", "unsupported table or checkpoint URL scheme `hdfs`"),
            ("not compiled", "gs://bucket/t", "not compiled into this build"),
            ("empty", "", "the location is empty"),
        ] {
            let err = parse_location(raw).unwrap_err().to_string();
            assert!(err.contains(says), "{case}: {err}");
        }
    }
}
