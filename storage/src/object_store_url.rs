//! Opening the object store named by `--object-store`: `file:///path` (a local folder) or
//! `s3://bucket/prefix` (credentials, region and endpoint from the usual `AWS_*`
//! variables; a custom `http://` endpoint such as MinIO is allowed and uses path-style
//! requests).

use std::path::Path;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{ClientConfigKey, RetryConfig};

use crate::error::{Error, Result};

/// How long S3 requests may take: each attempt (`request`), and all retries of one
/// operation together (`retry`). `None` keeps object_store's defaults (30 s; 3 min).
/// After `retry` a persist fails and is tried again by the persister's next round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectStoreTimeouts {
    pub request: Option<std::time::Duration>,
    pub retry: Option<std::time::Duration>,
}

/// Where data lives, parsed from a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectStoreLocation {
    Local(std::path::PathBuf),
    S3 { bucket: String, prefix: String },
}

impl ObjectStoreLocation {
    /// The default store: `<data-dir>/objects`.
    pub fn default_for(data_dir: &Path) -> Self {
        ObjectStoreLocation::Local(data_dir.join("objects"))
    }

    pub fn parse(url: &str) -> Result<Self> {
        let bad = |reason: &str| Error::ObjectStoreUrl {
            url: url.into(),
            reason: reason.into(),
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        match parsed.scheme() {
            "file" => {
                let path = parsed
                    .to_file_path()
                    .map_err(|_| bad("not an absolute local path (use file:///abs/path)"))?;
                Ok(ObjectStoreLocation::Local(path))
            }
            "s3" => {
                let bucket = parsed
                    .host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| bad("missing bucket name (s3://bucket/prefix)"))?;
                Ok(ObjectStoreLocation::S3 {
                    bucket: bucket.to_string(),
                    prefix: parsed.path().trim_matches('/').to_string(),
                })
            }
            other => Err(bad(&format!(
                "unsupported scheme \"{other}\" (use file:// or s3://)"
            ))),
        }
    }

    pub fn open(&self) -> Result<Arc<dyn ObjectStore>> {
        self.open_with(ObjectStoreTimeouts::default())
    }

    /// [`ObjectStoreLocation::open`] with request timeouts (S3 only; a local folder has
    /// none).
    pub fn open_with(&self, timeouts: ObjectStoreTimeouts) -> Result<Arc<dyn ObjectStore>> {
        let store = self.open_unwrapped(timeouts)?;
        #[cfg(feature = "failpoints")]
        let store = crate::faulty_store::wrap(store);
        Ok(store)
    }

    fn open_unwrapped(&self, timeouts: ObjectStoreTimeouts) -> Result<Arc<dyn ObjectStore>> {
        match self {
            ObjectStoreLocation::Local(path) => {
                std::fs::create_dir_all(path).map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })?;
                let fs = LocalFileSystem::new_with_prefix(path)
                    .map_err(Error::object_store(path.display().to_string()))?;
                Ok(Arc::new(fs))
            }
            ObjectStoreLocation::S3 { bucket, prefix } => {
                let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
                let endpoint = std::env::var("AWS_ENDPOINT_URL")
                    .or_else(|_| std::env::var("AWS_ENDPOINT"))
                    .ok();
                if let Some(ep) = &endpoint {
                    b = b
                        .with_endpoint(ep)
                        .with_virtual_hosted_style_request(false)
                        .with_allow_http(ep.starts_with("http://"));
                }
                if std::env::var("AWS_REGION").is_err()
                    && std::env::var("AWS_DEFAULT_REGION").is_err()
                {
                    b = b.with_region("us-east-1");
                }
                if let Some(t) = timeouts.request {
                    b = b.with_config(
                        AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                        format!("{}ms", t.as_millis()),
                    );
                }
                if let Some(retry_timeout) = timeouts.retry {
                    b = b.with_retry(RetryConfig {
                        retry_timeout,
                        ..RetryConfig::default()
                    });
                }
                let s3 = b
                    .build()
                    .map_err(Error::object_store(format!("s3://{bucket}")))?;
                if prefix.is_empty() {
                    Ok(Arc::new(s3))
                } else {
                    Ok(Arc::new(PrefixStore::new(s3, prefix.as_str())))
                }
            }
        }
    }
}

impl ObjectStoreLocation {
    /// True when one location lies inside the other (or they are the same): two stores
    /// that must stay apart (data and archive) would then see each other's objects.
    pub fn overlaps(&self, other: &ObjectStoreLocation) -> bool {
        fn nested(a: &str, b: &str) -> bool {
            let (a, b) = (a.trim_matches('/'), b.trim_matches('/'));
            let inside =
                |x: &str, y: &str| x.is_empty() || y == x || y.starts_with(&format!("{x}/"));
            inside(a, b) || inside(b, a)
        }
        match (self, other) {
            (ObjectStoreLocation::Local(a), ObjectStoreLocation::Local(b)) => {
                a.starts_with(b) || b.starts_with(a)
            }
            (
                ObjectStoreLocation::S3 {
                    bucket: a,
                    prefix: pa,
                },
                ObjectStoreLocation::S3 {
                    bucket: b,
                    prefix: pb,
                },
            ) => a == b && nested(pa, pb),
            _ => false,
        }
    }
}

impl std::fmt::Display for ObjectStoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObjectStoreLocation::Local(p) => write!(f, "file://{}", p.display()),
            ObjectStoreLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_urls() {
        assert_eq!(
            ObjectStoreLocation::parse("file:///var/lib/wattdb").unwrap(),
            ObjectStoreLocation::Local("/var/lib/wattdb".into())
        );
        assert_eq!(
            ObjectStoreLocation::parse("s3://meters/prod/a").unwrap(),
            ObjectStoreLocation::S3 {
                bucket: "meters".into(),
                prefix: "prod/a".into()
            }
        );
        assert!(ObjectStoreLocation::parse("gs://x").is_err());
        assert!(ObjectStoreLocation::parse("s3:///nobucket").is_err());
        assert!(ObjectStoreLocation::parse("not a url").is_err());
    }

    #[test]
    fn nested_locations_overlap() {
        let p = |u: &str| ObjectStoreLocation::parse(u).unwrap();
        assert!(p("file:///d/objects").overlaps(&p("file:///d/objects")));
        assert!(p("file:///d/objects").overlaps(&p("file:///d/objects/archive")));
        assert!(p("file:///d/objects/archive").overlaps(&p("file:///d")));
        assert!(!p("file:///d/objects").overlaps(&p("file:///d/objects-archive")));
        assert!(!p("file:///d/objects").overlaps(&p("file:///d/archive")));
        assert!(p("s3://b/prod").overlaps(&p("s3://b/prod/cold")));
        assert!(p("s3://b").overlaps(&p("s3://b/cold")));
        assert!(!p("s3://b/prod").overlaps(&p("s3://b/production")));
        assert!(!p("s3://b/prod").overlaps(&p("s3://cold/prod")));
        assert!(!p("s3://b/prod").overlaps(&p("file:///b/prod")));
    }
}
