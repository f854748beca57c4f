//! Sending a media loop's datagrams with as few system calls as the
//! platform allows: on Linux, `sendmmsg` with up to [`GROUP`] messages a
//! call, and UDP generic segmentation offload (GSO) where a batch holds
//! several datagrams for one address, as when a frame's packets reach a
//! subscriber: they go as one message the kernel cuts into datagrams, so
//! the stack is walked once for the group. Elsewhere, one `send_to` each.
//! Either way the loop writes straight into the socket's buffer and waits
//! only when it is full.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use tokio::net::UdpSocket;

/// Messages handed to the kernel in one call at most.
pub(crate) const GROUP: usize = 64;

/// Asks for `bytes` of send and receive buffer on `socket`; the kernel
/// grants up to its maximum (`net.core.wmem_max`, `net.core.rmem_max`).
pub(crate) fn size_buffers(socket: &UdpSocket, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::socket::{setsockopt, sockopt};
        let sent = setsockopt(socket, sockopt::SndBuf, &bytes);
        let received = setsockopt(socket, sockopt::RcvBuf, &bytes);
        if let Err(e) = sent.and(received) {
            tracing::warn!(error = %e, bytes, "the media socket's buffers could not be sized");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (socket, bytes);
}

/// Datagrams one GSO message carries at most (the kernel's limit was 64
/// until Linux 6.9).
const SEGMENTS: usize = 64;

/// Bytes of payload one GSO message carries at most: below what one IP
/// datagram holds, with room for either version's headers.
const MESSAGE_BYTES: usize = 65_000;

/// One message handed to the kernel: `count` datagrams from `first` in the
/// planned order, all of `segment` bytes but the last, which may be
/// shorter. One datagram alone is a message of its own length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Message {
    first: u32,
    count: u16,
    segment: u16,
}

impl Message {
    /// The datagram at `first` in the planned order, `len` bytes, alone.
    fn single(first: u32, len: usize) -> Message {
        Message {
            first,
            count: 1,
            segment: len.min(usize::from(u16::MAX)) as u16,
        }
    }
}

/// A media loop's sending state: whether the socket takes GSO, shared by
/// the loops of one socket (the first refusal turns it off for all), and
/// room for planning a batch, kept between batches.
pub(crate) struct Sender {
    gso: Arc<AtomicBool>,
    /// The batch's datagrams, each destination's together, in the order
    /// they were queued.
    order: Vec<(SocketAddr, u32)>,
    messages: Vec<Message>,
}

impl Sender {
    /// `gso`: whether to try segmentation offload (Linux only; ignored
    /// elsewhere), shared by every loop of the socket.
    pub(crate) fn new(gso: Arc<AtomicBool>) -> Sender {
        Sender {
            gso,
            order: Vec::new(),
            messages: Vec::new(),
        }
    }

    /// Sends every datagram of `out` and empties it. Each destination gets
    /// its datagrams in the order they were queued; a datagram the kernel
    /// refuses (an unreachable address, say) is logged and skipped.
    pub(crate) async fn send_all(
        &mut self,
        socket: &UdpSocket,
        out: &mut Vec<(SocketAddr, BytesMut)>,
    ) {
        let gso = cfg!(target_os = "linux") && self.gso.load(Ordering::Relaxed);
        plan(out, gso, &mut self.order, &mut self.messages);
        let mut next = 0;
        while next < self.messages.len() {
            let (n, segment) = run(&self.messages[next..]);
            let these = &self.messages[next..next + n];
            match send_some(socket, out, &self.order, these, segment) {
                Ok(n) => next += n.max(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = socket.writable().await {
                        tracing::debug!(error = %e, "the media socket failed");
                        break;
                    }
                }
                // The kernel refuses segmentation where the route cannot
                // checksum for it (EIO): the socket never will, and the rest
                // of the batch goes without it.
                Err(e) if segment.is_some() && e.raw_os_error() == Some(EIO) => {
                    if self.gso.swap(false, Ordering::Relaxed) {
                        tracing::info!(error = %e, "the media socket cannot use UDP segmentation offload; sending datagrams one by one");
                    }
                    let end = self.messages.len();
                    unbundle(&mut self.messages, next..end, out, &self.order);
                }
                // Any other refusal of a message of several datagrams (one
                // larger than the route's MTU, say): its datagrams go again
                // one by one, and those refused alone are skipped.
                Err(_) if self.messages[next].count > 1 => {
                    unbundle(&mut self.messages, next..next + 1, out, &self.order);
                }
                Err(e) => {
                    let at = self.order[self.messages[next].first as usize].0;
                    tracing::debug!(error = %e, to = %at, "sending a datagram failed");
                    next += 1;
                }
            }
        }
        out.clear();
    }
}

