//! Files over REST: uploads within size, type and quota limits, thumbnails,
//! pixel bombs, access, ranges and validators, attachments in messages,
//! garbage collection and retention.

mod common;

use std::io::Cursor;

use axum::body::{Body, Bytes};
use axum::http::{header, Method, Request, StatusCode};
use common::{TestApp, TestUser};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn upload_request(user: &TestUser, name: &str, mime: &str, body: Body) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(format!("/v1/files?name={}", urlencode(name)))
        .header(header::AUTHORIZATION, format!("Bearer {}", user.token))
        .header(header::CONTENT_TYPE, mime)
        .body(body)
        .unwrap()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn upload(
    app: &TestApp,
    user: &TestUser,
    name: &str,
    mime: &str,
    bytes: Vec<u8>,
) -> common::Response {
    let len = bytes.len();
    let mut req = upload_request(user, name, mime, Body::from(bytes));
    req.headers_mut().insert(header::CONTENT_LENGTH, len.into());
    app.send_raw(req).await
}

/// A body of `total` bytes of `fill` in 64 KiB chunks, with no length.
fn streamed(total: usize, fill: u8) -> Body {
    let chunks = (0..total.div_ceil(65536)).map(move |i| {
        let n = (total - i * 65536).min(65536);
        Ok::<_, std::io::Error>(Bytes::from(vec![fill; n]))
    });
    Body::from_stream(futures::stream::iter(chunks))
}

async fn download(
    app: &TestApp,
    user: &TestUser,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, Bytes) {
    let mut req = Request::builder()
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {}", user.token));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    app.send_bytes(req.body(Body::empty()).unwrap()).await
}

/// Every regular file under the storage directory.
fn stored_objects(app: &TestApp) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&app.files_dir(), &mut out);
    out
}

async fn send_with(
    app: &TestApp,
    user: &TestUser,
    room: &str,
    body: &str,
    files: &[&Value],
    cid: &str,
) -> common::Response {
    let ids: Vec<&Value> = files.iter().map(|f| &f["id"]).collect();
    app.post(
        &format!("/v1/rooms/{room}/messages"),
        &user.token,
        json!({"body": body, "client_msg_id": cid, "attachments": ids}),
    )
    .await
}

#[tokio::test]
async fn an_image_upload_returns_its_size_hash_and_a_320_pixel_thumbnail() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let bytes = png(1280, 720);
    let res = upload(&app, &ada, "holiday.png", "image/png", bytes.clone()).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let f = &res.body;
    assert_eq!(f["name"], "holiday.png");
    assert_eq!(f["mime"], "image/png");
    assert_eq!(f["size"], bytes.len());
    assert_eq!(f["sha256"], format!("{:x}", Sha256::digest(&bytes)));
    assert_eq!(
        (f["width"].as_u64(), f["height"].as_u64()),
        (Some(1280), Some(720))
    );
    assert_eq!(f["thumbnail"]["width"], 320);
    assert_eq!(f["thumbnail"]["height"], 180);

    let (status, headers, body) = download(&app, &ada, f["url"].as_str().unwrap(), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.as_ref(), bytes.as_slice());
    assert_eq!(headers[header::CONTENT_TYPE], "image/png");
    assert!(headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .starts_with("inline; filename=\"holiday.png\""));

    let (status, headers, thumb) =
        download(&app, &ada, f["thumbnail"]["url"].as_str().unwrap(), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[header::CONTENT_TYPE],
        f["thumbnail"]["mime"].as_str().unwrap()
    );
    let decoded = image::load_from_memory(&thumb).expect("the thumbnail is an image");
    assert_eq!((decoded.width(), decoded.height()), (320, 180));
}

