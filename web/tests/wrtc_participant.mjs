// A libwebrtc participant of a Roost SFU call (`@roamhq/wrtc`: Google's
// WebRTC, the stack of the iOS and Android apps, in Node). It joins a room's
// call over the WebSocket protocol of docs/protocol.md, publishes a
// synthetic microphone (a 440 Hz tone) and camera (moving stripes), answers
// the server's offers of its receiving connection, and at the end prints, as
// JSON, what it received on each media section of that connection at the
// start and at the end of a measuring window that every participant of the
// test shares.
//
//   node wrtc_participant.mjs WS_URL TOKEN ROOM_ID MEASURE_AT_MS MEASURE_MS
//
// MEASURE_AT_MS is a time since the epoch; the program ends MEASURE_MS after it.

import wrtc from "@roamhq/wrtc";

const { RTCPeerConnection, MediaStream, nonstandard } = wrtc;
const { RTCAudioSource, RTCVideoSource, RTCVideoSink } = nonstandard;
const [wsUrl, token, roomId, measureAtArg, measureMsArg] = process.argv.slice(2);
const measureAt = Number(measureAtArg);
const measureMs = Number(measureMsArg);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The synthetic devices: 10 ms of audio every 10 ms, a 320x240 frame every 50 ms.
const audio = new RTCAudioSource();
const video = new RTCVideoSource();
const SAMPLE_RATE = 48000;
let phase = 0;
const audioTimer = setInterval(() => {
  const samples = new Int16Array(SAMPLE_RATE / 100);
  for (let i = 0; i < samples.length; i++) samples[i] = Math.round(8000 * Math.sin((2 * Math.PI * 440 * phase++) / SAMPLE_RATE));
  audio.onData({ samples, sampleRate: SAMPLE_RATE, bitsPerSample: 16, channelCount: 1, numberOfFrames: samples.length });
}, 10);
const W = 320;
const H = 240;
let tick = 0;
const videoTimer = setInterval(() => {
  const data = new Uint8ClampedArray((W * H * 3) / 2);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) data[y * W + x] = ((x + tick * 4) >> 4) & 1 ? 220 : 30;
  data.fill(128, W * H);
  tick++;
  video.onFrame({ width: W, height: H, data });
}, 50);
const stream = new MediaStream([audio.createTrack(), video.createTrack()]);

const ws = new WebSocket(wsUrl, ["roost.v1", "bearer." + token]);
let nextId = 0;
const pending = new Map();
function request(frame) {
  const id = String(++nextId);
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    ws.send(JSON.stringify({ ...frame, id }));
  });
}

const report = { offers: 0, offerErrors: [], tracks: {}, sent: {}, windows: [] };
let callId = null;
let recvPc = null;
const sinks = [];
const framesByTrack = new Map(); // receiving track id -> frames handed to the sink

// The server's offers are answered one at a time, in order.
let offerChain = Promise.resolve();
function onServerOffer(sdp) {
  offerChain = offerChain.then(async () => {
    report.offers += 1;
    try {
      if (!recvPc) {
        recvPc = new RTCPeerConnection({ iceServers: [], bundlePolicy: "max-bundle" });
        recvPc.ontrack = (e) => {
          if (e.track.kind !== "video") return;
          const sink = new RTCVideoSink(e.track);
          framesByTrack.set(e.track.id, 0);
          sink.onframe = () => framesByTrack.set(e.track.id, framesByTrack.get(e.track.id) + 1);
          sinks.push(sink);
        };
      }
      await recvPc.setRemoteDescription({ type: "offer", sdp });
      const answer = await recvPc.createAnswer();
      await recvPc.setLocalDescription(answer);
      await request({ type: "sfu.answer", call_id: callId, sdp: recvPc.localDescription.sdp });
    } catch (e) {
      report.offerErrors.push(String(e && e.message ? e.message : e));
    }
  });
}

ws.onmessage = (m) => {
  const f = JSON.parse(m.data);
  if (f.type === "ack" || f.type === "nack") {
    const p = pending.get(f.id);
    if (!p) return;
    pending.delete(f.id);
    if (f.type === "ack") p.resolve(f.result);
    else p.reject(new Error(`${f.code}: ${f.message}`));
  } else if (f.type === "sfu.offer") {
    for (const t of f.tracks || []) report.tracks[t.mid] = t;
    onServerOffer(f.sdp);
  }
};

// What arrived on each media section of the receiving connection.
async function received() {
  const out = {};
  if (!recvPc) return out;
  const midOfTrack = new Map();
  for (const t of recvPc.getTransceivers()) if (t.mid !== null) midOfTrack.set(t.receiver.track.id, t.mid);
  for (const r of (await recvPc.getStats()).values()) {
    if (r.type !== "inbound-rtp") continue;
    const track = [...(await recvPc.getStats()).values()].find((s) => s.id === r.trackId);
    const trackId = r.trackIdentifier || (track && track.trackIdentifier);
    const mid = r.mid || midOfTrack.get(trackId) || `ssrc:${r.ssrc}`;
    const prev = out[mid] || { kind: r.kind, ssrcs: [], packets: 0, frames: 0 };
    prev.ssrcs.push(r.ssrc);
    prev.packets += r.packetsReceived || 0;
    prev.frames += r.kind === "video" ? framesByTrack.get(trackId) || 0 : 0;
    out[mid] = prev;
  }
  return out;
}

async function sent(pc) {
  const out = { audio: 0, video: 0 };
  for (const r of (await pc.getStats()).values()) if (r.type === "outbound-rtp") out[r.kind] += r.packetsSent || 0;
  return out;
}

async function main() {
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error("websocket error"));
  });
  await request({ type: "hello" });
  const joined = await request({ type: "call.join", room_id: roomId });
  callId = joined.call_id;
  report.participant_id = joined.participant_id;
  report.topology = joined.topology;
  const sendPc = new RTCPeerConnection({ iceServers: [], bundlePolicy: "max-bundle" });
  for (const track of stream.getTracks()) sendPc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  await sendPc.setLocalDescription(await sendPc.createOffer());
  const answer = await request({ type: "sfu.offer", call_id: callId, sdp: sendPc.localDescription.sdp });
  await sendPc.setRemoteDescription({ type: "answer", sdp: answer.sdp });

  await sleep(Math.max(0, measureAt - Date.now()));
  report.windows.push({ received: await received(), sent: await sent(sendPc) });
  await sleep(Math.max(0, measureAt + measureMs - Date.now()));
  report.windows.push({ received: await received(), sent: await sent(sendPc) });
  report.sendConnection = sendPc.connectionState;
  report.recvConnection = recvPc ? recvPc.connectionState : null;
  await offerChain;
  console.log(JSON.stringify(report));
  clearInterval(audioTimer);
  clearInterval(videoTimer);
  for (const s of sinks) s.stop();
  ws.close();
  sendPc.close();
  if (recvPc) recvPc.close();
  // libwebrtc's threads keep the process alive otherwise.
  setTimeout(() => process.exit(0), 200);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
