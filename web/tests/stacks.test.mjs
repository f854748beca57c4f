// An SFU call of four WebRTC stacks against a real `roost serve`: two
// Chromium pages, a GStreamer webrtcbin participant (gst_participant.py) and
// a libwebrtc one (`@roamhq/wrtc`, wrtc_participant.mjs), joining one after
// another so that each receiving connection takes several re-offers that add
// tracks. Every participant must receive every other one's audio and video,
// each on a media section of its own: by the `tracks` of the server's offers
// (mid -> participant), the packets on each section match what that one
// participant sent in the same window (one sender per section, none empty),
// GStreamer's source pads each carry one SSRC, and libwebrtc and GStreamer
// accept every re-offer.
//
// libwebrtc gathers every address of the machine and libnice leaves loopback
// out, so the whole test runs in a network namespace of its own with only
// loopback and one end of a veth pair (10.250.9.1): the server's media address,
// and the one every participant's ICE uses. The test makes the namespace,
// runs itself inside it and removes it at the end (root needed).
//
//   ROOST_BIN=path/to/roost node stacks.test.mjs

import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { CHROMIUM, PASSWORD, api, check, chromiumArgs, fail, serveHarness, sleep, startRoost } from "./support.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const MEDIA_ADDRESS = "10.250.9.1";

function ip(...args) {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

// Outside the namespace: make it, run this file inside it, and remove it.
function runInNamespace() {
  const ns = `roost-stacks-${process.pid}`;
  ip("netns", "add", ns);
  let code = 1;
  try {
    ip("netns", "exec", ns, "ip", "link", "set", "lo", "up");
    // Both ends of a veth pair inside: an interface that is not loopback
    // (the kernel here may lack the dummy type), reaching nothing outside.
    ip("netns", "exec", ns, "ip", "link", "add", "s0", "type", "veth", "peer", "name", "s1");
    ip("netns", "exec", ns, "ip", "addr", "add", `${MEDIA_ADDRESS}/24`, "dev", "s0");
    ip("netns", "exec", ns, "ip", "link", "set", "s0", "up");
    ip("netns", "exec", ns, "ip", "link", "set", "s1", "up");
    const r = spawnSync("ip", ["netns", "exec", ns, process.execPath, fileURLToPath(import.meta.url)], {
      stdio: "inherit", env: { ...process.env, ROOST_STACKS_NETNS: ns },
    });
    code = r.status ?? 1;
  } finally {
    // Whatever is left inside (a browser or participant that did not exit).
    for (const pid of ip("netns", "pids", ns).split("\n").filter(Boolean)) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {}
    }
    ip("netns", "del", ns);
  }
  process.exitCode = code;
}

// Runs a participant program until it prints its JSON report.
function participant(name, command, args) {
  const child = spawn(command[0], [...command.slice(1), ...args]);
  let out = "";
  let err = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (err += d));
  const done = new Promise((resolve) => {
    child.on("exit", (code) => {
      const last = out.trim().split("\n").pop();
      if (process.env.STACKS_DEBUG) console.error(`[${name}] ${err}`);
      if (code !== 0 || !last) {
        resolve({ error: `${name} exited ${code}: ${err.split("\n").slice(-15).join("\n")}` });
        return;
      }
      resolve(JSON.parse(last));
    });
  });
  return { child, done };
}

// A Chromium page's view, in the participant programs' shape: per mid of
// its receiving connection, the packets (and video frames) received and the
// SSRCs they came on; and the packets it sent, per kind.
async function pageWindow(page) {
  return page.evaluate(async () => {
    const p = window.participant;
    const received = {};
    if (p.recvPc) {
      for (const r of (await p.recvPc.getStats()).values()) {
        if (r.type !== "inbound-rtp") continue;
        const e = (received[r.mid] ||= { kind: r.kind, ssrcs: [], packets: 0, frames: 0 });
        e.ssrcs.push(r.ssrc);
        e.packets += r.packetsReceived || 0;
        e.frames += r.framesDecoded || 0;
      }
    }
    const sent = { audio: 0, video: 0 };
    if (p.sendPc) {
      for (const r of (await p.sendPc.getStats()).values()) if (r.type === "outbound-rtp") sent[r.kind] += r.packetsSent || 0;
    }
    return { received, sent };
  });
}

