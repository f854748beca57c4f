//! A request from the client as it is written: the flat object tagged by
//! `type` that serde reads and the published schema describes, and its
//! conversions to and from the [`ClientFrame`] the server dispatches.

use std::collections::BTreeMap;
use std::num::NonZeroU16;

use roost_core::events::PresenceStatus;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{CallRequest, ClientFrame as Dispatched, MediaKind, ModerationAction, TrackSource};

/// A request from the client as it is written: one object tagged by
/// `type`. serde reads it, and its texts for a frame it cannot read (an
/// unknown `type` or field, a missing one, not an object) are what `nack`
/// `invalid_frame` says; they name the type, hence its name. The
/// published schema is generated from it. It becomes a
/// [`super::ClientFrame`] once, when read.
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(tag = "type", deny_unknown_fields)]
pub(super) enum ClientFrame {
    /// Must come first. `resume` maps room ids to the last sequence number the
    /// client has of each; the server sends what followed, then the live stream.
    #[serde(rename = "hello")]
    Hello {
        id: String,
        #[serde(default)]
        resume: BTreeMap<Uuid, u64>,
    },
    #[serde(rename = "message.send")]
    MessageSend {
        id: String,
        room_id: Uuid,
        /// May be empty (or absent) when `attachments` are given.
        #[serde(default)]
        body: String,
        client_msg_id: String,
        reply_to: Option<Uuid>,
        /// Ids of the sender's uploaded files (`POST /v1/files`).
        #[serde(default)]
        attachments: Vec<Uuid>,
    },
    #[serde(rename = "message.edit")]
    MessageEdit {
        id: String,
        room_id: Uuid,
        message_id: Uuid,
        body: String,
    },
    #[serde(rename = "message.delete")]
    MessageDelete {
        id: String,
        room_id: Uuid,
        message_id: Uuid,
    },
    /// Moves the read marker forward; the room gets `message.read`.
    #[serde(rename = "read")]
    Read {
        id: String,
        room_id: Uuid,
        message_id: Uuid,
    },
    /// The room gets `typing`, which expires by itself.
    #[serde(rename = "typing.start")]
    TypingStart { id: String, room_id: Uuid },
    /// `online` or `away` for this connection.
    #[serde(rename = "presence.set")]
    PresenceSet { id: String, status: PresenceStatus },
    /// A fresh access token for this connection, before the current one expires.
    #[serde(rename = "auth.refresh")]
    AuthRefresh { id: String, access_token: String },
    /// Answered with `pong`.
    #[serde(rename = "ping")]
    Ping { id: String },
    /// Joins the room's call (starting one if none is going on).
    #[serde(rename = "call.join")]
    CallJoin { id: String, room_id: Uuid },
    #[serde(rename = "call.leave")]
    CallLeave { id: String, call_id: Uuid },
    /// Takes back this user's place in a call after its socket dropped:
    /// `participant_id` as `call.join` gave it. Within the reconnection
    /// grace the call kept it, its media connections too; answered as
    /// `call.join` is, and the frames that waited for it follow.
    #[serde(rename = "call.resume")]
    CallResume {
        id: String,
        room_id: Uuid,
        call_id: Uuid,
        participant_id: Uuid,
    },
    /// Mesh: an SDP offer for another participant of the same call.
    #[serde(rename = "call.offer")]
    CallOffer {
        id: String,
        call_id: Uuid,
        to: Uuid,
        sdp: String,
        /// What some of its media sections carry, by `mid`, relayed as it is;
        /// a section not named is the microphone (audio) or the camera (video).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        sources: BTreeMap<String, TrackSource>,
    },
    /// Mesh: the answer to another participant's offer.
    #[serde(rename = "call.answer")]
    CallAnswer {
        id: String,
        call_id: Uuid,
        to: Uuid,
        sdp: String,
        /// As in `call.offer`.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        sources: BTreeMap<String, TrackSource>,
    },
    /// Mesh: an ICE candidate (`RTCIceCandidateInit`) for another participant.
    #[serde(rename = "call.ice")]
    CallIce {
        id: String,
        call_id: Uuid,
        to: Uuid,
        candidate: serde_json::Value,
    },
    /// SFU: the offer of the client's sending connection; acknowledged with the server's answer.
    #[serde(rename = "sfu.offer")]
    SfuOffer {
        id: String,
        call_id: Uuid,
        sdp: String,
        /// What some of the offer's media sections carry, by `mid`; a section
        /// not named is the microphone (audio) or the camera (video).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        sources: BTreeMap<String, TrackSource>,
    },
    /// SFU: the answer to the server's `sfu.offer` for the receiving connection.
    #[serde(rename = "sfu.answer")]
    SfuAnswer {
        id: String,
        call_id: Uuid,
        sdp: String,
    },
    /// SFU: a client ICE candidate. The server is ICE-lite and learns the
    /// client's addresses from its connectivity checks, so these are
    /// acknowledged and not needed.
    #[serde(rename = "sfu.ice")]
    SfuIce {
        id: String,
        call_id: Uuid,
        candidate: serde_json::Value,
    },
    /// Tells the others this participant muted or unmuted its microphone or camera.
    #[serde(rename = "call.mute")]
    CallMute {
        id: String,
        call_id: Uuid,
        kind: MediaKind,
        muted: bool,
    },
    /// On the SFU, says what this participant receives of another's track
    /// of `source` (kept for a track published later): `paused` (a paused
    /// track is not sent; a resumed video track starts again at a
    /// keyframe), and the largest size in pixels it draws the track at,
    /// from which the SFU picks the simulcast layer sent (the smallest
    /// that fills that box on one side; the largest where nothing is said).
    #[serde(rename = "call.subscribe")]
    CallSubscribe {
        id: String,
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
    /// SFU: restarts ICE on the receiving connection (after a change of
    /// network): the server sends a new `sfu.offer` with new ICE
    /// credentials. The sending connection restarts by a new `sfu.offer`
    /// of the client's with new credentials (`RTCPeerConnection.restartIce`).
    #[serde(rename = "sfu.restart")]
    SfuRestart { id: String, call_id: Uuid },
    /// Tells the others this participant started or stopped sharing its screen.
    #[serde(rename = "call.share")]
    CallShare {
        id: String,
        call_id: Uuid,
        sharing: bool,
    },
    /// A moderator's action on another participant: muting its microphone
    /// or camera (which the SFU stops forwarding at once), letting it unmute
    /// itself where the room locks moderators' mutes, stopping its screen
    /// share, or removing it from the call. For the room's owner and
    /// moderators and server admins, on those with less say in the room.
    #[serde(rename = "call.moderate")]
    CallModerate {
        id: String,
        call_id: Uuid,
        participant_id: Uuid,
        action: ModerationAction,
    },
}

impl From<ClientFrame> for Dispatched {
    fn from(frame: ClientFrame) -> Self {
        let call = |id, request| Dispatched::Call { id, request };
        match frame {
            ClientFrame::Hello { id, resume } => Dispatched::Hello { id, resume },
            ClientFrame::MessageSend {
                id,
                room_id,
                body,
                client_msg_id,
                reply_to,
                attachments,
            } => Dispatched::MessageSend {
                id,
                room_id,
                body,
                client_msg_id,
                reply_to,
                attachments,
            },
            ClientFrame::MessageEdit {
                id,
                room_id,
                message_id,
                body,
            } => Dispatched::MessageEdit {
                id,
                room_id,
                message_id,
                body,
            },
            ClientFrame::MessageDelete {
                id,
                room_id,
                message_id,
            } => Dispatched::MessageDelete {
                id,
                room_id,
                message_id,
            },
            ClientFrame::Read {
                id,
                room_id,
                message_id,
            } => Dispatched::Read {
                id,
                room_id,
                message_id,
            },
            ClientFrame::TypingStart { id, room_id } => Dispatched::TypingStart { id, room_id },
            ClientFrame::PresenceSet { id, status } => Dispatched::PresenceSet { id, status },
            ClientFrame::AuthRefresh { id, access_token } => {
                Dispatched::AuthRefresh { id, access_token }
            }
            ClientFrame::Ping { id } => Dispatched::Ping { id },
            ClientFrame::CallJoin { id, room_id } => call(id, CallRequest::Join { room_id }),
            ClientFrame::CallLeave { id, call_id } => call(id, CallRequest::Leave { call_id }),
            ClientFrame::CallResume {
                id,
                room_id,
                call_id,
                participant_id,
            } => call(
                id,
                CallRequest::Resume {
                    room_id,
                    call_id,
                    participant_id,
                },
            ),
            ClientFrame::CallOffer {
                id,
                call_id,
                to,
                sdp,
                sources,
            } => call(
                id,
                CallRequest::Offer {
                    call_id,
                    to,
                    sdp,
                    sources,
                },
            ),
            ClientFrame::CallAnswer {
                id,
                call_id,
                to,
                sdp,
                sources,
            } => call(
                id,
                CallRequest::Answer {
                    call_id,
                    to,
                    sdp,
                    sources,
                },
            ),
            ClientFrame::CallIce {
                id,
                call_id,
                to,
                candidate,
            } => call(
                id,
                CallRequest::Ice {
                    call_id,
                    to,
                    candidate,
                },
            ),
            ClientFrame::SfuOffer {
                id,
                call_id,
                sdp,
                sources,
            } => call(
                id,
                CallRequest::SfuOffer {
                    call_id,
                    sdp,
                    sources,
                },
            ),
            ClientFrame::SfuAnswer { id, call_id, sdp } => {
                call(id, CallRequest::SfuAnswer { call_id, sdp })
            }
            ClientFrame::SfuIce {
                id,
                call_id,
                candidate,
            } => call(id, CallRequest::SfuIce { call_id, candidate }),
            ClientFrame::CallMute {
                id,
                call_id,
                kind,
                muted,
            } => call(
                id,
                CallRequest::Mute {
                    call_id,
                    kind,
                    muted,
                },
            ),
            ClientFrame::CallSubscribe {
                id,
                call_id,
                participant_id,
                source,
                paused,
                max_width,
                max_height,
            } => call(
                id,
                CallRequest::Subscribe {
                    call_id,
                    participant_id,
                    source,
                    paused,
                    max_width,
                    max_height,
                },
            ),
            ClientFrame::SfuRestart { id, call_id } => {
                call(id, CallRequest::SfuRestart { call_id })
            }
            ClientFrame::CallShare {
                id,
                call_id,
                sharing,
            } => call(id, CallRequest::Share { call_id, sharing }),
            ClientFrame::CallModerate {
                id,
                call_id,
                participant_id,
                action,
            } => call(
                id,
                CallRequest::Moderate {
                    call_id,
                    participant_id,
                    action,
                },
            ),
        }
    }
}

impl From<Dispatched> for ClientFrame {
    fn from(frame: Dispatched) -> Self {
        match frame {
            Dispatched::Hello { id, resume } => ClientFrame::Hello { id, resume },
            Dispatched::MessageSend {
                id,
                room_id,
                body,
                client_msg_id,
                reply_to,
                attachments,
            } => ClientFrame::MessageSend {
                id,
                room_id,
                body,
                client_msg_id,
                reply_to,
                attachments,
            },
            Dispatched::MessageEdit {
                id,
                room_id,
                message_id,
                body,
            } => ClientFrame::MessageEdit {
                id,
                room_id,
                message_id,
                body,
            },
            Dispatched::MessageDelete {
                id,
                room_id,
                message_id,
            } => ClientFrame::MessageDelete {
                id,
                room_id,
                message_id,
            },
            Dispatched::Read {
                id,
                room_id,
                message_id,
            } => ClientFrame::Read {
                id,
                room_id,
                message_id,
            },
            Dispatched::TypingStart { id, room_id } => ClientFrame::TypingStart { id, room_id },
            Dispatched::PresenceSet { id, status } => ClientFrame::PresenceSet { id, status },
            Dispatched::AuthRefresh { id, access_token } => {
                ClientFrame::AuthRefresh { id, access_token }
            }
            Dispatched::Ping { id } => ClientFrame::Ping { id },
            Dispatched::Call { id, request } => match request {
                CallRequest::Join { room_id } => ClientFrame::CallJoin { id, room_id },
                CallRequest::Leave { call_id } => ClientFrame::CallLeave { id, call_id },
                CallRequest::Resume {
                    room_id,
                    call_id,
                    participant_id,
                } => ClientFrame::CallResume {
                    id,
                    room_id,
                    call_id,
                    participant_id,
                },
                CallRequest::Offer {
                    call_id,
                    to,
                    sdp,
                    sources,
                } => ClientFrame::CallOffer {
                    id,
                    call_id,
                    to,
                    sdp,
                    sources,
                },
                CallRequest::Answer {
                    call_id,
                    to,
                    sdp,
                    sources,
                } => ClientFrame::CallAnswer {
                    id,
                    call_id,
                    to,
                    sdp,
                    sources,
                },
                CallRequest::Ice {
                    call_id,
                    to,
                    candidate,
                } => ClientFrame::CallIce {
                    id,
                    call_id,
                    to,
                    candidate,
                },
                CallRequest::SfuOffer {
                    call_id,
                    sdp,
                    sources,
                } => ClientFrame::SfuOffer {
                    id,
                    call_id,
                    sdp,
                    sources,
                },
                CallRequest::SfuAnswer { call_id, sdp } => {
                    ClientFrame::SfuAnswer { id, call_id, sdp }
                }
                CallRequest::SfuIce { call_id, candidate } => ClientFrame::SfuIce {
                    id,
                    call_id,
                    candidate,
                },
                CallRequest::Mute {
                    call_id,
                    kind,
                    muted,
                } => ClientFrame::CallMute {
                    id,
                    call_id,
                    kind,
                    muted,
                },
                CallRequest::Subscribe {
                    call_id,
                    participant_id,
                    source,
                    paused,
                    max_width,
                    max_height,
                } => ClientFrame::CallSubscribe {
                    id,
                    call_id,
                    participant_id,
                    source,
                    paused,
                    max_width,
                    max_height,
                },
                CallRequest::SfuRestart { call_id } => ClientFrame::SfuRestart { id, call_id },
                CallRequest::Share { call_id, sharing } => ClientFrame::CallShare {
                    id,
                    call_id,
                    sharing,
                },
                CallRequest::Moderate {
                    call_id,
                    participant_id,
                    action,
                } => ClientFrame::CallModerate {
                    id,
                    call_id,
                    participant_id,
                    action,
                },
            },
        }
    }
}
