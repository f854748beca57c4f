//! The OpenAPI document tells the truth: it lists exactly the operations the
//! server routes, each operation has its own id, every status the server
//! answers it with is documented on it, and the limits it states are the ones
//! the server enforces. Clients generate code from it, so an undocumented
//! status is a case their code does not handle.
//!
//! `scripts/api-conformance` checks the same document from the outside with a
//! real validator, generated TypeScript types and a property-based tester.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{TestApp, TestUser};
use serde_json::{json, Value};

/// One operation of the document.
struct Operation {
    method: Method,
    path: String,
    doc: Value,
}

impl Operation {
    fn id(&self) -> &str {
        self.doc["operationId"].as_str().unwrap_or("<none>")
    }

    fn documents(&self, status: StatusCode) -> bool {
        self.doc["responses"]
            .get(status.as_u16().to_string())
            .is_some()
    }

    fn authenticated(&self) -> bool {
        self.doc["security"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    }

    fn takes_json(&self) -> bool {
        self.doc["requestBody"]["content"]
            .get("application/json")
            .is_some()
    }

    fn parameters_in(&self, place: &str) -> Vec<&Value> {
        self.doc["parameters"]
            .as_array()
            .map(|ps| ps.iter().filter(|p| p["in"] == place).collect())
            .unwrap_or_default()
    }

    /// The path with every parameter replaced by `value`.
    fn path_with(&self, value: &str) -> String {
        let mut out = String::new();
        let mut rest = self.path.as_str();
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            out.push_str(value);
            rest = &rest[start + rest[start..].find('}').expect("a closed parameter") + 1..];
        }
        out.push_str(rest);
        out
    }

    fn param<'a>(&'a self, name: &str) -> Option<&'a Value> {
        self.doc["parameters"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == name)
    }
}

async fn document(app: &TestApp) -> Value {
    let res = app.call(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(res.status, StatusCode::OK);
    res.body
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            out.push(Operation {
                method,
                path: path.clone(),
                doc: op.clone(),
            });
        }
    }
    out
}

