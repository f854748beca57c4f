// A call in a room, over the documented protocol (docs/protocol.md, "Calls";
// docs/webrtc.md): peer to peer while the call is small (`mesh`), through
// the server's SFU from `calls.mesh_max + 1` participants, moving between the
// two when the server sends `call.topology`, keeping the old path until the
// new one plays. The Call object holds the state; the app renders it from
// the "change" events it dispatches. A screen share is a second video track
// on every connection, named `screen` in the `sources` of our offers; a
// room's moderators mute, stop the share of, or remove others
// (`call.moderate`), and we obey when it is done to us.

const SPEAKING_LEVEL = 0.03; // of 1, for levels read locally in a mesh

// A connection that worked and lost its path (a change of network: another
// Wi-Fi, a new address, a NAT that forgot us) restarts ICE in place: after
// this long disconnected (at once when failed), then again every
// RESTART_EVERY_MS while it stays down, RESTARTS times at most.
const RESTART_AFTER_MS = 1000;
const RESTART_EVERY_MS = 5000;
const RESTARTS = 5;
// How long the socket has to answer a ping when a connection lost its path,
// before it is taken for dead too and replaced.
const PROBE_MS = 1000;
// How many times lost connections to the server are made anew, at most,
// while the new ones fail too.
const RENEWALS = 3;

// What we tell the user when a moderator mutes their microphone or camera.
const MUTED_BY_MODERATOR = {
  audio: "A moderator muted your microphone",
  video: "A moderator turned your camera off",
};

// The camera as captured, and as sent to the server in three encodings
// (simulcast, smallest first: docs/webrtc.md), of which each viewer
// receives the one that fits its tile.
const CAMERA = { width: { ideal: 1280 }, height: { ideal: 720 } };
const LAYERS = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: "f", maxBitrate: 1_500_000 },
];

// Sends only the `active` encodings (rids) of the sender in media section
// `mid` (`sfu.layers`): the server says which any viewer receives.
export async function setActiveLayers(pc, mid, active) {
  const sender = pc?.getTransceivers().find((t) => t.mid === mid)?.sender;
  if (!sender) return;
  const params = sender.getParameters();
  if (!params.encodings?.length) return;
  let changed = false;
  for (const e of params.encodings) {
    const on = !e.rid || active.includes(e.rid);
    if (e.active !== on) [e.active, changed] = [on, true];
  }
  if (changed) await sender.setParameters(params);
}

export class Call extends EventTarget {
  constructor(live, roomId) {
    super();
    this.live = live;
    this.roomId = roomId;
    this.callId = null;
    this.me = null;
    this.topology = null;
    this.iceServers = [];
    this.stream = null; // our microphone and camera
    this.screen = null; // our screen's video track while we share it
    this.screenTx = new WeakSet(); // the transceivers that carry (or carried) our screen
    // participant id -> CallParticipantInfo: {user_id, audio_muted,
    // video_muted, screen_sharing, audio_locked, video_locked}
    this.participants = new Map();
    this.mesh = new Map(); // participant id -> RTCPeerConnection
    this.meshStreams = new Map(); // participant id -> MediaStream (microphone and camera)
    this.meshScreens = new Map(); // participant id -> MediaStream of its screen
    this.sfuStreams = new Map(); // participant id -> MediaStream (microphone and camera), from the server
    this.sfuScreens = new Map(); // participant id -> MediaStream of its screen, from the server
    this.sfuTracks = new Map(); // mid -> {participant_id, kind, source}, from the server's latest sfu.offer
    this.sfuOffers = Promise.resolve(); // our offers of the sending connection, one at a time
    this.signalling = new Map(); // participant id -> its mesh signalling frames handled so far (a promise)
    this.playedBy = new Set(); // who plays our media through the server (sfu.receiving)
    this.outOfSight = new Set(); // participants whose tile has been out of view a while
    this.tileSizes = new Map(); // participant id -> [width, height] in device pixels
    this.screenSizes = new Map(); // participant id -> [width, height] of its screen's view
    this.told = new Map(); // "participant id/source" -> the call.subscribe last acknowledged, as JSON
    this.pauseTimers = new Map();
    this.reconnecting = new Set(); // connections restarting ICE after their path broke
    this.socketDown = false; // our socket dropped and our place is not yet resumed
    this.renewals = 0; // times our connections to the server were made anew after failing
    this.sendPc = null;
    this.recvPc = null;
    this.speaking = new Set();
    // "participant/source" the server holds back for want of bandwidth on
    // our receiving connection (sfu.held).
    this.held = new Set();
    this.audioMuted = false;
    this.videoMuted = false;
    // A moderator muted us and the room does not let us unmute ourselves.
    this.audioLocked = false;
    this.videoLocked = false;
    this.mutedBy = { audio: null, video: null }; // the moderator who muted our microphone / camera
    this.notice = null; // what a moderator did to us, for the view
    this.error = null;
    this.ended = false;
    this.onFrame = (e) => this.frame(e.detail);
    // The socket dropped: the server keeps our place for a while
    // (`calls.reconnect_grace_secs`), and the new socket takes it back.
    this.onDown = () => {
      if (!this.callId || this.ended) return this.end("The connection to the server dropped; the call ended.");
      this.socketDown = true;
      this.changed();
    };
    this.onReady = () => this.resume();
  }

