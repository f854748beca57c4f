//! Accounts and sessions over the router: the happy paths and what a client meets when things go wrong.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{Response, TestApp, PASSWORD};
use roost_api::ratelimit::RateLimit;
use serde_json::json;

#[tokio::test]
async fn register_returns_the_account_and_a_working_session() {
    let app = TestApp::new().await;
    let res = app
        .call(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({"email": "  Ada@Example.ORG ", "username": "Ada", "password": PASSWORD, "display_name": "Ada L."})),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(
        res.body["user"]["email"], "ada@example.org",
        "emails are normalised"
    );
    assert_eq!(res.body["user"]["username"], "ada");
    assert_eq!(res.body["user"]["display_name"], "Ada L.");
    assert_eq!(res.body["user"]["role"], "user");
    assert!(
        res.body["user"].get("password_hash").is_none(),
        "the hash never leaves the server"
    );
    assert_eq!(res.body["token_type"], "Bearer");
    assert!(res.body["expires_in"].as_u64().unwrap() <= 900);
    let token = res.body["access_token"].as_str().unwrap();
    let me = app.get("/v1/auth/me", token).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["id"], res.body["user"]["id"]);
}

#[tokio::test]
async fn registration_rules_are_enforced_with_the_field_named() {
    let app = TestApp::new().await;
    let cases = [
        (
            json!({"email": "not-an-email", "username": "ada", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"email": "ada@example.org", "username": "a", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"email": "ada@example.org", "username": "ada", "password": "short"}),
            "password",
        ),
        (
            json!({"email": "ada@example.org", "username": "ada", "password": "Password123"}),
            "password",
        ),
        (
            json!({"email": "ada@example.org", "username": "ada", "password": "x".repeat(129)}),
            "password",
        ),
        (
            json!({"email": "ada@example.org", "username": "ada", "password": PASSWORD, "display_name": ""}),
            "display_name",
        ),
    ];
    for (body, field) in cases {
        let res = app
            .call(Method::POST, "/v1/auth/register", None, Some(body.clone()))
            .await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            res.body
        );
        assert_eq!(res.code(), "validation_failed");
        assert_eq!(res.body["error"]["details"]["field"], field, "{body}");
    }
    let long_ok = "é".repeat(128);
    let res = app
        .call(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({"email": "ada@example.org", "username": "ada", "password": long_ok})),
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::CREATED,
        "128 characters are allowed: {}",
        res.body
    );
}

#[tokio::test]
async fn emails_and_usernames_are_unique() {
    let app = TestApp::new().await;
    app.register("ada").await;
    let res = app
        .call(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({"email": "ADA@example.org", "username": "other", "password": PASSWORD})),
        )
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert_eq!(res.code(), "email_taken");
    let res = app
        .call(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({"email": "other@example.org", "username": "ADA", "password": PASSWORD})),
        )
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert_eq!(res.code(), "username_taken");
}

#[tokio::test]
async fn malformed_bodies_get_4xx_never_500() {
    let app = TestApp::new().await;
    let res = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": "a@example.org", "password": "x", "remember": true})),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("remember"),
        "the unknown field is named: {}",
        res.body
    );
    assert_eq!(res.body["error"]["details"]["field"], "remember");
    let res = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": "a@example.org"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("password"),
        "{}",
        res.body
    );
    assert_eq!(res.body["error"]["details"]["field"], "password");
    let res = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": 5, "password": "x"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        res.body["error"]["details"]["field"], "email",
        "{}",
        res.body
    );

    let raw = Request::post("/v1/auth/login")
        .header("content-type", "application/json")
        .body(Body::from("{\"email\":"))
        .unwrap();
    let res = app.send_raw(raw).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.code(), "malformed_json");

    let raw = Request::post("/v1/auth/login")
        .body(Body::from("email=a"))
        .unwrap();
    let res = app.send_raw(raw).await;
    assert_eq!(res.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(res.code(), "unsupported_media_type");

    let huge = format!(
        "{{\"email\":\"{}\",\"password\":\"x\"}}",
        "a".repeat(200_000)
    );
    let raw = Request::post("/v1/auth/login")
        .header("content-type", "application/json")
        .body(Body::from(huge))
        .unwrap();
    let res = app.send_raw(raw).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.code(), "payload_too_large");
}

