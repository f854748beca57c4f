//! The built `roost` binary, started as a newcomer would start it, driven over HTTP.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Server, PASSWORD};
use serde_json::{json, Value};

fn roost() -> Command {
    let mut cmd = common::roost();
    // Tests run side by side: each server's media port is a free one.
    cmd.env("ROOST_MEDIA__LISTEN", "127.0.0.1:0");
    // No load balancer to wait for: SIGTERM stops listening at once (the
    // drain window has its own tests in trouble.rs).
    cmd.env("ROOST_SHUTDOWN_DRAIN_SECS", "0");
    cmd
}

/// `roost serve` on `data_dir`, stopping at once on SIGTERM.
fn serve(data_dir: &Path) -> Command {
    let mut cmd = common::serve(data_dir);
    cmd.env("ROOST_SHUTDOWN_DRAIN_SECS", "0");
    cmd
}

/// The database this run tests on: a fresh PostgreSQL database on the
/// PostgreSQL pass, else none (SQLite in the data directory).
async fn database_args() -> Vec<String> {
    match roost_core::store::testing::backend() {
        roost_core::store::Backend::Postgres => {
            vec![
                "--database-url".into(),
                roost_core::store::testing::fresh_postgres_url().await,
            ]
        }
        roost_core::store::Backend::Sqlite => Vec::new(),
    }
}

/// Starts `roost serve` on a free port, on this run's database.
async fn start(data_dir: &Path) -> Server {
    let db = database_args().await;
    start_with(data_dir, &db.iter().map(String::as_str).collect::<Vec<_>>())
}

fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
    let mut cmd = serve(data_dir);
    cmd.args(extra).stderr(Stdio::null());
    Server::spawned(cmd)
}

/// `roost serve` on the embedded defaults with `env` set, its log written to `log`.
fn start_logging(data_dir: &Path, env: &[(&str, &str)], log: &Path) -> Server {
    let mut cmd = serve(data_dir);
    cmd.envs(env.iter().copied());
    Server::spawned_logging(cmd, log)
}