  changed() {
    this.dispatchEvent(new Event("change"));
  }

  fail(text) {
    this.error = text;
    this.changed();
  }

  // Asks for the microphone and camera, then joins. Throws with a message
  // fit for the user when either step fails.
  async join() {
    // Browsers give a page that is not a secure context (plain HTTP other
    // than localhost) no microphone or camera at all: say what to change,
    // not that the devices were refused.
    if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
      throw new Error(`Calls need a secure connection: open Roost over HTTPS (or at localhost). The browser offers no microphone or camera to ${location.origin}.`);
    }
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: CAMERA });
    } catch (e) {
      try {
        // No camera (or it is refused): join with the microphone alone.
        this.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
        this.error = "Your camera could not be used; you joined with audio only.";
      } catch {
        throw new Error(`Your microphone and camera could not be used (${e.name || e.message}). Allow them in the browser and try again.`);
      }
    }
    this.live.addEventListener("frame", this.onFrame);
    this.live.addEventListener("down", this.onDown);
    this.live.addEventListener("ready", this.onReady);
    let r;
    try {
      r = await this.request({ type: "call.join", room_id: this.roomId });
    } catch (e) {
      this.cleanup();
      if (e.code === "call_full") throw new Error("The call is full: no one else can join it now.");
      if (e.code === "already_in_call") throw new Error("You are already in this call on this connection.");
      throw e;
    }
    this.callId = r.call_id;
    this.me = r.participant_id;
    this.topology = r.topology;
    this.iceServers = r.ice_servers || [];
    this.maxParticipants = r.max_participants;
    for (const p of r.participants) this.participants.set(p.participant_id, { ...p });
    if (this.topology === "mesh") {
      for (const p of r.participants) this.meshPeer(p.participant_id, true);
    } else {
      await this.startSfu();
    }
    this.levelTimer = setInterval(() => this.readMeshLevels(), 400);
    this.changed();
  }

  // A new socket is up after ours dropped: it takes our place in the call
  // back (`call.resume`); what the server kept for us follows. Past the
  // server's grace the place is gone, and the call ends here.
  async resume() {
    if (!this.socketDown || this.ended) return;
    try {
      const r = await this.request({
        type: "call.resume", room_id: this.roomId, call_id: this.callId, participant_id: this.me,
      });
      this.socketDown = false;
      this.topology = r.topology;
      const present = new Set(r.participants.map((p) => p.participant_id));
      for (const id of [...this.participants.keys()]) {
        if (!present.has(id)) this.onFrame({ detail: { type: "call.participant_left", call_id: this.callId, participant_id: id } });
      }
      for (const p of r.participants) this.participants.set(p.participant_id, { ...this.participants.get(p.participant_id), ...p });
      this.changed();
      // Connections that lost their path restart now that we can signal.
      for (const pc of this.reconnecting) pc.restartNow?.();
    } catch (e) {
      if (e.code === "disconnected") return; // the next socket tries again
      this.end("The connection to the server dropped for too long; the call ended.");
    }
  }

  async leave() {
    const callId = this.callId;
    this.end(null);
    if (callId) await this.request({ type: "call.leave", call_id: callId }).catch(() => {});
  }

  end(error) {
    if (this.ended) return;
    this.ended = true;
    if (error) this.error = error;
    this.cleanup();
    this.changed();
  }

  cleanup() {
    this.live.removeEventListener("frame", this.onFrame);
    this.live.removeEventListener("down", this.onDown);
    this.live.removeEventListener("ready", this.onReady);
    clearInterval(this.levelTimer);
    this.closeMesh();
    this.closeSfu();
    for (const t of this.stream?.getTracks() || []) t.stop();
    this.screen?.stop();
    this.screen = null;
  }

  // A request, sent again after a pause when the rate limit answers
  // `rate_limited` (ICE candidates come in bursts).
  async request(frame) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.live.request(frame);
      } catch (e) {
        if (e.code !== "rate_limited" || attempt >= 5) throw e;
        await new Promise((r) => setTimeout(r, 250 * (attempt + 1)));
      }
    }
  }

  pcConfig() {
    return { iceServers: this.iceServers };
  }

  // Watches a connection's path. One that never connected and fails ends
  // the call with a word on why; one that connected and loses its path
  // restarts ICE by `restart` (see RESTART_AFTER_MS), and the call says
  // "reconnecting" until it is back.
  watch(pc, what, restart) {
    let worked = false;
    let timer = null;
    let tries = 0;
    const up = () => ["connected", "completed"].includes(pc.iceConnectionState);
    const gone = () => this.ended || pc.signalingState === "closed";
    const attempt = async () => {
      timer = null;
      if (up() || gone()) return;
      // Signalling needs a live socket, and our place in the call resumed
      // on it: `resume` calls again once it is.
      if (this.socketDown || !(await this.live.probe(PROBE_MS))) return;
      if (up() || gone() || timer) return;
      if (tries++ === RESTARTS) {
        this.fail(`The media connection ${what} was lost and did not come back.`);
        return;
      }
      console.info(`restarting ICE on the connection ${what}`);
      restart();
      timer = setTimeout(attempt, RESTART_EVERY_MS);
    };
    // After our socket came back: at once.
    pc.restartNow = () => {
      clearTimeout(timer);
      attempt();
    };
    pc.addEventListener("iceconnectionstatechange", () => {
      if (gone()) {
        clearTimeout(timer);
        return;
      }
      const state = pc.iceConnectionState;
      if (up()) {
        worked = true;
        this.renewals = 0;
        tries = 0;
        clearTimeout(timer);
        timer = null;
        if (this.reconnecting.delete(pc)) this.changed();
      } else if (state === "failed" && !worked && pc.renewal && this.renewals < RENEWALS) {
        // New connections made after the old ones were lost: the network
        // may still be coming back; new ones again, a little later.
        this.renewals += 1;
        setTimeout(() => this.sfuLost({ code: "not_on_sfu" }), RESTART_EVERY_MS);
      } else if (state === "failed" && !worked) {
        this.fail(`The media connection ${what} failed (ICE could not find a path). A TURN server may be needed.`);
      } else if ((state === "disconnected" || state === "failed") && worked && !timer) {
        // The network may have changed under the socket too: make sure it lives.
        this.live.probe(PROBE_MS);
        this.reconnecting.add(pc);
        this.changed();
        timer = setTimeout(attempt, state === "failed" ? 0 : RESTART_AFTER_MS);
      }
    });
  }

  // --- mesh -------------------------------------------------------------

  meshPeer(id, offerer) {
    let pc = this.mesh.get(id);
    if (pc) return pc;
    pc = new RTCPeerConnection(this.pcConfig());
    pc.queued = [];
    pc.remoteSources = {}; // mid -> source, as the other side names its sections
    this.mesh.set(id, pc);
    for (const track of this.stream.getTracks()) pc.addTrack(track, this.stream);
    // Our screen, if we share it: as the answerer, its section waits for
    // our own offer, made once the first exchange is done.
    if (this.screen) this.addScreen(pc);
    pc.addEventListener("icecandidate", (e) => {
      if (e.candidate) {
        this.request({ type: "call.ice", call_id: this.callId, to: id, candidate: e.candidate.toJSON() }).catch(() => {});
      }
    });
    pc.addEventListener("track", (e) => {
      if (this.mesh.get(id) !== pc) return;
      if (this.sourceOf(pc.remoteSources, e.transceiver) === "screen") {
        this.meshScreens.set(id, new MediaStream([e.track]));
      } else {
        this.meshStreams.set(id, e.streams[0] || new MediaStream([e.track]));
      }
      this.changed();
    });
    this.watch(pc, `with ${id}`, () => {
      pc.restartIce();
      this.meshOffer(id, pc);
    });
    if (offerer) this.meshOffer(id, pc);
    return pc;
  }

  // What the section of `transceiver` carries, by the sender's `sources`;
  // one not named is the microphone (audio) or the camera (video).
  sourceOf(sources, transceiver) {
    const named = transceiver.mid !== null && sources[transceiver.mid];
    return named || (transceiver.receiver.track.kind === "audio" ? "microphone" : "camera");
  }

  // Our `sources` for a connection: each section we send on (or sent our
  // screen on) by its mid.
  sourcesFor(pc) {
    const sources = {};
    for (const t of pc.getTransceivers()) {
      if (t.mid === null || t.stopped || t.currentDirection === "stopped") continue;
      if (this.screenTx.has(t)) sources[t.mid] = "screen";
      else if (t.sender.track) sources[t.mid] = t.sender.track.kind === "audio" ? "microphone" : "camera";
    }
    return sources;
  }

  // Runs `step` once everything before it in the signalling with `id` is
  // done (its frames and our own offers, in order): a frame is never taken
  // in the middle of an offer or of an answer being applied.
  queue(id, step) {
    const done = (this.signalling.get(id) || Promise.resolve()).then(step);
    const logged = done.catch((e) => console.error("signalling with", id, e));
    this.signalling.set(id, logged);
    return logged;
  }

  // Offers the connection with `id`: the first time, or again when our
  // screen came or went. Offers may cross (both sides renegotiate at
  // once): the smaller participant id's offer wins, the other side rolls
  // its own back, answers, and offers again afterwards (the "perfect
  // negotiation" pattern, docs/webrtc.md).
  meshOffer(id, pc) {
    return this.queue(id, async () => {
      if (this.mesh.get(id) !== pc) return;
      if (pc.signalingState !== "stable") {
        pc.offerAgain = true; // once our offer out now is answered
        return;
      }
      pc.offerAgain = false;
      await pc.setLocalDescription(await pc.createOffer());
      await this.request({
        type: "call.offer", call_id: this.callId, to: id, sdp: pc.localDescription.sdp, sources: this.sourcesFor(pc),
      });
    });
  }

  async remoteDescription(pc, desc) {
    await pc.setRemoteDescription(desc);
    for (const c of pc.queued.splice(0)) await pc.addIceCandidate(c).catch(() => {});
  }

  // An offer or answer exchange with `id` is done: its screen is shown while
  // its section sends to us, and we offer again if ours changed meanwhile
  // (a screen added while we answered, or an offer of ours rolled back).
  meshSettled(id, pc) {
    if (this.mesh.get(id) !== pc || pc.signalingState !== "stable") return;
    let screen = null;
    for (const t of pc.getTransceivers()) {
      const receiving = t.currentDirection === "recvonly" || t.currentDirection === "sendrecv";
      if (receiving && this.sourceOf(pc.remoteSources, t) === "screen") screen = t.receiver.track;
    }
    const shown = this.meshScreens.get(id);
    if (!screen && shown) this.meshScreens.delete(id);
    else if (screen && shown?.getVideoTracks()[0] !== screen) this.meshScreens.set(id, new MediaStream([screen]));
    this.changed();
    const ours = pc.getTransceivers().filter((t) => this.screenTx.has(t) && !t.stopped);
    const pending = ours.some((t) => (t.mid === null ? t.direction !== "inactive" : t.currentDirection !== t.direction));
    if (pc.offerAgain || pending) this.meshOffer(id, pc);
  }

  dropPeer(id) {
    this.reconnecting.delete(this.mesh.get(id));
    this.mesh.get(id)?.close();
    this.mesh.delete(id);
    this.meshStreams.delete(id);
    this.meshScreens.delete(id);
    this.signalling.delete(id);
  }

  closeMesh() {
    for (const id of [...this.mesh.keys()]) this.dropPeer(id);
  }

  // Speakers in a mesh, from the levels of the audio received.
  readMeshLevels() {
    if (this.topology !== "mesh") return;
    const speaking = new Set();
    for (const [id, pc] of this.mesh) {
      for (const r of pc.getReceivers()) {
        if (r.track.kind !== "audio") continue;
        const level = r.getSynchronizationSources?.()[0]?.audioLevel || 0;
        if (level > SPEAKING_LEVEL) speaking.add(id);
      }
    }
    if ([...speaking].join() !== [...this.speaking].join()) {
      this.speaking = speaking;
      this.changed();
    }
  }

  /** Whether the server holds back `participant`'s `source` for want of
   * bandwidth on our connection (its tile shows that, not a camera off). */
  isHeld(participant, source = "camera") {
    return this.held.has(`${participant}/${source}`);
  }

  // --- SFU --------------------------------------------------------------

  // `renewal`: new connections in place of lost ones.
  async startSfu({ renewal = false } = {}) {
    if (this.sendPc) return;
    const pc = new RTCPeerConnection(this.pcConfig());
    pc.renewal = renewal;
    this.renewalPending = renewal;
    this.sendPc = pc;
    // Our offer with new credentials; the server answers with new ones.
    this.watch(pc, "to the server", () => {
      pc.restartIce();
      this.offerSfu(pc).catch((e) => this.sfuLost(e));
    });
    for (const track of this.stream.getTracks()) {
      const init = { direction: "sendonly", streams: [this.stream] };
      if (track.kind === "video") init.sendEncodings = LAYERS.map((l) => ({ ...l }));
      pc.addTransceiver(track, init);
    }
    if (this.screen) this.addScreen(pc);
    await this.offerSfu(pc);
  }

  // Offers the sending connection `pc` (again, after a track came or went),
  // one offer at a time, naming each section's source.
  offerSfu(pc) {
    const offer = async () => {
      if (this.sendPc !== pc) return;
      await pc.setLocalDescription(await pc.createOffer());
      const r = await this.request({ type: "sfu.offer", call_id: this.callId, sdp: pc.localDescription.sdp, sources: this.sourcesFor(pc) });
      if (this.sendPc === pc) await pc.setRemoteDescription({ type: "answer", sdp: r.sdp });
    };
    const done = this.sfuOffers.then(offer);
    this.sfuOffers = done.catch(() => {});
    return done;
  }

  // A restart refused with `not_on_sfu` on the server: it gave up on our
  // connections (silent too long). New ones take their place, as on a
  // move to the server; the call stays.
  async sfuLost(e) {
    if (e.code !== "not_on_sfu" || this.topology !== "sfu" || this.renewing || this.ended) {
      console.error("ICE restart", e);
      return;
    }
    this.renewing = true;
    try {
      this.closeSfu();
      await this.startSfu({ renewal: true });
    } catch (err) {
      console.error("new connections to the server", err);
    } finally {
      this.renewing = false;
    }
  }

  closeSfu() {
    this.reconnecting.delete(this.sendPc);
    this.reconnecting.delete(this.recvPc);
    this.sendPc?.close();
    this.recvPc?.close();
    this.sendPc = null;
    this.recvPc = null;
    this.sfuStreams.clear();
    this.sfuScreens.clear();
    this.sfuTracks.clear();
    this.playedBy.clear();
  }

  async serverOffer(sdp) {
    if (!this.recvPc) {
      const pc = new RTCPeerConnection(this.pcConfig());
      pc.renewal = this.renewalPending;
      this.recvPc = pc;
      // The server offers this one: it offers again with new credentials.
      this.watch(pc, "from the server", () => {
        this.request({ type: "sfu.restart", call_id: this.callId }).catch((e) => this.sfuLost(e));
      });
      pc.addEventListener("track", () => {
        if (this.recvPc !== pc) return;
        this.syncSfuStreams();
        this.changed();
      });
    }
    const pc = this.recvPc;
    await pc.setRemoteDescription({ type: "offer", sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    this.syncSfuStreams();
    this.changed();
    await this.request({ type: "sfu.answer", call_id: this.callId, sdp: pc.localDescription.sdp });
  }

  // The streams that play each participant through the server, from the
  // tracks its latest offer lists: microphone and camera in one, the screen
  // in another (the server may put all of a participant's tracks in one
  // stream, and a tile must not play the screen). A stream is kept while
  // its tracks stay the same, so its video element plays on.
  syncSfuStreams() {
    const pc = this.recvPc;
    if (!pc) return;
    const byMid = new Map(pc.getTransceivers().map((t) => [t.mid, t]));
    const media = new Map(); // participant id -> its microphone and camera tracks
    const screens = new Map(); // participant id -> [its screen track]
    for (const [mid, t] of this.sfuTracks) {
      const track = byMid.get(mid)?.receiver.track;
      if (!track || t.source === "screen_audio") continue;
      const into = t.source === "screen" ? screens : media;
      into.set(t.participant_id, [...(into.get(t.participant_id) || []), track]);
    }
    for (const [streams, want] of [[this.sfuStreams, media], [this.sfuScreens, screens]]) {
      for (const id of streams.keys()) if (!want.has(id)) streams.delete(id);
      for (const [id, tracks] of want) {
        const had = streams.get(id)?.getTracks() || [];
        const same = had.length === tracks.length && tracks.every((t) => had.includes(t));
        if (!same) streams.set(id, new MediaStream(tracks));
      }
    }
  }

  // On a move to the server: the peer connection with X closes once X plays
  // our media through the server (`sfu.receiving`) and we play X's through it
  // (its video decodes, or its audio arrives when it sends no video), so
  // neither side goes without the other's media (docs/protocol.md).
  closeMeshWhenBothPlay() {
    const started = Date.now();
    const step = async () => {
      if (this.ended || this.topology !== "sfu" || this.mesh.size === 0) return;
      const frames = new Map(); // participant -> video frames decoded from it
      const audio = new Set(); // participants whose audio arrives
      if (this.recvPc) {
        for (const r of (await this.recvPc.getStats()).values()) {
          const from = r.type === "inbound-rtp" && this.sfuTracks.get(r.mid);
          if (!from) continue;
          const id = from.participant_id;
          if (r.kind === "video") frames.set(id, (frames.get(id) || 0) + (r.framesDecoded || 0));
          else if (r.packetsReceived > 0) audio.add(id);
        }
      }
      const plays = (id) => (frames.has(id) ? frames.get(id) > 0 : audio.has(id));
      // Long after the move, a pair that never got there is let go anyway.
      const overdue = Date.now() - started > 15000;
      let closed = false;
      for (const id of [...this.mesh.keys()]) {
        if (overdue || (this.playedBy.has(id) && plays(id))) {
          this.dropPeer(id);
          closed = true;
        }
      }
      if (closed) this.changed();
      setTimeout(step, 100);
    };
    setTimeout(step, 100);
  }

  // Calls `then` once the connection `pcOf()` gives decodes video (or, with
  // no video to decode, receives audio).
  whenFlowing(pcOf, then) {
    const check = async () => {
      if (this.ended) return;
      const pc = pcOf();
      if (pc) {
        let flowing = false;
        for (const r of (await pc.getStats()).values()) {
          if (r.type === "inbound-rtp" && ((r.framesDecoded || 0) > 0 || (r.kind === "audio" && r.packetsReceived > 0))) flowing = true;
        }
        if (flowing) {
          setTimeout(then, 500);
          return;
        }
      }
      setTimeout(check, 250);
    };
    setTimeout(check, 250);
  }

  // --- the server's frames ------------------------------------------------

  async frame(f) {
    if (!f.type.startsWith("call.") && !f.type.startsWith("sfu.")) return;
    if (f.call_id && this.callId && f.call_id !== this.callId) return;
    if (f.type === "sfu.offer" && !this.callId) this.callId = f.call_id; // may precede the join's ack
    try {
      switch (f.type) {
        case "call.offer":
        case "call.answer":
        case "call.ice": {
          // One peer's signalling in the order it came (see queue).
          this.queue(f.from, () => this.meshSignal(f));
          break;
        }
        case "call.participant_joined":
          this.participants.set(f.participant.participant_id, { ...f.participant });
          this.changed();
          break;
        case "call.participant_left":
          // (With `removed_by` a moderator took it out: it is gone all the same.)
          this.dropPeer(f.participant_id);
          this.participants.delete(f.participant_id);
          for (const source of ["camera", "screen"]) this.told.delete(`${f.participant_id}/${source}`);
          this.tileSizes.delete(f.participant_id);
          this.screenSizes.delete(f.participant_id);
          this.speaking.delete(f.participant_id);
          for (const source of ["camera", "screen"]) this.held.delete(`${f.participant_id}/${source}`);
          this.changed();
          break;
        case "call.removed":
          // A moderator took us out of the call: the server has let go of us.
          this.end("You were removed from the call by a moderator.");
          break;
        case "call.topology":
          this.topology = f.topology;
          // The server keeps subscriptions for the call's SFU side only while we are on it.
          this.told.clear();
          this.held.clear();
          this.changed();
          if (f.topology === "sfu") {
            // New SFU connections every time; each peer connection goes once
            // both sides play each other through the server.
            this.closeSfu();
            await this.startSfu();
            this.closeMeshWhenBothPlay();
          } else {
            // Of each pair, the smaller participant id offers.
            for (const id of this.participants.keys()) if (this.me < id) this.meshPeer(id, true);
            this.whenFlowing(() => [...this.mesh.values()][0], () => {
              if (this.topology === "mesh") {
                this.closeSfu();
                this.changed();
              }
            });
          }
          break;
        case "sfu.offer":
          // Tracks that ended are not listed: their sections stay, inactive.
          this.sfuTracks = new Map((f.tracks || []).map((t) => [t.mid, t]));
          await this.serverOffer(f.sdp);
          this.syncSubscriptions();
          break;
        case "sfu.receiving":
          if (f.kind === "video" || !this.hasTrack("video")) this.playedBy.add(f.participant_id);
          break;
        case "sfu.layers":
          await setActiveLayers(this.sendPc, f.mid, f.active);
          break;
        case "sfu.held": {
          const key = `${f.participant_id}/${f.source}`;
          if (f.held) this.held.add(key);
          else this.held.delete(key);
          this.changed();
          break;
        }
        case "call.speaking":
          this.speaking = new Set(f.speakers.map((s) => s.participant_id));
          this.changed();
          break;
        case "call.mute":
          this.onMute(f);
          break;
        case "call.share":
          if (f.participant_id === this.me) {
            // A moderator stopped our share; the server already has.
            if (f.by && !f.sharing && this.screen) {
              this.notice = "A moderator stopped your screen share.";
              await this.stopShare({ tell: false });
            }
          } else {
            const p = this.participants.get(f.participant_id);
            if (p) {
              p.screen_sharing = f.sharing;
              // A share that stopped leaves the view at once, whatever the connections still hold.
              if (!f.sharing) this.meshScreens.delete(f.participant_id);
              this.changed();
            }
          }
          break;
      }
    } catch (e) {
      console.error(f.type, f.from || "", e);
    }
  }

  // A mesh peer's `call.offer`, `call.answer` or `call.ice`.
  async meshSignal(f) {
    switch (f.type) {
      case "call.offer": {
        const pc = this.meshPeer(f.from, false);
        // Offers crossed: the smaller participant id's stands (see meshOffer).
        const crossed = pc.signalingState !== "stable";
        pc.ignoring = crossed && this.me < f.from;
        if (pc.ignoring) break;
        if (crossed) pc.offerAgain = true; // ours is rolled back by taking theirs
        pc.remoteSources = f.sources || {};
        await this.remoteDescription(pc, { type: "offer", sdp: f.sdp });
        await pc.setLocalDescription(await pc.createAnswer());
        await this.request({
          type: "call.answer", call_id: this.callId, to: f.from, sdp: pc.localDescription.sdp, sources: this.sourcesFor(pc),
        });
        this.meshSettled(f.from, pc);
        break;
      }
      case "call.answer": {
        const pc = this.mesh.get(f.from);
        if (!pc || pc.signalingState !== "have-local-offer") break;
        if (f.sources) pc.remoteSources = f.sources;
        await this.remoteDescription(pc, { type: "answer", sdp: f.sdp });
        this.meshSettled(f.from, pc);
        break;
      }
      case "call.ice": {
        const pc = this.mesh.get(f.from);
        if (!pc) break;
        if (pc.remoteDescription) await pc.addIceCandidate(f.candidate).catch((e) => { if (!pc.ignoring) throw e; });
        else pc.queued.push(f.candidate);
        break;
      }
    }
  }

  // --- what the view shows ------------------------------------------------

  // The view says whether a participant's tile is in sight. Out of sight
  // for a second, its camera is paused on the server (call.subscribe), so a
  // grid that scrolls costs nothing for the tiles no one sees; back in
  // sight, it is resumed at once (the server starts it at a keyframe).
  setTileVisible(id, visible) {
    clearTimeout(this.pauseTimers.get(id));
    this.pauseTimers.delete(id);
    if (visible) {
      this.outOfSight.delete(id);
      this.syncSubscriptions();
    } else if (!this.outOfSight.has(id)) {
      this.pauseTimers.set(id, setTimeout(() => {
        this.outOfSight.add(id);
        this.syncSubscriptions();
      }, 1000));
    }
  }

  // The view says how large a participant's tile is drawn, in device
  // pixels: the server sends the camera layer that fills it.
  setTileSize(id, width, height) {
    const size = [Math.max(1, Math.round(width)), Math.max(1, Math.round(height))];
    const was = this.tileSizes.get(id);
    if (was && was[0] === size[0] && was[1] === size[1]) return;
    this.tileSizes.set(id, size);
    this.syncSubscriptions();
  }

  // The view says how large a participant's shared screen is drawn.
  setScreenSize(id, width, height) {
    const size = [Math.max(1, Math.round(width)), Math.max(1, Math.round(height))];
    const was = this.screenSizes.get(id);
    if (was && was[0] === size[0] && was[1] === size[1]) return;
    this.screenSizes.set(id, size);
    this.syncSubscriptions();
  }

  // Tells the server what we want of each camera and screen where it
  // differs from what it has: paused or not, and the size it is drawn at.
  // Peer to peer there is nothing to tell: each connection is our own.
  syncSubscriptions() {
    if (this.topology !== "sfu" || !this.callId || !this.recvPc) return;
    for (const id of this.participants.keys()) {
      const camera = { paused: this.outOfSight.has(id) };
      const size = this.tileSizes.get(id);
      if (size) [camera.max_width, camera.max_height] = size.map((v) => Math.min(v, 65535));
      this.subscribe(id, "camera", camera);
      const screen = this.screenSizes.get(id);
      if (screen) this.subscribe(id, "screen", { max_width: Math.min(screen[0], 65535), max_height: Math.min(screen[1], 65535) });
    }
  }

  subscribe(id, source, want) {
    const key = `${id}/${source}`;
    const text = JSON.stringify(want);
    if (this.told.get(key) === text) return;
    this.told.set(key, text);
    this.request({ type: "call.subscribe", call_id: this.callId, participant_id: id, source, ...want })
      .catch(() => this.told.delete(key)); // told again at the next change
  }

  // The stream that plays a participant: the current topology's path first.
  streamOf(id) {
    const sfu = this.sfuStreams.get(id);
    const mesh = this.meshStreams.get(id);
    return this.topology === "sfu" ? sfu || mesh : mesh || sfu;
  }

  // The stream of a participant's shared screen, while it shares.
  screenOf(id) {
    if (!this.participants.get(id)?.screen_sharing) return null;
    const sfu = this.sfuScreens.get(id);
    const mesh = this.meshScreens.get(id);
    return (this.topology === "sfu" ? sfu || mesh : mesh || sfu) || null;
  }

  // --- moderation -----------------------------------------------------------

  // A moderator's action on participant `id`: `mute_audio`, `mute_video`,
  // `allow_audio`, `allow_video`, `stop_screen` or `remove`. Rejects with
  // the server's nack (`forbidden`, `not_found`).
  moderate(id, action) {
    return this.request({ type: "call.moderate", call_id: this.callId, participant_id: id, action });
  }

  // `call.mute`: someone's own mute, or a moderator's (`by`) of anyone, us
  // included; a moderator's is `locked` where the room does not let the
  // muted unmute themselves.
  onMute(f) {
    const audio = f.kind === "audio";
    if (f.participant_id === this.me) {
      if (!f.by) return;
      const what = audio ? "microphone" : "camera";
      const wasLocked = audio ? this.audioLocked : this.videoLocked;
      if (audio) this.audioLocked = !!f.locked;
      else this.videoLocked = !!f.locked;
      if (wasLocked && !f.locked) {
        // `allow_audio` / `allow_video`: still muted, but ours to unmute again.
        this.notice = `A moderator allowed you to turn your ${what} on again.`;
      } else if (f.muted) {
        this.muteLocally(f.kind, true);
        this.mutedBy[f.kind] = f.by;
        this.notice = `${MUTED_BY_MODERATOR[f.kind]}.` + (f.locked ? " Only a moderator can let you turn it on again." : "");
      }
      this.changed();
      return;
    }
    const p = this.participants.get(f.participant_id);
    if (!p) return;
    p[audio ? "audio_muted" : "video_muted"] = f.muted;
    if (f.by || !f.muted) p[audio ? "audio_locked" : "video_locked"] = !!f.locked;
    // The moderator who muted it, while that mute holds.
    p[audio ? "audio_muted_by" : "video_muted_by"] = (f.muted && f.by) || null;
    this.changed();
  }

  // --- our own media ------------------------------------------------------

  muteLocally(kind, muted) {
    if (!muted) this.mutedBy[kind] = null;
    for (const t of this.stream.getTracks()) if (t.kind === kind) t.enabled = !muted;
    if (kind === "audio") this.audioMuted = muted;
    else this.videoMuted = muted;
  }

  // Our mute button. Unmuting what a moderator locked is asked first, so
  // nothing is sent while the server refuses it (`unmute_locked`); the
  // rejection carries a message for the user.
  async setMuted(kind, muted) {
    const locked = kind === "audio" ? this.audioLocked : this.videoLocked;
    if (!muted && locked) {
      try {
        await this.request({ type: "call.mute", call_id: this.callId, kind, muted });
      } catch (e) {
        throw this.refusedUnmute(kind, e);
      }
      if (kind === "audio") this.audioLocked = false;
      else this.videoLocked = false;
      this.muteLocally(kind, false);
      this.changed();
      return;
    }
    this.muteLocally(kind, muted);
    this.notice = null;
    this.changed();
    try {
      await this.request({ type: "call.mute", call_id: this.callId, kind, muted });
    } catch (e) {
      // Locked meanwhile (a moderator's mute crossed our unmute): stay muted.
      if (e.code === "unmute_locked" && !muted) throw this.refusedUnmute(kind, e);
    }
  }

  refusedUnmute(kind, e) {
    if (e.code !== "unmute_locked") return e;
    if (kind === "audio") this.audioLocked = true;
    else this.videoLocked = true;
    this.muteLocally(kind, true);
    this.changed();
    return new Error(`${MUTED_BY_MODERATOR[kind]}: you can turn it on again once a moderator allows it.`);
  }

  // --- our screen -----------------------------------------------------------

  // Shares a screen, window or tab the user picks: a second video track on
  // every connection (one encoding, tuned for text: no simulcast layers),
  // named `screen` in our offers. Rejects where the user refused or closed
  // the browser's picker.
  async startShare() {
    if (this.screen || this.ended) return;
    const picked = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    const track = picked.getVideoTracks()[0];
    if (this.ended || this.screen) {
      track.stop();
      return;
    }
    if ("contentHint" in track) track.contentHint = "detail";
    // The browser's own "Stop sharing" ends the track. (`onended`, not
    // addEventListener: Firefox gives a track's listeners no untrusted
    // event, and the tests stand in for the browser's bar with one.)
    track.onended = () => {
      if (this.screen === track) this.stopShare().catch((e) => console.error("stop sharing", e));
    };
    this.screen = track;
    this.screenStream = new MediaStream([track]);
    this.notice = null;
    this.changed();
    try {
      await this.request({ type: "call.share", call_id: this.callId, sharing: true });
    } catch (e) {
      if (this.screen === track) await this.stopShare({ tell: false });
      throw e;
    }
    if (this.screen !== track) return;
    const sending = [];
    if (this.sendPc && this.addScreen(this.sendPc)) sending.push(this.offerSfu(this.sendPc));
    for (const [id, pc] of this.mesh) if (this.addScreen(pc)) sending.push(this.meshOffer(id, pc));
    await Promise.all(sending);
  }

  // Adds our screen to a connection, in a section of its own (a new one
  // for each share: the others see a new track), unless it has it already.
  // Returns whether it added it.
  addScreen(pc) {
    if (pc.getTransceivers().some((t) => this.screenTx.has(t) && t.sender.track === this.screen)) return false;
    this.screenTx.add(pc.addTransceiver(this.screen, { direction: "sendonly", streams: [this.screenStream] }));
    return true;
  }

  // Stops sharing: the track stops, its sections go inactive on every
  // connection (offered again), and the others are told, unless `tell` is
  // false (a moderator stopped it, and the server told them).
  async stopShare({ tell = true } = {}) {
    const track = this.screen;
    if (!track) return;
    this.screen = null;
    this.screenStream = null;
    track.stop();
    this.changed();
    const sending = [];
    const off = (pc) => {
      let changed = false;
      for (const t of pc.getTransceivers()) {
        if (!this.screenTx.has(t) || t.stopped || t.direction === "inactive") continue;
        t.sender.replaceTrack(null).catch(() => {});
        t.direction = "inactive";
        changed = true;
      }
      return changed;
    };
    if (this.sendPc && off(this.sendPc)) sending.push(this.offerSfu(this.sendPc));
    for (const [id, pc] of this.mesh) if (off(pc)) sending.push(this.meshOffer(id, pc));
    if (tell && this.callId && !this.ended) {
      sending.push(this.request({ type: "call.share", call_id: this.callId, sharing: false }).catch(() => {}));
    }
    await Promise.all(sending);
  }

  hasTrack(kind) {
    return this.stream.getTracks().some((t) => t.kind === kind);
  }

  // Switches the microphone or camera to another device, on every connection.
  async useDevice(kind, deviceId) {
    const constraints = { deviceId: { exact: deviceId }, ...(kind === "video" ? CAMERA : {}) };
    const fresh = await navigator.mediaDevices.getUserMedia({ [kind]: constraints });
    const track = fresh.getTracks()[0];
    track.enabled = !(kind === "audio" ? this.audioMuted : this.videoMuted);
    const old = this.stream.getTracks().find((t) => t.kind === kind);
    const pcs = [...this.mesh.values(), this.sendPc].filter(Boolean);
    for (const pc of pcs) {
      for (const s of pc.getSenders()) if (s.track && s.track.kind === kind && s.track !== this.screen) await s.replaceTrack(track);
    }
    if (old) {
      this.stream.removeTrack(old);
      old.stop();
    }
    this.stream.addTrack(track);
    this.changed();
  }

  currentDevice(kind) {
    return this.stream.getTracks().find((t) => t.kind === kind)?.getSettings().deviceId;
  }
}