#[tokio::test]
async fn login_failures_are_indistinguishable() {
    let app = TestApp::new().await;
    app.register("ada").await;
    let bob = app.register("bob").await;
    let admin = app
        .user_with_role("root", roost_core::model::Role::SuperAdmin)
        .await;
    let res = app
        .call(
            Method::POST,
            &format!("/v1/admin/users/{}/disable", bob.id),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);

    let attempts = [
        json!({"email": "ada@example.org", "password": "wrong password!"}),
        json!({"email": "nobody@example.org", "password": PASSWORD}),
        json!({"email": "bob@example.org", "password": PASSWORD}),
        json!({"email": "not an email", "password": PASSWORD}),
    ];
    let mut bodies = Vec::new();
    for a in attempts {
        let res = app
            .call(Method::POST, "/v1/auth/login", None, Some(a))
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
        assert_eq!(res.code(), "invalid_credentials");
        bodies.push(res.body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "one body for every failure: {bodies:?}"
    );

    let ok = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": "ADA@example.org", "password": PASSWORD})),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[tokio::test]
async fn login_is_rate_limited_per_address_and_per_account() {
    let app = TestApp::with(|_, api| {
        api.rate_limits.login_per_ip = RateLimit {
            requests: 3,
            period_secs: 60,
        };
        api.rate_limits.login_per_account = RateLimit {
            requests: 5,
            period_secs: 60,
        };
    })
    .await;
    app.register("ada").await;
    let wrong = json!({"email": "ada@example.org", "password": "wrong password!"});
    for _ in 0..3 {
        let res = app
            .call_from(
                [10, 0, 0, 1],
                Method::POST,
                "/v1/auth/login",
                None,
                Some(wrong.clone()),
            )
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    let res = app
        .call_from(
            [10, 0, 0, 1],
            Method::POST,
            "/v1/auth/login",
            None,
            Some(wrong.clone()),
        )
        .await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.code(), "rate_limited");
    let retry: u64 = res.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");

    // Another address still gets through, until the account's own limit is reached.
    for _ in 0..2 {
        let res = app
            .call_from(
                [10, 0, 0, 2],
                Method::POST,
                "/v1/auth/login",
                None,
                Some(wrong.clone()),
            )
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    let res = app
        .call_from(
            [10, 0, 0, 3],
            Method::POST,
            "/v1/auth/login",
            None,
            Some(wrong.clone()),
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the account's limit holds across addresses"
    );
    assert!(res.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn registration_is_rate_limited_per_address() {
    let app = TestApp::with(|_, api| {
        api.rate_limits.register_per_ip = RateLimit {
            requests: 2,
            period_secs: 3600,
        }
    })
    .await;
    for name in ["ada", "bob"] {
        let body =
            json!({"email": format!("{name}@example.org"), "username": name, "password": PASSWORD});
        let res = app
            .call_from(
                [10, 0, 0, 9],
                Method::POST,
                "/v1/auth/register",
                None,
                Some(body),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED);
    }
    let body = json!({"email": "cyd@example.org", "username": "cyd", "password": PASSWORD});
    let res = app
        .call_from(
            [10, 0, 0, 9],
            Method::POST,
            "/v1/auth/register",
            None,
            Some(body.clone()),
        )
        .await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers.contains_key("retry-after"));
    let res = app
        .call_from(
            [10, 0, 0, 10],
            Method::POST,
            "/v1/auth/register",
            None,
            Some(body),
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::CREATED,
        "another address is not limited"
    );
}

async fn refresh(app: &TestApp, token: String) -> Response {
    app.call(
        Method::POST,
        "/v1/auth/refresh",
        None,
        Some(json!({ "refresh_token": token })),
    )
    .await
}

#[tokio::test]
async fn a_refresh_retried_after_a_lost_answer_keeps_the_session() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    // A reload cut the first answer off; the page retries with the same token.
    let lost = refresh(&app, ada.refresh.clone()).await;
    assert_eq!(lost.status, StatusCode::OK);
    let retry = refresh(&app, ada.refresh.clone()).await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.body);
    let token = retry.body["access_token"].as_str().unwrap();
    assert_eq!(app.get("/v1/auth/me", token).await.status, StatusCode::OK);

    // With the grace turned off, the same retry is taken for a replay.
    let strict = TestApp::with(|core, _| core.auth.refresh_reuse_grace = Default::default()).await;
    let bob = strict.register("bob").await;
    assert_eq!(
        refresh(&strict, bob.refresh.clone()).await.status,
        StatusCode::OK
    );
    let replay = refresh(&strict, bob.refresh.clone()).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert_eq!(replay.code(), "refresh_token_reused");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_ends_the_whole_session() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let first = app
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": ada.refresh})),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let second_refresh = first.body["refresh_token"].as_str().unwrap().to_owned();
    let second_access = first.body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(second_refresh, ada.refresh, "refresh tokens rotate");
    assert_eq!(
        app.get("/v1/auth/me", &second_access).await.status,
        StatusCode::OK
    );

    // The client moves on with the new token...
    let third = app
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": second_refresh})),
        )
        .await;
    assert_eq!(third.status, StatusCode::OK, "{}", third.body);
    let third_refresh = third.body["refresh_token"].as_str().unwrap().to_owned();

    // ...so the old token again means someone replayed it: the family dies.
    let replay = app
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": ada.refresh})),
        )
        .await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert_eq!(replay.code(), "refresh_token_reused");
    let next = app
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": third_refresh})),
        )
        .await;
    assert_eq!(
        next.status,
        StatusCode::UNAUTHORIZED,
        "the newest token of the family is revoked too"
    );
    let me = app.get("/v1/auth/me", &second_access).await;
    assert_eq!(
        me.status,
        StatusCode::UNAUTHORIZED,
        "and so are its access tokens"
    );

    let other = app.login("ada").await;
    assert_eq!(
        app.get("/v1/auth/me", &other.token).await.status,
        StatusCode::OK,
        "other sessions live on"
    );
    let junk = app
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": "junk"})),
        )
        .await;
    assert_eq!(junk.status, StatusCode::UNAUTHORIZED);
    assert_eq!(junk.code(), "unauthorized");
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_stay_one_session() {
    // Within the reuse grace both may succeed, but as one session: ending it
    // through either access token ends both.
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let (a, b) = tokio::join!(
        refresh(&app, ada.refresh.clone()),
        refresh(&app, ada.refresh.clone())
    );
    let tokens: Vec<String> = [&a, &b]
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .map(|r| r.body["access_token"].as_str().unwrap().to_owned())
        .collect();
    assert!(!tokens.is_empty(), "{} {}", a.status, b.status);
    let res = app
        .call(Method::POST, "/v1/auth/logout", Some(&tokens[0]), None)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    for token in &tokens {
        assert_eq!(
            app.get("/v1/auth/me", token).await.status,
            StatusCode::UNAUTHORIZED,
            "one refresh token bought a second session"
        );
    }

    // Without the grace, only one of them wins.
    let strict = TestApp::with(|core, _| core.auth.refresh_reuse_grace = Default::default()).await;
    let bob = strict.register("bob").await;
    let (a, b) = tokio::join!(
        refresh(&strict, bob.refresh.clone()),
        refresh(&strict, bob.refresh.clone())
    );
    let oks = [a.status, b.status]
        .iter()
        .filter(|s| **s == StatusCode::OK)
        .count();
    assert!(
        oks <= 1,
        "both refreshes succeeded: {} {}",
        a.status,
        b.status
    );
}