#[tokio::test]
async fn a_newcomer_walks_through_accounts_rooms_and_invites() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data).await;

    if roost_core::store::testing::backend() == roost_core::store::Backend::Sqlite {
        assert!(
            data.join("roost.db").exists(),
            "the SQLite database lives in the data directory"
        );
    }
    let (status, body) = server
        .call(reqwest::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));

    let (status, ada) = server.register("ada").await;
    assert_eq!(status, 201, "{ada}");
    let (status, login) = server
        .post(
            "/v1/auth/login",
            None,
            json!({"email": "ada@example.org", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 200);
    let ada_token = login["access_token"].as_str().unwrap().to_owned();
    let ada_refresh = login["refresh_token"].as_str().unwrap().to_owned();

    let (status, room) = server
        .post("/v1/rooms", Some(&ada_token), json!({"name": "Book club"}))
        .await;
    assert_eq!(status, 201, "{room}");
    let room_id = room["id"].as_str().unwrap().to_owned();
    let (status, invite) = server
        .post(
            &format!("/v1/rooms/{room_id}/invites"),
            Some(&ada_token),
            json!({"max_uses": 5}),
        )
        .await;
    assert_eq!(status, 201, "{invite}");
    let code = invite["code"].as_str().unwrap();

    let (status, bob) = server.register("bob").await;
    assert_eq!(status, 201);
    let bob_token = bob["access_token"].as_str().unwrap();
    let (status, joined) = server
        .post(
            &format!("/v1/invites/{code}/accept"),
            Some(bob_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["id"], room_id.as_str());

    let (status, members) = server
        .call(
            reqwest::Method::GET,
            &format!("/v1/rooms/{room_id}/members"),
            Some(&ada_token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"]["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ada", "bob"]);

    let (status, refreshed) = server
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": ada_refresh}),
        )
        .await;
    assert_eq!(status, 200);
    let new_token = refreshed["access_token"].as_str().unwrap();
    let new_refresh = refreshed["refresh_token"].as_str().unwrap();
    let (status, _) = server
        .call(
            reqwest::Method::POST,
            "/v1/auth/logout",
            Some(new_token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = server
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": new_refresh}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = server
        .call(reqwest::Method::GET, "/v1/auth/me", Some(new_token), None)
        .await;
    assert_eq!(status, 401);

    assert_eq!(
        server.stop("-TERM").await,
        Some(0),
        "SIGTERM is a clean exit"
    );
}

#[tokio::test]
async fn the_web_client_is_served_at_the_root_under_a_strict_policy() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let get = |path: &str| server.client.get(format!("{}{path}", server.url)).send();

    let index = get("/").await.unwrap();
    assert_eq!(index.status(), 200);
    let header = |res: &reqwest::Response, name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert!(header(&index, "content-type").starts_with("text/html"));
    let csp = header(&index, "content-security-policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(header(&index, "cache-control"), "no-cache");
    let etag = header(&index, "etag");
    assert!(index.text().await.unwrap().contains("/app/js/app.js"));

    // Unchanged files cost a 304.
    let again = server
        .client
        .get(format!("{}/", server.url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    let script = get("/app/js/app.js").await.unwrap();
    assert_eq!(script.status(), 200);
    assert!(header(&script, "content-type").starts_with("text/javascript"));
    let style = get("/app/style.css").await.unwrap();
    assert!(header(&style, "content-type").starts_with("text/css"));

    // Missing assets, paths out of the client's folder and unknown API paths are JSON 404s.
    for path in [
        "/app/nope.js",
        "/app/..%2f..%2fCargo.toml",
        "/v1/no-such-route",
    ] {
        let res = get(path).await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
}

#[tokio::test]
async fn the_signing_secret_is_generated_once_private_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = database_args().await;
    let db: Vec<&str> = db.iter().map(String::as_str).collect();
    let server = start_with(dir.path(), &db);
    let secret = dir.path().join("jwt_secret");
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let first = std::fs::read(&secret).unwrap();
    let (_, ada) = server.register("ada").await;
    let token = ada["access_token"].as_str().unwrap().to_owned();
    assert_eq!(server.stop("-TERM").await, Some(0));

    let server = start_with(dir.path(), &db);
    assert_eq!(
        std::fs::read(&secret).unwrap(),
        first,
        "reused, not regenerated"
    );
    let (status, me) = server
        .call(reqwest::Method::GET, "/v1/auth/me", Some(&token), None)
        .await;
    assert_eq!(
        status, 200,
        "a token from before the restart still works: {me}"
    );
}

#[tokio::test]
async fn in_flight_requests_finish_after_sigterm() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path()).await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    let body =
        json!({"email": "ada@example.org", "username": "ada", "password": PASSWORD}).to_string();
    let (head, tail) = body.split_at(10);
    // The request is in flight for certain: its headers are in, its body is not.
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "POST /v1/auth/register HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal("-TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tokio::net::TcpStream::connect(&addr).await.is_err(),
        "after SIGTERM no new connection is accepted"
    );
    conn.write_all(tail.as_bytes()).await.unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).await.unwrap();
    assert!(
        response.starts_with("HTTP/1.1 201"),
        "the in-flight request was answered: {response}"
    );
    let code = server.exit_code(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0));
}

#[test]
fn with_no_configuration_it_serves_on_127_0_0_1_8080_from_roost_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = roost()
        .arg("serve")
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(line.trim(), "Roost is listening on http://127.0.0.1:8080");
    assert!(dir.path().join("roost-data/roost.db").exists());
    assert!(dir.path().join("roost-data/jwt_secret").exists());
}

#[tokio::test]
async fn sigint_stops_the_server_cleanly_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let (status, _) = server
        .call(reqwest::Method::GET, "/healthz", None, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(server.stop("-INT").await, Some(0));
}

fn run(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> (Option<i32>, String, String) {
    let mut cmd = roost();
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes()).unwrap();
    }
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn config_check_layers_sources_and_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("roost.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9000\"\njwt_secret = \"0123456789abcdef0123456789abcdef-from-file\"\nroom_creation = \"admins\"\n[http]\nmax_body_bytes = 4096\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();

    let (code, out, err) = run(&["config", "check", "--config", file], &[], None);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("listen = \"127.0.0.1:9000\""),
        "the file applies: {out}"
    );
    assert!(out.contains("room_creation = \"admins\""));
    assert!(!out.contains("from-file"), "secrets are redacted: {out}");
    assert!(out.contains("<redacted>"));

    let (_, out, _) = run(
        &["config", "check", "--config", file],
        &[
            ("ROOST_LISTEN", "127.0.0.1:9100"),
            ("ROOST_HTTP__MAX_BODY_BYTES", "8192"),
            ("ROOST_TURN_URLS", "[\"turn:turn.example.org:3478\"]"),
            ("ROOST_TURN_SECRET", "coturn-shared-secret-from-env"),
        ],
        None,
    );
    assert!(
        out.contains("turn:turn.example.org:3478"),
        "lists from the environment: {out}"
    );
    assert!(
        !out.contains("coturn-shared-secret"),
        "the TURN secret is redacted: {out}"
    );
    assert!(
        out.contains("127.0.0.1:9100"),
        "the environment beats the file: {out}"
    );
    assert!(
        out.contains("max_body_bytes = 8192"),
        "nested keys through __: {out}"
    );

    let (_, out, _) = run(
        &[
            "config",
            "check",
            "--database-url",
            "postgres://roost:hunter2@db.internal/roost",
        ],
        &[
            ("ROOST_CONFIG", file),
            ("ROOST_DATABASE_URL", "sqlite://x.db"),
        ],
        None,
    );
    assert!(
        out.contains("127.0.0.1:9000"),
        "ROOST_CONFIG names the file: {out}"
    );
    assert!(
        out.contains("postgres://roost:<redacted>@db.internal/roost"),
        "flags beat the environment, passwords hidden: {out}"
    );
    assert!(!out.contains("hunter2"));
}

