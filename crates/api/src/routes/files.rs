//! `/v1/files`: uploads streamed into storage, and downloads with ranges,
//! validators and the headers that keep a browser from running what it gets.

use std::ops::Range;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use roost_core::files::{Upload, Variant};
use roost_core::model::Actor;
use roost_core::model::File;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json, Path, Query};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(upload))
        .routes(routes!(download))
        .routes(routes!(thumbnail))
}

/// Only for a raw upload; a multipart upload names its file in its part.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The file's name, for display (paths and control characters are removed).
    pub name: Option<String>,
}

/// A body of raw bytes, for the OpenAPI document (a binary string, not an
/// array of numbers).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct RawBytes(pub Vec<u8>);

/// A multipart upload's form, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
pub struct UploadForm {
    /// The file; its part's `filename` names it and its `Content-Type` declares its type.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// Uploads a file: either the raw bytes as the body, with their
/// `Content-Type` and `?name=`, or `multipart/form-data` with the file in a
/// part named `file`. The type is sniffed from the content and must agree
/// with the declared one and be allowed; images get their dimensions and a
/// thumbnail. The file stays private to its uploader until it is attached
/// to a message, and is removed if not attached within 24 hours.
#[utoipa::path(post, path = "/v1/files", operation_id = "uploadFile", tag = "files", security(("bearer" = [])),
    params(UploadQuery),
    request_body(description = "The file's bytes with their own `Content-Type` (any type the server allows), \
        or multipart/form-data with the file in a part named `file`",
        content(
            (RawBytes = "application/octet-stream"),
            (UploadForm = "multipart/form-data"),
        )),
    responses((status = 201, body = File),
        (status = 400, body = ErrorBody, description = "`upload_incomplete`: the body broke off"),
        (status = 413, body = ErrorBody, description = "`file_too_large` or `quota_exceeded`"),
        (status = 415, body = ErrorBody, description = "`type_mismatch` or `type_not_allowed`"),
        (status = 422, body = ErrorBody, description = "`image_too_large`, `image_unreadable`, or an empty file")))]
pub async fn upload(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Query(q): Query<UploadQuery>,
    req: Request,
) -> ApiResult<(StatusCode, Json<File>)> {
    let files = &state.core.files;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let declared_len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let is_multipart = content_type
        .as_deref()
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("multipart/form-data"));
    let file = if is_multipart {
        upload_multipart(&state, &actor, req, q.name).await?
    } else {
        let up = Upload {
            name: q.name.unwrap_or_default(),
            declared_type: content_type,
            declared_len,
        };
        files
            .upload(&actor, up, req.into_body().into_data_stream())
            .await?
    };
    Ok((StatusCode::CREATED, Json(file)))
}

async fn upload_multipart(
    state: &AppState,
    actor: &Actor,
    req: Request,
    name: Option<String>,
) -> ApiResult<File> {
    let mut multipart = Multipart::from_request(req, state)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    loop {
        let field = multipart.next_field().await.map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "upload_incomplete", e.body_text())
        })?;
        let Some(field) = field else {
            return Err(roost_core::CoreError::validation(
                "file",
                "the form has no part named `file`",
            )
            .into());
        };
        if field.name() != Some("file") {
            continue;
        }
        let up = Upload {
            name: field
                .file_name()
                .map(str::to_owned)
                .or(name)
                .unwrap_or_default(),
            declared_type: field.content_type().map(str::to_owned),
            declared_len: None,
        };
        return Ok(state.core.files.upload(actor, up, Box::pin(field)).await?);
    }
}

/// Downloads a file: for its uploader, and for members of a room where it
/// is attached; anyone else gets 404. Supports one `Range`, `If-None-Match`
/// and `If-Range`; images are served inline, everything else as an attachment.
#[utoipa::path(get, path = "/v1/files/{id}", operation_id = "downloadFile", tag = "files", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The file, in the type sniffed from its content (`mime`)",
            content((RawBytes = "*/*")), headers(
                ("ETag" = String, description = "The file's SHA-256"),
                ("Content-Disposition" = String, description = "`inline` for images, else `attachment`, with the name"))),
        (status = 206, description = "The one range asked for, with `Content-Range`",
            content((RawBytes = "*/*")), headers(("Content-Range" = String, description = "`bytes first-last/size`"))),
        (status = 304, description = "Not modified: `If-None-Match` names this file's `ETag`"),
        (status = 404, body = ErrorBody),
        (status = 416, body = ErrorBody, description = "`range_not_satisfiable`, with `Content-Range: bytes */size`")))]
pub async fn download(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    serve(&state, &actor, id, Variant::Original, &headers).await
}

/// An image's thumbnail (JPEG or PNG, at most 320 pixels on its longer side).
#[utoipa::path(get, path = "/v1/files/{id}/thumbnail", operation_id = "getThumbnail", tag = "files", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The thumbnail", content((RawBytes = "image/jpeg"), (RawBytes = "image/png"))),
        (status = 206, description = "The one range asked for, with `Content-Range`",
            content((RawBytes = "image/jpeg"), (RawBytes = "image/png"))),
        (status = 304, description = "Not modified: `If-None-Match` names the thumbnail's `ETag`"),
        (status = 404, body = ErrorBody, description = "No such file, or not an image"),
        (status = 416, body = ErrorBody, description = "`range_not_satisfiable`")))]
