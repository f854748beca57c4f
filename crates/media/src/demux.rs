//! Which peer a datagram on the shared UDP port belongs to.
//!
//! Every peer of the engine shares one port, so the engine routes each
//! datagram itself: a STUN binding request names its peer in the USERNAME
//! attribute (`<our ufrag>:<their ufrag>`); once the peer's ICE agent has
//! found such a request's integrity good, its address is learnt
//! ([`Demux::learn`]) and every later datagram from that address goes to
//! the peer by one hash lookup. Anything else is dropped.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;

/// What a datagram is, from its first byte (RFC 7983).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stun,
    Dtls,
    Rtp,
    Unknown,
}

pub fn classify(datagram: &[u8]) -> Kind {
    match datagram.first() {
        Some(0..=3) => Kind::Stun,
        Some(20..=63) => Kind::Dtls,
        Some(128..=191) => Kind::Rtp,
        _ => Kind::Unknown,
    }
}

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const BINDING_REQUEST: u16 = 0x0001;
const ATTR_USERNAME: u16 = 0x0006;
const HEADER_LEN: usize = 20;

/// The local ufrag named by a STUN binding request (the part of USERNAME
/// before the colon), or `None` for anything that is not a well-formed one.
pub fn binding_request_ufrag(datagram: &[u8]) -> Option<&[u8]> {
    let username = binding_request_attr(datagram, ATTR_USERNAME)?;
    let local = username.split(|&b| b == b':').next()?;
    (!local.is_empty()).then_some(local)
}

/// The value of the first attribute of type `wanted` in a well-formed STUN
/// binding request, or `None`.
pub fn binding_request_attr(datagram: &[u8], wanted: u16) -> Option<&[u8]> {
    if datagram.len() < HEADER_LEN || datagram[4..8] != MAGIC_COOKIE {
        return None;
    }
    let msg_type = u16::from_be_bytes([datagram[0], datagram[1]]);
    let body_len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    if msg_type != BINDING_REQUEST || body_len % 4 != 0 || HEADER_LEN + body_len > datagram.len() {
        return None;
    }
    let mut attrs = &datagram[HEADER_LEN..HEADER_LEN + body_len];
    while attrs.len() >= 4 {
        let ty = u16::from_be_bytes([attrs[0], attrs[1]]);
        let len = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
        let value = attrs.get(4..4 + len)?;
        if ty == wanted {
            return Some(value);
        }
        // Attributes are padded to a multiple of four bytes.
        let padded = 4 + len.div_ceil(4) * 4;
        attrs = attrs.get(padded..)?;
    }
    None
}

/// Routes datagrams to peers identified by `K`.
#[derive(Debug)]
pub struct Demux<K> {
    by_ufrag: HashMap<Box<[u8]>, K>,
    by_addr: HashMap<SocketAddr, K>,
    /// Addresses learnt per peer, so removing a peer forgets them.
    addrs_of: HashMap<K, Vec<SocketAddr>>,
    /// The most addresses one peer may claim (its candidate pairs).
    max_addrs_per_peer: usize,
}

impl<K: Copy + Eq + Hash> Demux<K> {
    pub fn new(max_addrs_per_peer: usize) -> Self {
        Demux {
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            addrs_of: HashMap::new(),
            max_addrs_per_peer,
        }
    }

    /// Registers a peer by the ICE ufrag the engine gave it.
    pub fn add(&mut self, ufrag: &str, peer: K) {
        self.by_ufrag.insert(ufrag.as_bytes().into(), peer);
        self.addrs_of.entry(peer).or_default();
    }

    /// Forgets one ufrag of a peer (its credentials from before two ICE
    /// restarts), keeping its addresses.
    pub fn forget_ufrag(&mut self, ufrag: &str, peer: K) {
        if self.by_ufrag.get(ufrag.as_bytes()) == Some(&peer) {
            self.by_ufrag.remove(ufrag.as_bytes());
        }
    }

