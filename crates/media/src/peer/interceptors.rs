//! The interceptor chain of a client's connection ([`super::Peer`]): Roost's
//! own (keyframe requests, the retransmission budget of
//! [`crate::retransmit`]) and webrtc-rs's for both directions.

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{
    Attribute, Interceptor, NackGeneratorBuilder, NackResponderBuilder, Packet,
    ReceiverReportBuilder, Registry, SenderReportBuilder, Slot, StreamInfo, TaggedPacket,
    TwccReceiverBuilder, TwccSenderBuilder,
};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    nack_pairs_from_sequence_numbers, TransportLayerNack,
};
use rtc::sansio::Protocol;

use super::PeerSetup;
use crate::retransmit::{RetransmitLimits, Retransmits};

/// The interceptor chain of a client's connection: Roost's keyframe
/// requests and retransmission budget; webrtc-rs's NACK responder and
/// sender reports for what it sends, its NACK generator, receiver reports
/// and transport-wide feedback for what it receives, and transport-wide
/// sequence numbers on what it sends, as browsers write them, so the
/// engine's congestion feedback meets them in tests and loads.
pub(super) fn interceptors(setup: &PeerSetup) -> Registry {
    Registry::new()
        .with(Slot::from(14_000), KeyframeRequests::default())
        .with(
            Slot::from(RETRANSMIT_BUDGET_SLOT),
            RetransmitBudget::new(setup.retransmit_limits, setup.retransmit_history),
        )
        .with(
            Slot::NackResponder,
            NackResponderBuilder::new()
                .with_size(setup.retransmit_history)
                .build(),
        )
        .with(Slot::SenderReport, SenderReportBuilder::new().build())
        .with(Slot::TwccSender, TwccSenderBuilder::new().build())
        .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
        .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build())
        .with(Slot::TwccReceiver, TwccReceiverBuilder::new().build())
}

/// Marks inbound keyframe requests (PLI, FIR) for the engine; everything
/// else the interceptors handle themselves (NACKs are answered by the NACK
/// responder, reports feed the statistics).
#[derive(Default)]
struct KeyframeRequests {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let wanted = packets.iter().any(|p| {
                let any = p.as_any();
                any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
            });
            if wanted {
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        None
    }
}

impl Interceptor for KeyframeRequests {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// Where [`RetransmitBudget`] sits: between the wire and the NACK
/// responder, so a NACK reaches the responder only with what it may resend.
const RETRANSMIT_BUDGET_SLOT: usize = 3_900;

/// Bounds what a subscriber's NACKs make the connection resend (see
/// [`crate::retransmit`]): it sees every packet sent, as the NACK
/// responder's history does, learns the round trip from the receiver's
/// reports, and strips from each inbound NACK the sequence numbers that may
/// not be resent now. A NACK left with none goes no further.
struct RetransmitBudget {
    state: Retransmits,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl RetransmitBudget {
    fn new(limits: RetransmitLimits, history: u16) -> RetransmitBudget {
        RetransmitBudget {
            state: Retransmits::new(limits, history),
            read: VecDeque::new(),
            write: VecDeque::new(),
        }
    }

    /// The part of `nack` that may be resent now, if any.
    fn admit(&mut self, nack: &TransportLayerNack, now: Instant) -> Option<TransportLayerNack> {
        let mut allowed = Vec::new();
        for pair in &nack.nacks {
            for seq in pair.packet_list() {
                if self.state.allow(nack.media_ssrc, seq, now) {
                    allowed.push(seq);
                }
            }
        }
        let refused = self.state.refused();
        if allowed.is_empty() {
            tracing::trace!(ssrc = nack.media_ssrc, refused, "a NACK refused whole");
            return None;
        }
        Some(TransportLayerNack {
            sender_ssrc: nack.sender_ssrc,
            media_ssrc: nack.media_ssrc,
            nacks: nack_pairs_from_sequence_numbers(&allowed),
        })
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RetransmitBudget {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        let now = msg.now;
        if let Packet::Rtcp(packets) = &mut msg.message.packet {
            let mut kept: Vec<Box<dyn rtc::rtcp::Packet>> = Vec::with_capacity(packets.len());
            for p in packets.drain(..) {
                let any = p.as_any();
                if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                    if let Some(admitted) = self.admit(nack, now) {
                        kept.push(Box::new(admitted));
                    }
                    continue;
                }
                let reports = if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                    &rr.reports[..]
                } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                    &sr.reports[..]
                } else {
                    &[]
                };
                for report in reports {
                    if self.state.tracks(report.ssrc) {
                        self.state
                            .report_received(report.last_sender_report, report.delay, now);
                    }
                }
                kept.push(p);
            }
            if kept.is_empty() {
                return Ok(());
            }
            *packets = kept;
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        match &msg.message.packet {
            // Retransmissions were counted when their NACK was admitted.
            Packet::Rtp(_) if msg.message.has(&Attribute::Retransmission) => {}
            Packet::Rtp(p) => {
                use rtc::shared::marshal::MarshalSize;
                let bytes = p.header.marshal_size() + p.payload.len();
                self.state
                    .sent(p.header.ssrc, p.header.sequence_number, bytes, msg.now);
            }
            Packet::Rtcp(packets) => {
                for sr in packets
                    .iter()
                    .filter_map(|p| p.as_any().downcast_ref::<SenderReport>())
                {
                    self.state.report_sent(sr.ntp_time, msg.now);
                }
            }
            _ => {}
        }
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        None
    }
}

impl Interceptor for RetransmitBudget {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        // The streams the NACK responder keeps a history for.
        let nack = info
            .rtcp_feedback
            .iter()
            .any(|fb| fb.typ == "nack" && fb.parameter.is_empty());
        if nack {
            self.state.track(info.ssrc);
        }
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.state.untrack(info.ssrc);
    }
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_chain_carries_both_directions_and_roosts_own() {
        let slots: Vec<Slot> = interceptors(&PeerSetup::client("127.0.0.1:9".parse().unwrap()))
            .slots()
            .into_iter()
            .map(|(slot, _)| slot)
            .collect();
        for slot in [
            Slot::from(14_000),
            Slot::from(RETRANSMIT_BUDGET_SLOT),
            Slot::NackResponder,
            Slot::SenderReport,
            Slot::TwccSender,
            Slot::NackGenerator,
            Slot::ReceiverReport,
            Slot::TwccReceiver,
        ] {
            assert!(slots.contains(&slot), "{slot:?} in {slots:?}");
        }
    }
}
