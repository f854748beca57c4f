//! Where file contents live: a local directory or S3-compatible object
//! storage, both through `object_store`. Writes stream: a small file is one
//! `put`, a larger one a multipart upload with a bounded number of parts in
//! memory, so memory does not grow with the file.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, WriteMultipart};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::error::{CoreError, Result};

/// Bytes per part of a multipart upload; S3's smallest part is 5 MiB.
const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts uploading at once per file.
const PARTS_IN_FLIGHT: usize = 2;
/// Bytes per read of a local file when serving it. `object_store` reads
/// 8 KiB at a time, each a trip to the blocking pool: three times the CPU of
/// an upload per byte (docs/benchmarks.md).
const LOCAL_READ_BYTES: usize = 256 * 1024;

/// Where files are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum StorageConfig {
    /// A directory on this machine.
    Local { root: PathBuf },
    /// An S3-compatible bucket (AWS, MinIO, Ceph, ...).
    S3(S3Config),
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig::Local {
            root: PathBuf::from("./roost-data/files"),
        }
    }
}

/// An S3-compatible bucket.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// The service's URL, e.g. `http://minio:9000`; empty for AWS itself.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Allow an `http://` endpoint (a private network or tests).
    pub allow_http: bool,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<secret>"),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// The object store behind files.
#[derive(Clone)]
pub(crate) struct Blobs {
    store: Arc<dyn ObjectStore>,
}

impl Blobs {
    /// Builds the store; nothing is contacted or created until first use.
    pub fn new(config: &StorageConfig) -> Result<Blobs> {
        let store: Arc<dyn ObjectStore> = match config {
            StorageConfig::Local { root } => {
                let root = std::path::absolute(root)
                    .map_err(|e| CoreError::validation("files.storage.root", e.to_string()))?;
                let prefix = Path::from_absolute_path(&root)
                    .map_err(|e| CoreError::validation("files.storage.root", e.to_string()))?;
                // Directories are made as files arrive.
                Arc::new(PrefixStore::new(LocalFileSystem::new(), prefix))
            }
            StorageConfig::S3(s3) => {
                let mut b = AmazonS3Builder::new()
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region)
                    .with_allow_http(s3.allow_http);
                if let Some(e) = &s3.endpoint {
                    b = b.with_endpoint(e);
                }
                if let Some(k) = &s3.access_key_id {
                    b = b.with_access_key_id(k);
                }
                if let Some(s) = &s3.secret_access_key {
                    b = b.with_secret_access_key(s);
                }
                Arc::new(
                    b.build()
                        .map_err(|e| CoreError::validation("files.storage", e.to_string()))?,
                )
            }
        };
        Ok(Blobs { store })
    }

    /// Starts writing an object.
    pub fn writer(&self, key: &str) -> BlobWriter {
        BlobWriter {
            store: self.store.clone(),
            path: Path::from(key),
            buffered: BytesMut::new(),
            upload: None,
        }
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put(&Path::from(key), Bytes::from(bytes).into())
            .await?;
        Ok(())
    }

    /// Streams an object, or the bytes `range` of it.
    pub async fn get(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        let opts = GetOptions {
            range: range.map(GetRange::Bounded),
            ..Default::default()
        };
        let got = self.store.get_opts(&Path::from(key), opts).await?;
        Ok(match got.payload {
            GetResultPayload::File(file, _) => local_file_stream(file, got.range),
            GetResultPayload::Stream(s) => s.map_err(CoreError::from).boxed(),
        })
    }

    /// Deletes an object; one already gone is not an error.
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The bytes `range` of a local file, in reads of [`LOCAL_READ_BYTES`].
fn local_file_stream(file: std::fs::File, range: Range<u64>) -> BoxStream<'static, Result<Bytes>> {
    struct Reading {
        file: tokio::fs::File,
        left: u64,
        seek_to: Option<u64>,
    }
    let failed =
        |e: std::io::Error| CoreError::Internal(format!("reading a stored file: {e}").into());
    let start = Reading {
        file: tokio::fs::File::from_std(file),
        left: range.end.saturating_sub(range.start),
        seek_to: Some(range.start),
    };
    futures_util::stream::unfold(Some(start), move |state| async move {
        let mut r = state?;
        if let Some(at) = r.seek_to.take() {
            if let Err(e) = r.file.seek(std::io::SeekFrom::Start(at)).await {
                return Some((Err(failed(e)), None));
            }
        }
        if r.left == 0 {
            return None;
        }
        let mut buf = BytesMut::with_capacity(LOCAL_READ_BYTES.min(r.left as usize));
        match r.file.read_buf(&mut buf).await {
            Ok(0) => Some((Err(failed(std::io::ErrorKind::UnexpectedEof.into())), None)),
            Ok(n) => {
                r.left = r.left.saturating_sub(n as u64);
                Some((Ok(buf.freeze()), Some(r)))
            }
            Err(e) => Some((Err(failed(e)), None)),
        }
    })
    .boxed()
}

/// An object being written. Nothing is visible under its key until
/// [`BlobWriter::finish`]; [`BlobWriter::abort`] leaves nothing behind.
pub(crate) struct BlobWriter {
    store: Arc<dyn ObjectStore>,
    path: Path,
    buffered: BytesMut,
    upload: Option<WriteMultipart>,
}

impl BlobWriter {
    pub async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        if let Some(upload) = &mut self.upload {
            // Waits while parts are in flight: memory stays at a few parts.
            upload.wait_for_capacity(PARTS_IN_FLIGHT).await?;
            upload.write(chunk);
            return Ok(());
        }
        self.buffered.extend_from_slice(chunk);
        if self.buffered.len() >= PART_BYTES {
            let upload = self.store.put_multipart(&self.path).await?;
            let mut upload = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            upload.put(std::mem::take(&mut self.buffered).freeze());
            self.upload = Some(upload);
        }
        Ok(())
    }

    pub async fn finish(self) -> Result<()> {
        match self.upload {
            Some(upload) => {
                upload.finish().await?;
            }
            None => {
                self.store
                    .put(&self.path, self.buffered.freeze().into())
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn abort(self) {
        if let Some(upload) = self.upload {
            if let Err(e) = upload.abort().await {
                tracing::warn!(error = %e, path = %self.path, "aborting a multipart upload failed");
            }
        }
    }
}