#[tokio::test]
async fn a_multipart_upload_keeps_a_clean_name_and_stores_under_a_random_key() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let boundary = "XyZzY";
    let name = "../../etc/passwd\u{202e}.txt";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nignored\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: text/plain\r\n\r\nhello from a form\r\n--{boundary}--\r\n"
    );
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/files")
        .header(header::AUTHORIZATION, format!("Bearer {}", ada.token))
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap();
    let res = app.send_raw(req).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["name"], "passwd.txt");
    assert_eq!(res.body["mime"], "text/plain");
    assert_eq!(res.body["size"], "hello from a form".len());
    let objects = stored_objects(&app);
    assert_eq!(objects.len(), 1);
    assert!(!std::path::Path::new("/etc/passwd\u{202e}.txt").exists());
    let key = objects[0].file_name().unwrap().to_str().unwrap();
    assert!(
        key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "{key}"
    );
    assert!(!objects[0].starts_with("/etc"));

    let (_, headers, body) = download(&app, &ada, res.body["url"].as_str().unwrap(), &[]).await;
    assert_eq!(body.as_ref(), b"hello from a form");
    assert_eq!(headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
    assert_eq!(
        headers[header::CONTENT_DISPOSITION],
        "attachment; filename=\"passwd.txt\"; filename*=UTF-8''passwd.txt"
    );
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");

    // Control characters in a raw upload's name go too.
    let res = upload(
        &app,
        &ada,
        "a\u{0}b\r\nc\u{7}.txt",
        "text/plain",
        b"x".to_vec(),
    )
    .await;
    assert_eq!(res.body["name"], "abc.txt");
    assert!(headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .contains("sandbox"));

    // A form without a file part is refused.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/files")
        .header(header::AUTHORIZATION, format!("Bearer {}", ada.token))
        .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
        .body(Body::from(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\ny\r\n--{boundary}--\r\n")))
        .unwrap();
    let res = app.send_raw(req).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn oversize_uploads_get_413_and_leave_nothing_whatever_length_they_declare() {
    let limit = 6 * 1024 * 1024;
    let app = TestApp::with(|c, _| c.files.max_upload_bytes = limit).await;
    let ada = app.register("ada").await;
    let total = 8 * 1024 * 1024;

    // Honest: refused from the header, before the body is read.
    let mut req = upload_request(&ada, "big.txt", "text/plain", streamed(total, b'a'));
    req.headers_mut()
        .insert(header::CONTENT_LENGTH, total.into());
    let res = app.send_raw(req).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.code(), "file_too_large");

    // No length at all (chunked): refused once the limit is crossed, past one stored part.
    let res = app
        .send_raw(upload_request(
            &ada,
            "big.txt",
            "text/plain",
            streamed(total, b'a'),
        ))
        .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.code(), "file_too_large");

    // A lying length: the bytes count, not the claim.
    let mut req = upload_request(&ada, "big.txt", "text/plain", streamed(total, b'a'));
    req.headers_mut()
        .insert(header::CONTENT_LENGTH, 1000.into());
    let res = app.send_raw(req).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);

    assert!(
        stored_objects(&app).is_empty(),
        "left behind: {:?}",
        stored_objects(&app)
    );
    let mine = app.core.store.bytes_stored_by(&ada.id).await.unwrap();
    assert_eq!(mine, 0);

    // Exactly at the limit is fine, and goes through a multipart write.
    let res = app
        .send_raw(upload_request(
            &ada,
            "edge.txt",
            "text/plain",
            streamed(limit as usize, b'b'),
        ))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["size"], limit);
    let (_, _, body) = download(&app, &ada, res.body["url"].as_str().unwrap(), &[]).await;
    assert_eq!(body.len() as u64, limit);
    assert!(body.iter().all(|&b| b == b'b'));
    // A range across several of the server's reads comes back exact.
    let (status, _, part) = download(
        &app,
        &ada,
        res.body["url"].as_str().unwrap(),
        &[("range", "bytes=262000-800000")],
    )
    .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.len(), 538_001);
}

#[tokio::test]
async fn content_that_contradicts_its_type_or_is_not_allowed_gets_415() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("image/png", b"just some text".to_vec(), "type_mismatch"),
        (
            "text/plain",
            b"<!DOCTYPE html><html><script>alert(1)</script>".to_vec(),
            "type_mismatch",
        ),
        ("application/pdf", png(4, 4), "type_mismatch"),
        (
            "application/octet-stream",
            b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0>\0".to_vec(),
            "type_not_allowed",
        ),
        (
            "text/html",
            b"<!DOCTYPE html><p>hi".to_vec(),
            "type_not_allowed",
        ),
    ];
    for (declared, bytes, code) in cases {
        let res = upload(&app, &ada, "x", declared, bytes).await;
        assert_eq!(
            res.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{declared}: {}",
            res.body
        );
        assert_eq!(res.code(), code, "{declared}");
    }
    // A generic declaration takes the sniffed type.
    let res = upload(
        &app,
        &ada,
        "scan",
        "application/octet-stream",
        b"%PDF-1.4\n%\xe2\xe3\n".to_vec(),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["mime"], "application/pdf");
    let res = upload(&app, &ada, "empty.txt", "text/plain", Vec::new()).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(stored_objects(&app).len(), 1, "only the PDF is stored");
}