// GStreamer's report is by source pad (each names its section's mid):
// regrouped by mid, with the packets per pad and per SSRC.
function byMid(pads) {
  const out = {};
  for (const [pad, e] of Object.entries(pads)) {
    const m = (out[e.mid] ||= { kind: e.kind, packets: 0, pads: {}, ssrcs: {} });
    m.packets += e.packets;
    m.pads[pad] = e.packets;
    for (const [ssrc, c] of Object.entries(e.ssrcs)) m.ssrcs[ssrc] = (m.ssrcs[ssrc] || 0) + c;
  }
  return out;
}

async function inside() {
  const harness = await serveHarness();
  const origin = `http://127.0.0.1:${harness.address().port}`;
  const roost = await startRoost({
    ROOST_CALLS__MESH_MAX: "0",
    ROOST_MEDIA__LISTEN: `${MEDIA_ADDRESS}:0`,
    ROOST_GATEWAY__ALLOWED_ORIGINS: JSON.stringify([origin]),
  }, "info,rtc=warn,rtc_dtls=error");
  const browsers = [];
  const children = [];
  try {
    const base = roost.url;
    const wsUrl = base.replace("http://", "ws://") + "/v1/ws";
    const names = ["chromium0", "wrtc", "gst", "chromium1"];
    const users = {};
    for (const n of names) {
      users[n] = await api(base, "/v1/auth/register", { email: `${n}@example.org`, username: n, password: PASSWORD });
    }
    const room = await api(base, "/v1/rooms", { name: "stacks" }, users.chromium0.access_token);
    for (const n of names.slice(1)) {
      await api(base, `/v1/rooms/${room.id}/members`, { user_id: users[n].user.id }, users.chromium0.access_token);
    }

    // Everyone measures the same window, after the last has joined.
    const JOIN_GAP = 2500;
    const measureAt = Date.now() + 4 * JOIN_GAP + 12000;
    const MEASURE = 6000;
    const pages = {};
    const programs = {};
    const startPage = async (n) => {
      const ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "chromium-")), {
        executablePath: CHROMIUM, headless: true, args: chromiumArgs(),
      });
      browsers.push(ctx);
      const page = await ctx.newPage();
      page.on("console", (m) => m.type() === "error" && console.error(`[${n}] ${m.text()}`));
      await page.goto(`${origin}/harness.html`);
      await page.waitForFunction(() => window.ready === true);
      await page.evaluate((o) => window.startParticipant(o), { wsUrl, token: users[n].access_token, roomId: room.id });
      const joined = await page.evaluate(() => window.participant.join());
      check(joined.topology === "sfu", `${n} joins the call through the SFU`);
      pages[n] = page;
    };
    const args = (n) => [wsUrl, users[n].access_token, room.id, String(measureAt), String(MEASURE)];
    // libwebrtc second and GStreamer third: both take re-offers that add tracks.
    await startPage("chromium0");
    await sleep(JOIN_GAP);
    programs.wrtc = participant("wrtc", [process.execPath, "--experimental-websocket", "--no-warnings", join(here, "wrtc_participant.mjs")], args("wrtc"));
    children.push(programs.wrtc.child);
    await sleep(JOIN_GAP);
    programs.gst = participant("gst", [process.env.GST_PYTHON || "/usr/bin/python3", join(here, "gst_participant.py")], args("gst"));
    children.push(programs.gst.child);
    await sleep(JOIN_GAP);
    await startPage("chromium1");

    await sleep(Math.max(0, measureAt - Date.now()));
    const first = {};
    for (const n of Object.keys(pages)) first[n] = await pageWindow(pages[n]);
    await sleep(Math.max(0, measureAt + MEASURE - Date.now()));
    const last = {};
    for (const n of Object.keys(pages)) last[n] = await pageWindow(pages[n]);

    // Each participant's report: participant id, tracks (mid -> whose), windows.
    const reports = {};
    for (const n of Object.keys(pages)) {
      const p = await pages[n].evaluate(() => ({
        me: window.participant.me, tracks: Object.fromEntries(window.participant.sfuTracks), log: window.participant.log,
      }));
      reports[n] = { participant_id: p.me, tracks: p.tracks, windows: [first[n], last[n]], offerErrors: p.log };
    }
    for (const n of Object.keys(programs)) {
      const r = await programs[n].done;
      if (r.error) fail(r.error);
      reports[n] = { ...r, offerErrors: r.offerErrors || r.offer_errors };
      if (n === "gst") reports[n].windows = r.windows.map(({ received, sent }) => ({ received: byMid(received), sent }));
    }
    if (process.env.STACKS_DEBUG) console.error(JSON.stringify(reports, null, 1));

    const who = Object.fromEntries(names.map((n) => [reports[n].participant_id, n]));
    check(reports.wrtc.offers >= 2 && reports.gst.offers >= 2,
      `the receiving connections took several offers (libwebrtc ${reports.wrtc.offers}, GStreamer ${reports.gst.offers})`);
    for (const n of names) {
      check(reports[n].offerErrors.length === 0, `${n} accepts every offer of the server: ${JSON.stringify(reports[n].offerErrors)}`);
    }
    const sentIn = (n, kind) => reports[n].windows[1].sent[kind] - reports[n].windows[0].sent[kind];
    const summary = [];
    for (const n of names) {
      const { tracks, windows } = reports[n];
      for (const from of names.filter((m) => m !== n)) {
        for (const kind of ["audio", "video"]) {
          const mids = Object.values(tracks).filter((t) => t.kind === kind && who[t.participant_id] === from).map((t) => t.mid);
          check(mids.length === 1, `${n} is offered one ${kind} track of ${from}: mids ${JSON.stringify(mids)}`);
          const [mid] = mids;
          const a = windows[0].received[mid];
          const b = windows[1].received[mid];
          const got = b ? b.packets - (a ? a.packets : 0) : 0;
          const sent = sentIn(from, kind);
          const ratio = sent > 0 ? got / sent : 0;
          summary.push(`${from}->${n} ${kind} ${got}/${sent}`);
          // One sender's packets: neither none nor two or three senders' worth.
          check(ratio > 0.7 && ratio < 1.3,
            `${n} receives ${from}'s ${kind} on its own track (mid ${mid}): ${got} packets in the window, ${from} sent ${sent}`);
          if (n === "gst") {
            // The pads of this section, and the SSRCs on them, in the window.
            const moved = (key) => Object.entries(b[key]).map(([k, c]) => [k, c - ((a && a[key][k]) || 0)]).filter(([, c]) => c > 0);
            check(moved("pads").length === 1 && moved("ssrcs").length === 1,
              `GStreamer gives ${from}'s ${kind} one pad with one SSRC: pads ${JSON.stringify(moved("pads"))}, SSRCs ${JSON.stringify(moved("ssrcs"))}`);
          }
          if (kind === "video" && n !== "gst") {
            check(b.frames > (a ? a.frames : 0), `${n} decodes ${from}'s video`);
          }
        }
      }
    }
    const wrtcVersion = JSON.parse(readFileSync(join(here, "node_modules/@roamhq/wrtc/package.json"), "utf8")).version;
    console.log(`ok - stacks: ${names.join(", ")} (Chromium, ${reports.gst.gstreamer} webrtcbin, @roamhq/wrtc ${wrtcVersion}) `
      + `in one SFU call, ${reports.wrtc.offers} and ${reports.gst.offers} offers to libwebrtc and GStreamer; `
      + `packets received/sent per track in ${MEASURE / 1000} s: ${summary.join(", ")}`);
  } finally {
    for (const c of children) c.kill("SIGKILL");
    for (const b of browsers) await b.close().catch(() => {});
    roost.child.kill("SIGTERM");
    harness.close();
    if (process.exitCode) console.error(roost.stderr().split("\n").slice(-30).join("\n"));
  }
}

if (process.env.ROOST_STACKS_NETNS) {
  inside().catch((e) => {
    console.error(e);
    process.exitCode = 1;
  });
} else {
  runInNamespace();
}
