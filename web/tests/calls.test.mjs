// Calls in headless Chromium against a real `roost serve` on loopback:
// two participants peer to peer (the server forwards nothing), five through
// the SFU (each decodes the other four), and back to peer to peer at three,
// with media flowing throughout; then two participants allowed only relayed
// candidates call through a real coturn with the credentials Roost issues.
// An aiortc participant (another WebRTC stack) joins the SFU call and
// receives the browsers' audio. The server spreads a call over its media
// loops from the third participant on one loop (ADR 0021), so the SFU call
// runs across two loops: the browsers' media crosses between them.
// Chromium runs as several processes, as separate machines would.
//
//   ROOST_BIN=path/to/roost node calls.test.mjs

import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import {
  CHROMIUM, PASSWORD, api, check, chromiumArgs, fail, freePort, serveHarness, sleep, startRoost as startRoostWith,
} from "./support.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const TURN_SECRET = "browser-test-secret-0123456789";

// coturn with the shipped configuration, on loopback; the test's peers are
// loopback addresses, which the shipped file denies, so they are allowed here.
async function startCoturn() {
  const port = await freePort();
  const conf = join(here, "../../turn-config/turnserver.conf");
  const child = spawn("turnserver", [
    "-c", conf, `--static-auth-secret=${TURN_SECRET}`, "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
    `--listening-port=${port}`, "--min-port=41000", "--max-port=41100", "--no-tls", "--no-dtls",
    "--realm=roost.test", "--allow-loopback-peers", "--allowed-peer-ip=127.0.0.1",
  ], { stdio: "ignore" });
  await sleep(500);
  return { child, url: `turn:127.0.0.1:${port}?transport=udp` };
}

function startRoost(origin, turnUrl) {
  return startRoostWith({
    ROOST_CALLS__MESH_MAX: "4",
    ROOST_CALLS__SFU_GRACE_SECS: "60",
    ROOST_MEDIA__LOOPS: "2",
    ROOST_MEDIA__SPREAD_CALL_AFTER: "2",
    ROOST_GATEWAY__ALLOWED_ORIGINS: JSON.stringify([origin]),
    ROOST_TURN_URLS: JSON.stringify([turnUrl]),
    ROOST_TURN_SECRET: TURN_SECRET,
  }, "info,rtc=warn");
}

// Runs the aiortc participant for `seconds`; returns what it reports.
function runAiortc(wsUrl, token, roomId, seconds) {
  return new Promise((resolve) => {
    const child = spawn(process.env.PYTHON || "python3", [join(here, "aiortc_participant.py"), wsUrl, token, roomId, String(seconds)]);
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("exit", (code) => {
      const last = out.trim().split("\n").pop();
      if (code !== 0 || !last) fail(`aiortc exited ${code}: ${err}`);
      if (process.env.AIORTC_DEBUG) console.error(err);
      resolve(JSON.parse(last));
    });
  });
}

async function stats(page) {
  return page.evaluate(() => window.participant.stats());
}

// Waits until `pred(stats)` holds for every page, or fails after `ms`.
async function waitAll(pages, pred, ms, what) {
  const deadline = Date.now() + ms;
  let last = [];
  while (Date.now() < deadline) {
    last = await Promise.all(pages.map(stats));
    if (last.every(pred)) return last;
    await sleep(500);
  }
  if (process.env.ROOST_DEBUG_SDP) {
    for (const [i, page] of pages.entries()) {
    const log = await page.evaluate(() => window.participant.sdpLog);
    console.error(`page ${i}: ${(log || []).length} server offers`);
    for (const { offer, answer } of (log || []).slice(-1)) {
      console.error("OFFER " + offer.split("\r\n").filter((l) => /^(m=|a=rtpmap|a=mid|a=send|a=recv|a=fmtp:\d+ .*profile-level)/.test(l)).join(" | "));
      console.error("ANSWER " + answer.split("\r\n").filter((l) => /^(m=|a=rtpmap|a=mid|a=send|a=recv)/.test(l)).join(" | "));
    }
    }
  }
  fail(`${what} within ${ms / 1000} s; last stats: ${JSON.stringify(last, null, 1)}`);
}