pub async fn thumbnail(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    serve(&state, &actor, id, Variant::Thumbnail, &headers).await
}

async fn serve(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    variant: Variant,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let files = &state.core.files;
    let readable = files.open(actor, id, variant).await?;
    let etag = HeaderValue::from_str(&readable.etag).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "bad validator",
        )
    })?;
    let header_str = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };

    if header_str(header::IF_NONE_MATCH).is_some_and(|v| etag_matches(v, &readable.etag)) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let size = readable.size;
    // A range holds only if the client's copy is this one (If-Range).
    let range_applies = header_str(header::IF_RANGE).is_none_or(|v| v.trim() == readable.etag);
    let range = match header_str(header::RANGE).filter(|_| range_applies) {
        None => None,
        Some(h) => match parse_range(h, size) {
            RangeAnswer::Full => None,
            RangeAnswer::Partial(r) => Some(r),
            RangeAnswer::Unsatisfiable => {
                let mut res = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range_not_satisfiable",
                    format!("the file has {size} bytes"),
                )
                .into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    res.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(res);
            }
        },
    };
    let stream = files.read(&readable, range.clone()).await?;

    let mut res = Response::new(Body::from_stream(stream));
    let h = res.headers_mut();
    let mime = if readable.mime.starts_with("text/") {
        format!("{}; charset=utf-8", readable.mime)
    } else {
        readable.mime.clone()
    };
    let inline = readable.mime.starts_with("image/");
    let name = match variant {
        Variant::Original => readable.file.name.clone(),
        Variant::Thumbnail => format!("thumbnail-{}", readable.file.name),
    };
    let pairs = [
        (header::CONTENT_TYPE, mime),
        (
            header::CONTENT_DISPOSITION,
            content_disposition(&name, inline),
        ),
        (header::ACCEPT_RANGES, "bytes".into()),
        (header::CACHE_CONTROL, "private, max-age=3600".into()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
        // Opened directly, a file is a document with nothing to run and no origin.
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox".into(),
        ),
    ];
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    h.insert(header::ETAG, etag);
    match range {
        Some(r) => {
            *res.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = res.headers_mut();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(r.end - r.start));
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", r.start, r.end - 1))
            {
                h.insert(header::CONTENT_RANGE, v);
            }
        }
        None => {
            res.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        }
    }
    Ok(res)
}

/// Whether an `If-None-Match` list names this entity tag (weak comparison).
fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// What to do with a `Range` header.
#[derive(Debug, PartialEq, Eq)]
enum RangeAnswer {
    /// Serve the whole file: no range, one that cannot parse, or several
    /// (RFC 9110 lets a server ignore a `Range` it does not support).
    Full,
    Partial(Range<u64>),
    Unsatisfiable,
}

/// One `bytes=` range: `a-b`, `a-` or `-n` (the last n bytes).
fn parse_range(header: &str, size: u64) -> RangeAnswer {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeAnswer::Full;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim(), b.trim()) {
        ("", suffix) => match num(suffix) {
            None => RangeAnswer::Full,
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if size == 0 => RangeAnswer::Unsatisfiable,
            Some(n) => RangeAnswer::Partial(size.saturating_sub(n)..size),
        },
        (start, end) => {
            let Some(s) = num(start) else {
                return RangeAnswer::Full;
            };
            let e = if end.is_empty() {
                u64::MAX
            } else {
                match num(end) {
                    Some(e) if e >= s => e,
                    _ => return RangeAnswer::Full,
                }
            };
            if s >= size {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial(s..e.saturating_add(1).min(size))
            }
        }
    }
}

/// RFC 5987 `attr-char`: what `filename*` may carry unencoded.
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `Content-Disposition` per RFC 6266: an ASCII `filename` for old clients
/// and the exact name in `filename*`.
fn content_disposition(name: &str, inline: bool) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{}; filename=\"{fallback}\"; filename*=UTF-8''{}",
        if inline { "inline" } else { "attachment" },
        utf8_percent_encode(name, ATTR_CHAR)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        use RangeAnswer::*;
        assert_eq!(parse_range("bytes=0-99", 1000), Partial(0..100));
        assert_eq!(parse_range("bytes=900-", 1000), Partial(900..1000));
        assert_eq!(parse_range("bytes=-100", 1000), Partial(900..1000));
        assert_eq!(parse_range("bytes=-5000", 1000), Partial(0..1000));
        assert_eq!(parse_range("bytes=990-5000", 1000), Partial(990..1000));
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 1000), Full);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Full);
        assert_eq!(parse_range("items=0-1", 1000), Full);
        assert_eq!(parse_range("bytes=+1-2", 1000), Full);
        assert_eq!(
            parse_range("bytes=0-18446744073709551615", 10),
            Partial(0..10)
        );
        assert_eq!(parse_range("bytes=99999999999999999999-", 10), Full);
    }

    #[test]
    fn dispositions_carry_an_ascii_fallback_and_the_exact_name() {
        assert_eq!(
            content_disposition("report.pdf", false),
            "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
        );
        assert_eq!(
            content_disposition("naïve \"plan\".txt", false),
            "attachment; filename=\"na_ve _plan_.txt\"; filename*=UTF-8''na%C3%AFve%20%22plan%22.txt"
        );
        assert!(content_disposition("cat.png", true).starts_with("inline; "));
    }

    #[test]
    fn entity_tags_match_in_lists_and_weakly() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("\"x\", W/\"abc\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
    }
}
