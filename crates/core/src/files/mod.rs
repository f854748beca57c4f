//! Files: uploads streamed into storage within size and quota limits, typed
//! by their content, images measured and previewed; downloads for the
//! uploader and the members of rooms where a file is attached; and the
//! removal of files nothing references.
//!
//! - [`sniff`]: the type of an upload and the safety of its name.
//! - `preview`: image dimensions and thumbnails within decode limits.
//! - `blobs`: the local directory or S3 bucket the bytes live in.

mod blobs;
mod preview;
pub mod sniff;

pub use blobs::{S3Config, StorageConfig};
pub use preview::THUMBNAIL_SIDE;

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::error::{CoreError, Result};
use crate::model::{Actor, File};
use crate::store::convert::file_from_row;
use crate::store::{FileRow, Store};
use blobs::Blobs;
use preview::DecodeLimits;
use sniff::{TypeRefusal, SNIFF_BYTES};

/// Settings of files.
#[derive(Debug, Clone)]
pub struct FilesConfig {
    pub storage: StorageConfig,
    /// The largest upload, in bytes.
    pub max_upload_bytes: u64,
    /// Bytes one user's files may take in all, thumbnails included; 0: no limit.
    pub quota_bytes_per_user: u64,
    /// Types accepted, as sniffed from the content.
    pub allowed_types: Vec<String>,
    /// The most pixels (width × height) of an image that is decoded.
    pub max_image_pixels: u64,
    /// The most memory one image decode may take, in bytes.
    pub max_decode_bytes: u64,
    /// Images decoded at once.
    pub decode_concurrency: usize,
    /// A file not attached to a message within this time is removed.
    pub unattached_ttl: Duration,
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            storage: StorageConfig::default(),
            max_upload_bytes: 25 * 1024 * 1024,
            quota_bytes_per_user: 1024 * 1024 * 1024,
            allowed_types: sniff::default_allowed_types(),
            max_image_pixels: 50_000_000,
            max_decode_bytes: 512 * 1024 * 1024,
            decode_concurrency: 2,
            unattached_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// What a client says about an upload; none of it is trusted.
#[derive(Debug, Clone, Default)]
pub struct Upload {
    /// The file's name, for display.
    pub name: String,
    /// The `Content-Type` the client declared.
    pub declared_type: Option<String>,
    /// The length the client declared, if any: refused early when too large.
    pub declared_len: Option<u64>,
}

/// Which bytes of a file to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Original,
    Thumbnail,
}

/// A file the caller may read, ready to stream.
#[derive(Debug, Clone)]
pub struct Readable {
    pub file: File,
    /// The type of the bytes served (the thumbnail's for a thumbnail).
    pub mime: String,
    /// Bytes of what is served.
    pub size: u64,
    /// A strong validator: the content's SHA-256, marked for thumbnails.
    pub etag: String,
    key: String,
}

/// The files service.
#[derive(Clone)]
pub struct Files {
    store: Store,
    blobs: Blobs,
    config: Arc<FilesConfig>,
    decoding: Arc<Semaphore>,
}

/// A random storage key under `dir`: nothing a client sends reaches a path.
fn random_key(dir: &str) -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{dir}/{}/{hex}", &hex[..2])
}

impl Files {
    pub fn new(store: Store, config: FilesConfig) -> Result<Files> {
        let blobs = Blobs::new(&config.storage)?;
        let decoding = Arc::new(Semaphore::new(config.decode_concurrency.max(1)));
        Ok(Files {
            store,
            blobs,
            config: Arc::new(config),
            decoding,
        })
    }

    pub fn config(&self) -> &FilesConfig {
        &self.config
    }

    /// The most bytes `actor` may upload now: the size limit, or what is left of the quota.
    async fn room_for(&self, actor: &Actor) -> Result<(u64, bool)> {
        let max = self.config.max_upload_bytes;
        if self.config.quota_bytes_per_user == 0 {
            return Ok((max, false));
        }
        let used = self
            .store
            .bytes_stored_by(&actor.user_id.to_string())
            .await?
            .max(0) as u64;
        let left = self.config.quota_bytes_per_user.saturating_sub(used);
        Ok(if left < max {
            (left, true)
        } else {
            (max, false)
        })
    }