    /// Forgets a peer and every address it sent from.
    pub fn remove(&mut self, ufrag: &str, peer: K) {
        if self.by_ufrag.get(ufrag.as_bytes()) == Some(&peer) {
            self.by_ufrag.remove(ufrag.as_bytes());
        }
        for addr in self.addrs_of.remove(&peer).unwrap_or_default() {
            if self.by_addr.get(&addr) == Some(&peer) {
                self.by_addr.remove(&addr);
            }
        }
    }

    /// The peer a datagram from `from` belongs to: the peer that address
    /// was learnt for, or for a binding request from an address not learnt,
    /// the peer its ufrag names. Such a request teaches nothing until the
    /// peer's ICE agent has checked its integrity ([`Demux::learn`]), so a
    /// stranger who saw a ufrag cannot push the peer's own addresses out.
    pub fn route(&self, datagram: &[u8], from: SocketAddr) -> Option<K> {
        if let Some(&peer) = self.by_addr.get(&from) {
            return Some(peer);
        }
        let ufrag = binding_request_ufrag(datagram)?;
        self.by_ufrag.get(ufrag).copied()
    }

    /// A binding request from `from` passed `peer`'s integrity check: the
    /// address is the peer's, and among its latest. Past the peer's bound,
    /// its oldest address is forgotten, so a client that moves (a new
    /// network, a new NAT binding) is always reached, and the path in use,
    /// checked again every few seconds, never is.
    pub fn learn(&mut self, from: SocketAddr, peer: K) {
        let Some(addrs) = self.addrs_of.get_mut(&peer) else {
            // Removed meanwhile.
            return;
        };
        if let Some(at) = addrs.iter().position(|a| *a == from) {
            let addr = addrs.remove(at);
            addrs.push(addr);
            return;
        }
        if self.by_addr.contains_key(&from) {
            // Another peer's: a datagram from there goes to that one.
            return;
        }
        if addrs.len() >= self.max_addrs_per_peer.max(1) {
            let oldest = addrs.remove(0);
            if self.by_addr.get(&oldest) == Some(&peer) {
                self.by_addr.remove(&oldest);
            }
        }
        addrs.push(from);
        self.by_addr.insert(from, peer);
    }

    /// The peer a ufrag names.
    pub fn peer_of(&self, ufrag: &str) -> Option<K> {
        self.by_ufrag.get(ufrag.as_bytes()).copied()
    }

    pub fn peers(&self) -> usize {
        self.by_ufrag.len()
    }

    pub fn addresses(&self) -> usize {
        self.by_addr.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binding request with the given USERNAME and a trailing attribute.
    fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        // PRIORITY, as a browser sends it after USERNAME.
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        let mut msg = Vec::new();
        msg.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
        msg.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        msg.extend_from_slice(&MAGIC_COOKIE);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&attrs);
        msg
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn binding_requests_name_their_peer_then_the_address_does() {
        let mut d = Demux::new(4);
        d.add("abcd", 1u32);
        d.add("wxyz", 2u32);
        assert_eq!(
            d.route(&binding_request("wxyz:remote"), addr(5000)),
            Some(2)
        );
        assert_eq!(
            d.route(&[0x80, 0x60, 0, 1], addr(5000)),
            None,
            "nothing learnt before the peer checked the request"
        );
        d.learn(addr(5000), 2);
        assert_eq!(
            d.route(&[0x80, 0x60, 0, 1], addr(5000)),
            Some(2),
            "RTP from a learnt address"
        );
        assert_eq!(
            d.route(&[0x80, 0x60, 0, 1], addr(5001)),
            None,
            "RTP from an unknown address"
        );
        assert_eq!(d.route(&binding_request("nope:remote"), addr(5002)), None);
        assert_eq!(d.route(&binding_request("abcd:r"), addr(5003)), Some(1));
        d.learn(addr(5003), 1);
        // An address learnt for one peer stays its own.
        d.learn(addr(5003), 2);
        assert_eq!(d.route(&[0x80, 0], addr(5003)), Some(1));
        d.remove("wxyz", 2);
        assert_eq!(
            d.route(&[0x80, 0x60, 0, 1], addr(5000)),
            None,
            "forgotten with its peer"
        );
        assert_eq!(d.addresses(), 1);
    }