#[test]
fn invalid_configuration_exits_non_zero_naming_the_key() {
    let cases: [(&[(&str, &str)], &str); 9] = [
        (&[("ROOST_LISTEN", "not an address")], "listen"),
        (&[("ROOST_MEDIA__LOOPS", "1000")], "media.loops"),
        (
            &[("ROOST_MEDIA__RETRANSMIT_HISTORY", "1000")],
            "media.retransmit_history",
        ),
        (&[("ROOST_JWT_SECRET", "too-short")], "jwt_secret"),
        (
            &[("ROOST_AUTH__ACCESS_TOKEN_TTL_SECS", "3600")],
            "access_token_ttl_secs",
        ),
        (
            &[("ROOST_AUTH__REFRESH_REUSE_GRACE_SECS", "301")],
            "refresh_reuse_grace_secs",
        ),
        (&[("ROOST_ROOM_CREATION", "nobody")], "room_creation"),
        (
            &[
                ("ROOST_TURN_URLS", "[\"turn:t.example.org\"]"),
                ("ROOST_TURN_SECRET", "short"),
            ],
            "turn_secret",
        ),
        (
            &[("ROOST_TURN_URLS", "[\"http://t.example.org\"]")],
            "turn_urls",
        ),
    ];
    for (env, key) in cases {
        let (code, _, err) = run(&["config", "check"], env, None);
        assert_ne!(code, Some(0), "{env:?} was accepted");
        assert!(err.contains(key), "the message names {key}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "lisen = \"127.0.0.1:1\"\n").unwrap();
    let (code, _, err) = run(
        &["config", "check", "--config", file.to_str().unwrap()],
        &[],
        None,
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("lisen"), "unknown keys are named: {err}");
}

#[tokio::test]
async fn user_create_reads_the_password_from_stdin_and_the_account_logs_in() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (code, out, err) = run(&["migrate", "--data-dir", data], &[], None);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("migrations applied"));
    let db = format!("sqlite://{}", dir.path().join("roost.db").display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db)
        .await
        .unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let files = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations/sqlite"
    ))
    .unwrap()
    .count();
    assert_eq!(applied as usize, files, "migrate applied every migration");

    let (code, out, err) = run(
        &[
            "user",
            "create",
            "--email",
            "Root@Example.org",
            "--role",
            "super_admin",
            "--data-dir",
            data,
        ],
        &[],
        Some(&format!("{PASSWORD}\n")),
    );
    assert_eq!(code, Some(0), "{err}");
    let user: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(user["role"], "super_admin");
    assert_eq!(user["email"], "root@example.org");

    let (code, _, err) = run(
        &[
            "user",
            "create",
            "--email",
            "x@example.org",
            "--data-dir",
            data,
        ],
        &[],
        Some(""),
    );
    assert_ne!(code, Some(0), "no password, no account");
    assert!(err.contains("stdin"), "{err}");
    let (code, _, err) = run(
        &[
            "user",
            "create",
            "--email",
            "y@example.org",
            "--role",
            "king",
            "--data-dir",
            data,
        ],
        &[],
        Some("pw\n"),
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("role"), "{err}");

    let server = start_with(dir.path(), &[]);
    let (status, body) = server
        .post(
            "/v1/auth/login",
            None,
            json!({"email": "root@example.org", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["role"], "super_admin");
}

#[tokio::test]
async fn the_same_binary_runs_on_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let url = roost_core::store::testing::fresh_postgres_url().await;
    let server = start_with(dir.path(), &["--database-url", &url]);
    assert!(
        !dir.path().join("roost.db").exists(),
        "no SQLite file when PostgreSQL is configured"
    );
    let (status, body) = server.register("ada").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(server.stop("-TERM").await, Some(0));
}

