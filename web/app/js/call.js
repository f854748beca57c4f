// A call in a room, over the documented protocol (docs/protocol.md, "Calls";
// docs/webrtc.md): peer to peer while the call is small (`mesh`), through
// the server's SFU from `calls.mesh_max + 1` participants, moving between the
// two when the server sends `call.topology`, keeping the old path until the
// new one plays. The Call object holds the state; the app renders it from
// the "change" events it dispatches.

const SPEAKING_LEVEL = 0.03; // of 1, for levels read locally in a mesh

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
    this.participants = new Map(); // participant id -> {user_id, audio_muted, video_muted}
    this.mesh = new Map(); // participant id -> RTCPeerConnection
    this.meshStreams = new Map(); // participant id -> MediaStream
    this.sfuStreams = new Map(); // participant id -> MediaStream, from the server
    this.sfuTracks = new Map(); // mid -> {participant_id, kind, source}, from the server's sfu.offer
    this.playedBy = new Set(); // who plays our media through the server (sfu.receiving)
    this.outOfSight = new Set(); // participants whose tile has been out of view a while
    this.tileSizes = new Map(); // participant id -> [width, height] in device pixels
    this.told = new Map(); // participant id -> the call.subscribe last acknowledged, as JSON
    this.pauseTimers = new Map();
    this.sendPc = null;
    this.recvPc = null;
    this.speaking = new Set();
    this.audioMuted = false;
    this.videoMuted = false;
    this.error = null;
    this.ended = false;
    this.onFrame = (e) => this.frame(e.detail);
    this.onDown = () => this.end("The connection to the server dropped; the call ended.");
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
    clearInterval(this.levelTimer);
    this.closeMesh();
    this.closeSfu();
    for (const t of this.stream?.getTracks() || []) t.stop();
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

  watch(pc, what) {
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed" && !this.ended) {
        this.fail(`The media connection ${what} failed (ICE could not find a path). A TURN server may be needed.`);
      }
    });
  }

  // --- mesh -------------------------------------------------------------

  meshPeer(id, offerer) {
    let pc = this.mesh.get(id);
    if (pc) return pc;
    pc = new RTCPeerConnection(this.pcConfig());
    pc.queued = [];
    this.mesh.set(id, pc);
    for (const track of this.stream.getTracks()) pc.addTrack(track, this.stream);
    pc.addEventListener("icecandidate", (e) => {
      if (e.candidate) {
        this.request({ type: "call.ice", call_id: this.callId, to: id, candidate: e.candidate.toJSON() }).catch(() => {});
      }
    });
    pc.addEventListener("track", (e) => {
      if (this.mesh.get(id) !== pc) return;
      this.meshStreams.set(id, e.streams[0] || new MediaStream([e.track]));
      this.changed();
    });
    this.watch(pc, `with ${id}`);
    if (offerer) {
      (async () => {
        await pc.setLocalDescription(await pc.createOffer());
        await this.request({ type: "call.offer", call_id: this.callId, to: id, sdp: pc.localDescription.sdp });
      })().catch((e) => console.error("call offer", e));
    }
    return pc;
  }

  async remoteDescription(pc, desc) {
    await pc.setRemoteDescription(desc);
    for (const c of pc.queued.splice(0)) await pc.addIceCandidate(c).catch(() => {});
  }

  dropPeer(id) {
    this.mesh.get(id)?.close();
    this.mesh.delete(id);
    this.meshStreams.delete(id);
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

  // --- SFU --------------------------------------------------------------

  async startSfu() {
    if (this.sendPc) return;
    const pc = new RTCPeerConnection(this.pcConfig());
    this.sendPc = pc;
    this.watch(pc, "to the server");
    for (const track of this.stream.getTracks()) {
      const init = { direction: "sendonly", streams: [this.stream] };
      if (track.kind === "video") init.sendEncodings = LAYERS.map((l) => ({ ...l }));
      pc.addTransceiver(track, init);
    }
    await pc.setLocalDescription(await pc.createOffer());
    const r = await this.request({ type: "sfu.offer", call_id: this.callId, sdp: pc.localDescription.sdp });
    if (this.sendPc === pc) await pc.setRemoteDescription({ type: "answer", sdp: r.sdp });
  }

  closeSfu() {
    this.sendPc?.close();
    this.recvPc?.close();
    this.sendPc = null;
    this.recvPc = null;
    this.sfuStreams.clear();
    this.sfuTracks.clear();
    this.playedBy.clear();
  }

  async serverOffer(sdp) {
    if (!this.recvPc) {
      const pc = new RTCPeerConnection(this.pcConfig());
      this.recvPc = pc;
      this.watch(pc, "from the server");
      pc.addEventListener("track", (e) => {
        if (this.recvPc !== pc) return;
        const stream = e.streams[0];
        const from = this.sfuTracks.get(e.transceiver.mid);
        if (!stream || !from) return;
        this.sfuStreams.set(from.participant_id, stream);
        stream.addEventListener("removetrack", () => this.changed());
        this.changed();
      });
    }
    const pc = this.recvPc;
    await pc.setRemoteDescription({ type: "offer", sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    await this.request({ type: "sfu.answer", call_id: this.callId, sdp: pc.localDescription.sdp });
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
        case "call.offer": {
          const pc = this.meshPeer(f.from, false);
          await this.remoteDescription(pc, { type: "offer", sdp: f.sdp });
          await pc.setLocalDescription(await pc.createAnswer());
          await this.request({ type: "call.answer", call_id: this.callId, to: f.from, sdp: pc.localDescription.sdp });
          break;
        }
        case "call.answer": {
          const pc = this.mesh.get(f.from);
          if (pc) await this.remoteDescription(pc, { type: "answer", sdp: f.sdp });
          break;
        }
        case "call.ice": {
          const pc = this.mesh.get(f.from);
          if (!pc) break;
          if (pc.remoteDescription) await pc.addIceCandidate(f.candidate);
          else pc.queued.push(f.candidate);
          break;
        }
        case "call.participant_joined":
          this.participants.set(f.participant.participant_id, { ...f.participant });
          this.changed();
          break;
        case "call.participant_left":
          this.dropPeer(f.participant_id);
          this.participants.delete(f.participant_id);
          this.told.delete(f.participant_id);
          this.tileSizes.delete(f.participant_id);
          this.speaking.delete(f.participant_id);
          this.changed();
          break;
        case "call.topology":
          this.topology = f.topology;
          // The server keeps subscriptions for the call's SFU side only while we are on it.
          this.told.clear();
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
          for (const t of f.tracks || []) this.sfuTracks.set(t.mid, t);
          await this.serverOffer(f.sdp);
          this.syncSubscriptions();
          break;
        case "sfu.receiving":
          if (f.kind === "video" || !this.hasTrack("video")) this.playedBy.add(f.participant_id);
          break;
        case "sfu.layers":
          await setActiveLayers(this.sendPc, f.mid, f.active);
          break;
        case "call.speaking":
          this.speaking = new Set(f.speakers.map((s) => s.participant_id));
          this.changed();
          break;
        case "call.mute": {
          const p = this.participants.get(f.participant_id);
          if (p) {
            p[f.kind === "audio" ? "audio_muted" : "video_muted"] = f.muted;
            this.changed();
          }
          break;
        }
      }
    } catch (e) {
      console.error(f.type, f.from || "", e);
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

  // Tells the server what we want of each camera where it differs from what
  // it has: paused or not, and the size it is drawn at. Peer to peer there
  // is nothing to tell: each connection is our own.
  syncSubscriptions() {
    if (this.topology !== "sfu" || !this.callId || !this.recvPc) return;
    for (const id of this.participants.keys()) {
      const want = { paused: this.outOfSight.has(id) };
      const size = this.tileSizes.get(id);
      if (size) [want.max_width, want.max_height] = size.map((v) => Math.min(v, 65535));
      const text = JSON.stringify(want);
      if (this.told.get(id) === text) continue;
      this.told.set(id, text);
      this.request({ type: "call.subscribe", call_id: this.callId, participant_id: id, source: "camera", ...want })
        .catch(() => this.told.delete(id)); // told again at the next change
    }
  }

  // The stream that plays a participant: the current topology's path first.
  streamOf(id) {
    const sfu = this.sfuStreams.get(id);
    const mesh = this.meshStreams.get(id);
    return this.topology === "sfu" ? sfu || mesh : mesh || sfu;
  }

  // --- our own media ------------------------------------------------------

  async setMuted(kind, muted) {
    for (const t of this.stream.getTracks()) if (t.kind === kind) t.enabled = !muted;
    if (kind === "audio") this.audioMuted = muted;
    else this.videoMuted = muted;
    this.changed();
    await this.request({ type: "call.mute", call_id: this.callId, kind, muted }).catch(() => {});
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
      for (const s of pc.getSenders()) if (s.track && s.track.kind === kind) await s.replaceTrack(track);
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