/// The kernel's answer to segmentation a route cannot take.
#[cfg(target_os = "linux")]
const EIO: i32 = nix::errno::Errno::EIO as i32;
#[cfg(not(target_os = "linux"))]
const EIO: i32 = 5;

/// Plans the messages of a batch. Without `gso`, one per datagram in the
/// order queued. With it, each destination's datagrams are put together,
/// in their order, and cut into messages of equal-sized datagrams with at
/// most a shorter last one, within the kernel's limits.
fn plan(
    out: &[(SocketAddr, BytesMut)],
    gso: bool,
    order: &mut Vec<(SocketAddr, u32)>,
    messages: &mut Vec<Message>,
) {
    order.clear();
    messages.clear();
    order.extend(out.iter().enumerate().map(|(i, (to, _))| (*to, i as u32)));
    if !gso || out.len() < 2 {
        messages.extend((0..out.len() as u32).map(|i| Message::single(i, out[i as usize].1.len())));
        return;
    }
    // By destination, then by position: each destination's datagrams stay
    // in their order.
    order.sort_unstable();
    let len = |at: usize| out[order[at].1 as usize].1.len();
    let mut at = 0;
    while at < order.len() {
        let segment = len(at);
        let mut count = 1;
        let mut bytes = segment;
        // A datagram too large for a segment, or the only one left, goes alone.
        // (An empty one too: the kernel would send one empty datagram for
        // a message of several.)
        let mut open = segment > 0 && segment <= usize::from(u16::MAX);
        while open && at + count < order.len() && order[at + count].0 == order[at].0 {
            let next = len(at + count);
            if next == 0 || next > segment || count == SEGMENTS || bytes + next > MESSAGE_BYTES {
                break;
            }
            count += 1;
            bytes += next;
            // A shorter datagram can only end a message.
            open = next == segment;
        }
        messages.push(Message {
            count: count as u16,
            ..Message::single(at as u32, segment)
        });
        at += count;
    }
}

/// Replaces the messages in `range` by one message per datagram.
fn unbundle(
    messages: &mut Vec<Message>,
    range: std::ops::Range<usize>,
    out: &[(SocketAddr, BytesMut)],
    order: &[(SocketAddr, u32)],
) {
    let (Some(first), Some(last)) = (
        messages.get(range.start),
        range.end.checked_sub(1).and_then(|l| messages.get(l)),
    ) else {
        return;
    };
    let datagrams = first.first..last.first + u32::from(last.count);
    let singles: Vec<Message> = datagrams
        .map(|i| Message::single(i, out[order[i as usize].1 as usize].1.len()))
        .collect();
    messages.splice(range, singles);
}

/// How many of `messages` from the first can go in one `sendmmsg`, and the
/// segment size they share: messages of several datagrams need the same
/// one, and a datagram alone must not be longer than it, or the kernel
/// would cut it.
fn run(messages: &[Message]) -> (usize, Option<u16>) {
    let mut segment: Option<u16> = None;
    let mut longest_single = 0u16;
    let mut n = 0;
    for m in messages.iter().take(GROUP) {
        if m.count > 1 {
            match segment {
                None if longest_single <= m.segment => segment = Some(m.segment),
                Some(s) if s == m.segment => {}
                _ => break,
            }
        } else {
            if segment.is_some_and(|s| m.segment > s) {
                break;
            }
            longest_single = longest_single.max(m.segment);
        }
        n += 1;
    }
    (n, segment)
}

