//! Calls held by another node (ADR 0007). A call lives on the node where it
//! started, which records that in a Redis lease; a connection on any other
//! node that joins it has its call requests carried to that node and
//! answered from there, and the frames the call sends it carried back. Media
//! never takes this path: the holder's engine answers the client's SDP, and
//! the client sends its media straight to that node's media port.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use roost_core::auth::Actor;
use roost_core::cluster::{Cluster, NodeOutbox};
use roost_core::model::Role;
use roost_core::CoreError;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::hub::ConnKey;
use crate::protocol::{ClientFrame, ServerFrame};

/// How long a node waits for the holder of a call to answer a request.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// What nodes say to each other about calls.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum NodeMessage {
    /// A call request of connection `conn` on node `from`.
    Request {
        id: u64,
        from: Uuid,
        conn: Uuid,
        actor: WireActor,
        frame: ClientFrame,
    },
    Reply {
        id: u64,
        result: Result<serde_json::Value, WireError>,
    },
    /// A frame of the call for connection `conn` of the receiving node.
    Frame { conn: Uuid, frame: ServerFrame },
    /// Connection `conn` of node `from` went away: it leaves its call.
    Gone { from: Uuid, conn: Uuid },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct WireActor {
    user_id: Uuid,
    session_id: Uuid,
    role: Role,
    expires_at: i64,
}

impl From<&Actor> for WireActor {
    fn from(a: &Actor) -> Self {
        WireActor {
            user_id: a.user_id,
            session_id: a.session_id,
            role: a.role,
            expires_at: a.expires_at,
        }
    }
}

impl From<WireActor> for Actor {
    fn from(a: WireActor) -> Self {
        Actor {
            user_id: a.user_id,
            session_id: a.session_id,
            role: a.role,
            expires_at: a.expires_at,
        }
    }
}

/// A refusal as the client sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireError {
    code: String,
    message: String,
}

impl From<&CoreError> for WireError {
    fn from(e: &CoreError) -> Self {
        WireError {
            code: e.code().to_owned(),
            message: e.public_message().into_owned(),
        }
    }
}

impl From<WireError> for CoreError {
    fn from(e: WireError) -> Self {
        CoreError::conflict(known_code(&e.code), e.message)
    }
}

/// The codes a call request can be refused with, as the static strings
/// errors carry; anything else is reported as internal.
fn known_code(code: &str) -> &'static str {
    const CODES: &[&str] = &[
        "not_found",
        "forbidden",
        "validation_failed",
        "conflict",
        "call_full",
        "already_in_call",
        "not_on_sfu",
        "sdp_mismatch",
        "unavailable",
        "unauthorized",
        "rate_limited",
    ];
    CODES
        .iter()
        .find(|c| **c == code)
        .copied()
        .unwrap_or("internal")
}

/// A connection of this node whose call another node holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Relayed {
    pub holder: Uuid,
    pub key: ConnKey,
    pub call_id: Option<Uuid>,
}

/// A request waiting for the holder's answer.
type Waiter = oneshot::Sender<Result<serde_json::Value, WireError>>;

/// This node's side of calls across nodes.
pub(crate) struct NodeLink {
    pub cluster: Cluster,
    outbox: NodeOutbox,
    next_id: AtomicU64,
    waiting: Mutex<HashMap<u64, Waiter>>,
    relayed: Mutex<HashMap<Uuid, Relayed>>,
}

impl NodeLink {
    pub fn new(cluster: Cluster) -> NodeLink {
        NodeLink {
            outbox: cluster.node_outbox(),
            cluster,
            next_id: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
            relayed: Mutex::new(HashMap::new()),
        }
    }

    pub fn node(&self) -> Uuid {
        self.cluster.node_id()
    }

    pub fn send(&self, node: Uuid, message: &NodeMessage) {
        match serde_json::to_string(message) {
            Ok(payload) => self.outbox.send(node, payload),
            Err(e) => tracing::error!(error = %e, "a message to another node does not serialise"),
        }
    }

    fn relayed_map(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Relayed>> {
        // Only map updates happen under the lock.
        self.relayed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn waiting_map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiter>> {
        // Only map updates happen under the lock.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn relayed(&self, conn: Uuid) -> Option<Relayed> {
        self.relayed_map().get(&conn).copied()
    }

    pub fn set_relayed(&self, conn: Uuid, relayed: Relayed) {
        self.relayed_map().insert(conn, relayed);
    }

    pub fn forget(&self, conn: Uuid) -> Option<Relayed> {
        self.relayed_map().remove(&conn)
    }

    /// Every relayed connection, for the liveness sweep.
    pub fn all_relayed(&self) -> Vec<(Uuid, Relayed)> {
        self.relayed_map().iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Carries a call request to the node holding the call and waits for its answer.
    pub async fn request(
        &self,
        holder: Uuid,
        actor: &Actor,
        conn: Uuid,
        frame: ClientFrame,
    ) -> Result<serde_json::Value, CoreError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting_map().insert(id, tx);
        self.send(
            holder,
            &NodeMessage::Request {
                id,
                from: self.node(),
                conn,
                actor: actor.into(),
                frame,
            },
        );
        let answer = tokio::time::timeout(ANSWER_WITHIN, rx).await;
        self.waiting_map().remove(&id);
        match answer {
            Ok(Ok(result)) => result.map_err(CoreError::from),
            _ => Err(CoreError::Unavailable(
                "the node holding this call did not answer".into(),
            )),
        }
    }

    /// Hands an answer to the request waiting for it.
    pub fn answered(&self, id: u64, result: Result<serde_json::Value, WireError>) {
        let waiting = self.waiting_map().remove(&id);
        if let Some(tx) = waiting {
            let _ = tx.send(result);
        }
    }
}

/// The lease that says which node holds a room's call.
pub(crate) fn lease(room_id: Uuid) -> String {
    format!("call:{room_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_crosses_nodes_with_its_code_and_message() {
        let e = CoreError::conflict("call_full", "this call has its 2 participants");
        let back = CoreError::from(WireError::from(&e));
        assert_eq!(back.code(), "call_full");
        assert_eq!(back.to_string(), e.to_string());
        let odd = WireError {
            code: "made_up".into(),
            message: "x".into(),
        };
        assert_eq!(CoreError::from(odd).code(), "internal");
    }
}
