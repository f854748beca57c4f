//! ICE-lite without the stack's agent (ADR 0020, step 1): a binding request
//! from the other side, checked against this side's password, answered
//! with the address it came from. Used by the media transport Roost
//! assembles itself; the connections on `RTCPeerConnection` answer in
//! `presence`.

use std::net::SocketAddr;

use bytes::BytesMut;
use rtc::crypto::RTCCrypto;
use rtc::stun::attributes::{ATTR_USERNAME, ATTR_USE_CANDIDATE};
use rtc::stun::fingerprint::FINGERPRINT;
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::{Message, BINDING_REQUEST, BINDING_SUCCESS};
use rtc::stun::xoraddr::XorMappedAddress;

/// Whether a datagram is STUN (RFC 7983: first byte 0 to 3, and the magic cookie).
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= 20 && datagram[0] < 4 && datagram[4..8] == [0x21, 0x12, 0xA4, 0x42]
}

/// A binding request answered.
#[derive(Debug)]
pub struct Checked {
    /// The binding success to send back to where the request came from.
    pub response: BytesMut,
    /// Whether the client nominated the pair (USE-CANDIDATE): its media
    /// comes and goes on this path from now on.
    pub nominates: bool,
}

/// The answer to a binding request for `ufrag` (this side's), signed with
/// `pwd`, or `None` for anything else: another message, another ufrag, a
/// bad signature.
pub fn answer(
    request: &[u8],
    from: SocketAddr,
    ufrag: &str,
    pwd: &str,
    crypto: &dyn RTCCrypto,
) -> Option<Checked> {
    let mut message = Message::new();
    message.unmarshal_binary(request).ok()?;
    if message.typ != BINDING_REQUEST {
        return None;
    }
    // USERNAME is "ours:theirs" (RFC 8445 §7.2.2).
    let username = message.get(ATTR_USERNAME).ok()?;
    let ours = username.split(|b| *b == b':').next()?;
    if ours != ufrag.as_bytes() {
        return None;
    }
    MessageIntegrity::check(&mut message, pwd.as_bytes(), crypto).ok()?;
    let mut response = Message::new();
    response
        .build(&[
            Box::new(BINDING_SUCCESS),
            Box::new(message.transaction_id),
            Box::new(XorMappedAddress {
                ip: from.ip(),
                port: from.port(),
            }),
            Box::new(MessageIntegrity::new_short_term_integrity_with_provider(
                pwd.to_owned(),
                crypto,
            )),
            Box::new(FINGERPRINT),
        ])
        .ok()?;
    Some(Checked {
        response: BytesMut::from(&response.raw[..]),
        nominates: message.contains(ATTR_USE_CANDIDATE),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::nominating_request;
    use rtc::stun::message::Getter;

    fn creds(ufrag: &str, pwd: &str) -> (String, String) {
        (ufrag.to_owned(), pwd.to_owned())
    }

    #[test]
    fn a_signed_check_for_this_side_is_answered_and_nothing_else_is() {
        let provider = rtc::crypto::default_provider().unwrap();
        let crypto = provider.crypto();
        let from = SocketAddr::from(([127, 0, 0, 5], 40_000));
        let client = creds("client", "client-password-0123456789");
        let ours = creds("roostlite", "roost-lite-password-0123456789");
        let request = nominating_request(&client, &ours).unwrap();
        assert!(is_stun(&request));
        let checked = answer(&request, from, &ours.0, &ours.1, crypto).expect("answered");
        assert!(checked.nominates, "the request carries USE-CANDIDATE");
        let response = checked.response;
        assert_eq!(&response[..2], &[0x01, 0x01], "a binding success");
        assert_eq!(
            &response[8..20],
            &request[8..20],
            "for the same transaction"
        );
        let mut parsed = Message::new();
        parsed.unmarshal_binary(&response).unwrap();
        let mut mapped = XorMappedAddress::default();
        mapped.get_from(&parsed).unwrap();
        assert_eq!(SocketAddr::new(mapped.ip, mapped.port), from);
        MessageIntegrity::check(&mut parsed, ours.1.as_bytes(), crypto)
            .expect("signed with our password");

        // Signed with another password, or for another ufrag: no answer.
        let forged =
            nominating_request(&client, &creds("roostlite", "not-the-password-0123456789"))
                .unwrap();
        assert!(answer(&forged, from, &ours.0, &ours.1, crypto).is_none());
        let other = nominating_request(&client, &creds("someone", &ours.1)).unwrap();
        assert!(answer(&other, from, &ours.0, &ours.1, crypto).is_none());
        // An answer is not a request; noise is not STUN.
        assert!(answer(&response, from, &ours.0, &ours.1, crypto).is_none());
        assert!(!is_stun(b"\x80\x60 not stun at all, an RTP packet"));
        assert!(answer(&[0u8; 24], from, &ours.0, &ours.1, crypto).is_none());
    }
}