#[tokio::test]
async fn logout_ends_the_session() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let other = app.login("ada").await;
    let res = app
        .call(Method::POST, "/v1/auth/logout", Some(&ada.token), None)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let me = app.get("/v1/auth/me", &ada.token).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    assert_eq!(me.code(), "session_revoked");
    let res = app
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": ada.refresh})),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get("/v1/auth/me", &other.token).await.status,
        StatusCode::OK,
        "only that session ends"
    );
}

#[tokio::test]
async fn bad_tokens_get_401() {
    let app = TestApp::new().await;
    let res = app.call(Method::GET, "/v1/auth/me", None, None).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers["www-authenticate"], "Bearer");
    for token in ["garbage", "a.b.c", ""] {
        let res = app.get("/v1/auth/me", token).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{token:?}");
    }
    let raw = Request::get("/v1/auth/me")
        .header("authorization", "Basic YTpi")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send_raw(raw).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn expired_access_tokens_are_refused() {
    let app =
        TestApp::with(|core, _| core.auth.access_ttl = std::time::Duration::from_secs(1)).await;
    let ada = app.register("ada").await;
    assert_eq!(
        app.get("/v1/auth/me", &ada.token).await.status,
        StatusCode::OK
    );
    // One second of life plus the five seconds of leeway for clock skew.
    tokio::time::sleep(std::time::Duration::from_millis(7_100)).await;
    let res = app.get("/v1/auth/me", &ada.token).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.code(), "token_expired");
}

