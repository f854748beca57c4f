//! The frames of protocol v1: JSON text frames `{"type": ..., ...}`.
//!
//! Requests from the client carry an `id`, answered by `ack` (with a result)
//! or `nack` (with a stable `code`). Events from the server carry the room's
//! sequence number when they are logged. `docs/protocol.md` is the contract;
//! `docs/protocol.schema.json` is generated from these types.

use std::collections::BTreeMap;
use std::num::NonZeroU16;

use roost_core::events::{PresenceStatus, RoomEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use wire::ClientFrame as WireFrame;

/// The subprotocol a client offers (and the server selects) on the upgrade.
pub const SUBPROTOCOL: &str = "roost.v1";
/// The prefix of the subprotocol entry that carries the access token.
pub const BEARER_PREFIX: &str = "bearer.";
/// The longest request id accepted.
pub const MAX_ID_CHARS: usize = 64;

/// Close codes the server uses.
pub mod close {
    /// The client broke the WebSocket protocol (an unmasked frame, a reserved
    /// opcode or bit, a fragmented control frame).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame was not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// The server is shutting down or restarting: reconnect, to another node if there is one.
    pub const SERVICE_RESTART: u16 = 1012;
    /// A frame was larger than the limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The client kept breaking the rate limit.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// The session ended: logout, account disabled, or the access token expired unrenewed.
    pub const SESSION_ENDED: u16 = 4001;
    /// The client read too slowly; its queue of outgoing frames filled up.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// No frame or pong arrived for too long.
    pub const HEARTBEAT_TIMEOUT: u16 = 4009;
}

/// A request from the client, as the server dispatches it: the session's own
/// requests, and those of calls nested in [`CallRequest`], so that every
/// `match` over them is exhaustive and a request no code handles does not
/// compile. On the wire it is one flat object tagged by `type` (`wire::ClientFrame`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(from = "WireFrame", into = "WireFrame")]
#[schemars(description = "A request from the client.")]
pub enum ClientFrame {
    Hello {
        id: String,
        resume: BTreeMap<Uuid, u64>,
    },
    MessageSend {
        id: String,
        room_id: Uuid,
        body: String,
        client_msg_id: String,
        reply_to: Option<Uuid>,
        attachments: Vec<Uuid>,
    },
    MessageEdit {
        id: String,
        room_id: Uuid,
        message_id: Uuid,
        body: String,
    },
    MessageDelete {
        id: String,
        room_id: Uuid,
        message_id: Uuid,
    },
    Read {
        id: String,
        room_id: Uuid,
        message_id: Uuid,
    },
    TypingStart {
        id: String,
        room_id: Uuid,
    },
    PresenceSet {
        id: String,
        status: PresenceStatus,
    },
    AuthRefresh {
        id: String,
        access_token: String,
    },
    Ping {
        id: String,
    },
    /// A request of the call the connection is in, or joins; the node's
    /// call hub answers it.
    Call {
        id: String,
        request: CallRequest,
    },
}

/// A request of a call, without the request `id` (the session answers
/// that). Serialised as the client's frame of the same `type`, less the `id`,
/// when a request is carried to the node holding the call.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type")]
pub enum CallRequest {
    /// `call.join`.
    #[serde(rename = "call.join")]
    Join { room_id: Uuid },
    /// `call.leave`.
    #[serde(rename = "call.leave")]
    Leave { call_id: Uuid },
    /// `call.resume`.
    #[serde(rename = "call.resume")]
    Resume {
        room_id: Uuid,
        call_id: Uuid,
        participant_id: Uuid,
    },
    /// `call.offer` (mesh).
    #[serde(rename = "call.offer")]
    Offer {
        call_id: Uuid,
        to: Uuid,
        sdp: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        sources: BTreeMap<String, TrackSource>,
    },
    /// `call.answer` (mesh).
    #[serde(rename = "call.answer")]
    Answer {
        call_id: Uuid,
        to: Uuid,
        sdp: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        sources: BTreeMap<String, TrackSource>,
    },
    /// `call.ice` (mesh).
    #[serde(rename = "call.ice")]
    Ice {
        call_id: Uuid,
        to: Uuid,
        candidate: serde_json::Value,
    },
    /// `sfu.offer`.
    #[serde(rename = "sfu.offer")]
    SfuOffer {
        call_id: Uuid,
        sdp: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        sources: BTreeMap<String, TrackSource>,
    },
    /// `sfu.answer`.
    #[serde(rename = "sfu.answer")]
    SfuAnswer { call_id: Uuid, sdp: String },
    /// `sfu.ice`.
    #[serde(rename = "sfu.ice")]
    SfuIce {
        call_id: Uuid,
        candidate: serde_json::Value,
    },
    /// `call.mute`.
    #[serde(rename = "call.mute")]
    Mute {
        call_id: Uuid,
        kind: MediaKind,
        muted: bool,
    },
    /// `call.subscribe`.
    #[serde(rename = "call.subscribe")]
    Subscribe {
        call_id: Uuid,
        participant_id: Uuid,
        source: TrackSource,
        #[serde(default)]
        paused: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_width: Option<NonZeroU16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_height: Option<NonZeroU16>,
    },
    /// `sfu.restart`.
    #[serde(rename = "sfu.restart")]
    SfuRestart { call_id: Uuid },
    /// `call.share`.
    #[serde(rename = "call.share")]
    Share { call_id: Uuid, sharing: bool },
    /// `call.moderate`.
    #[serde(rename = "call.moderate")]
    Moderate {
        call_id: Uuid,
        participant_id: Uuid,
        action: ModerationAction,
    },
}

/// The wire form of [`ClientFrame`], and the conversions both ways.
mod wire;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Audio,
    Video,
}

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    Microphone,
    Camera,
    Screen,
    ScreenAudio,
}

