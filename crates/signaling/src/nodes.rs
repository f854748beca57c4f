//! Calls held by another node (ADR 0007). A call lives on the node where it
//! started, which records that in a Redis lease; a connection on any other
//! node that joins it has its call requests carried to that node and
//! answered from there, and the frames the call sends it carried back. Media
//! never takes this path: the holder's engine answers the client's SDP, and
//! the client sends its media straight to that node's media port.
//!
//! This module knows this node's calls only through [`LocalCalls`], which
//! the call hub implements: the hub depends on this module, not the other
//! way round.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use roost_core::cluster::{Cluster, NodeOutbox};
use roost_core::model::{Actor, Role};
use roost_core::CoreError;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::hub::{ConnKey, Hub};
use crate::protocol::{CallRequest, ServerFrame};

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
        request: CallRequest,
    },
    Reply {
        id: u64,
        result: Result<serde_json::Value, WireError>,
    },
    /// A frame of the call for connection `conn` of the receiving node.
    Frame { conn: Uuid, frame: ServerFrame },
    /// Connection `conn` of node `from` went away: it leaves its call, at
    /// once or (`grace`) after the reconnection grace unless it resumes.
    Gone {
        from: Uuid,
        conn: Uuid,
        #[serde(default)]
        grace: bool,
    },
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
        "media_conflict",
        "not_negotiated",
        "unavailable",
        "unauthorized",
        "rate_limited",
        "unmute_locked",
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
    /// Whose participant it is: only that user's socket may resume it.
    pub user_id: Uuid,
}

/// A request waiting for the holder's answer.
type Waiter = oneshot::Sender<Result<serde_json::Value, WireError>>;

/// This node's side of calls across nodes.
pub(crate) struct NodeLink {
    pub cluster: Cluster,
    /// Where the frames carried back for this node's connections are written.
    hub: Arc<Hub>,
    outbox: NodeOutbox,
    next_id: AtomicU64,
    waiting: Mutex<HashMap<u64, Waiter>>,
    relayed: Mutex<HashMap<Uuid, Relayed>>,
}

impl NodeLink {
    pub fn new(cluster: Cluster, hub: Arc<Hub>) -> NodeLink {
        NodeLink {
            outbox: cluster.node_outbox(),
            cluster,
            hub,
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
        request: CallRequest,
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
                request,
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

/// What the cross-node code needs of this node's calls (the call hub).
pub(crate) trait LocalCalls: Send + Sync + 'static {
    /// The link to the other nodes; `None` without Redis.
    fn link(&self) -> Option<&Arc<NodeLink>>;

    /// Runs a call request of connection `conn` of node `node` on a call held here.
    fn handle_remote(
        self: &Arc<Self>,
        actor: &Actor,
        node: Uuid,
        conn: Uuid,
        request: CallRequest,
    ) -> impl Future<Output = Result<serde_json::Value, CoreError>> + Send;

    /// A participant leaves its call here: its node went away.
    fn remove(self: &Arc<Self>, participant: Uuid) -> impl Future<Output = ()> + Send;

    /// A participant's connection on node `node` went away: it leaves its
    /// call, at once or (`grace`) unless it resumes within the grace.
    fn gone(
        self: &Arc<Self>,
        participant: Uuid,
        node: Uuid,
        grace: bool,
    ) -> impl Future<Output = ()> + Send;

    /// The calls held here, for renewing their leases and checking on the
    /// nodes of their participants.
    fn held(&self) -> Held;

    /// Ends the record of a call.
    fn end(&self, call_id: Uuid) -> impl Future<Output = Result<(), CoreError>> + Send;
}

/// The calls held on this node.
pub(crate) struct Held {
    /// The rooms whose calls live here.
    pub rooms: Vec<Uuid>,
    /// Their participants connected through other nodes: (node, participant).
    pub remote: Vec<(Uuid, Uuid)>,
}

/// Messages from other nodes: their connections' requests for calls held
/// here, answers to this node's, and frames for its relayed connections.
/// Requests are run one at a time, so each connection's stay in order.
pub(crate) async fn listen<C: LocalCalls>(
    calls: Weak<C>,
    mut inbox: mpsc::UnboundedReceiver<String>,
) {
    while let Some(payload) = inbox.recv().await {
        let Some(calls) = calls.upgrade() else { return };
        let Some(link) = calls.link().cloned() else {
            return;
        };
        let message = match serde_json::from_str::<NodeMessage>(&payload) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "an unreadable message from another node");
                continue;
            }
        };
        match message {
            NodeMessage::Request {
                id,
                from,
                conn,
                actor,
                request,
            } => {
                let actor = Actor::from(actor);
                let result = calls
                    .handle_remote(&actor, from, conn, request)
                    .await
                    .map_err(|e| WireError::from(&e));
                link.send(from, &NodeMessage::Reply { id, result });
            }
            NodeMessage::Reply { id, result } => link.answered(id, result),
            NodeMessage::Frame { conn, frame } => {
                if let Some(relayed) = link.relayed(conn) {
                    link.hub.send_to(relayed.key, &frame);
                    // Removed by a moderator, it is in no call: its next
                    // `call.join` finds the holder of that room's call afresh.
                    if matches!(frame, ServerFrame::CallRemoved { .. }) {
                        link.forget(conn);
                    }
                }
            }
            NodeMessage::Gone { from, conn, grace } => {
                calls.gone(conn, from, grace).await;
            }
        }
    }
}

/// Every few seconds: renews the leases of the calls held here (and this
/// node's sign of life), removes participants whose node has died, and
/// ends the relayed calls whose holder has.
pub(crate) async fn sweep<C: LocalCalls>(calls: Weak<C>) {
    let mut tick = tokio::time::interval(roost_core::cluster::RENEW_EVERY);
    loop {
        tick.tick().await;
        let Some(calls) = calls.upgrade() else { return };
        let Some(link) = calls.link().cloned() else {
            return;
        };
        let Held { rooms, remote } = calls.held();
        let held: Vec<String> = rooms.into_iter().map(lease).collect();
        if let Err(e) = link.cluster.renew(&held).await {
            tracing::debug!(error = %e, "renewing call leases failed");
            continue;
        }
        let mut dead: HashMap<Uuid, bool> = HashMap::new();
        for (node, participant) in remote {
            if is_gone(&link.cluster, &mut dead, node).await {
                tracing::info!(%node, %participant, "a participant's node is gone; it leaves its call");
                calls.remove(participant).await;
            }
        }
        for (conn, relayed) in link.all_relayed() {
            if is_gone(&link.cluster, &mut dead, relayed.holder).await {
                link.forget(conn);
                if let Some(call_id) = relayed.call_id {
                    tracing::info!(%call_id, holder = %relayed.holder, "the node holding a call is gone; the call ends");
                    if let Err(e) = calls.end(call_id).await {
                        tracing::debug!(error = %e, "ending a call whose node is gone failed");
                    }
                }
            }
        }
    }
}

/// Whether `node` has stopped showing signs of life, asked of Redis once
/// per sweep (`known`). Redis out of reach counts as alive: nobody is
/// removed for an outage of Redis alone.
async fn is_gone(cluster: &Cluster, known: &mut HashMap<Uuid, bool>, node: Uuid) -> bool {
    if let Some(gone) = known.get(&node) {
        return *gone;
    }
    let gone = matches!(cluster.alive(node).await, Ok(false));
    known.insert(node, gone);
    gone
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
        for code in ["media_conflict", "not_negotiated", "sdp_mismatch"] {
            let e = CoreError::conflict(code, "the media engine refused");
            assert_eq!(CoreError::from(WireError::from(&e)).code(), code);
        }
    }
}