/// A PNG whose header claims `side` × `side` pixels, with a few bytes of data.
fn pixel_bomb(side: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(&crc.finalize().to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA: 4 bytes a pixel once decoded
    chunk(&mut out, b"IHDR", &ihdr);
    // zlib of a run of zeros: what a real bomb repeats for gigabytes.
    chunk(
        &mut out,
        b"IDAT",
        &[
            0x78, 0x9c, 0x63, 0x60, 0x18, 0x05, 0xa3, 0x60, 0x14, 0x0c, 0x00, 0x00,
        ],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

#[tokio::test]
async fn a_pixel_bomb_gets_422_and_is_not_kept() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    // 100,000² RGBA pixels would be 40 GB decoded.
    let res = upload(&app, &ada, "bomb.png", "image/png", pixel_bomb(100_000)).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(res.code(), "image_too_large");
    // Within the pixel limit but past the decoder's memory budget.
    let app2 = TestApp::with(|c, _| c.files.max_decode_bytes = 1024 * 1024).await;
    let bob = app2.register("bob").await;
    let res = upload(&app2, &bob, "big.png", "image/png", png(1000, 1000)).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(res.code(), "image_too_large");
    // A broken image is refused as unreadable.
    let mut broken = png(64, 64);
    broken.truncate(60);
    let res = upload(&app, &ada, "broken.png", "image/png", broken).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.code(), "image_unreadable");
    assert!(stored_objects(&app).is_empty());
    assert!(stored_objects(&app2).is_empty());
}

#[tokio::test]
async fn files_are_private_until_attached_then_visible_to_the_rooms_members_only() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let eve = app.register("eve").await;
    let room = app.room_with(&ada, &[&bob]).await;
    let f = upload(&app, &ada, "plan.txt", "text/plain", b"the plan".to_vec())
        .await
        .body;
    let url = f["url"].as_str().unwrap();
    assert_eq!(download(&app, &ada, url, &[]).await.0, StatusCode::OK);
    assert_eq!(
        download(&app, &bob, url, &[]).await.0,
        StatusCode::NOT_FOUND
    );

    let sent = send_with(&app, &ada, &room, "see attached", &[&f], "m1").await;
    assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.body);
    assert_eq!(download(&app, &bob, url, &[]).await.0, StatusCode::OK);
    let (status, _, _) = download(&app, &eve, url, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a non-member learns nothing");
    let unknown = format!("/v1/files/{}", uuid::Uuid::now_v7());
    assert_eq!(
        download(&app, &ada, &unknown, &[]).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        download(&app, &ada, &format!("{url}/thumbnail"), &[])
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // Eve can't attach Ada's file to a message of her own either.
    let eves = app.room(&eve, "eve's", "private").await;
    let res = send_with(&app, &eve, &eves, "stolen", &[&f], "e1").await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.body["error"]["details"]["field"], "attachments");

    // Deleting the message takes the file out of the room.
    let mid = sent.body["id"].as_str().unwrap();
    let res = app
        .call(
            Method::DELETE,
            &format!("/v1/rooms/{room}/messages/{mid}"),
            Some(&ada.token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["attachments"], json!([]));
    assert_eq!(
        download(&app, &bob, url, &[]).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn ranges_and_validators_serve_parts_and_skip_what_the_client_has() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let content: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let f = upload(&app, &ada, "alphabet.txt", "text/plain", content.clone())
        .await
        .body;
    let url = f["url"].as_str().unwrap();

    let (status, headers, body) = download(&app, &ada, url, &[("range", "bytes=10-19")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body.as_ref(), &content[10..20]);
    assert_eq!(headers[header::CONTENT_RANGE], "bytes 10-19/1000");
    assert_eq!(headers[header::CONTENT_LENGTH], "10");
    assert_eq!(headers[header::ACCEPT_RANGES], "bytes");

    let (status, _, body) = download(&app, &ada, url, &[("range", "bytes=-5")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body.as_ref(), &content[995..]);

    let (status, headers, _) = download(&app, &ada, url, &[("range", "bytes=1000-")]).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(headers[header::CONTENT_RANGE], "bytes */1000");

    let (_, headers, _) = download(&app, &ada, url, &[]).await;
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", f["sha256"].as_str().unwrap()));
    let (status, _, body) = download(&app, &ada, url, &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    // A range against another version of the file gets the whole file.
    let (status, _, body) = download(
        &app,
        &ada,
        url,
        &[("range", "bytes=0-9"), ("if-range", "\"other\"")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len(), 1000);
    let (status, _, _) = download(
        &app,
        &ada,
        url,
        &[("range", "bytes=0-9"), ("if-range", &etag)],
    )
    .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
}

#[tokio::test]
async fn the_quota_holds_across_uploads_with_its_own_code() {
    let app = TestApp::with(|c, _| c.files.quota_bytes_per_user = 100_000).await;
    let ada = app.register("ada").await;
    let res = upload(&app, &ada, "a.txt", "text/plain", vec![b'x'; 60_000]).await;
    assert_eq!(res.status, StatusCode::CREATED);
    let res = upload(&app, &ada, "b.txt", "text/plain", vec![b'y'; 60_000]).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.code(), "quota_exceeded");
    let res = app
        .send_raw(upload_request(
            &ada,
            "c.txt",
            "text/plain",
            streamed(60_000, b'z'),
        ))
        .await;
    assert_eq!(res.code(), "quota_exceeded");
    assert_eq!(stored_objects(&app).len(), 1);
    // Another user has their own quota.
    let bob = app.register("bob").await;
    let res = upload(&app, &bob, "b.txt", "text/plain", vec![b'y'; 60_000]).await;
    assert_eq!(res.status, StatusCode::CREATED);
}

#[tokio::test]
async fn messages_carry_their_attachments_in_events_history_and_kind() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let room = app.room_with(&ada, &[&bob]).await;
    let pic = upload(&app, &ada, "cat.png", "image/png", png(400, 300))
        .await
        .body;
    let pic2 = upload(&app, &ada, "dog.png", "image/png", png(20, 20))
        .await
        .body;
    let doc = upload(&app, &ada, "notes.txt", "text/plain", b"notes".to_vec())
        .await
        .body;

    let res = send_with(&app, &ada, &room, "", &[&pic, &pic2], "p1").await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["kind"], "image");
    assert_eq!(res.body["body"], Value::Null);
    let atts = res.body["attachments"].as_array().unwrap();
    assert_eq!(atts.len(), 2);
    assert_eq!(atts[0]["name"], "cat.png");
    assert_eq!(atts[0]["width"], 400);
    assert_eq!(atts[0]["url"], pic["url"]);
    assert_eq!(atts[0]["thumbnail"]["url"], pic["thumbnail"]["url"]);
    assert_eq!(atts[1]["name"], "dog.png");

    let res = send_with(&app, &ada, &room, "with notes", &[&pic, &doc], "p2").await;
    assert_eq!(res.body["kind"], "file");
    // The same send again returns the same message with its attachments.
    let again = send_with(&app, &ada, &room, "with notes", &[&pic, &doc], "p2").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["attachments"], res.body["attachments"]);

    let history = app
        .get(&format!("/v1/rooms/{room}/messages"), &bob.token)
        .await;
    let items: Vec<&Value> = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] != "system")
        .collect();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["attachments"].as_array().unwrap().len(), 2);
    assert_eq!(items[1]["attachments"][1]["name"], "notes.txt");
    let rooms = app.get("/v1/rooms", &bob.token).await;
    assert_eq!(
        rooms.body["items"][0]["unread_count"], 2,
        "messages with files count as unread"
    );
    assert_eq!(
        rooms.body["items"][0]["last_message"]["attachments"][1]["mime"],
        "text/plain"
    );

    // The replayed event carries them too.
    let replay = app
        .core
        .events
        .replay(room.parse().unwrap(), 0, 100)
        .await
        .unwrap();
    let roost_core::events::Replay::Events { events, .. } = replay else {
        panic!("a reset")
    };
    let shown = serde_json::to_value(&events).unwrap().to_string();
    assert!(
        shown.contains("notes.txt") && shown.contains("cat.png"),
        "{shown}"
    );

    for (body, files, field) in [
        ("", vec![], "body"),
        ("twice", vec![&pic, &pic], "attachments"),
    ] {
        let res = send_with(&app, &ada, &room, body, &files, &format!("bad-{field}")).await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
        assert_eq!(res.body["error"]["details"]["field"], field);
    }
    let many: Vec<Value> = (0..11)
        .map(|_| json!({"id": uuid::Uuid::now_v7()}))
        .collect();
    let refs: Vec<&Value> = many.iter().collect();
    let res = send_with(&app, &ada, &room, "many", &refs, "many").await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn the_sweeps_a_node_starts_collect_stray_files_by_themselves() {
    let app = TestApp::with(|c, _| c.files.unattached_ttl = std::time::Duration::ZERO).await;
    let ada = app.register("ada").await;
    let stray = upload(
        &app,
        &ada,
        "stray.txt",
        "text/plain",
        b"never sent".to_vec(),
    )
    .await
    .body;
    assert_eq!(stored_objects(&app).len(), 1);
    let sweeps = app.core.start_sweeps();
    // The first round runs as the node starts, not a period later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !stored_objects(&app).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the stray file was not collected"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        download(&app, &ada, stray["url"].as_str().unwrap(), &[])
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    sweeps.stop().await;
}