    fn over(&self, quota_bound: bool) -> CoreError {
        if quota_bound {
            CoreError::too_large(
                "quota_exceeded",
                format!(
                    "this file would take you past your storage quota of {} bytes",
                    self.config.quota_bytes_per_user
                ),
            )
        } else {
            CoreError::too_large(
                "file_too_large",
                format!(
                    "files may be at most {} bytes",
                    self.config.max_upload_bytes
                ),
            )
        }
    }

    /// Streams an upload into storage. The limits hold on the bytes that
    /// arrive, whatever length was declared; on any refusal or failure
    /// nothing stays behind.
    pub async fn upload<S, E>(&self, actor: &Actor, up: Upload, mut body: S) -> Result<File>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let (room, quota_bound) = self.room_for(actor).await?;
        if up.declared_len.is_some_and(|n| n > room) {
            return Err(self.over(quota_bound));
        }
        let broke_off = |e: E| {
            CoreError::bad_request("upload_incomplete", format!("the upload broke off: {e}"))
        };

        // The first bytes decide the type before anything is stored.
        let mut head: Vec<u8> = Vec::new();
        let mut ended = false;
        while head.len() < SNIFF_BYTES {
            match body.next().await {
                Some(chunk) => head.extend_from_slice(&chunk.map_err(broke_off)?),
                None => {
                    ended = true;
                    break;
                }
            }
            if head.len() as u64 > room {
                return Err(self.over(quota_bound));
            }
        }
        if head.is_empty() {
            return Err(CoreError::validation("file", "is empty"));
        }
        let sniffed = sniff::sniff(&head, ended);
        let mime = sniff::decide(
            &sniffed,
            up.declared_type.as_deref(),
            &self.config.allowed_types,
        )
        .map_err(|r| match r {
            TypeRefusal::Mismatch { declared, sniffed } => CoreError::unsupported_type(
                "type_mismatch",
                format!("the file was declared {declared} but its content is {sniffed}"),
            ),
            TypeRefusal::NotAllowed(t) => CoreError::unsupported_type(
                "type_not_allowed",
                format!("files of type {t} are not accepted here"),
            ),
        })?;
        let previewable = sniff::is_previewable(&mime);

        let key = random_key("files");
        let mut writer = self.blobs.writer(&key);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        // Images are decoded whole, so they are kept while they arrive.
        let mut image: Vec<u8> = Vec::new();
        let mut pending = Some(Bytes::from(head));
        loop {
            let chunk = match pending.take() {
                Some(c) => c,
                None if ended => break,
                None => match body.next().await {
                    Some(Ok(c)) => c,
                    Some(Err(e)) => {
                        writer.abort().await;
                        return Err(broke_off(e));
                    }
                    None => break,
                },
            };
            size += chunk.len() as u64;
            if size > room {
                writer.abort().await;
                return Err(self.over(quota_bound));
            }
            hasher.update(&chunk);
            if previewable {
                image.extend_from_slice(&chunk);
            }
            if let Err(e) = writer.write(&chunk).await {
                writer.abort().await;
                return Err(e);
            }
        }
        writer.finish().await?;

