//! Files on S3-compatible storage, against a real S3 server on loopback
//! (CI runs `moto_server`; `ROOST_TEST_S3_ENDPOINT` says where).

mod common;

use axum::body::{Body, Bytes};
use axum::http::{header, Method, Request, StatusCode};
use common::{TestApp, TestUser};
use roost_core::files::{S3Config, StorageConfig};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The S3 endpoint, or `None` (with a line saying so) when none is configured.
fn endpoint() -> Option<String> {
    match std::env::var("ROOST_TEST_S3_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            println!("skipped: ROOST_TEST_S3_ENDPOINT is not set (scripts/test starts moto_server and sets it)");
            None
        }
    }
}

/// One plain HTTP request to the S3 server (it takes unsigned requests for
/// bucket set-up and listing), returning the status line and body.
async fn s3_http(endpoint: &str, method: &str, path: &str) -> (String, String) {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut tcp = tokio::net::TcpStream::connect(host)
        .await
        .unwrap_or_else(|e| panic!("the S3 server at {endpoint} does not answer: {e}"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.lines().next().unwrap_or_default().to_owned();
    (status, text)
}

/// Object keys in a bucket.
async fn objects(endpoint: &str, bucket: &str) -> usize {
    let (status, body) = s3_http(endpoint, "GET", &format!("/{bucket}?list-type=2")).await;
    assert!(status.contains("200"), "{status}");
    body.matches("<Key>").count()
}

async fn app_on_s3(
    endpoint: &str,
    tune: impl FnOnce(&mut roost_core::CoreConfig),
) -> (TestApp, String) {
    let bucket = format!("roost-test-{}", uuid::Uuid::new_v4().simple());
    let (status, _) = s3_http(endpoint, "PUT", &format!("/{bucket}")).await;
    assert!(status.contains("200"), "creating the bucket: {status}");
    let config = S3Config {
        endpoint: Some(endpoint.to_owned()),
        bucket: bucket.clone(),
        region: "us-east-1".into(),
        access_key_id: Some("roost".into()),
        secret_access_key: Some("roost-secret".into()),
        allow_http: true,
    };
    let app = TestApp::with(|c, _| {
        c.files.storage = StorageConfig::S3(config);
        tune(c);
    })
    .await;
    (app, bucket)
}

fn upload(user: &TestUser, name: &str, mime: &str, body: Body) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(format!("/v1/files?name={name}"))
        .header(header::AUTHORIZATION, format!("Bearer {}", user.token))
        .header(header::CONTENT_TYPE, mime)
        .body(body)
        .unwrap()
}

fn streamed(total: usize) -> (Body, Vec<u8>) {
    let content: Vec<u8> = (0..total).map(|i| b'a' + (i % 23) as u8).collect();
    let chunks: Vec<Result<Bytes, std::io::Error>> = content
        .chunks(100_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    (Body::from_stream(futures::stream::iter(chunks)), content)
}

fn get(user: &TestUser, path: &str, range: Option<&str>) -> Request<Body> {
    let mut req = Request::builder()
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {}", user.token));
    if let Some(r) = range {
        req = req.header(header::RANGE, r);
    }
    req.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn files_round_trip_through_s3_in_one_put_or_in_parts() {
    let Some(endpoint) = endpoint() else { return };
    let (app, bucket) = app_on_s3(&endpoint, |_| {}).await;
    let ada = app.register("ada").await;

    // Small: one PUT. An image also stores its thumbnail.
    let mut png = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(640, 480, image::Rgb([1, 2, 3]))
        .write_to(&mut png, image::ImageFormat::Png)
        .unwrap();
    let res = app
        .send_raw(upload(
            &ada,
            "pic.png",
            "image/png",
            Body::from(png.into_inner()),
        ))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["thumbnail"]["width"], 320);
    let (status, _, thumb) = app
        .send_bytes(get(
            &ada,
            res.body["thumbnail"]["url"].as_str().unwrap(),
            None,
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(image::load_from_memory(&thumb).unwrap().width(), 320);
    assert_eq!(objects(&endpoint, &bucket).await, 2);

    // Large: a multipart upload of three parts, read back whole and in a range.
    let (body, content) = streamed(12 * 1024 * 1024 + 5);
    let res = app
        .send_raw(upload(&ada, "big.txt", "text/plain", body))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let url = res.body["url"].as_str().unwrap().to_owned();
    let (status, _, whole) = app.send_bytes(get(&ada, &url, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        whole.as_ref() == content.as_slice(),
        "the download differs from the upload"
    );
    let (status, headers, part) = app
        .send_bytes(get(&ada, &url, Some("bytes=5242870-5242889")))
        .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.as_ref(), &content[5_242_870..5_242_890]);
    assert_eq!(
        headers[header::CONTENT_RANGE],
        format!("bytes 5242870-5242889/{}", content.len())
    );
    assert_eq!(objects(&endpoint, &bucket).await, 3);
}

#[tokio::test]
async fn refused_uploads_leave_nothing_in_the_bucket_and_orphans_are_collected() {
    let Some(endpoint) = endpoint() else { return };
    let (app, bucket) = app_on_s3(&endpoint, |c| {
        c.files.max_upload_bytes = 7 * 1024 * 1024;
        c.files.unattached_ttl = std::time::Duration::ZERO;
    })
    .await;
    let ada = app.register("ada").await;
    // Past the limit after one part went up: the multipart upload is aborted.
    let (body, _) = streamed(9 * 1024 * 1024);
    let res = app
        .send_raw(upload(&ada, "big.txt", "text/plain", body))
        .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, listing) = s3_http(&endpoint, "GET", &format!("/{bucket}?uploads")).await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(
        listing.matches("<UploadId>").count(),
        0,
        "an unfinished upload remains: {listing}"
    );
    assert_eq!(objects(&endpoint, &bucket).await, 0);

    let room = app.room(&ada, "s3", "private").await;
    let kept = app
        .send_raw(upload(&ada, "kept.txt", "text/plain", Body::from("kept")))
        .await;
    app.send_raw(upload(&ada, "stray.txt", "text/plain", Body::from("stray")))
        .await;
    let sent = app
        .post(
            &format!("/v1/rooms/{room}/messages"),
            &ada.token,
            json!({"client_msg_id": "k", "attachments": [kept.body["id"]]}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.body);
    assert_eq!(objects(&endpoint, &bucket).await, 2);
    assert_eq!(app.core.files.collect_garbage(100).await.unwrap(), 1);
    assert_eq!(objects(&endpoint, &bucket).await, 1);
    let (status, _, body) = app
        .send_bytes(get(&ada, kept.body["url"].as_str().unwrap(), None))
        .await;
    assert_eq!((status, body.as_ref()), (StatusCode::OK, b"kept".as_ref()));
}