#[tokio::test]
async fn files_nothing_references_are_collected_with_their_objects() {
    let app = TestApp::with(|c, _| c.files.unattached_ttl = std::time::Duration::ZERO).await;
    let ada = app.register("ada").await;
    let room = app.room_with(&ada, &[]).await;
    let kept = upload(&app, &ada, "kept.png", "image/png", png(500, 500))
        .await
        .body;
    let stray = upload(
        &app,
        &ada,
        "stray.txt",
        "text/plain",
        b"never sent".to_vec(),
    )
    .await
    .body;
    let sent = send_with(&app, &ada, &room, "", &[&kept], "k1").await;
    assert_eq!(
        stored_objects(&app).len(),
        3,
        "the image, its thumbnail and the stray file"
    );

    let removed = app.core.files.collect_garbage(100).await.unwrap();
    assert_eq!(removed, 1);
    assert_eq!(stored_objects(&app).len(), 2);
    assert_eq!(
        download(&app, &ada, stray["url"].as_str().unwrap(), &[])
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        download(&app, &ada, kept["url"].as_str().unwrap(), &[])
            .await
            .0,
        StatusCode::OK
    );

    let mid = sent.body["id"].as_str().unwrap();
    app.call(
        Method::DELETE,
        &format!("/v1/rooms/{room}/messages/{mid}"),
        Some(&ada.token),
        None,
    )
    .await;
    assert_eq!(app.core.files.collect_garbage(100).await.unwrap(), 1);
    assert!(stored_objects(&app).is_empty());
    assert_eq!(app.core.store.bytes_stored_by(&ada.id).await.unwrap(), 0);
}

