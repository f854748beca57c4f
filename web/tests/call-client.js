// A browser participant of a Roost call, speaking the protocol of
// docs/protocol.md: peer to peer (mesh) or through the server's SFU, moving
// between the two when the server says so. The browser tests drive it; it
// uses nothing but the documented WebSocket protocol and WebRTC.

export class CallClient {
  constructor({ wsUrl, token, roomId, stream, iceTransportPolicy, videoCodec, answerDelayMs, simulcast }) {
    this.videoCodec = videoCodec || null;
    // Offer the camera as three simulcast encodings (rids q, h, f, smallest
    // first), capped as the web client caps them.
    this.simulcast = Boolean(simulcast);
    // A slow device or network: the server's offers are answered this late.
    this.answerDelayMs = answerDelayMs || 0;
    this.wsUrl = wsUrl;
    this.token = token;
    this.roomId = roomId;
    this.stream = stream;
    this.iceTransportPolicy = iceTransportPolicy || "all";
    this.nextId = 0;
    this.pending = new Map();
    this.mesh = new Map(); // participant id -> RTCPeerConnection
    this.sendPc = null; // SFU: our media to the server
    this.recvPc = null; // SFU: everyone else's media from the server
    this.callId = null;
    this.me = null;
    this.topology = null;
    this.iceServers = [];
    this.log = [];
    this.heardSpeaking = new Set();
    this.sfuTracks = new Map(); // mid -> {participant_id, kind, source}, from the server's sfu.offer
    this.playedBy = new Set(); // who plays our video through the server (sfu.receiving)
  }

  connect() {
    return new Promise((resolve, reject) => {
      this.ws = new WebSocket(this.wsUrl, ["roost.v1", "bearer." + this.token]);
      this.ws.onopen = () => this.request({ type: "hello" }).then(resolve, reject);
      this.ws.onerror = () => reject(new Error("websocket error"));
      this.ws.onmessage = (m) => this.onFrame(JSON.parse(m.data));
    });
  }