/// Sends a first part of `messages` (a [`run`], with the segment size
/// they share); returns how many went.
#[cfg(target_os = "linux")]
fn send_some(
    socket: &UdpSocket,
    out: &[(SocketAddr, BytesMut)],
    order: &[(SocketAddr, u32)],
    messages: &[Message],
    segment: Option<u16>,
) -> io::Result<usize> {
    use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;

    let n = messages.len();
    let slices: Vec<IoSlice<'_>> = messages
        .iter()
        .flat_map(|m| (m.first..m.first + u32::from(m.count)).map(|i| &order[i as usize]))
        .map(|(_, i)| IoSlice::new(&out[*i as usize].1))
        .collect();
    let mut rest = &slices[..];
    let per_message: Vec<&[IoSlice<'_>]> = messages
        .iter()
        .map(|m| {
            let (these, after) = rest.split_at(usize::from(m.count));
            rest = after;
            these
        })
        .collect();
    let addrs: Vec<Option<SockaddrStorage>> = messages
        .iter()
        .map(|m| Some(SockaddrStorage::from(order[m.first as usize].0)))
        .collect();
    let space = segment.map(|_| nix::cmsg_space!(u16));
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(n, space);
    let size = segment.unwrap_or(0);
    let gso = [ControlMessage::UdpGsoSegments(&size)];
    let cmsgs: &[ControlMessage<'_>] = if segment.is_some() { &gso } else { &[] };
    socket.try_io(tokio::io::Interest::WRITABLE, || {
        // The kernel reports an error only when the first message failed;
        // after that it returns how many went.
        sendmmsg(
            socket.as_raw_fd(),
            &mut headers,
            &per_message,
            &addrs,
            cmsgs,
            MsgFlags::empty(),
        )
        .map(|sent| sent.count())
        .map_err(io::Error::from)
    })
}

#[cfg(not(target_os = "linux"))]
fn send_some(
    socket: &UdpSocket,
    out: &[(SocketAddr, BytesMut)],
    order: &[(SocketAddr, u32)],
    messages: &[Message],
    _segment: Option<u16>,
) -> io::Result<usize> {
    let (to, i) = order[messages[0].first as usize];
    socket.try_send_to(&out[i as usize].1, to).map(|_| 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn buffers_grow_as_far_as_the_kernel_allows() {
        use nix::sys::socket::{getsockopt, sockopt};
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let before = getsockopt(&socket, sockopt::SndBuf).unwrap();
        let max = |name: &str| -> usize {
            std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let asked = 4 * before;
        size_buffers(&socket, asked);
        // The kernel doubles what it grants, for its own bookkeeping.
        assert!(getsockopt(&socket, sockopt::SndBuf).unwrap() >= asked.min(max("wmem_max")));
        assert!(getsockopt(&socket, sockopt::RcvBuf).unwrap() >= asked.min(max("rmem_max")));
    }

    /// More datagrams than one group, to two receivers, one of them an
    /// address nobody can send to: every deliverable one arrives, in order.
    #[tokio::test]
    async fn sends_every_datagram_in_order_and_skips_refused_ones() {
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // Sorted last, so that with GSO the deliverable ones go segmented
        // before the refusal. The kernel refuses port 0 before sending
        // anything, so nothing leaves loopback.
        let refused: SocketAddr = "255.255.255.255:0".parse().unwrap();
        let mut out = Vec::new();
        for i in 0..150u32 {
            let to = match i % 3 {
                0 => a.local_addr().unwrap(),
                1 => b.local_addr().unwrap(),
                _ => refused,
            };
            out.push((to, BytesMut::from(&i.to_be_bytes()[..])));
        }
        for gso in [false, true] {
            let mut queued = out.clone();
            Sender::new(Arc::new(AtomicBool::new(gso)))
                .send_all(&sender, &mut queued)
                .await;
            assert!(queued.is_empty());
            received_in_order(&a, &b).await;
        }
    }

    async fn received_in_order(a: &UdpSocket, b: &UdpSocket) {
        for (socket, first) in [(a, 0u32), (b, 1)] {
            let mut buf = [0u8; 16];
            for n in 0..50u32 {
                let len =
                    tokio::time::timeout(std::time::Duration::from_secs(2), socket.recv(&mut buf))
                        .await
                        .expect("every datagram arrives")
                        .unwrap();
                assert_eq!(&buf[..len], &(first + 3 * n).to_be_bytes());
            }
        }
    }

    fn batch(datagrams: &[(u16, usize)]) -> Vec<(SocketAddr, BytesMut)> {
        datagrams
            .iter()
            .map(|&(port, len)| {
                (
                    SocketAddr::from(([127, 0, 0, 1], port)),
                    BytesMut::zeroed(len),
                )
            })
            .collect()
    }

    /// The planned messages as (port, [datagram lengths]).
    fn planned(out: &[(SocketAddr, BytesMut)], gso: bool) -> Vec<(u16, Vec<usize>)> {
        let (mut order, mut messages) = (Vec::new(), Vec::new());
        plan(out, gso, &mut order, &mut messages);
        messages
            .iter()
            .map(|m| {
                let at = m.first as usize..m.first as usize + usize::from(m.count);
                let lens = order[at.clone()]
                    .iter()
                    .map(|(_, i)| out[*i as usize].1.len());
                (order[at.start].0.port(), lens.collect())
            })
            .collect()
    }

    /// A frame of three packets to two viewers, as a loop queues it (each
    /// packet to every viewer in turn), with a sender report to the second
    /// first: each viewer's packets become one message, its report alone.
    #[test]
    fn a_frame_to_each_viewer_is_one_message_of_equal_segments() {
        let out = batch(&[
            (2, 52),
            (1, 1228),
            (2, 1228),
            (1, 1228),
            (2, 1228),
            (1, 700),
            (2, 700),
        ]);
        assert_eq!(
            planned(&out, true),
            vec![
                (1, vec![1228, 1228, 700]),
                (2, vec![52]),
                (2, vec![1228, 1228, 700])
            ]
        );
        // Without GSO, or alone, a datagram is its own message, in the order queued.
        let plain: Vec<(u16, Vec<usize>)> = out
            .iter()
            .map(|(to, d)| (to.port(), vec![d.len()]))
            .collect();
        assert_eq!(planned(&out, false), plain);
        assert_eq!(planned(&out[..1], true), vec![(2, vec![52])]);
    }

    /// A message ends at a shorter datagram and before a longer one, and
    /// stays within the kernel's 64 segments and an IP datagram's size.
    #[test]
    fn messages_keep_to_the_kernels_rules() {
        let out = batch(&[(1, 1000), (1, 900), (1, 1000), (1, 1000), (1, 1100)]);
        assert_eq!(
            planned(&out, true),
            vec![(1, vec![1000, 900]), (1, vec![1000, 1000]), (1, vec![1100])]
        );
        let many = batch(&[(1, 100); 70]);
        let sizes: Vec<usize> = planned(&many, true).iter().map(|(_, l)| l.len()).collect();
        assert_eq!(sizes, vec![64, 6]);
        let large = batch(&[(1, 1200); 60]);
        let sizes: Vec<usize> = planned(&large, true).iter().map(|(_, l)| l.len()).collect();
        let fit = MESSAGE_BYTES / 1200;
        assert_eq!(sizes, vec![fit, 60 - fit]);
    }

    /// Where the kernel refused a segmented message, the rest of the batch
    /// goes again as single datagrams, each client's in their order, with
    /// what was sent before left alone.
    #[test]
    fn after_a_refusal_the_rest_goes_datagram_by_datagram() {
        let out = batch(&[
            (1, 1228),
            (2, 1228),
            (1, 1228),
            (2, 1228),
            (1, 600),
            (3, 80),
        ]);
        let (mut order, mut messages) = (Vec::new(), Vec::new());
        plan(&out, true, &mut order, &mut messages);
        assert_eq!(messages.len(), 3);
        let sent = messages[0];
        let end = messages.len();
        unbundle(&mut messages, 1..end, &out, &order);
        assert_eq!(messages[0], sent);
        let rest: Vec<(u16, u16, usize)> = messages[1..]
            .iter()
            .map(|m| {
                (
                    order[m.first as usize].0.port(),
                    m.count,
                    usize::from(m.segment),
                )
            })
            .collect();
        assert_eq!(rest, vec![(2, 1, 1228), (2, 1, 1228), (3, 1, 80)]);
        assert_eq!(run(&messages[1..]), (3, None));
    }

    /// A refusal of one message that is not the route's (an address no one
    /// can send to) splits that message alone.
    #[test]
    fn one_refused_message_is_split_alone() {
        let out = batch(&[
            (1, 1228),
            (1, 1228),
            (2, 1228),
            (2, 1228),
            (3, 1228),
            (3, 1228),
        ]);
        let (mut order, mut messages) = (Vec::new(), Vec::new());
        plan(&out, true, &mut order, &mut messages);
        let (first, last) = (messages[0], messages[2]);
        unbundle(&mut messages, 1..2, &out, &order);
        let shape: Vec<(u16, u16)> = messages
            .iter()
            .map(|m| (order[m.first as usize].0.port(), m.count))
            .collect();
        assert_eq!(shape, vec![(1, 2), (2, 1), (2, 1), (3, 2)]);
        assert_eq!((messages[0], messages[3]), (first, last));
    }

    /// An empty datagram is never part of a message of several: the kernel
    /// would send one empty datagram for all of them.
    #[test]
    fn empty_datagrams_go_alone() {
        let out = batch(&[(1, 0), (1, 0), (1, 100), (1, 0)]);
        assert_eq!(
            planned(&out, true),
            vec![(1, vec![0]), (1, vec![0]), (1, vec![100]), (1, vec![0])]
        );
    }

    /// Messages share one `sendmmsg` while they share a segment size; a
    /// datagram alone joins only if the kernel would not cut it.
    #[test]
    fn a_call_to_the_kernel_takes_messages_of_one_segment_size() {
        let m = |count, segment| Message {
            first: 0,
            count,
            segment,
        };
        assert_eq!(
            run(&[m(3, 1228), m(1, 52), m(2, 1228), m(2, 900)]),
            (3, Some(1228))
        );
        assert_eq!(run(&[m(1, 52), m(1, 1300), m(2, 1228)]), (2, None));
        assert_eq!(run(&[m(1, 52), m(2, 1228), m(1, 1300)]), (2, Some(1228)));
        assert_eq!(run(&[m(1, 52); 100]), (GROUP, None));
    }

    /// Bursts to several receivers through segmentation offload: every
    /// datagram arrives whole, with its own boundaries, in its order, and
    /// the kernel took the offload (it stays on).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn bursts_arrive_as_the_datagrams_they_were() {
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut receivers = Vec::new();
        for _ in 0..3 {
            receivers.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        }
        let gso = Arc::new(AtomicBool::new(true));
        let mut sending = Sender::new(gso.clone());
        let lengths = [60usize, 1228, 1228, 1228, 1228, 500, 1228, 1228];
        let mut out = Vec::new();
        for (n, len) in lengths.iter().enumerate() {
            for (r, receiver) in receivers.iter().enumerate() {
                let mut d = BytesMut::zeroed(*len);
                d[0] = n as u8;
                d[1] = r as u8;
                out.push((receiver.local_addr().unwrap(), d));
            }
        }
        sending.send_all(&sender, &mut out).await;
        assert!(
            gso.load(Ordering::Relaxed),
            "the kernel refused GSO on loopback"
        );
        for (r, receiver) in receivers.iter().enumerate() {
            let mut buf = [0u8; 2048];
            for (n, len) in lengths.iter().enumerate() {
                let got = tokio::time::timeout(
                    std::time::Duration::from_secs(2),
                    receiver.recv(&mut buf),
                )
                .await
                .expect("every datagram arrives")
                .unwrap();
                assert_eq!((got, buf[0], buf[1]), (*len, n as u8, r as u8));
            }
        }
    }
}
