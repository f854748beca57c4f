//! Sending a media loop's datagrams with as few system calls as the
//! platform allows: on Linux, `sendmmsg` with up to [`GROUP`] datagrams a
//! call; elsewhere, one `send_to` each. Either way the loop writes straight
//! into the socket's buffer and waits only when it is full.

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;
use tokio::net::UdpSocket;

/// Datagrams handed to the kernel in one call at most.
#[cfg(target_os = "linux")]
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

/// Sends every datagram of `out` and empties it. A datagram the kernel
/// refuses (an unreachable address, say) is logged and skipped.
pub(crate) async fn send_all(socket: &UdpSocket, out: &mut Vec<(SocketAddr, BytesMut)>) {
    let mut rest = &out[..];
    while !rest.is_empty() {
        match send_some(socket, rest) {
            Ok(n) => rest = &rest[n.max(1)..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) = socket.writable().await {
                    tracing::debug!(error = %e, "the media socket failed");
                    break;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, to = %rest[0].0, "sending a datagram failed");
                rest = &rest[1..];
            }
        }
    }
    out.clear();
}

/// Sends a first part of `datagrams`; returns how many went.
#[cfg(target_os = "linux")]
fn send_some(socket: &UdpSocket, datagrams: &[(SocketAddr, BytesMut)]) -> io::Result<usize> {
    use nix::sys::socket::{sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;

    let group = &datagrams[..datagrams.len().min(GROUP)];
    let slices: Vec<[IoSlice<'_>; 1]> = group.iter().map(|(_, d)| [IoSlice::new(d)]).collect();
    let addrs: Vec<Option<SockaddrStorage>> = group
        .iter()
        .map(|(to, _)| Some(SockaddrStorage::from(*to)))
        .collect();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(group.len(), None);
    socket.try_io(tokio::io::Interest::WRITABLE, || {
        // The kernel reports an error only when the first datagram failed;
        // after that it returns how many went.
        sendmmsg(
            socket.as_raw_fd(),
            &mut headers,
            &slices,
            &addrs,
            [],
            MsgFlags::empty(),
        )
        .map(|sent| sent.count())
        .map_err(io::Error::from)
    })
}

#[cfg(not(target_os = "linux"))]
fn send_some(socket: &UdpSocket, datagrams: &[(SocketAddr, BytesMut)]) -> io::Result<usize> {
    let (to, datagram) = &datagrams[0];
    socket.try_send_to(datagram, *to).map(|_| 1)
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
        let refused: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let mut out = Vec::new();
        for i in 0..150u32 {
            let to = match i % 3 {
                0 => a.local_addr().unwrap(),
                1 => b.local_addr().unwrap(),
                _ => refused,
            };
            out.push((to, BytesMut::from(&i.to_be_bytes()[..])));
        }
        send_all(&sender, &mut out).await;
        assert!(out.is_empty());
        for (socket, first) in [(&a, 0u32), (&b, 1)] {
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
}