    #[test]
    fn a_peer_claims_a_bounded_number_of_addresses() {
        let mut d = Demux::new(2);
        d.add("abcd", 1u32);
        for port in 0..10 {
            assert_eq!(
                d.route(&binding_request("abcd:r"), addr(6000 + port)),
                Some(1)
            );
            d.learn(addr(6000 + port), 1);
        }
        assert_eq!(d.addresses(), 2);
        // The latest two are known; the first ones were forgotten.
        assert_eq!(d.route(&[0x80, 0], addr(6009)), Some(1));
        assert_eq!(d.route(&[0x80, 0], addr(6008)), Some(1));
        assert_eq!(d.route(&[0x80, 0], addr(6000)), None);
        // A check from the older of the two keeps it: the next new one
        // takes the other's place.
        d.learn(addr(6008), 1);
        d.learn(addr(6100), 1);
        assert_eq!(d.route(&[0x80, 0], addr(6008)), Some(1));
        assert_eq!(d.route(&[0x80, 0], addr(6009)), None);
    }

    #[test]
    fn requests_that_fail_their_check_push_no_address_out() {
        let mut d = Demux::new(2);
        d.add("abcd", 1u32);
        d.learn(addr(6000), 1);
        // A stranger who saw the ufrag sends from many addresses; the
        // peer's agent refuses each, so none is learnt.
        for port in 1..100 {
            assert_eq!(
                d.route(&binding_request("abcd:r"), addr(6000 + port)),
                Some(1)
            );
        }
        assert_eq!(d.addresses(), 1);
        assert_eq!(d.route(&[0x80, 0], addr(6000)), Some(1));
        // Learning for a peer removed meanwhile does nothing.
        d.remove("abcd", 1);
        d.learn(addr(6001), 1);
        assert_eq!(d.addresses(), 0);
    }

    #[test]
    fn a_forgotten_ufrag_names_no_peer_and_its_addresses_stay() {
        let mut d = Demux::new(4);
        d.add("old", 1u32);
        d.add("new", 1u32);
        assert_eq!(d.route(&binding_request("old:r"), addr(7000)), Some(1));
        d.learn(addr(7000), 1);
        d.forget_ufrag("old", 1);
        assert_eq!(d.route(&binding_request("old:r"), addr(7001)), None);
        assert_eq!(d.route(&[0x80, 0], addr(7000)), Some(1));
        assert_eq!(d.route(&binding_request("new:r"), addr(7002)), Some(1));
        d.remove("new", 1);
        assert_eq!(
            d.route(&[0x80, 0], addr(7000)),
            None,
            "removed with its addresses"
        );
    }

    #[test]
    fn first_bytes_tell_the_protocol() {
        assert_eq!(classify(&binding_request("a:b")), Kind::Stun);
        assert_eq!(classify(&[22, 254, 253]), Kind::Dtls);
        assert_eq!(classify(&[0x80, 0x00]), Kind::Rtp);
        assert_eq!(classify(&[]), Kind::Unknown);
        assert_eq!(classify(&[255]), Kind::Unknown);
    }

    proptest::proptest! {
        #[test]
        fn any_datagram_is_routed_or_dropped_without_panicking(data: Vec<u8>, port: u16) {
            let mut d = Demux::new(4);
            d.add("abcd", 1u32);
            let _ = d.route(&data, addr(port));
            let _ = classify(&data);
        }

        #[test]
        fn truncated_binding_requests_never_panic(cut in 0usize..64) {
            let msg = binding_request("abcd:remote");
            let _ = binding_request_ufrag(&msg[..cut.min(msg.len())]);
        }
    }
}