/// What a moderator does to a participant of a call (`call.moderate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModerationAction {
    /// Mutes its microphone; the SFU stops forwarding it.
    MuteAudio,
    /// Mutes its camera; the SFU stops forwarding it.
    MuteVideo,
    /// Lets it unmute its microphone itself, where the room locks
    /// moderators' mutes (`call_self_unmute` false).
    AllowAudio,
    /// The same for its camera.
    AllowVideo,
    /// Stops its screen share; the SFU stops forwarding it.
    StopScreen,
    /// Takes it out of the call; it may join again.
    Remove,
}

/// A media section of the server's `sfu.offer`: whose track it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SfuTrack {
    /// The section's `a=mid` (the receiving transceiver's `mid`).
    pub mid: String,
    /// The participant who sends it.
    pub participant_id: Uuid,
    pub kind: MediaKind,
    pub source: TrackSource,
}

/// How a call's media flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Topology {
    /// Peer to peer: every participant sends to every other.
    Mesh,
    /// Through the server: each participant sends once, the server forwards.
    Sfu,
}

/// A participant of a call as the others see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CallParticipantInfo {
    /// The connection that joined; mesh signaling is addressed to it.
    pub participant_id: Uuid,
    pub user_id: Uuid,
    pub audio_muted: bool,
    pub video_muted: bool,
    /// It shares its screen now.
    pub screen_sharing: bool,
    /// A moderator muted its microphone, and the room does not let it
    /// unmute itself until a moderator allows it.
    pub audio_locked: bool,
    /// The same for its camera.
    pub video_locked: bool,
}

/// A participant speaking, with its loudness from 0 (silence) to 127.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Speaker {
    pub participant_id: Uuid,
    pub level: u8,
}

/// What `call.join` is acknowledged with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CallJoined {
    pub call_id: Uuid,
    /// This connection's id in the call.
    pub participant_id: Uuid,
    pub topology: Topology,
    /// The ICE servers for `RTCPeerConnection` (TURN credentials when configured).
    pub ice_servers: Vec<roost_core::turn::IceServer>,
    /// Everyone else in the call. In a mesh, the joiner offers to each of them.
    pub participants: Vec<CallParticipantInfo>,
    pub max_participants: u32,
}

impl ClientFrame {
    pub fn id(&self) -> &str {
        match self {
            ClientFrame::Hello { id, .. }
            | ClientFrame::MessageSend { id, .. }
            | ClientFrame::MessageEdit { id, .. }
            | ClientFrame::MessageDelete { id, .. }
            | ClientFrame::Read { id, .. }
            | ClientFrame::TypingStart { id, .. }
            | ClientFrame::PresenceSet { id, .. }
            | ClientFrame::AuthRefresh { id, .. }
            | ClientFrame::Ping { id }
            | ClientFrame::Call { id, .. } => id,
        }
    }
}

