//! The engine: one UDP socket shared by every peer, a receive loop that
//! routes each datagram to the media loop owning its peer, and a small fixed
//! number of media loops (about one per core), each owning the peers of the
//! calls placed on it.
//!
//! A call lives on one media loop until it outgrows it
//! ([`EngineConfig::spread_after`]), so forwarding a packet from a publisher
//! to its subscribers mostly never leaves the loop: no lock, no task and no
//! channel hop between receiving a packet and sending its copies. The
//! receive loop hands a datagram to its loop with one queue push and no
//! allocation (datagrams are cut from a shared buffer). A call spread over
//! several loops costs one more push per packet and other loop: the
//! publisher's loop hands each packet, decrypted once, to every other loop
//! of the call, which sends its own participants their copies (ADR 0021).
//!
//! Each participant has two peer connections, after the pattern of LiveKit:
//! a *publisher* connection that the client offers (its microphone and
//! camera) and a *subscriber* connection that the engine offers (everyone
//! else's tracks). Each side only ever offers on its own connection, so the
//! two never offer at once: glare cannot happen.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::config::EngineConfig;
use crate::demux::Demux;
use crate::events::{EngineEvent, EngineStats};
use crate::events::{Source, Subscription};
use crate::placement::{SharedPlacement, Spread};
use crate::sfu::{Input, Output, PeerKey, Route, Sfu};
use crate::MediaError;