/// Sends `body` with `content_type` (or none) and the caller's token.
async fn send(
    app: &TestApp,
    op: &Operation,
    uri: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> StatusCode {
    let mut req = Request::builder().method(op.method.clone()).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let req = req.body(Body::from(body.to_owned())).unwrap();
    app.send_raw(req).await.status
}

/// The list of routes is the document's own, so a route is checked as soon as
/// it is registered. On each documented path, each documented method reaches
/// a handler (whatever it then answers, it is not the answer for a route
/// nobody serves), and every other method is refused as not allowed.
#[tokio::test]
async fn the_server_routes_exactly_the_documented_operations() {
    let app = TestApp::new().await;
    let doc = document(&app).await;
    let ops = operations(&doc);
    let unrouted = app.call(Method::GET, "/v1/nowhere", None, None).await;
    assert_eq!(unrouted.status, StatusCode::NOT_FOUND);
    let mut by_path: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in &ops {
        by_path.entry(op.path.as_str()).or_default().push(op);
    }
    let some_id = uuid::Uuid::now_v7().to_string();
    let mut wrong = Vec::new();
    for (path, documented) in &by_path {
        let uri = documented[0].path_with(&some_id);
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            let res = app.call(method.clone(), &uri, None, None).await;
            let routed = res.status != StatusCode::METHOD_NOT_ALLOWED
                && !(res.status == unrouted.status && res.body == unrouted.body);
            match documented.iter().find(|op| op.method == method) {
                Some(op) if !routed => wrong.push(format!(
                    "{method} {path} ({}) is documented but answers {} {}",
                    op.id(),
                    res.status,
                    res.body
                )),
                None if res.status != StatusCode::METHOD_NOT_ALLOWED => wrong.push(format!(
                    "{method} {path} is not documented but answers {}",
                    res.status
                )),
                _ => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Each operation sits under one of the tags the document declares, and each
/// declared tag has operations: a browsable page or a generated client
/// groups them by tag.
#[tokio::test]
async fn every_operation_is_under_one_declared_tag() {
    let app = TestApp::new().await;
    let doc = document(&app).await;
    let declared: BTreeSet<&str> = doc["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    let mut used = BTreeSet::new();
    for op in operations(&doc) {
        let tags: Vec<&str> = op.doc["tags"]
            .as_array()
            .map(|t| t.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(tags.len(), 1, "{} {}: tags {tags:?}", op.method, op.path);
        assert!(
            declared.contains(tags[0]),
            "{} {}: tag {} is not declared",
            op.method,
            op.path,
            tags[0]
        );
        used.insert(tags[0].to_owned());
    }
    for tag in declared {
        assert!(used.contains(tag), "no operation is tagged {tag}");
    }
}

#[tokio::test]
async fn every_operation_has_its_own_descriptive_id() {
    let app = TestApp::new().await;
    let doc = document(&app).await;
    let ops = operations(&doc);
    assert!(ops.len() >= 40, "{} operations", ops.len());
    let mut seen = BTreeSet::new();
    for op in &ops {
        let id = op.id();
        // Code generators turn ids into function names: a verb and an object.
        assert!(
            id.starts_with(|c: char| c.is_ascii_lowercase())
                && id.chars().all(|c| c.is_ascii_alphanumeric()),
            "{} {} has no operationId a generator can name a function by: {id:?}",
            op.method,
            op.path
        );
        assert!(seen.insert(id.to_owned()), "operationId {id} is used twice");
    }
}

#[tokio::test]
async fn what_the_extractors_answer_is_documented_on_every_operation() {
    let app = TestApp::new().await;
    let user: TestUser = app.register("ada").await;
    let doc = document(&app).await;
    let some_id = uuid::Uuid::now_v7().to_string();
    let mut missing = Vec::new();
    let mut note = |op: &Operation, case: &str, status: StatusCode| {
        if !op.documents(status) {
            missing.push(format!(
                "{} {} ({}): {case} answers {status}, undocumented",
                op.method,
                op.path,
                op.id()
            ));
        }
    };
    for op in operations(&doc) {
        let uri = op.path_with(&some_id);
        if op.authenticated() {
            let status = send(&app, &op, &uri, None, None, "").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{} {uri}", op.method);
            note(&op, "no token", status);
        }
        if !op.parameters_in("path").is_empty() {
            let status = send(
                &app,
                &op,
                &op.path_with("not-an-id"),
                Some(&user.token),
                None,
                "",
            )
            .await;
            note(&op, "an id that cannot parse", status);
        }
        if !op.parameters_in("query").is_empty() {
            let status = send(
                &app,
                &op,
                &format!("{uri}?no_such_parameter=1"),
                Some(&user.token),
                None,
                "",
            )
            .await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{} {uri}",
                op.method
            );
            note(&op, "an unknown query parameter", status);
        }
        if op.takes_json() {
            let token = Some(user.token.as_str());
            for (case, content_type, body) in [
                ("a body that is not JSON", Some("application/json"), "{nope"),
                ("JSON sent as text/plain", Some("text/plain"), "{}"),
                (
                    "a field nobody knows",
                    Some("application/json"),
                    r#"{"no_such_field": 1}"#,
                ),
            ] {
                let status = send(&app, &op, &uri, token, content_type, body).await;
                assert!(
                    status.is_client_error(),
                    "{} {uri}: {case} answers {status}",
                    op.method
                );
                note(&op, case, status);
            }
        }
    }
    // Every database query now fails: each operation that reads it says so.
    app.core.store.close().await;
    for op in operations(&doc)
        .into_iter()
        .filter(Operation::authenticated)
    {
        let uri = op.path_with(&some_id);
        let status = send(&app, &op, &uri, Some(&user.token), None, "").await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{} {uri}",
            op.method
        );
        note(&op, "a database out of reach", status);
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[tokio::test]
async fn stated_limits_are_the_ones_the_server_enforces() {
    let app = TestApp::new().await;
    let ada = app.register("ada").await;
    let doc = document(&app).await;
    let ops = operations(&doc);
    let op = |id: &str| {
        ops.iter()
            .find(|o| o.id() == id)
            .unwrap_or_else(|| panic!("no operation {id}"))
    };
    let schema = |name: &str| doc["components"]["schemas"][name].clone();
    let room = app.room(&ada, "general", "public").await;

    // Page sizes start at 1: `limit=0` is refused.
    for (id, uri) in [
        ("listMyRooms", "/v1/rooms".to_owned()),
        ("listPublicRooms", "/v1/rooms/public".to_owned()),
        ("listMembers", format!("/v1/rooms/{room}/members")),
        ("listMessages", format!("/v1/rooms/{room}/messages")),
        ("listCalls", format!("/v1/rooms/{room}/calls")),
        ("searchMessages", "/v1/search?q=hello".to_owned()),
    ] {
        let limit = op(id).param("limit").expect("a limit");
        assert_eq!(limit["schema"]["minimum"], 1, "{id}: {limit}");
        let sep = if uri.contains('?') { '&' } else { '?' };
        let res = app.get(&format!("{uri}{sep}limit=0"), &ada.token).await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{id}");
    }

    // A search needs words: `q` is required and not empty.
    let q = op("searchMessages").param("q").expect("q");
    assert_eq!(q["required"], true, "{q}");
    assert_eq!(q["schema"]["minLength"], 1, "{q}");
    for uri in ["/v1/search", "/v1/search?q="] {
        let res = app.get(uri, &ada.token).await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
    }

    // A message needs an idempotency key of at least one character.
    let send = schema("SendRequest");
    assert_eq!(
        send["properties"]["client_msg_id"]["minLength"], 1,
        "{send}"
    );
    let res = app
        .post(
            &format!("/v1/rooms/{room}/messages"),
            &ada.token,
            json!({"body": "hi", "client_msg_id": ""}),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);

    // A call holds at least two people.
    let create = schema("CreateRoomRequest");
    assert_eq!(
        create["properties"]["max_call_participants"]["minimum"], 2,
        "{create}"
    );
    let update = schema("UpdateRoomRequest");
    assert_eq!(
        update["properties"]["max_call_participants"]["minimum"], 2,
        "{update}"
    );
    for n in [0, 1] {
        let res = app
            .post(
                "/v1/rooms",
                &ada.token,
                json!({"name": "tiny", "max_call_participants": n}),
            )
            .await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{n}");
    }
    assert_eq!(create["properties"]["name"]["minLength"], 1);
    assert_eq!(create["properties"]["name"]["maxLength"], 100);
    let res = app
        .post("/v1/rooms", &ada.token, json!({"name": "x".repeat(101)}))
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn downloads_are_described_as_any_type_with_ranges() {
    let app = TestApp::new().await;
    let doc = document(&app).await;
    let download = &doc["paths"]["/v1/files/{id}"]["get"]["responses"];
    for status in ["200", "206"] {
        let content = download[status]["content"]
            .as_object()
            .unwrap_or_else(|| panic!("{status} has no content: {download}"));
        assert!(
            content.contains_key("*/*"),
            "a download is of any type: {status} {content:?}"
        );
        // Bytes, not a JSON array of numbers.
        let schema = &content["*/*"]["schema"];
        let schema = match schema["$ref"].as_str() {
            Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
            None => schema,
        };
        assert_eq!(schema["type"], "string", "{schema}");
        assert_eq!(schema["format"], "binary", "{schema}");
    }
    for status in ["304", "401", "404", "416"] {
        assert!(download.get(status).is_some(), "{status} is missing");
    }
    let upload = &doc["paths"]["/v1/files"]["post"]["requestBody"]["content"];
    assert!(upload.get("multipart/form-data").is_some(), "{upload}");
}