/// A room the session follows, with its newest sequence number at `hello`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RoomCursor {
    pub room_id: Uuid,
    pub last_seq: u64,
}

/// What `hello` is acknowledged with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Welcome {
    pub user_id: Uuid,
    /// This connection's id.
    pub connection_id: Uuid,
    /// Send a frame (a `ping` will do) at least this often.
    pub heartbeat_interval_ms: u64,
    /// Every room of the user. For rooms not in `resume`, the live stream
    /// starts after `last_seq`; fetch earlier history over REST.
    pub rooms: Vec<RoomCursor>,
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum ServerFrame {
    /// The request `id` succeeded; `result` depends on the request.
    #[serde(rename = "ack")]
    Ack {
        id: String,
        result: serde_json::Value,
    },
    /// The request `id` failed; the connection stays open.
    #[serde(rename = "nack")]
    Nack {
        id: String,
        code: String,
        message: String,
    },
    /// A frame that could not be read as a request (no usable `id`).
    #[serde(rename = "error")]
    Error { code: String, message: String },
    #[serde(rename = "pong")]
    Pong { id: String },
    /// The resume point of a room is older than the log keeps: reload the
    /// room over REST; the stream continues after `seq`.
    #[serde(rename = "resume.reset")]
    ResumeReset { room_id: Uuid, seq: u64 },
    #[serde(rename = "presence.update")]
    PresenceUpdate {
        user_id: Uuid,
        status: PresenceStatus,
    },
    /// The server is going away: reconnect (and resume) shortly.
    #[serde(rename = "reconnect")]
    Reconnect { reason: String },
    /// The call moved to another topology: set up the new path, then drop the old one.
    #[serde(rename = "call.topology")]
    CallTopology { call_id: Uuid, topology: Topology },
    #[serde(rename = "call.participant_joined")]
    CallParticipantJoined {
        call_id: Uuid,
        participant: CallParticipantInfo,
    },
    /// A participant left, or its connection dropped; its media is gone.
    /// `removed_by` names the moderator who removed it.
    #[serde(rename = "call.participant_left")]
    CallParticipantLeft {
        call_id: Uuid,
        participant_id: Uuid,
        user_id: Uuid,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        removed_by: Option<Uuid>,
    },
    /// This connection was removed from the call by a moderator (`by`).
    #[serde(rename = "call.removed")]
    CallRemoved { call_id: Uuid, by: Uuid },
    /// Mesh: an offer relayed from another participant (`from`), with
    /// the `sources` it named.
    #[serde(rename = "call.offer")]
    CallOfferRelayed {
        call_id: Uuid,
        from: Uuid,
        sdp: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        sources: BTreeMap<String, TrackSource>,
    },
    #[serde(rename = "call.answer")]
    CallAnswerRelayed {
        call_id: Uuid,
        from: Uuid,
        sdp: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        sources: BTreeMap<String, TrackSource>,
    },
    #[serde(rename = "call.ice")]
    CallIceRelayed {
        call_id: Uuid,
        from: Uuid,
        candidate: serde_json::Value,
    },
    /// SFU: the server offers the receiving connection (the others' tracks); answer with `sfu.answer`.
    #[serde(rename = "sfu.offer")]
    SfuOfferFromServer {
        call_id: Uuid,
        sdp: String,
        /// Every media section that carries a track, with its sender.
        tracks: Vec<SfuTrack>,
    },
    /// SFU: `participant_id` now plays this client's track of `source`
    /// through the server (its connection is up and it has had a keyframe).
    /// A client moving from peer to peer closes its connection with
    /// `participant_id` once this came for its video (or audio, when it sends
    /// no video) and it plays that participant through the server itself.
    #[serde(rename = "sfu.receiving")]
    SfuReceiving {
        call_id: Uuid,
        participant_id: Uuid,
        kind: MediaKind,
        source: TrackSource,
    },
    /// SFU: send only the `active` encodings (rids) of the simulcast track in
    /// the media section `mid` of this client's sending connection: no one
    /// receives the others. Sent when that changes; a client sets
    /// `active` on its sender's encodings (`RTCRtpSender.setParameters`).
    #[serde(rename = "sfu.layers")]
    SfuLayers {
        call_id: Uuid,
        mid: String,
        active: Vec<String>,
    },
    /// SFU: this client's connection from the server has too little
    /// bandwidth for even the smallest layer of `participant_id`'s track of
    /// `source`, so the server holds it back (`held: true`), or sends it
    /// again (`held: false`). `reason` is `bandwidth`.
    #[serde(rename = "sfu.held")]
    SfuHeld {
        call_id: Uuid,
        participant_id: Uuid,
        source: TrackSource,
        held: bool,
        reason: String,
    },
    /// SFU: who speaks now, loudest first; sent when that changes.
    #[serde(rename = "call.speaking")]
    CallSpeaking {
        call_id: Uuid,
        speakers: Vec<Speaker>,
    },
    /// A participant muted or unmuted its microphone or camera; or a
    /// moderator (`by`) muted it, or let it unmute itself, in which case
    /// everyone hears it, the participant too, and `locked` says whether it
    /// may unmute itself.
    #[serde(rename = "call.mute")]
    CallMuted {
        call_id: Uuid,
        participant_id: Uuid,
        kind: MediaKind,
        muted: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        locked: Option<bool>,
    },
    /// A participant started or stopped sharing its screen; or a moderator
    /// (`by`) stopped its share, in which case everyone hears it, the
    /// sharer too, which stops sending it.
    #[serde(rename = "call.share")]
    CallShared {
        call_id: Uuid,
        participant_id: Uuid,
        sharing: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Uuid>,
    },
    /// An event of a room: `message.new`, `message.updated`, `message.deleted`,
    /// `message.read`, `typing`, `room.member_joined`, `room.member_left`,
    /// `room.updated`, `room.deleted`, `call.state`.
    #[serde(untagged)]
    Event(Box<RoomEvent>),
}