/// What the engine's handle asks of a loop.
enum Command {
    Join {
        call: Uuid,
        participant: Uuid,
        /// Names this placement, so that leaving on its own (a failed
        /// connection) never forgets a newer one.
        placement: u64,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    Publish {
        participant: Uuid,
        offer: String,
        sources: Vec<(String, Source)>,
        reply: oneshot::Sender<Result<String, MediaError>>,
    },
    SubscriberAnswer {
        participant: Uuid,
        answer: String,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    Leave {
        participants: Vec<Uuid>,
    },
    Subscribe {
        subscriber: Uuid,
        publisher: Uuid,
        source: Source,
        subscription: Subscription,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    RestartIce {
        participant: Uuid,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    Stats {
        reply: oneshot::Sender<EngineStats>,
    },
    /// A call's loops changed, or a word from another loop of a call.
    Input(Input),
}

/// Tells each loop concerned that a call's loops changed, those that
/// joined first. Called with the placement locked, so that changes reach
/// every loop in the order they were made.
fn tell(loops: &[mpsc::UnboundedSender<Command>], spread: Option<Spread>) {
    let Some(spread) = spread else {
        return;
    };
    tracing::info!(call = %spread.call, loops = ?spread.loops, "a call's media loops changed");
    for &at in &spread.notify {
        if let Some(commands) = loops.get(at) {
            let _ = commands.send(Command::Input(Input::Spread {
                call: spread.call,
                generation: spread.generation,
                loops: spread.loops.clone(),
            }));
        }
    }
}

/// A route change, from the loop at the index.
type RouteUpdate = (usize, Route);

/// A handle on a running engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    loops: Arc<[mpsc::UnboundedSender<Command>]>,
    placement: SharedPlacement,
    /// Datagrams the receive loop dropped (unknown sender, full loop
    /// queue), and packets a loop handed to another that had no room.
    unrouted: Arc<AtomicU64>,
    local: SocketAddr,
}

impl Engine {
    /// Binds the socket and starts the receive loop and the media loops on
    /// the current runtime.
    pub async fn start(
        config: EngineConfig,
    ) -> Result<(Engine, mpsc::UnboundedReceiver<EngineEvent>), MediaError> {
        if !EngineConfig::retransmit_history_valid(config.retransmit_history) {
            return Err(MediaError::Config(format!(
                "the retransmission history must be a power of two from 64 to 32768, not {}",
                config.retransmit_history
            )));
        }
        if !config.retransmit_limits.valid() {
            return Err(MediaError::Config(format!(
                "retransmissions must be allowed 1 to 10 times per packet and 1 to 100 % of a \
                 stream, not {} times and {} %",
                config.retransmit_limits.attempts, config.retransmit_limits.share_percent
            )));
        }
        let socket = Arc::new(UdpSocket::bind(config.listen).await?);
        crate::udp::size_buffers(&socket, config.socket_buffer);
        let local = socket.local_addr()?;
        let ips = if config.advertised_ips.is_empty() {
            if local.ip().is_unspecified() {
                return Err(MediaError::Config(
                    "listening on every interface needs advertised addresses".into(),
                ));
            }
            vec![local.ip()]
        } else {
            config.advertised_ips.clone()
        };
        let advertised: Vec<SocketAddr> = ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, local.port()))
            .collect();
        let loops = match config.loops {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let placement = SharedPlacement::new(loops, config.spread_after);
        let (events, events_rx) = mpsc::unbounded_channel();
        let (routes, routes_rx) = mpsc::unbounded_channel();
        let (commands, command_rxs): (Vec<_>, Vec<_>) =
            (0..loops).map(|_| mpsc::unbounded_channel()).unzip();
        let (inbound, inbound_rxs): (Vec<_>, Vec<_>) = (0..loops)
            .map(|_| mpsc::channel(config.loop_queue.max(16)))
            .unzip();
        let commands: Arc<[mpsc::UnboundedSender<Command>]> = commands.into();
        let inbound: Arc<[mpsc::Sender<Input>]> = inbound.into();
        let unrouted = Arc::new(AtomicU64::new(0));
        let gso = Arc::new(AtomicBool::new(config.gso));
        // One certificate for every subscriber connection of the engine, and
        // the wall clock read once: the loops read no clock of their own.
        let identity = crate::peer::dtls_srtp::Identity::generate()?;
        let started = Instant::now();
        let since_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let clock = crate::peer::rtcp::WallClock::new(started, since_unix);
        for (index, (command_rx, inbound_rx)) in
            command_rxs.into_iter().zip(inbound_rxs).enumerate()
        {
            let sfu = Sfu::new(
                index,
                started,
                advertised.clone(),
                &config,
                rand::random(),
                identity.clone(),
                clock,
            );
            let shell = Shell {
                index,
                socket: socket.clone(),
                events: events.clone(),
                routes: routes.clone(),
                placement: placement.clone(),
                transmits: Vec::with_capacity(BATCH),
                sender: crate::udp::Sender::new(gso.clone()),
                loops: commands.clone(),
                inbound: inbound.clone(),
                dropped: unrouted.clone(),
            };
            tokio::spawn(run(shell, command_rx, inbound_rx, sfu));
        }
        drop(routes);
        tokio::spawn(receive(socket, routes_rx, inbound, unrouted.clone()));
        Ok((
            Engine {
                loops: commands,
                placement,
                unrouted,
                local,
            },
            events_rx,
        ))
    }

    /// The socket's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    async fn ask<T>(
        &self,
        at: usize,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, MediaError> {
        let (tx, rx) = oneshot::channel();
        self.loops
            .get(at)
            .ok_or(MediaError::Stopped)?
            .send(make(tx))
            .map_err(|_| MediaError::Stopped)?;
        rx.await.map_err(|_| MediaError::Stopped)
    }

    fn loop_of(&self, participant: Uuid) -> Result<usize, MediaError> {
        self.placement
            .lock()
            .loop_of(participant)
            .ok_or(MediaError::NotFound("participant"))
    }

    /// Adds a participant to a call; the others' tracks will be offered to it.
    pub async fn join(&self, call: Uuid, participant: Uuid) -> Result<(), MediaError> {
        let (at, placement) = {
            let mut placed = self.placement.lock();
            let (at, placement, spread) = placed.place(call, participant)?;
            tell(&self.loops, spread);
            (at, placement)
        };
        let joined = self
            .ask(at, |reply| Command::Join {
                call,
                participant,
                placement,
                reply,
            })
            .await
            .and_then(|r| r);
        if joined.is_err() {
            let mut placed = self.placement.lock();
            tell(&self.loops, placed.remove_placed(participant, placement));
        }
        joined
    }

    /// Answers the participant's offer of its publisher connection.
    pub async fn publish(&self, participant: Uuid, offer: String) -> Result<String, MediaError> {
        self.publish_sources(participant, offer, Vec::new()).await
    }

    /// Answers the participant's offer of its publisher connection, with
    /// what its media sections carry (by `mid`); sections not named carry
    /// the default of their kind ([`Source::default_for`]).
    pub async fn publish_sources(
        &self,
        participant: Uuid,
        offer: String,
        sources: Vec<(String, Source)>,
    ) -> Result<String, MediaError> {
        let at = self.loop_of(participant)?;
        self.ask(at, |reply| Command::Publish {
            participant,
            offer,
            sources,
            reply,
        })
        .await?
    }

    /// Takes the participant's answer to a [`EngineEvent::SubscriberOffer`].
    pub async fn subscriber_answer(
        &self,
        participant: Uuid,
        answer: String,
    ) -> Result<(), MediaError> {
        let at = self.loop_of(participant)?;
        self.ask(at, |reply| Command::SubscriberAnswer {
            participant,
            answer,
            reply,
        })
        .await?
    }

    /// Sets what `subscriber` receives of `publisher`'s track of `source`,
    /// including one published later: a paused track is not sent to it, a
    /// resumed one starts again at a keyframe, and of a simulcast track it
    /// receives the layer that fits the size it draws it at.
    pub async fn set_subscription(
        &self,
        subscriber: Uuid,
        publisher: Uuid,
        source: Source,
        subscription: Subscription,
    ) -> Result<(), MediaError> {
        let at = self.loop_of(subscriber)?;
        self.ask(at, |reply| Command::Subscribe {
            subscriber,
            publisher,
            source,
            subscription,
            reply,
        })
        .await?
    }

    /// Restarts ICE on the participant's receiving connection: a new
    /// [`EngineEvent::SubscriberOffer`] comes with new credentials, and
    /// the client checks again from wherever it is now. (Its sending
    /// connection restarts by a new offer with new credentials of its own,
    /// [`Engine::publish`].)
    pub async fn restart_ice(&self, participant: Uuid) -> Result<(), MediaError> {
        let at = self.loop_of(participant)?;
        self.ask(at, |reply| Command::RestartIce { participant, reply })
            .await?
    }

    /// Removes a participant and its tracks at once. It may join again
    /// straight away, with new connections.
    pub fn leave(&self, participant: Uuid) {
        self.leave_all(&[participant]);
    }

    /// Removes participants and their tracks at once; those who stay are
    /// offered the change once, and none of those leaving is offered
    /// anything more.
    pub fn leave_all(&self, participants: &[Uuid]) {
        let mut by_loop: HashMap<usize, Vec<Uuid>> = HashMap::new();
        let mut spreads = Vec::new();
        let mut placement = self.placement.lock();
        for participant in participants {
            if let Some((at, spread)) = placement.remove(*participant) {
                by_loop.entry(at).or_default().push(*participant);
                spreads.push(spread);
            }
        }
        // Each loop hears of its leavers before it hears that it left a
        // call: it closes their tracks on the loops it still knows, after
        // any word it sent of them before.
        for (at, participants) in by_loop {
            if let Some(commands) = self.loops.get(at) {
                let _ = commands.send(Command::Leave { participants });
            }
        }
        for spread in spreads {
            tell(&self.loops, spread);
        }
        // What moderators stopped of theirs is forgotten: a joiner starts free.
        self.broadcast(|| Input::Stop {
            publishers: participants.to_vec(),
            sources: Source::ALL.to_vec(),
            stopped: false,
        });
    }

    /// Stops forwarding `publisher`'s tracks of `sources` to everyone (a
    /// moderator's mute), now and for tracks of those sources it publishes
    /// later, or lets it go on; a video track goes on at a keyframe. It
    /// holds until let go on, or until the publisher leaves the engine.
    pub fn stop_forwarding(&self, publisher: Uuid, sources: &[Source], stopped: bool) {
        self.broadcast(|| Input::Stop {
            publishers: vec![publisher],
            sources: sources.to_vec(),
            stopped,
        });
    }

    /// Tells every loop: a publisher's tracks are forwarded from the loops
    /// of every subscriber.
    fn broadcast(&self, input: impl Fn() -> Input) {
        for commands in self.loops.iter() {
            let _ = commands.send(Command::Input(input()));
        }
    }

    /// The counters of every loop, summed.
    pub async fn stats(&self) -> Result<EngineStats, MediaError> {
        let mut total = EngineStats {
            loops: self.loops.len(),
            datagrams_dropped: self.unrouted.load(Ordering::Relaxed),
            ..Default::default()
        };
        for at in 0..self.loops.len() {
            let stats = self.ask(at, |reply| Command::Stats { reply }).await?;
            total.add(&stats);
        }
        Ok(total)
    }
}

/// Datagrams taken from a loop's queue at once, between two flushes.
const BATCH: usize = 64;

/// What a media loop's task owns around its [`Sfu`]: the IO.
struct Shell {
    /// Which loop this is, in route updates.
    index: usize,
    socket: Arc<UdpSocket>,
    events: mpsc::UnboundedSender<EngineEvent>,
    routes: mpsc::UnboundedSender<RouteUpdate>,
    placement: SharedPlacement,
    /// Datagrams to send, gathered for `sendmmsg`.
    transmits: Vec<(SocketAddr, BytesMut)>,
    sender: crate::udp::Sender,
    /// Every loop's commands and packet queue (datagrams from the receive
    /// loop, packets relayed by other loops), for the loops of a call
    /// spread beyond this one.
    loops: Arc<[mpsc::UnboundedSender<Command>]>,
    inbound: Arc<[mpsc::Sender<Input>]>,
    /// Packets another loop had no room for, with the datagrams dropped.
    dropped: Arc<AtomicU64>,
}

impl Shell {
    /// Takes everything the loop has to hand back. Routes and events go out
    /// at once, so a new peer's route reaches the receive loop before the
    /// reply that lets its client send; datagrams wait for [`Shell::flush`].
    fn drain(&mut self, sfu: &mut Sfu) {
        while let Some(output) = sfu.poll_output() {
            match output {
                Output::Transmit { to, datagram } => self.transmits.push((to, datagram)),
                Output::Event(event) => {
                    let _ = self.events.send(event);
                }
                Output::Route(route) => {
                    let _ = self.routes.send((self.index, route));
                }
                Output::Unplaced {
                    participant,
                    placement,
                } => {
                    let mut placed = self.placement.lock();
                    tell(&self.loops, placed.remove_placed(participant, placement));
                }
                Output::Relay { to, relay } => {
                    if let Some(commands) = self.loops.get(to) {
                        let _ = commands.send(Command::Input(Input::Relay(relay)));
                    }
                }
                Output::RelayRtp { to, key, packet } => {
                    let from = self.index;
                    let queued = self
                        .inbound
                        .get(to)
                        .is_some_and(|l| l.try_send(Input::Relayed { from, key, packet }).is_ok());
                    if !queued {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    async fn flush(&mut self) {
        self.sender
            .send_all(&self.socket, &mut self.transmits)
            .await;
    }

    fn command(&mut self, sfu: &mut Sfu, command: Command, now: Instant) {
        // Each reply goes after the loop's outputs are drained.
        match command {
            Command::Join {
                call,
                participant,
                placement,
                reply,
            } => {
                let joined = sfu.join(now, call, participant, placement);
                self.drain(sfu);
                let _ = reply.send(joined);
            }
            Command::Publish {
                participant,
                offer,
                sources,
                reply,
            } => {
                let answer = sfu.publish_sources(now, participant, offer, &sources);
                self.drain(sfu);
                let _ = reply.send(answer);
            }
            Command::SubscriberAnswer {
                participant,
                answer,
                reply,
            } => {
                let taken = sfu.subscriber_answer(now, participant, answer);
                self.drain(sfu);
                let _ = reply.send(taken);
            }
            Command::Subscribe {
                subscriber,
                publisher,
                source,
                subscription,
                reply,
            } => {
                let done = sfu.set_subscription(now, subscriber, publisher, source, subscription);
                self.drain(sfu);
                let _ = reply.send(done);
            }
            Command::Leave { participants } => {
                sfu.handle(now, Input::Leave(participants));
                self.drain(sfu);
            }
            Command::RestartIce { participant, reply } => {
                let done = sfu.restart_ice(now, participant);
                self.drain(sfu);
                let _ = reply.send(done);
            }
            Command::Stats { reply } => {
                let _ = reply.send(sfu.stats());
            }
            Command::Input(input) => {
                sfu.handle(now, input);
                self.drain(sfu);
            }
        }
    }
}

/// A media loop's task: commands from the handle, datagrams from the
/// receive loop and the loop's timers, until the handle is dropped. It reads
/// the clock once per command, per batch of datagrams and per timer.
async fn run(
    mut shell: Shell,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut inbound: mpsc::Receiver<Input>,
    mut sfu: Sfu,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        shell.flush().await;
        let deadline = sfu.poll_timeout();
        tokio::select! {
            command = commands.recv() => match command {
                Some(c) => shell.command(&mut sfu, c, Instant::now()),
                None => break,
            },
            n = inbound.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    break;
                }
                let now = Instant::now();
                for input in batch.drain(..) {
                    sfu.handle(now, input);
                }
                shell.drain(&mut sfu);
            },
            _ = tokio::time::sleep_until(deadline.into()) => {
                sfu.handle(Instant::now(), Input::Timeout);
                shell.drain(&mut sfu);
            }
        }
    }
    sfu.handle(Instant::now(), Input::Shutdown);
    shell.drain(&mut sfu);
    shell.flush().await;
}

/// Datagrams are received into one buffer and cut off it, so handing one to
/// its loop allocates nothing; the buffer is renewed when it runs short.
const RECEIVE_BUFFER: usize = 256 * 1024;
/// The largest datagram taken whole; longer ones are truncated by the
/// kernel and then refused by the stack (nothing in WebRTC is this long).
const MAX_DATAGRAM: usize = 2048;

/// The receive loop: reads the socket and hands each datagram to the loop
/// owning its peer. Route changes come first, so a peer is known before the
/// answer that lets its client send reaches signaling.
async fn receive(
    socket: Arc<UdpSocket>,
    mut routes: mpsc::UnboundedReceiver<RouteUpdate>,
    loops: Arc<[mpsc::Sender<Input>]>,
    unrouted: Arc<AtomicU64>,
) {
    let mut demux: Demux<(usize, PeerKey)> = Demux::new(8);
    let mut buf = BytesMut::with_capacity(RECEIVE_BUFFER);
    loop {
        if buf.capacity() < MAX_DATAGRAM {
            buf = BytesMut::with_capacity(RECEIVE_BUFFER);
        }
        tokio::select! {
            biased;
            update = routes.recv() => match update {
                Some((at, Route::Add { ufrag, key })) => demux.add(&ufrag, (at, key)),
                Some((at, Route::Remove { ufrag, key })) => demux.remove(&ufrag, (at, key)),
                Some((at, Route::Forget { ufrag, key })) => demux.forget_ufrag(&ufrag, (at, key)),
                Some((at, Route::Learn { from, key })) => demux.learn(from, (at, key)),
                // Every media loop has stopped.
                None => break,
            },
            received = socket.recv_buf_from(&mut buf) => {
                let Ok((_, from)) = received else {
                    buf.clear();
                    continue;
                };
                let datagram = buf.split();
                let Some((at, key)) = demux.route(&datagram, from) else {
                    unrouted.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let queued = loops
                    .get(at)
                    .is_some_and(|l| l.try_send(Input::Datagram { key, from, datagram }).is_ok());
                if !queued {
                    unrouted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
