//! A client of Janus's HTTP API (the VideoRoom plugin), so the load tool can
//! run its scenarios against Janus in the same run as against Roost.
//!
//! Every request carries a transaction; plugin requests that Janus answers
//! later (`join`, `publish`, `start`) are acknowledged at once and their
//! result arrives on the session's long-poll (`GET /janus/{session}`),
//! matched by transaction. A long-poll also counts as the session's
//! keepalive. `benches/janus/` holds the configuration the tool is run
//! against and how to start Janus with it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};

/// One Janus session of one participant.
#[derive(Clone)]
pub struct Session {
    http: reqwest::Client,
    /// `…/janus/{session}`
    url: String,
}

fn transaction() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Posts `body` with a fresh transaction; returns the transaction and Janus's reply.
async fn post(
    http: &reqwest::Client,
    url: &str,
    mut body: Value,
) -> anyhow::Result<(String, Value)> {
    let tx = transaction();
    body["transaction"] = json!(tx);
    let reply: Value = http
        .post(url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?
        .json()
        .await?;
    anyhow::ensure!(
        reply["janus"] == "success" || reply["janus"] == "ack",
        "Janus refused {body}: {reply}"
    );
    Ok((tx, reply))
}

/// The plugin's answer, or the error it carries.
fn plugin_data(reply: &Value) -> anyhow::Result<Value> {
    let data = &reply["plugindata"]["data"];
    anyhow::ensure!(data["error_code"].is_null(), "VideoRoom refused: {data}");
    Ok(data.clone())
}

impl Session {
    /// Creates a session on the Janus API at `api` (`http://host:port/janus`).
    pub async fn create(http: &reqwest::Client, api: &str) -> anyhow::Result<Session> {
        let (_, reply) = post(http, api, json!({"janus": "create"})).await?;
        let id = reply["data"]["id"].as_u64().context("no session id")?;
        Ok(Session {
            http: http.clone(),
            url: format!("{api}/{id}"),
        })
    }

    /// Attaches a handle to the VideoRoom plugin; returns its id.
    pub async fn attach(&self) -> anyhow::Result<u64> {
        let (_, reply) = post(
            &self.http,
            &self.url,
            json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
        )
        .await?;
        reply["data"]["id"].as_u64().context("no handle id")
    }

    /// Sends a plugin request on `handle`, with a JSEP if given, and returns
    /// the whole reply: at once for synchronous requests, else the event
    /// that answers it.
    pub async fn message(
        &self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = json!({"janus": "message", "body": body});
        if let Some(jsep) = jsep {
            request["jsep"] = jsep;
        }
        let (tx, reply) = post(&self.http, &format!("{}/{handle}", self.url), request).await?;
        if reply["janus"] == "success" {
            plugin_data(&reply)?;
            return Ok(reply);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "no answer from Janus to {tx} within 20 s"
            );
            for event in self.poll().await? {
                if event["transaction"] == tx.as_str() && event["janus"] == "event" {
                    plugin_data(&event)?;
                    return Ok(event);
                }
            }
        }
    }

    /// Waits for Janus's `webrtcup` on `handle`: the connection is up on
    /// its side too, so the feed can be subscribed to.
    pub async fn webrtc_up(&self, handle: u64) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            for event in self.poll().await? {
                if event["janus"] == "webrtcup" && event["sender"] == handle {
                    return Ok(());
                }
            }
        }
        anyhow::bail!("Janus did not report handle {handle} up within 20 s")
    }

    /// The session's next events (the long-poll); also its keepalive.
    pub async fn poll(&self) -> anyhow::Result<Vec<Value>> {
        let events: Value = self
            .http
            .get(format!("{}?maxev=10", self.url))
            .send()
            .await?
            .json()
            .await?;
        Ok(match events {
            Value::Array(events) => events,
            one => vec![one],
        })
    }

    /// Creates a VideoRoom for `publishers`, with nothing the Roost run
    /// doesn't do either (no recording, no join notifications); returns its id.
    pub async fn create_room(&self, handle: u64, publishers: usize) -> anyhow::Result<u64> {
        let reply = self
            .message(
                handle,
                json!({
                    "request": "create",
                    "description": "bench call",
                    "publishers": publishers.max(1),
                    "audiocodec": "opus",
                    "videocodec": "vp8",
                    "record": false,
                    "notify_joining": false,
                }),
                None,
            )
            .await?;
        reply["plugindata"]["data"]["room"]
            .as_u64()
            .context("no room id")
    }
}

/// A JSEP object of a complete (non-trickled) description.
pub fn jsep(kind: &str, sdp: &str) -> Value {
    json!({"type": kind, "sdp": sdp, "trickle": false})
}

/// The SDP of the JSEP in a Janus event.
pub fn sdp_of(event: &Value) -> anyhow::Result<String> {
    event["jsep"]["sdp"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no JSEP in {event}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_errors_are_errors() {
        let ok = json!({"plugindata": {"data": {"videoroom": "created", "room": 7}}});
        assert_eq!(plugin_data(&ok).unwrap()["room"], 7);
        let refused = json!({"plugindata": {"data": {"videoroom": "event", "error_code": 427, "error": "Room 7 already exists"}}});
        assert!(plugin_data(&refused)
            .unwrap_err()
            .to_string()
            .contains("already exists"));
    }

    #[test]
    fn events_carry_their_sdp() {
        let event = json!({"janus": "event", "jsep": {"type": "offer", "sdp": "v=0"}});
        assert_eq!(sdp_of(&event).unwrap(), "v=0");
        assert!(sdp_of(&json!({"janus": "event"})).is_err());
    }
}