        let id = Uuid::now_v7().to_string();
        let mut row = FileRow {
            id,
            uploader_id: actor.user_id.to_string(),
            name: sniff::sanitise_name(&up.name),
            mime,
            size: size as i64,
            sha256: format!("{:x}", hasher.finalize()),
            storage_key: key,
            width: None,
            height: None,
            thumb_key: None,
            thumb_mime: None,
            thumb_width: None,
            thumb_height: None,
            thumb_size: None,
            created_at: Utc::now().timestamp_millis(),
            attached_at: None,
        };
        let stored = async {
            if previewable {
                let p = self.preview(image, row.mime.clone()).await?;
                let thumb_key = random_key("thumbnails");
                row.width = Some(i64::from(p.width));
                row.height = Some(i64::from(p.height));
                row.thumb_size = Some(p.thumbnail.len() as i64);
                row.thumb_mime = Some(p.thumbnail_mime.to_owned());
                row.thumb_width = Some(i64::from(p.thumbnail_width));
                row.thumb_height = Some(i64::from(p.thumbnail_height));
                self.blobs.put(&thumb_key, p.thumbnail).await?;
                row.thumb_key = Some(thumb_key);
            }
            let quota = match self.config.quota_bytes_per_user {
                0 => i64::MAX,
                q => q.min(i64::MAX as u64) as i64,
            };
            self.store.insert_file(&row, quota).await
        }
        .await;
        if let Err(e) = stored {
            self.remove_objects(&row.storage_key, row.thumb_key.as_deref())
                .await;
            return Err(e);
        }
        file_from_row(&row)
    }

    /// Decodes an image off the runtime, a few at a time.
    async fn preview(&self, bytes: Vec<u8>, mime: String) -> Result<preview::Preview> {
        let _permit = self
            .decoding
            .acquire()
            .await
            .map_err(|_| CoreError::Internal("the decode limiter closed".into()))?;
        let limits = DecodeLimits {
            max_pixels: self.config.max_image_pixels,
            max_alloc: self.config.max_decode_bytes,
        };
        tokio::task::spawn_blocking(move || preview::preview(&bytes, &mime, limits))
            .await
            .map_err(|e| CoreError::Internal(format!("image decoding failed: {e}").into()))?
    }

    async fn remove_objects(&self, key: &str, thumb_key: Option<&str>) {
        for key in std::iter::once(key).chain(thumb_key) {
            if let Err(e) = self.blobs.delete(key).await {
                tracing::warn!(error = %e, key, "deleting a stored object failed; it stays orphaned");
            }
        }
    }

    /// A file the caller may read: its uploader, or a member of a room
    /// where it is attached. Anyone else learns nothing of it.
    pub async fn open(&self, actor: &Actor, id: Uuid, variant: Variant) -> Result<Readable> {
        let row = self
            .store
            .file(&id.to_string())
            .await?
            .ok_or(CoreError::NotFound("file"))?;
        let me = actor.user_id.to_string();
        if row.uploader_id != me && !self.store.file_visible_through_rooms(&row.id, &me).await? {
            return Err(CoreError::NotFound("file"));
        }
        let file = file_from_row(&row)?;
        Ok(match variant {
            Variant::Original => Readable {
                mime: row.mime.clone(),
                size: row.size.max(0) as u64,
                etag: format!("\"{}\"", row.sha256),
                key: row.storage_key,
                file,
            },
            Variant::Thumbnail => Readable {
                mime: row.thumb_mime.ok_or(CoreError::NotFound("thumbnail"))?,
                size: row.thumb_size.unwrap_or(0).max(0) as u64,
                etag: format!("\"{}-t\"", row.sha256),
                key: row.thumb_key.ok_or(CoreError::NotFound("thumbnail"))?,
                file,
            },
        })
    }

    /// The bytes of a readable file, or of `range` of them.
    pub async fn read(
        &self,
        readable: &Readable,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        match self.blobs.get(&readable.key, range).await {
            Err(CoreError::Storage(object_store::Error::NotFound { .. })) => {
                tracing::error!(file = %readable.file.id, "a recorded file is missing from storage");
                Err(CoreError::NotFound("file"))
            }
            other => other,
        }
    }

    /// Removes up to `batch` files that nothing references (their messages
    /// were deleted, or they were never attached within the configured time),
    /// with their stored objects. Returns how many went.
    pub async fn collect_garbage(&self, batch: i64) -> Result<u64> {
        let cutoff = Utc::now().timestamp_millis() - self.config.unattached_ttl.as_millis() as i64;
        let mut removed = 0;
        for id in self.store.orphaned_files(cutoff, batch).await? {
            // One at a time: a file attached meanwhile stays, and one failure stops no other.
            match self.store.remove_orphan(&id, cutoff).await {
                Ok(Some(f)) => {
                    self.remove_objects(&f.storage_key, f.thumb_key.as_deref())
                        .await;
                    removed += 1;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, file = %id, "removing an orphaned file failed")
                }
            }
        }
        Ok(removed)
    }
}