#[tokio::test]
async fn the_configured_super_admin_email_registers_as_super_admin() {
    let app =
        TestApp::with(|core, _| core.auth.super_admin_email = Some("Boss@Example.org".into()))
            .await;
    let res = app
        .call(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({"email": "boss@example.org", "username": "boss", "password": PASSWORD})),
        )
        .await;
    assert_eq!(res.body["user"]["role"], "super_admin");
    let res = app
        .call(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({"email": "ada@example.org", "username": "ada", "password": PASSWORD})),
        )
        .await;
    assert_eq!(res.body["user"]["role"], "user");
}

#[tokio::test]
async fn closed_registration_is_forbidden() {
    let app = TestApp::with(|core, _| core.auth.registration_open = false).await;
    let res = app
        .call(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({"email": "ada@example.org", "username": "ada", "password": PASSWORD})),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_unknown_email_costs_as_much_hashing_as_a_wrong_password() {
    let app = TestApp::new().await;
    app.register("ada").await;
    let time = |email: &'static str| {
        let app = &app;
        async move {
            let start = std::time::Instant::now();
            for _ in 0..3 {
                let res = app
                    .call(
                        Method::POST,
                        "/v1/auth/login",
                        None,
                        Some(json!({"email": email, "password": "wrong password!"})),
                    )
                    .await;
                assert_eq!(res.status, StatusCode::UNAUTHORIZED);
            }
            start.elapsed()
        }
    };
    let known = time("ada@example.org").await;
    let unknown = time("nobody@example.org").await;
    // Without the dummy hash an unknown email answers about a hundred times faster;
    // the wide margin absorbs a noisy machine.
    let ratio = unknown.as_secs_f64() / known.as_secs_f64();
    assert!(
        ratio > 0.33,
        "unknown {unknown:?} vs known {known:?}: login timing reveals which emails exist"
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_limited() {
    let app = TestApp::with(|_, api| {
        api.trust_proxy_headers = true;
        api.rate_limits.login_per_ip = RateLimit {
            requests: 1,
            period_secs: 60,
        };
    })
    .await;
    let login = |forwarded: &'static str| {
        let app = &app;
        async move {
            let req = Request::post("/v1/auth/login")
                .header("content-type", "application/json")
                .header("x-forwarded-for", forwarded)
                .body(Body::from(
                    json!({"email": "x@example.org", "password": "whatever it is"}).to_string(),
                ))
                .unwrap();
            app.send_raw(req).await.status
        }
    };
    assert_eq!(login("198.51.100.1").await, StatusCode::UNAUTHORIZED);
    assert_eq!(login("198.51.100.1").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        login("203.0.113.5, 198.51.100.2").await,
        StatusCode::UNAUTHORIZED,
        "the proxy's last hop is the client"
    );
}