/// Reads one text frame. `Err` carries what to answer: a `nack` when the
/// frame had a usable `id`, else an `error`.
pub fn parse(text: &str) -> Result<ClientFrame, ServerFrame> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ServerFrame::Error {
        code: "malformed_frame".into(),
        message: format!("not JSON: {e}"),
    })?;
    let id = value
        .get("id")
        .and_then(|v| v.as_str())
        .filter(|id| !id.is_empty() && id.chars().count() <= MAX_ID_CHARS)
        .map(str::to_owned);
    let frame: ClientFrame = serde_json::from_value(value).map_err(|e| match &id {
        Some(id) => ServerFrame::Nack {
            id: id.clone(),
            code: "invalid_frame".into(),
            message: e.to_string(),
        },
        None => ServerFrame::Error {
            code: "invalid_frame".into(),
            message: format!("every request needs an id of 1 to {MAX_ID_CHARS} characters: {e}"),
        },
    })?;
    if id.is_none() {
        return Err(ServerFrame::Error {
            code: "invalid_frame".into(),
            message: format!("every request needs an id of 1 to {MAX_ID_CHARS} characters"),
        });
    }
    Ok(frame)
}

/// The JSON Schema of both directions, as published in `docs/protocol.schema.json`.
pub fn schema() -> serde_json::Value {
    #[derive(JsonSchema)]
    #[allow(dead_code)]
    struct Protocol {
        client: ClientFrame,
        server: ServerFrame,
    }
    serde_json::to_value(schemars::schema_for!(Protocol)).expect("a schema is JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_requests_and_names_what_is_wrong() {
        let f = parse(r#"{"type":"ping","id":"7"}"#).unwrap();
        assert_eq!(f, ClientFrame::Ping { id: "7".into() });
        assert!(
            matches!(parse("{"), Err(ServerFrame::Error { code, .. }) if code == "malformed_frame")
        );
        assert!(
            matches!(parse(r#"{"type":"nope","id":"1"}"#), Err(ServerFrame::Nack { id, .. }) if id == "1")
        );
        assert!(matches!(
            parse(r#"{"type":"ping"}"#),
            Err(ServerFrame::Error { .. })
        ));
        assert!(matches!(
            parse(r#"{"type":"ping","id":""}"#),
            Err(ServerFrame::Error { .. })
        ));
        let long = format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(65));
        assert!(matches!(parse(&long), Err(ServerFrame::Error { .. })));
        assert!(
            matches!(
                parse(r#"{"type":"ping","id":"1","extra":true}"#),
                Err(ServerFrame::Nack { .. })
            ),
            "unknown fields are refused"
        );
        let send = parse(
            r#"{"type":"message.send","id":"2","room_id":"00000000-0000-0000-0000-000000000000","body":"hi","client_msg_id":"c"}"#,
        );
        assert!(matches!(
            send,
            Ok(ClientFrame::MessageSend { reply_to: None, .. })
        ));
    }

    #[test]
    fn call_requests_nest_and_are_written_back_as_they_came() {
        let texts = [
            r#"{"type":"call.join","id":"1","room_id":"00000000-0000-0000-0000-000000000001"}"#,
            r#"{"type":"call.leave","id":"2","call_id":"00000000-0000-0000-0000-000000000002"}"#,
            r#"{"type":"call.offer","id":"3","call_id":"00000000-0000-0000-0000-000000000002","to":"00000000-0000-0000-0000-000000000003","sdp":"v=0"}"#,
            r#"{"type":"call.answer","id":"4","call_id":"00000000-0000-0000-0000-000000000002","to":"00000000-0000-0000-0000-000000000003","sdp":"v=0"}"#,
            r#"{"type":"call.ice","id":"5","call_id":"00000000-0000-0000-0000-000000000002","to":"00000000-0000-0000-0000-000000000003","candidate":{"candidate":"c"}}"#,
            r#"{"type":"sfu.offer","id":"6","call_id":"00000000-0000-0000-0000-000000000002","sdp":"v=0","sources":{"2":"screen"}}"#,
            r#"{"type":"sfu.offer","id":"7","call_id":"00000000-0000-0000-0000-000000000002","sdp":"v=0"}"#,
            r#"{"type":"sfu.answer","id":"8","call_id":"00000000-0000-0000-0000-000000000002","sdp":"v=0"}"#,
            r#"{"type":"sfu.ice","id":"9","call_id":"00000000-0000-0000-0000-000000000002","candidate":{"candidate":"c"}}"#,
            r#"{"type":"call.mute","id":"10","call_id":"00000000-0000-0000-0000-000000000002","kind":"video","muted":true}"#,
            r#"{"type":"call.subscribe","id":"11","call_id":"00000000-0000-0000-0000-000000000002","participant_id":"00000000-0000-0000-0000-000000000003","source":"camera","paused":true}"#,
            r#"{"type":"call.subscribe","id":"12","call_id":"00000000-0000-0000-0000-000000000002","participant_id":"00000000-0000-0000-0000-000000000003","source":"camera","paused":false,"max_width":320,"max_height":180}"#,
            r#"{"type":"call.offer","id":"13","call_id":"00000000-0000-0000-0000-000000000002","to":"00000000-0000-0000-0000-000000000003","sdp":"v=0","sources":{"1":"screen"}}"#,
            r#"{"type":"call.share","id":"14","call_id":"00000000-0000-0000-0000-000000000002","sharing":true}"#,
            r#"{"type":"sfu.restart","id":"16","call_id":"00000000-0000-0000-0000-000000000002"}"#,
            r#"{"type":"call.resume","id":"17","room_id":"00000000-0000-0000-0000-000000000001","call_id":"00000000-0000-0000-0000-000000000002","participant_id":"00000000-0000-0000-0000-000000000003"}"#,
            r#"{"type":"call.moderate","id":"15","call_id":"00000000-0000-0000-0000-000000000002","participant_id":"00000000-0000-0000-0000-000000000003","action":"stop_screen"}"#,
        ];
        for text in texts {
            let frame = parse(text).unwrap();
            let ClientFrame::Call { id, request } = &frame else {
                panic!("{text} is not a call request: {frame:?}");
            };
            let sent: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(id, sent["id"].as_str().unwrap());
            assert_eq!(serde_json::to_value(&frame).unwrap(), sent);
            // Between nodes a request travels without the client's id.
            let carried = serde_json::to_value(request).unwrap();
            assert_eq!(carried["type"], sent["type"]);
            assert!(carried.get("id").is_none(), "{carried}");
            let back: CallRequest = serde_json::from_value(carried).unwrap();
            assert_eq!(&back, request);
        }
        let edit = r#"{"type":"message.edit","id":"1","room_id":"00000000-0000-0000-0000-000000000001","message_id":"00000000-0000-0000-0000-000000000002","body":"b"}"#;
        assert_eq!(
            serde_json::to_value(parse(edit).unwrap()).unwrap(),
            serde_json::from_str::<serde_json::Value>(edit).unwrap()
        );
    }

    #[test]
    fn a_refused_frame_is_described_as_before() {
        let message = |text: &str| match parse(text) {
            Err(ServerFrame::Nack { message, .. }) => message,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(
            message(r#"{"type":"ping","id":"1","extra":true}"#),
            "unknown field `extra`, expected `id`"
        );
        assert_eq!(
            message(r#"{"type":"call.leave","id":"1"}"#),
            "missing field `call_id`"
        );
        let size = |w: &str| {
            message(&format!(
                r#"{{"type":"call.subscribe","id":"1","call_id":"00000000-0000-0000-0000-000000000002","participant_id":"00000000-0000-0000-0000-000000000003","source":"camera","max_width":{w}}}"#
            ))
        };
        assert_eq!(
            size("0"),
            "invalid value: integer `0`, expected a nonzero u16"
        );
        assert_eq!(
            size("70000"),
            "invalid value: integer `70000`, expected a nonzero u16"
        );
        let unknown = message(r#"{"type":"nope","id":"1"}"#);
        assert!(
            unknown.starts_with("unknown variant `nope`, expected one of `hello`, "),
            "{unknown}"
        );
        assert!(
            unknown.ends_with(", `call.subscribe`, `sfu.restart`, `call.share`, `call.moderate`"),
            "{unknown}"
        );
        assert_eq!(
            serde_json::from_str::<ClientFrame>(r#""ping""#)
                .unwrap_err()
                .to_string(),
            "invalid type: string \"ping\", expected internally tagged enum ClientFrame at line 1 column 6"
        );
    }

    #[test]
    fn server_frames_round_trip() {
        let frames = [
            ServerFrame::Ack {
                id: "1".into(),
                result: serde_json::json!({"ok": true}),
            },
            ServerFrame::Nack {
                id: "1".into(),
                code: "rate_limited".into(),
                message: "slow down".into(),
            },
            ServerFrame::Pong { id: "2".into() },
            ServerFrame::ResumeReset {
                room_id: Uuid::nil(),
                seq: 9,
            },
            ServerFrame::PresenceUpdate {
                user_id: Uuid::nil(),
                status: PresenceStatus::Away,
            },
            ServerFrame::SfuLayers {
                call_id: Uuid::nil(),
                mid: "1".into(),
                active: vec!["q".into(), "h".into()],
            },
            ServerFrame::SfuHeld {
                call_id: Uuid::nil(),
                participant_id: Uuid::nil(),
                source: TrackSource::Camera,
                held: true,
                reason: "bandwidth".into(),
            },
            ServerFrame::CallMuted {
                call_id: Uuid::nil(),
                participant_id: Uuid::nil(),
                kind: MediaKind::Audio,
                muted: true,
                by: Some(Uuid::nil()),
                locked: Some(true),
            },
            ServerFrame::CallMuted {
                call_id: Uuid::nil(),
                participant_id: Uuid::nil(),
                kind: MediaKind::Video,
                muted: false,
                by: None,
                locked: None,
            },
            ServerFrame::CallShared {
                call_id: Uuid::nil(),
                participant_id: Uuid::nil(),
                sharing: false,
                by: Some(Uuid::nil()),
            },
            ServerFrame::CallRemoved {
                call_id: Uuid::nil(),
                by: Uuid::nil(),
            },
            ServerFrame::CallOfferRelayed {
                call_id: Uuid::nil(),
                from: Uuid::nil(),
                sdp: "v=0".into(),
                sources: [("2".to_owned(), TrackSource::Screen)].into(),
            },
        ];
        for f in frames {
            let text = serde_json::to_string(&f).unwrap();
            assert_eq!(
                serde_json::from_str::<ServerFrame>(&text).unwrap(),
                f,
                "{text}"
            );
        }
    }

    proptest! {
        #[test]
        fn no_input_makes_the_parser_panic(s in ".{0,512}") {
            let _ = parse(&s);
        }

        #[test]
        fn near_valid_json_never_panics(id in ".{0,80}", ty in "[a-z.]{0,20}", extra in ".{0,40}") {
            let text = serde_json::json!({"type": ty, "id": id, "room_id": extra, "body": extra}).to_string();
            let _ = parse(&text);
        }
    }
}