#[tokio::test]
async fn a_fresh_unattached_file_is_not_collected() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    upload(&app, &ada, "draft.txt", "text/plain", b"draft".to_vec()).await;
    assert_eq!(app.core.files.collect_garbage(100).await.unwrap(), 0);
    assert_eq!(stored_objects(&app).len(), 1);
}

#[tokio::test]
async fn retention_deletes_old_messages_with_their_files_and_resume_resets() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let room = app.room_with(&ada, &[]).await;
    let pic = upload(&app, &ada, "old.png", "image/png", png(50, 50))
        .await
        .body;
    send_with(&app, &ada, &room, "old news", &[&pic], "o1").await;
    send_with(&app, &ada, &room, "older news", &[], "o2").await;
    let cutoff = chrono::Utc::now().timestamp_millis() + 1;
    let removed = app.core.chat.expire_before(cutoff, 1).await.unwrap();
    assert!(removed >= 2, "{removed}");
    let history = app
        .get(&format!("/v1/rooms/{room}/messages"), &ada.token)
        .await;
    assert_eq!(history.body["items"], json!([]));
    assert_eq!(app.core.files.collect_garbage(100).await.unwrap(), 1);
    assert!(stored_objects(&app).is_empty());
    let replay = app
        .core
        .events
        .replay(room.parse().unwrap(), 0, 100)
        .await
        .unwrap();
    assert!(
        matches!(replay, roost_core::events::Replay::Reset { .. }),
        "{replay:?}"
    );
    // New messages still flow after it.
    let res = send_with(&app, &ada, &room, "fresh", &[], "n1").await;
    assert_eq!(res.status, StatusCode::CREATED);
}