// Media received on `path` keeps rising on every page.
async function rising(pages, path, what) {
  const before = await Promise.all(pages.map(stats));
  await sleep(2000);
  const after = await Promise.all(pages.map(stats));
  after.forEach((a, i) => {
    const b = before[i];
    check(a[path].audioPackets > b[path].audioPackets, `${what}: participant ${i} keeps receiving audio over ${path}`);
    check(a[path].videoFrames > b[path].videoFrames, `${what}: participant ${i} keeps decoding video over ${path}`);
  });
}

async function main() {
  const harness = await serveHarness();
  const origin = `http://127.0.0.1:${harness.address().port}`;
  const coturn = await startCoturn();
  const roost = await startRoost(origin, coturn.url);
  const browsers = [];
  try {
    const base = roost.url;
    const wsUrl = base.replace("http://", "ws://") + "/v1/ws";
    const users = [];
    for (let i = 0; i < 8; i++) {
      users.push(await api(base, "/v1/auth/register", {
        email: `caller${i}@example.org`, username: `caller${i}`, password: PASSWORD,
      }));
    }
    const room = await api(base, "/v1/rooms", { name: "call room" }, users[0].access_token);
    for (const u of [...users.slice(1, 5), users[7]]) {
      await api(base, `/v1/rooms/${room.id}/members`, { user_id: u.user.id }, users[0].access_token);
    }

    // Three browser processes: pages 0-1, 2-3 and 4.
    const pages = [];
    for (const count of [2, 2, 1]) {
      const ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "chromium-")), {
        executablePath: CHROMIUM, headless: true, args: chromiumArgs(),
      });
      browsers.push(ctx);
      for (let i = 0; i < count; i++) pages.push(await ctx.newPage());
    }
    for (const [i, page] of pages.entries()) {
      page.on("console", (m) => m.type() === "error" && console.error(`[page ${i}] ${m.text()}`));
      await page.goto(`${origin}/harness.html`);
      await page.waitForFunction(() => window.ready === true);
      // Participant 2 sends H264 to the SFU, the others VP8.
      await page.evaluate((o) => window.startParticipant(o), {
        wsUrl, token: users[i].access_token, roomId: room.id, videoCodec: i === 2 ? "H264" : undefined,
      });
    }
    const joinCall = (i) => pages[i].evaluate(() => window.participant.join());
    const leaveCall = (i) => pages[i].evaluate(() => window.participant.leave());

    // Two: peer to peer.
    const first = await joinCall(0);
    check(first.topology === "mesh", "the first participant's call is peer to peer");
    check(first.ice_servers.length === 1 && first.ice_servers[0].username.endsWith(":" + users[0].user.id),
      "call.join hands out Roost's TURN credential");
    const second = await joinCall(1);
    check(second.topology === "mesh" && second.participants.length === 1, "the second joins the same mesh call");
    await waitAll(pages.slice(0, 2), (s) => s.mesh.videoFrames > 0 && s.mesh.audioPackets > 0, 20000,
      "two participants receive each other's audio and video peer to peer");
    await rising(pages.slice(0, 2), "mesh", "mesh of two");
    const two = await Promise.all(pages.slice(0, 2).map(stats));
    check(two.every((s) => s.sfu.tracks === 0 && s.sfuSentPackets === 0), "in the mesh nothing goes through the server");

    // Five: the fifth moves the call to the SFU; each decodes the other four.
    for (const i of [2, 3]) check((await joinCall(i)).topology === "mesh", `participant ${i} joins the mesh`);
    const fifth = await joinCall(4);
    check(fifth.topology === "sfu", "the fifth participant moves the call to the SFU");
    await waitAll(pages, (s) => s.topology === "sfu" && s.sfu.videoTracksDecoding >= 4 && s.sfu.audioTracksReceiving >= 4,
      30000, "all five decode the other four's video and receive their audio through the SFU");
    await rising(pages, "sfu", "SFU call of five");
    const five = await Promise.all(pages.map(stats));
    check(five.every((s) => s.meshPeers === 0), "once the SFU carries the media the peer connections are closed");
    const codecs = five.map((s) => s.sfu.videoCodecsDecoding);
    check(codecs.every((c, i) => i === 2 || c.filter((m) => m === "video/H264").length === 1),
      "the SFU forwards H264 as it was sent, and the others decode it: " + JSON.stringify(codecs));
    check(codecs.every((c, i) => c.filter((m) => m === "video/VP8").length === (i === 2 ? 4 : 3)),
      "and VP8 from the other four: " + JSON.stringify(codecs));
    check(five.every((s) => s.reports.receiverReports > 0 && s.reports.senderReports > 0),
      "the server sends receiver reports on what it receives and sender reports on what it sends");
    check(five.every((s) => s.speakingFrames > 0 && s.speakersHeard >= 2),
      "call.speaking names who speaks, from the browsers' audio levels: " + five.map((s) => s.speakersHeard));

    // A sixth participant on another stack.
    const py = await runAiortc(wsUrl, users[7].access_token, room.id, 8);
    check(py.topology === "sfu" && py.connection === "connected", "an aiortc participant joins the SFU call: " + JSON.stringify(py));
    check(roost.stderr().split("\n").some((l) => l.includes("a call's media loops changed") && l.includes("[0, 1]")),
      "the SFU call runs across both media loops");
    check(py.audio_tracks_receiving >= 5 && py.audio_frames > 500,
      `aiortc decodes the audio of all five Chromium participants (${py.audio_tracks_receiving} tracks, ${py.audio_frames} frames)`);
    // aiortc sends no transport-wide feedback: the server sends it the send
    // time in each video packet, from which aiortc estimates its bandwidth
    // and sends REMB, and the server fits the video to that.
    check(py.remb_sent > 0 && py.video_tracks_receiving >= 4 && py.video_frames > 100,
      `aiortc sends REMB (${py.remb_sent}, the last ${py.last_remb} bit/s) and decodes the video of ${py.video_tracks_receiving} participants (${py.video_frames} frames)`);

    // Two leave: back to peer to peer at three, media flowing.
    await leaveCall(3);
    await leaveCall(4);
    const three = pages.slice(0, 3);
    await waitAll(three, (s) => s.topology === "mesh" && s.meshPeers === 2 && s.mesh.videoFrames > 0,
      30000, "three participants are peer to peer again");
    await rising(three, "mesh", "mesh of three after the SFU");

    // Two come back while the server still holds the SFU connections (the
    // grace period is a minute here): the call moves to the SFU again on new ones.
    await joinCall(3);
    check((await joinCall(4)).topology === "sfu", "the fifth again moves the call back to the SFU");
    await waitAll(pages, (s) => s.topology === "sfu" && s.meshPeers === 0 && s.sfu.videoTracksDecoding >= 4
      && s.sfu.audioTracksReceiving >= 4, 30000, "all five decode the others through the SFU again");
    await rising(pages, "sfu", "SFU call of five, the second time");
    await leaveCall(3);
    await leaveCall(4);
    const logs = (await Promise.all(pages.map(stats))).flatMap((s) => s.log);
    check(logs.length === 0, "no signalling step failed in any page: " + JSON.stringify(logs));

    // Relay only: a call through coturn with the credential Roost issued.
    const relayRoom = await api(base, "/v1/rooms", { name: "relay room" }, users[5].access_token);
    await api(base, `/v1/rooms/${relayRoom.id}/members`, { user_id: users[6].user.id }, users[5].access_token);
    const ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "chromium-")), {
      executablePath: CHROMIUM, headless: true, args: chromiumArgs(),
    });
    browsers.push(ctx);
    const relayed = [];
    for (const i of [5, 6]) {
      const page = await ctx.newPage();
      await page.goto(`${origin}/harness.html`);
      await page.waitForFunction(() => window.ready === true);
      await page.evaluate((o) => window.startParticipant(o), {
        wsUrl, token: users[i].access_token, roomId: relayRoom.id, iceTransportPolicy: "relay",
      });
      await page.evaluate(() => window.participant.join());
      relayed.push(page);
    }
    await waitAll(relayed, (s) => s.mesh.videoFrames > 0 && s.mesh.audioPackets > 0, 30000,
      "two relay-only participants receive each other's media");
    await rising(relayed, "mesh", "call through coturn");
    const types = (await Promise.all(relayed.map(stats))).flatMap((s) => s.candidateTypes);
    check(types.length > 0 && types.every((t) => t === "relay"), "every selected candidate is a TURN relay: " + types);
  } finally {
    for (const b of browsers) await b.close().catch(() => {});
    roost.child.kill("SIGTERM");
    coturn.child.kill("SIGTERM");
    harness.close();
    if (process.exitCode) console.error(roost.stderr().split("\n").slice(-40).join("\n"));
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