#[tokio::test]
async fn logs_are_json_when_asked_and_never_hold_passwords_or_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let server = start_logging(
        dir.path(),
        &[("ROOST_LOG__FORMAT", "json"), ("ROOST_LOG__LEVEL", "trace")],
        &log_path,
    );

    let (_, reg) = server.register("ada").await;
    let (_, login) = server
        .post(
            "/v1/auth/login",
            None,
            json!({"email": "ada@example.org", "password": PASSWORD}),
        )
        .await;
    let (_, refreshed) = server
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": login["refresh_token"]}),
        )
        .await;
    let token = refreshed["access_token"].as_str().unwrap().to_owned();
    server
        .call(
            reqwest::Method::GET,
            &format!("/v1/auth/me?access_token={token}"),
            Some(&token),
            None,
        )
        .await;
    let ws_url = format!(
        "{}/v1/ws?access_token={token}",
        server.url.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .expect("the socket opens");
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        r#"{"type":"hello","id":"1"}"#.into(),
    ))
    .await
    .unwrap();
    let _ = ws.close(None).await;
    server
        .post(
            "/v1/auth/login",
            None,
            json!({"email": "ada@example.org", "password": "a wrong password"}),
        )
        .await;
    assert_eq!(server.stop("-TERM").await, Some(0));

    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.lines().count() > 5, "requests are logged: {logs}");
    for l in logs.lines() {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
    }
    let secrets = [
        PASSWORD.to_owned(),
        "a wrong password".to_owned(),
        reg["access_token"].as_str().unwrap().to_owned(),
        reg["refresh_token"].as_str().unwrap().to_owned(),
        login["refresh_token"].as_str().unwrap().to_owned(),
        token,
        std::fs::read_to_string(dir.path().join("jwt_secret")).unwrap(),
    ];
    for secret in secrets {
        assert!(
            !logs.contains(&secret),
            "a secret reached the log: {secret}"
        );
    }
}

#[tokio::test]
async fn pretty_logs_written_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let server = start_logging(dir.path(), &[("ROOST_LOG__FORMAT", "pretty")], &log_path);
    assert_eq!(server.stop("-TERM").await, Some(0));
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("INFO roost: serving"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in a log file: {text:?}"
    );
}

/// Sends raw HTTP and returns what the server answers (its writes may stop
/// part way: the server answers and closes once it has refused the body).
async fn raw_http(addr: &str, head: &str, body_chunks: usize, chunk: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..body_chunks {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if tcp.write_all(&framed).await.is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn uploads_over_the_limit_are_refused_on_the_wire_and_files_land_in_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = database_args().await;
    let mut cmd = serve(&data);
    cmd.args(&db)
        .env("ROOST_FILES__MAX_UPLOAD_BYTES", "1048576")
        .stderr(Stdio::null());
    let server = Server::spawned(cmd);
    let (_, ada) = server.register("ada").await;
    let token = ada["access_token"].as_str().unwrap().to_owned();
    let addr = server.url.trim_start_matches("http://").to_owned();

    // An honest length over the limit: answered from the headers, with no body sent at all.
    let head = format!(
        "POST /v1/files?name=big.txt HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: text/plain\r\nContent-Length: 30000000\r\n\r\n"
    );
    let answer = raw_http(&addr, &head, 0, b"").await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("file_too_large"), "{answer}");

    // No length (chunked), 4 MiB sent: cut off past 1 MiB.
    let head = format!(
        "POST /v1/files?name=big.txt HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let answer = raw_http(&addr, &head, 64, &[b'a'; 65536]).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // One that fits lands under the data directory, and comes back the same.
    let content = "roost ".repeat(10_000);
    let res = server
        .client
        .post(format!("{}/v1/files?name=notes.txt", server.url))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let file: Value = res.json().await.unwrap();
    let back = server
        .client
        .get(format!("{}{}", server.url, file["url"].as_str().unwrap()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(back.status().as_u16(), 200);
    assert_eq!(back.text().await.unwrap(), content);
    let stored: Vec<_> = walk(&data.join("files"));
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(
        std::fs::metadata(&stored[0]).unwrap().len(),
        content.len() as u64
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}
