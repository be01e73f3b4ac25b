//! An object store that fails on demand (test builds only, the `failpoints` feature): it
//! wraps the real store and consults a failpoint before each write and delete, so a test
//! can make Parquet uploads, manifest writes and object deletes fail at random while the
//! rest of the server runs unchanged. Reads and listings pass straight through. The
//! failpoints (`persist-upload`, `manifest-write`, `object-put`, `object-delete`) are
//! listed with the others in [`crate::failpoints`]; an upload can fail before it starts
//! or at its last step, a delete before the store is asked.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
    UploadPart,
};

use crate::catalog::manifest::MANIFEST_PATH;

/// `inner`, with failpoints on its writes and deletes.
pub fn wrap(inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    Arc::new(FaultyStore { inner })
}

#[derive(Debug)]
struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

/// True when failpoint `name` is configured to fail now (`return`; `sleep`, `pause` and
/// the like act and then let the call go on).
fn fires(name: &str) -> bool {
    fail::fail_point!(name, |_| true);
    false
}

fn injected(failpoint: &'static str, location: &Path) -> object_store::Error {
    object_store::Error::Generic {
        store: "failpoint",
        source: format!("{failpoint} failed {location} (injected)").into(),
    }
}

/// The failpoint that guards writing `location`.
fn put_failpoint(location: &Path) -> &'static str {
    if location.as_ref() == MANIFEST_PATH {
        "manifest-write"
    } else if location.as_ref().ends_with(".parquet") {
        "persist-upload"
    } else {
        "object-put"
    }
}

fn check_put(location: &Path) -> Result<()> {
    let name = put_failpoint(location);
    if fires(name) {
        return Err(injected(name, location));
    }
    Ok(())
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        check_put(location)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        check_put(location)?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultyUpload {
            inner,
            location: location.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let inner = self.inner.clone();
        locations
            .then(move |location| {
                let inner = inner.clone();
                async move {
                    let location = location?;
                    if fires("object-delete") {
                        return Err(injected("object-delete", &location));
                    }
                    inner.delete(&location).await.map(|()| location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        check_put(to)?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        check_put(to)?;
        self.inner.rename_opts(from, to, options).await
    }
}

/// A multipart upload whose completion can fail (the parts were sent; the object never
/// appears).
#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    location: Path,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        if let Err(e) = check_put(&self.location) {
            let _ = self.inner.abort().await;
            return Err(e);
        }
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}
