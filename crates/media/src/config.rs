//! How an engine is set up: where it listens, what it tells clients, and
//! its limits.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Where the engine listens and what it tells clients.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The one UDP address every peer shares.
    pub listen: SocketAddr,
    /// Addresses put in answers and offers as host candidates (a public or
    /// NAT 1:1 address). Empty: the listening address, which must then be a
    /// specific one.
    pub advertised_ips: Vec<IpAddr>,
    /// Media loops; each owns the participants placed on it. 0: one per core.
    pub loops: usize,
    /// Participants of one call a loop takes before the call spreads to
    /// other loops, so that a large call uses every core (each publisher's
    /// packets then cross once to each of the call's other loops). 0: a
    /// call never leaves its first loop.
    pub spread_after: usize,
    /// Datagrams queued for one media loop before the receive loop drops
    /// more (UDP semantics: a loop that falls behind loses, never blocks).
    pub loop_queue: usize,
    /// The socket's send and receive buffers, in bytes (the kernel caps them).
    pub socket_buffer: usize,
    /// Whether several datagrams for one address in a batch go to the
    /// kernel as one message it cuts up (UDP GSO, Linux). Turned off by
    /// itself where the kernel refuses it.
    pub gso: bool,
    /// Packets kept per forwarded video stream to resend on a subscriber's
    /// NACK: a power of two from 64 to 32,768.
    pub retransmit_history: u16,
    /// How often a packet is resent to one subscriber, and how much of its
    /// stream's rate retransmissions may add (see [`crate::retransmit`]).
    pub retransmit_limits: crate::RetransmitLimits,
    /// Whether each subscriber's video is fitted to its connection's
    /// estimated bandwidth (ADR 0026), probing for more when it is short
    /// of what the sizes call for (ADR 0029): smaller layers, and tracks
    /// held back, on a short link. Off, a subscriber gets the layer its
    /// size calls for whatever its link carries. Off by default for now
    /// (ADR 0029).
    pub allocate_bandwidth: bool,
    /// Keyframe requests forwarded to a publisher per track, at most one per this interval.
    pub keyframe_interval: Duration,
    /// A peer silent this long counts as disconnected, and after
    /// `peer_failed` more as gone: it leaves the call.
    pub peer_disconnected: Duration,
    pub peer_failed: Duration,
}

impl EngineConfig {
    /// Whether `packets` is a history the NACK responder can keep: a power
    /// of two from 64 to 32,768 (anything else would silently keep none).
    pub fn retransmit_history_valid(packets: u16) -> bool {
        (64..=32_768).contains(&packets) && packets.is_power_of_two()
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 7882)),
            advertised_ips: Vec::new(),
            loops: 0,
            spread_after: 32,
            loop_queue: 4096,
            socket_buffer: 4 << 20,
            gso: true,
            retransmit_history: 512,
            retransmit_limits: crate::RetransmitLimits::default(),
            allocate_bandwidth: false,
            keyframe_interval: Duration::from_millis(500),
            peer_disconnected: Duration::from_secs(5),
            peer_failed: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmit_histories_are_powers_of_two_in_range() {
        for ok in [64, 512, 32_768] {
            assert!(EngineConfig::retransmit_history_valid(ok), "{ok}");
        }
        for bad in [0, 32, 63, 100, 1000, 65_535] {
            assert!(!EngineConfig::retransmit_history_valid(bad), "{bad}");
        }
    }
}
