//! A Roost API over a fresh database per test, driven without a socket.

#![allow(dead_code)]

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use roost_api::{ApiConfig, AppState};
use roost_core::store::{testing, Store, StoreOptions};
use roost_core::{Core, CoreConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

pub const PASSWORD: &str = "a perfectly fine passphrase";

pub struct TestApp {
    pub router: Router,
    pub core: Core,
    _dir: tempfile::TempDir,
}

pub struct Response {
    pub status: StatusCode,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Response {
    /// The error code of an error response.
    pub fn code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }
}

/// A registered user and a live session.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub token: String,
    pub refresh: String,
}

impl TestApp {
    pub async fn new() -> TestApp {
        TestApp::with(|_, _| {}).await
    }

    /// An app whose configuration `tune` may change first.
    pub async fn with(tune: impl FnOnce(&mut CoreConfig, &mut ApiConfig)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let url = testing::fresh_database_url(dir.path()).await;
        let store = Store::connect(&StoreOptions {
            url,
            max_connections: 8,
            acquire_timeout: std::time::Duration::from_secs(10),
        })
        .await
        .expect("connecting to the test database");
        store.migrate().await.expect("migrating");
        let mut core_config = CoreConfig::default();
        core_config.auth.hash_concurrency = 2;
        core_config.files.storage = roost_core::files::StorageConfig::Local {
            root: dir.path().join("files"),
        };
        let mut api_config = ApiConfig::default();
        // Tests register many users from one address; the limit tests set their own.
        let generous = roost_api::ratelimit::RateLimit {
            requests: 10_000,
            period_secs: 1,
        };
        api_config.rate_limits.login_per_ip = generous;
        api_config.rate_limits.login_per_account = generous;
        api_config.rate_limits.register_per_ip = generous;
        tune(&mut core_config, &mut api_config);
        let core = Core::new(
            store,
            b"a test secret that is at least thirty-two bytes",
            core_config,
        )
        .await
        .expect("building the core");
        let router = roost_api::router(AppState::new(core.clone(), api_config));
        TestApp {
            router,
            core,
            _dir: dir,
        }
    }

    /// Sends a request from 127.0.0.1.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        self.call_from([127, 0, 0, 1], method, path, token, body)
            .await
    }

    /// Sends a request from the given client address.
    pub async fn call_from(
        &self,
        ip: [u8; 4],
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        };
        self.send_raw_from(ip, req.unwrap()).await
    }

    /// Where this app keeps uploaded files (unless the test chose other storage).
    pub fn files_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("files")
    }

    /// Sends a request and keeps the response body as bytes.
    pub async fn send_bytes(
        &self,
        mut req: Request<Body>,
    ) -> (StatusCode, HeaderMap, axum::body::Bytes) {
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, headers, bytes)
    }

    pub async fn send_raw(&self, req: Request<Body>) -> Response {
        self.send_raw_from([127, 0, 0, 1], req).await
    }

    async fn send_raw_from(&self, ip: [u8; 4], mut req: Request<Body>) -> Response {
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((ip, 40000))));
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Response {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Response {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    /// Sends the registration of `name` (`name@example.org`, username
    /// `name`) with `extra` fields added, such as a display name; the answer
    /// as it is, refusals included.
    pub async fn register_with(&self, name: &str, extra: Value) -> Response {
        let mut body =
            json!({"email": format!("{name}@example.org"), "username": name, "password": PASSWORD});
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        self.call(Method::POST, "/v1/auth/register", None, Some(body))
            .await
    }

    /// Registers `name` (`name@example.org`, username `name`).
    pub async fn register(&self, name: &str) -> TestUser {
        let res = self.register_with(name, json!({})).await;
        assert_eq!(
            res.status,
            StatusCode::CREATED,
            "registering {name}: {}",
            res.body
        );
        user_from(&res.body)
    }

    /// Creates an account with a server role directly through the core.
    pub async fn user_with_role(&self, name: &str, role: roost_core::model::Role) -> TestUser {
        self.core
            .auth
            .create_user(
                roost_core::auth::Registration {
                    email: format!("{name}@example.org"),
                    username: name.into(),
                    password: PASSWORD.into(),
                    display_name: None,
                },
                role,
            )
            .await
            .unwrap();
        self.login(name).await
    }

    pub async fn login(&self, name: &str) -> TestUser {
        let res = self
            .call(
                Method::POST,
                "/v1/auth/login",
                None,
                Some(json!({"email": format!("{name}@example.org"), "password": PASSWORD})),
            )
            .await;
        assert_eq!(
            res.status,
            StatusCode::OK,
            "logging in {name}: {}",
            res.body
        );
        user_from(&res.body)
    }

    /// Creates a group room owned by `owner`; returns its id.
    pub async fn room(&self, owner: &TestUser, name: &str, visibility: &str) -> String {
        let res = self
            .post(
                "/v1/rooms",
                &owner.token,
                json!({"name": name, "visibility": visibility}),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
        res.body["id"].as_str().unwrap().to_owned()
    }

    /// A private room of `owner` with `others` added as members; returns its id.
    pub async fn room_with(&self, owner: &TestUser, others: &[&TestUser]) -> String {
        let id = self.room(owner, "chat", "private").await;
        for u in others {
            let res = self
                .post(
                    &format!("/v1/rooms/{id}/members"),
                    &owner.token,
                    json!({"user_id": u.id}),
                )
                .await;
            assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
        }
        id
    }
}

fn user_from(body: &Value) -> TestUser {
    TestUser {
        id: body["user"]["id"].as_str().unwrap().to_owned(),
        email: body["user"]["email"].as_str().unwrap().to_owned(),
        token: body["access_token"].as_str().unwrap().to_owned(),
        refresh: body["refresh_token"].as_str().unwrap().to_owned(),
    }
}