  // A request, sent again after a pause when the connection's rate limit
  // answers `rate_limited` (ICE candidates come in bursts).
  async request(frame) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.requestOnce(frame);
      } catch (e) {
        if (e.message !== "rate_limited" || attempt >= 5) throw e;
        await new Promise((r) => setTimeout(r, 250 * (attempt + 1)));
      }
    }
  }

  requestOnce(frame) {
    const id = String(++this.nextId);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ ...frame, id }));
    });
  }

  async join() {
    const r = await this.request({ type: "call.join", room_id: this.roomId });
    this.joinAckedAt = performance.now();
    this.callId = r.call_id;
    this.me = r.participant_id;
    this.topology = r.topology;
    this.iceServers = r.ice_servers;
    for (const p of r.participants) this.othersSet.add(p.participant_id);
    if (this.topology === "mesh") {
      for (const p of r.participants) this.meshPeer(p.participant_id, true);
    } else {
      await this.startSfu();
    }
    return r;
  }

  async leave() {
    await this.request({ type: "call.leave", call_id: this.callId });
    this.closeMesh();
    this.closeSfu();
  }

  pcConfig() {
    return { iceServers: this.iceServers, iceTransportPolicy: this.iceTransportPolicy };
  }

  // --- mesh -------------------------------------------------------------

  meshPeer(id, offerer) {
    let pc = this.mesh.get(id);
    if (pc) return pc;
    pc = new RTCPeerConnection(this.pcConfig());
    this.mesh.set(id, pc);
    for (const track of this.stream.getTracks()) pc.addTrack(track, this.stream);
    pc.onicecandidate = (e) => {
      if (e.candidate) {
        this.request({ type: "call.ice", call_id: this.callId, to: id, candidate: e.candidate.toJSON() })
          .catch(() => {});
      }
    };
    if (offerer) {
      (async () => {
        await pc.setLocalDescription(await pc.createOffer());
        await this.request({ type: "call.offer", call_id: this.callId, to: id, sdp: pc.localDescription.sdp });
      })().catch((e) => this.log.push("offer failed: " + e));
    }
    return pc;
  }

  closeMesh() {
    for (const pc of this.mesh.values()) pc.close();
    this.mesh.clear();
  }

  // --- SFU --------------------------------------------------------------

  async startSfu() {
    if (this.sendPc) return;
    const pc = new RTCPeerConnection(this.pcConfig());
    this.sendPc = pc;
    for (const track of this.stream.getTracks()) {
      const init = { direction: "sendonly", streams: [this.stream] };
      if (track.kind === "video" && this.simulcast) {
        init.sendEncodings = [
          { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 },
          { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 },
          { rid: "f", maxBitrate: 1_500_000 },
        ];
      }
      const t = pc.addTransceiver(track, init);
      if (track.kind === "video" && this.videoCodec) {
        const want = "video/" + this.videoCodec.toLowerCase();
        const codecs = RTCRtpSender.getCapabilities("video").codecs
          .filter((c) => c.mimeType.toLowerCase() === want || c.mimeType.toLowerCase() === "video/rtx");
        t.setCodecPreferences(codecs);
      }
    }
    await pc.setLocalDescription(await pc.createOffer());
    const r = await this.request({ type: "sfu.offer", call_id: this.callId, sdp: pc.localDescription.sdp });
    await pc.setRemoteDescription({ type: "answer", sdp: r.sdp });
  }

  closeSfu() {
    if (this.sendPc) this.sendPc.close();
    if (this.recvPc) this.recvPc.close();
    this.sendPc = null;
    this.recvPc = null;
    this.sfuTracks = new Map();
    this.playedBy = new Set();
  }

  // On a move to the SFU: the peer connection with X closes once X plays our
  // video through the server (`sfu.receiving`) and we decode X's video on our
  // receiving connection, so neither side goes without the other's media.
  closeMeshWhenBothPlay() {
    const started = performance.now();
    const step = async () => {
      if (this.topology !== "sfu" || this.mesh.size === 0) return;
      const decoding = this.recvPc ? await decodingParticipants(this.recvPc, this.sfuTracks) : new Set();
      for (const [id, pc] of [...this.mesh]) {
        if (this.playedBy.has(id) && decoding.has(id)) {
          pc.close();
          this.mesh.delete(id);
        }
      }
      if (this.mesh.size > 0 && performance.now() - started > 15000) {
        this.log.push("peer connections still open 15 s after the move: " + [...this.mesh.keys()]);
        this.closeMesh();
        return;
      }
      setTimeout(step, 100);
    };
    setTimeout(step, 100);
  }

  // Milliseconds from the ack of call.join until `count` video tracks decode
  // on the receiving connection from the server.
  async firstFrames(count, timeoutMs = 10000) {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      if (this.recvPc && (await inbound(this.recvPc)).videoTracksDecoding >= count) {
        return performance.now() - this.joinAckedAt;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    return null;
  }

  // Watches, every 20 ms, the video frames decoded from each participant
  // we are connected to now, over either path; `stopWatch()` gives the
  // longest time each went without a new frame.
  watchFrames() {
    const watched = new Set([...this.mesh.keys(), ...[...this.sfuTracks.values()].map((t) => t.participant_id)]);
    const last = new Map(); // participant -> [frames, at]
    const gaps = new Map();
    this.watching = true;
    const step = async () => {
      if (!this.watching) return;
      const now = performance.now();
      const frames = new Map();
      for (const [id, pc] of this.mesh) frames.set(id, (frames.get(id) || 0) + (await inbound(pc)).videoFrames);
      if (this.recvPc) {
        for (const [id, n] of await framesByParticipant(this.recvPc, this.sfuTracks)) frames.set(id, (frames.get(id) || 0) + n);
      }
      for (const [id, n] of frames) {
        if (!watched.has(id)) continue;
        const prev = last.get(id);
        if (!prev) {
          last.set(id, [n, now]);
          continue;
        }
        // Frames counted on a path that just closed make the sum fall: a new base, not a frame.
        if (n !== prev[0]) {
          if (n > prev[0]) gaps.set(id, Math.max(gaps.get(id) || 0, now - prev[1]));
          last.set(id, [n, n > prev[0] ? now : prev[1]]);
        }
      }
      this.watchGaps = { gaps, last, now };
      setTimeout(step, 20);
    };
    step();
  }

  stopWatch() {
    this.watching = false;
    const { gaps, last, now } = this.watchGaps || { gaps: new Map(), last: new Map(), now: performance.now() };
    const out = {};
    for (const [id, [, at]] of last) out[id] = Math.round(Math.max(gaps.get(id) || 0, now - at));
    return out;
  }

  async onServerOffer(sdp) {
    if (!this.recvPc) this.recvPc = new RTCPeerConnection(this.pcConfig());
    const pc = this.recvPc;
    if (this.answerDelayMs) await new Promise((r) => setTimeout(r, this.answerDelayMs));
    await pc.setRemoteDescription({ type: "offer", sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    (this.sdpLog ||= []).push({ offer: sdp, answer: pc.localDescription.sdp });
    await this.request({ type: "sfu.answer", call_id: this.callId, sdp: pc.localDescription.sdp });
  }

  // --- the server's frames ------------------------------------------------

  async onFrame(f) {
    if (f.type === "ack" || f.type === "nack") {
      const p = this.pending.get(f.id);
      if (!p) return;
      this.pending.delete(f.id);
      if (f.type === "ack") p.resolve(f.result);
      else p.reject(new Error(f.code));
      return;
    }
    try {
      switch (f.type) {
        case "call.offer": {
          const pc = this.meshPeer(f.from, false);
          await pc.setRemoteDescription({ type: "offer", sdp: f.sdp });
          await pc.setLocalDescription(await pc.createAnswer());
          await this.request({ type: "call.answer", call_id: this.callId, to: f.from, sdp: pc.localDescription.sdp });
          break;
        }
        case "call.answer":
          await this.mesh.get(f.from)?.setRemoteDescription({ type: "answer", sdp: f.sdp });
          break;
        case "call.ice":
          await this.mesh.get(f.from)?.addIceCandidate(f.candidate);
          break;
        case "call.participant_left": {
          const pc = this.mesh.get(f.participant_id);
          if (pc) pc.close();
          this.mesh.delete(f.participant_id);
          break;
        }
        case "call.topology":
          this.topology = f.topology;
          if (f.topology === "sfu") {
            // The new path first; the old one goes when the new one plays.
            // Every move to the SFU starts with new connections (the server
            // let go of any it held from an earlier time on the SFU).
            this.closeSfu();
            await this.startSfu();
            this.closeMeshWhenBothPlay();
          } else {
            // Of each pair, the smaller participant id offers.
            for (const id of this.others) if (this.me < id) this.meshPeer(id, true);
            this.whenFlowing(() => [...this.mesh.values()][0], () => this.topology === "mesh" && this.closeSfu());
          }
          break;
        case "sfu.offer":
          for (const t of f.tracks || []) this.sfuTracks.set(t.mid, t);
          await this.onServerOffer(f.sdp);
          break;
        case "sfu.receiving":
          if (f.kind === "video") this.playedBy.add(f.participant_id);
          break;
        case "sfu.layers": {
          // Send only the encodings a viewer receives.
          this.layersTold = (this.layersTold || 0) + 1;
          const sender = this.sendPc?.getTransceivers().find((t) => t.mid === f.mid)?.sender;
          const params = sender?.getParameters();
          if (!params?.encodings?.length) break;
          for (const e of params.encodings) e.active = !e.rid || f.active.includes(e.rid);
          await sender.setParameters(params);
          break;
        }
        case "call.speaking":
          this.speakingFrames = (this.speakingFrames || 0) + 1;
          for (const sp of f.speakers) this.heardSpeaking.add(sp.participant_id);
          break;
        case "call.participant_joined":
          this.othersSet.add(f.participant.participant_id);
          break;
      }
      if (f.type === "call.participant_left") this.othersSet.delete(f.participant_id);
    } catch (e) {
      this.log.push(f.type + ": " + e);
    }
  }

  get others() {
    return [...this.othersSet];
  }

  get othersSet() {
    if (!this._others) this._others = new Set();
    return this._others;
  }

  // Calls `then` once the connection `pcOf()` gives has received video frames.
  whenFlowing(pcOf, then) {
    const check = async () => {
      const pc = pcOf();
      if (pc && (await framesDecoded(pc)) > 0) {
        setTimeout(then, 500);
        return;
      }
      setTimeout(check, 250);
    };
    setTimeout(check, 250);
  }

  // The video streams this participant sends to the server and receives
  // from it: per outbound stream its rid and bytes, per inbound stream its
  // sender (by the offer's tracks), frame size, frames, bytes, the keyframe
  // requests it sent and its freezes (Chromium's count and seconds).
  async videoStreams() {
    const sent = [];
    if (this.sendPc) {
      for (const r of (await this.sendPc.getStats()).values()) {
        if (r.type === "outbound-rtp" && r.kind === "video") {
          sent.push({
            rid: r.rid || null, bytes: r.bytesSent || 0, width: r.frameWidth || 0, frames: r.framesSent || 0,
            limit: r.qualityLimitationReason || null,
          });
        }
      }
    }
    const received = [];
    if (this.recvPc) {
      for (const r of (await this.recvPc.getStats()).values()) {
        if (r.type !== "inbound-rtp" || r.kind !== "video") continue;
        received.push({
          from: this.sfuTracks.get(r.mid)?.participant_id || null, width: r.frameWidth || 0,
          height: r.frameHeight || 0, frames: r.framesDecoded || 0, packets: r.packetsReceived || 0,
          bytes: r.bytesReceived || 0, plis: r.pliCount || 0, freezes: r.freezeCount || 0,
          frozen: r.totalFreezesDuration || 0,
        });
      }
    }
    return { sent, received };
  }

  // Media received, per path.
  async stats() {
    const mesh = { audioPackets: 0, videoFrames: 0, tracks: 0 };
    for (const pc of this.mesh.values()) add(mesh, await inbound(pc));
    const sfu = { audioPackets: 0, videoFrames: 0, tracks: 0 };
    if (this.recvPc) add(sfu, await inbound(this.recvPc));
    let sfuSentPackets = 0;
    // RTCP from the server: receiver reports on what we send, sender reports on what we receive.
    const reports = { receiverReports: 0, senderReports: 0 };
    if (this.sendPc) {
      for (const r of (await this.sendPc.getStats()).values()) {
        if (r.type === "outbound-rtp") sfuSentPackets += r.packetsSent || 0;
        if (r.type === "remote-inbound-rtp") reports.receiverReports += 1;
      }
    }
    if (this.recvPc) {
      for (const r of (await this.recvPc.getStats()).values()) {
        if (r.type === "remote-outbound-rtp") reports.senderReports += 1;
      }
    }
    const pcs = [...this.mesh.values(), this.sendPc, this.recvPc].filter(Boolean);
    const candidateTypes = [];
    for (const pc of pcs) candidateTypes.push(...(await selectedCandidateTypes(pc)));
    return {
      mesh, sfu, sfuSentPackets, meshPeers: this.mesh.size, topology: this.topology, candidateTypes, log: this.log,
      speakingFrames: this.speakingFrames || 0, speakersHeard: this.heardSpeaking.size, reports,
    };
  }
}

function add(into, s) {
  into.audioPackets += s.audioPackets;
  into.videoFrames += s.videoFrames;
  into.tracks += s.tracks;
  into.videoTracksDecoding = (into.videoTracksDecoding || 0) + s.videoTracksDecoding;
  into.audioTracksReceiving = (into.audioTracksReceiving || 0) + s.audioTracksReceiving;
  into.videoCodecsDecoding = [...(into.videoCodecsDecoding || []), ...s.videoCodecsDecoding];
  if (s.videoStalled) into.videoStalled = [...(into.videoStalled || []), ...s.videoStalled];
}

async function inbound(pc) {
  const s = { audioPackets: 0, videoFrames: 0, tracks: 0, videoTracksDecoding: 0, audioTracksReceiving: 0, videoCodecsDecoding: [] };
  const report = await pc.getStats();
  for (const r of report.values()) {
    if (r.type !== "inbound-rtp") continue;
    s.tracks += 1;
    if (r.kind === "audio") {
      s.audioPackets += r.packetsReceived || 0;
      if ((r.packetsReceived || 0) > 0) s.audioTracksReceiving += 1;
    } else {
      s.videoFrames += r.framesDecoded || 0;
      const codec = report.get(r.codecId);
      if ((r.framesDecoded || 0) > 0) {
        s.videoTracksDecoding += 1;
        if (codec) s.videoCodecsDecoding.push(codec.mimeType);
      } else {
        // What a video track that decodes nothing did receive, for the failure message.
        (s.videoStalled ||= []).push({
          codec: codec && `${codec.mimeType} ${codec.payloadType} ${codec.sdpFmtpLine || ""}`,
          packets: r.packetsReceived, frames: r.framesReceived, plis: r.pliCount, nacks: r.nackCount,
          keyframes: r.keyFramesDecoded, decoder: r.decoderImplementation,
        });
      }
    }
  }
  return s;
}

// The video frames decoded per sending participant on the receiving
// connection from the server, by the `tracks` of its offers.
async function framesByParticipant(pc, tracks) {
  const out = new Map();
  for (const r of (await pc.getStats()).values()) {
    if (r.type !== "inbound-rtp" || r.kind !== "video") continue;
    const t = tracks.get(r.mid);
    if (t) out.set(t.participant_id, (out.get(t.participant_id) || 0) + (r.framesDecoded || 0));
  }
  return out;
}

async function decodingParticipants(pc, tracks) {
  const out = new Set();
  for (const [id, n] of await framesByParticipant(pc, tracks)) if (n > 0) out.add(id);
  return out;
}

async function framesDecoded(pc) {
  return (await inbound(pc)).videoFrames;
}

// The local candidate types of the connection's selected candidate pairs.
async function selectedCandidateTypes(pc) {
  const report = await pc.getStats();
  const types = [];
  for (const r of report.values()) {
    if (r.type === "transport" && r.selectedCandidatePairId) {
      const pair = report.get(r.selectedCandidatePairId);
      const local = pair && report.get(pair.localCandidateId);
      if (local) types.push(local.candidateType);
    }
  }
  return types;
}
