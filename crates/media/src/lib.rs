//! roost-media: the SFU. It owns the UDP socket, drives WebRTC peer
//! connections, and forwards RTP between them. It knows nothing of HTTP,
//! SQL or accounts: participants and calls are opaque ids from signaling.
//!
//! # Layout
//! - [`engine`]: the socket, the receive loop that routes datagrams, the
//!   handle signaling holds, and each media loop's task, which owns the IO
//!   around the loop's state: the only async code of the engine.
//! - `sfu`: one media loop's state machine, sans-IO: the peers of its calls
//!   and forwarding between publishers and subscribers; time comes in with
//!   each input and its work comes back through `poll_output`.
//! - `udp`: sending a loop's datagrams in groups (`sendmmsg`).
//! - [`peer`]: one peer connection; the only module of the server that
//!   touches the `rtc` stack (`peer/`: the connection in `mod.rs`, the
//!   ICE-lite side in `presence.rs`, SDP handling in `sdp.rs`, codecs in
//!   `codecs.rs`, the interceptor chain in `interceptors.rs`).
//! - [`retransmit`]: how much a subscriber's NACKs may make the engine resend.
//! - [`demux`]: which peer a datagram on the shared port belongs to.
//! - [`munger`]: a subscriber's view of a stream (SSRC, sequence numbers,
//!   timestamps), as pure arithmetic.
//! - `keyframe`: whether a packet starts a keyframe, from its codec's
//!   payload header.
//! - [`client`]: a WebRTC client on the same stack, for tests and the load
//!   tool; it builds its nominating check from the stack's STUN and ICE types.

#[doc(hidden)]
pub mod bench;
pub mod client;
pub mod config;
pub mod demux;
pub mod engine;
pub mod events;
#[doc(hidden)]
pub mod fuzz;
mod h264;
#[doc(hidden)]
pub mod harness;
mod keyframe;
pub mod munger;
pub mod peer;
mod placement;
pub mod retransmit;
mod sfu;
mod udp;
pub mod vp8;

pub use config::EngineConfig;
pub use engine::Engine;
pub use events::{EngineEvent, EngineStats, OfferedTrack, Source, Subscription};
pub use peer::Kind;
pub use retransmit::RetransmitLimits;

/// A failure of the media engine.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// An SDP that could not be applied (malformed, or not what was expected now).
    #[error("session description refused: {0}")]
    Sdp(String),
    /// The WebRTC stack refused an operation.
    #[error("media stack: {0}")]
    Stack(String),
    /// An answer that does not answer the offer made, or comes from
    /// another connection than the one the offer was for.
    #[error("the answer does not match the offer: {0}")]
    Mismatch(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A track whose media section the other side has not been given yet
    /// (refused for every packet until then, so it allocates nothing).
    #[error("the track's media section is not negotiated yet")]
    NotNegotiated,
    #[error("{0}")]
    Conflict(String),
    #[error("invalid media configuration: {0}")]
    Config(String),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The engine's loop has stopped.
    #[error("the media engine has stopped")]
    Stopped,
}
