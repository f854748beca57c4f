//! Conventions every endpoint shares: errors, request ids, CORS, health, OpenAPI.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::TestApp;

#[tokio::test]
async fn every_response_has_a_request_id() {
    let app = TestApp::new().await;
    let res = app.call(Method::GET, "/healthz", None, None).await;
    let id = res.headers["x-request-id"].to_str().unwrap().to_owned();
    assert!(!id.is_empty());
    let res = app.call(Method::GET, "/v1/nowhere", None, None).await;
    assert!(res.headers.contains_key("x-request-id"), "errors too");
    let raw = Request::get("/healthz")
        .header("x-request-id", "trace-me-42")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.send_raw(raw).await.headers["x-request-id"],
        "trace-me-42",
        "a client's id is kept"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_error_shape() {
    let app = TestApp::new().await;
    let res = app.call(Method::GET, "/v1/nowhere", None, None).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.code(), "not_found");
    assert!(res.body["error"]["message"].is_string());
    let res = app.call(Method::PUT, "/v1/auth/login", None, None).await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.code(), "method_not_allowed");
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::new().await;
    let res = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["status"], "ok");
    let res = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["status"], "ready");
    app.core.store.close().await;
    let res = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(
        res.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a closed database is not ready"
    );
    assert_eq!(res.code(), "not_ready");
}

/// Which operations the document lists, and that the server routes each of
/// them, is checked from the document itself in `tests/openapi.rs`.
#[tokio::test]
async fn openapi_and_docs_are_served() {
    let app = TestApp::new().await;
    let res = app.call(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.body["paths"].as_object().is_some_and(|p| !p.is_empty()));
    assert!(res.body["components"]["schemas"]["ErrorBody"].is_object());
    assert!(res.body["components"]["securitySchemes"]["bearer"].is_object());

    let res = app.call(Method::GET, "/docs/", None, None).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        res.body.as_str().unwrap_or_default().contains("swagger"),
        "a browsable page"
    );
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app =
        TestApp::with(|_, api| api.cors_allowed_origins = vec!["https://chat.example.org".into()])
            .await;
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/v1/auth/login")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .body(Body::empty())
            .unwrap()
    };
    let ok = app.send_raw(preflight("https://chat.example.org")).await;
    assert_eq!(
        ok.headers["access-control-allow-origin"],
        "https://chat.example.org"
    );
    let other = app.send_raw(preflight("https://evil.example.com")).await;
    assert!(!other.headers.contains_key("access-control-allow-origin"));
}
