// Screen sharing in the built-in web client, in Chromium and Firefox ESR,
// against a real `roost serve`: first peer to peer, then through the SFU
// (a second server with `calls.mesh_max = 0`). In each, cole (Chromium)
// and fern (Firefox) are in a call: cole shares his screen and fern's page
// shows it large ("Cole is sharing their screen"), decoding it, apart from
// his camera tile; dan (Chromium) joins while cole shares and gets the
// share too; cole stops with the button and the large views go away; fern
// shares and both Chromium pages see it; fern's share ends as when the user
// stops it from the browser's own bar and the views go away again. The
// sharer's screen goes in one encoding (the camera's simulcast layers are
// not used for it), marked as text (`contentHint` "detail", where the
// browser has it: Firefox has not). Then a third server (`mesh_max` 3): a
// share goes on while the call moves to the server and back.
//
// The screens are the browsers' own capture paths: Chromium's fake capturer
// (`--use-fake-device-for-media-stream` and `--use-fake-ui-for-media-stream`
// give a 1280x720 animated "screen" with no picker), and Firefox's real
// screen capture of an Xvfb display of the test's own (headless Firefox
// finds no screen without one: getDisplayMedia answers NotFoundError, fake
// devices or not). Without Xvfb, fern's getDisplayMedia is replaced by a
// canvas stream in her page, and the test says so.
//
// Firefox gathers no loopback candidate, so it runs in a network namespace
// of the test's own and the servers listen on the veth's address here (as
// in client-firefox.test.mjs). Media is read with getStats from the pages'
// RTCPeerConnections (the test wraps the constructor; the client has no
// test hook).
//
//   ROOST_BIN=path/to/roost [FIREFOX=/usr/bin/firefox-esr] node screenshare.test.mjs   (as root)

import { chromium } from "playwright-core";
import {
  CHROMIUM, PASSWORD, api, check, chromiumArgs, fail, firefoxIn, instrument, netns, signInAndOpen, sleep, startRoost,
  startXvfb, waitUntil,
} from "./support.mjs";

const NAMES = ["cole", "fern", "dan", "eve"];

// What a page of the web client shows of its call: the large views of
// shared screens (label, size, frames decoded from the track each plays),
// the camera tiles and the tracks they play, the share button, and the
// audio and camera video it receives.
function view() {
  return (async () => {
    const call = window.roost.state.call;
    const open = window.__pcs.filter((pc) => pc.signalingState !== "closed");
    const framesOf = async (track) => {
      let n = 0;
      for (const pc of open) {
        for (const r of pc.getReceivers()) {
          if (r.track !== track) continue;
          for (const s of (await r.getStats()).values()) if (s.type === "inbound-rtp") n += s.framesDecoded || 0;
        }
      }
      return n;
    };
    const v = {
      inCall: !!call && !call.ended,
      topology: document.querySelector("#call-topology")?.textContent || "",
      share: document.querySelector("#call-share")?.textContent || "",
      sharing: !!call?.screen,
      screens: [],
      tiles: [],
    };
    for (const li of document.querySelectorAll("#call-screens .screen")) {
      const video = li.querySelector("video");
      const track = video.srcObject?.getVideoTracks()[0];
      v.screens.push({
        label: li.querySelector(".label").textContent, width: video.videoWidth, height: video.videoHeight,
        frames: track ? await framesOf(track) : 0, track: track?.id,
      });
    }
    for (const tile of document.querySelectorAll("#call-grid .tile:not([data-participant=me])")) {
      const stream = tile.querySelector("video").srcObject;
      const video = stream?.getVideoTracks()[0];
      const audio = stream?.getAudioTracks()[0];
      v.tiles.push({
        label: tile.querySelector(".label").textContent, track: video?.id,
        frames: video ? await framesOf(video) : 0, audio: audio ? await framesOfAudio(audio) : 0,
      });
    }
    return v;
    async function framesOfAudio(track) {
      let n = 0;
      for (const pc of open) {
        for (const r of pc.getReceivers()) {
          if (r.track !== track) continue;
          for (const s of (await r.getStats()).values()) if (s.type === "inbound-rtp") n += s.packetsReceived || 0;
        }
      }
      return n;
    }
  })();
}

// The sharer's video senders on its open connections: whether each carries
// the screen, its encodings and the track's content hint.
function senders() {
  const call = window.roost.state.call;
  const pcs = [call.sendPc, ...call.mesh.values()].filter((pc) => pc && pc.signalingState !== "closed");
  return pcs.flatMap((pc) => pc.getTransceivers()
    .filter((t) => t.sender.track && t.sender.track.kind === "video")
    .map((t) => ({
      screen: t.sender.track === call.screen, encodings: t.sender.getParameters().encodings.length,
      // Firefox has no contentHint (MediaStreamTrack's, of "mst-content-hint"): nothing to set there.
      hint: "contentHint" in t.sender.track ? t.sender.track.contentHint : "unsupported", direction: t.currentDirection,
    })));
}

// What the browser does when the user presses its own "Stop sharing": the
// capture ends, the track's readyState becomes "ended" and it fires
// `ended`. A script's `stop()` ends the track without the event (the
// specification fires `ended` only when the source ends by itself), so the
// test stops it and then fires the event the browser would have.
function browserStopsSharing() {
  const track = window.roost.state.call.screen;
  track.stop();
  track.dispatchEvent(new Event("ended"));
}

// A stand-in screen for a Firefox with no display: a canvas that changes
// every frame, captured at 15 fps. Used only where Xvfb is missing.
function canvasScreen() {
  navigator.mediaDevices.getDisplayMedia = async () => {
    const canvas = Object.assign(document.createElement("canvas"), { width: 1280, height: 720 });
    const ctx = canvas.getContext("2d");
    let n = 0;
    setInterval(() => {
      ctx.fillStyle = `hsl(${(n += 7) % 360} 60% 50%)`;
      ctx.fillRect(0, 0, 1280, 720);
      ctx.fillStyle = "#fff";
      ctx.font = "64px sans-serif";
      ctx.fillText(`slide ${n}`, 100, 360);
    }, 66);
    return canvas.captureStream(15);
  };
}

const label = (name) => `${name[0].toUpperCase()}${name.slice(1)} is sharing their screen`;

// `viewer` shows `sharer`'s screen in a large view, decoding it (frames
// rising), with the sharer's camera still in its own tile on another track.
async function seesScreen(viewer, sharer, startedAt) {
  const first = await waitUntil(`${viewer.name} (${viewer.engine}) shows "${label(sharer)}" large, decoding it`, async () => {
    const v = await viewer.page.evaluate(view);
    const s = v.screens.find((x) => x.label === label(sharer));
    return { ok: !!s && s.frames > 0 && s.width > 0, screens: v.screens, at: Date.now() };
  }, 30_000, 200);
  await sleep(1500);
  const v = await viewer.page.evaluate(view);
  const s = v.screens.find((x) => x.label === label(sharer));
  const before = first.screens.find((x) => x.label === label(sharer));
  check(s && s.frames > before.frames,
    `${viewer.name} keeps decoding the screen (${before.frames}→${s?.frames} frames, ${s?.width}x${s?.height}; seen decoding ${first.at - startedAt} ms after the click, pages being checked in turn)`);
  const camera = v.tiles.find((t) => t.label.startsWith(sharer[0].toUpperCase() + sharer.slice(1)));
  check(v.screens.length === 1 && camera && camera.track !== s.track && camera.frames > 0,
    `${viewer.name} shows the screen once, not as a camera tile: ${sharer}'s tile plays their camera (${camera?.frames} frames) on another track`);
  if (v.topology.includes("via server")) {
    // The page asked the server for the screen at the size it draws it (call.subscribe, source "screen", acked).
    const asked = await viewer.page.evaluate(() => {
      const call = window.roost.state.call;
      const video = document.querySelector("#call-screens video");
      const scale = window.devicePixelRatio || 1;
      const told = [...call.told].find(([k]) => k.endsWith("/screen"));
      return { told, drawn: [Math.round(video.clientWidth * scale), Math.round(video.clientHeight * scale)] };
    });
    const want = asked.told && JSON.parse(asked.told[1]);
    check(want && want.max_width === asked.drawn[0] && want.max_height === asked.drawn[1],
      `${viewer.name} asked the server for the screen at its view's size (${JSON.stringify(asked)})`);
  }
  return v;
}

// No page in `viewers` shows a large view any more (and `sharer`'s button is back).
async function screensGone(viewers, sharer, what, startedAt) {
  await waitUntil(`${what}: the large view goes away for ${viewers.map((v) => v.name).join(" and ")}`, async () => {
    const all = await Promise.all(viewers.map((v) => v.page.evaluate(view)));
    return { ok: all.every((v) => v.screens.length === 0), screens: all.map((v) => v.screens) };
  }, 15_000, 100);
  console.log(`  (${Date.now() - startedAt} ms after the stop)`);
  const own = await sharer.page.evaluate(view);
  check(own.share === "Share screen" && !own.sharing, `${sharer.name}'s button offers to share again ("${own.share}")`);
}

// Audio and camera video arrive on every page from each of the others.
async function mediaFlows(people, what) {
  await waitUntil(what, async () => {
    const all = await Promise.all(people.map((p) => p.page.evaluate(view)));
    const ok = all.every((v) => v.tiles.length === people.length - 1 && v.tiles.every((t) => t.frames > 0 && t.audio > 0));
    return { ok, tiles: all.map((v) => v.tiles) };
  }, 40_000, 500);
}

// A page for `name` (fern in Firefox, the others in Chromium contexts of
// their own), signed in to `base` with the room open; `opened` collects it.
function people(base, browsers, opened) {
  const { chrome, firefox, fakeScreen } = browsers;
  return async (name) => {
    let page;
    let engine;
    if (name === "fern") {
      page = await firefox.browser.newPage();
      await page.setViewport({ width: 1280, height: 800 });
      await page.evaluateOnNewDocument(instrument);
      if (fakeScreen) await page.evaluateOnNewDocument(canvasScreen);
      engine = "Firefox";
    } else {
      const ctx = await chrome.newContext({ viewport: { width: 1280, height: 800 } });
      await ctx.addInitScript(instrument);
      page = await ctx.newPage();
      engine = "Chromium";
    }
    page.on("pageerror", (e) => console.error(`[${name}, ${engine}] ${e}`));
    page.on("console", (m) => {
      const type = typeof m.type === "function" ? m.type() : m.type;
      if (type === "error") console.error(`[${name}, ${engine}] ${m.text()}`);
    });
    opened.push(page);
    await signInAndOpen(page, base, name, "Slides");
    return { name, engine, page };
  };
}

async function join(p) {
  await p.page.click("#call-join");
  await p.page.waitForSelector("#call:not([hidden])");
}

async function closeAll(opened) {
  for (const page of opened) {
    const ctx = typeof page.context === "function" ? page.context() : null;
    await page.close().catch(() => {});
    await ctx?.close().catch(() => {});
  }
}

async function part(topology, base, browsers) {
  const opened = [];
  const person = people(base, browsers, opened);
  try {
    const [cole, fern] = [await person("cole"), await person("fern")];
    await join(cole);
    await join(fern);
    const where = topology === "mesh" ? "peer to peer" : "via server";
    await mediaFlows([cole, fern], `${topology}: cole (Chromium) and fern (Firefox) each receive the other's audio and camera`);
    const t = await cole.page.evaluate(view);
    check(t.topology.includes(where), `the call shows as ${where} ("${t.topology}")`);

    // cole shares: fern sees it large.
    let at = Date.now();
    await cole.page.click("#call-share");
    await seesScreen(fern, "cole", at);
    const sent = await cole.page.evaluate(senders);
    const screens = sent.filter((s) => s.screen);
    check(screens.length === 1 && screens.every((s) => s.encodings === 1 && s.hint === "detail"),
      `cole sends his screen in one encoding, as text: ${JSON.stringify(screens)}`);
    if (topology === "sfu") {
      const cameras = sent.filter((s) => !s.screen);
      check(cameras.length === 1 && cameras[0].encodings === 3, `while his camera goes in its 3 simulcast encodings: ${JSON.stringify(cameras)}`);
    }
    check((await cole.page.evaluate(view)).share === "Stop sharing", `cole's button says "Stop sharing"`);

    // dan joins while cole shares: he gets the share too.
    const dan = await person("dan");
    at = Date.now();
    await join(dan);
    await mediaFlows([cole, fern, dan], `${topology}: dan joins while cole shares; all three receive each other's audio and camera`);
    await seesScreen(dan, "cole", at);
    await seesScreen(fern, "cole", at);

    // cole stops with the button.
    at = Date.now();
    await cole.page.click("#call-share");
    await screensGone([fern, dan], cole, "cole stops sharing with the button", at);

    // fern shares from Firefox: both Chromium pages see it.
    at = Date.now();
    await fern.page.click("#call-share");
    await seesScreen(cole, "fern", at);
    await seesScreen(dan, "fern", at);
    const fernSent = (await fern.page.evaluate(senders)).filter((s) => s.screen);
    check(fernSent.length >= 1 && fernSent.every((s) => s.encodings === 1 && ["detail", "unsupported"].includes(s.hint)),
      `fern (Firefox) sends her screen in one encoding on each connection, as text where the browser has contentHint: ${JSON.stringify(fernSent)}`);

    // fern's share ends from the browser's own "Stop sharing".
    at = Date.now();
    await fern.page.evaluate(browserStopsSharing);
    await screensGone([cole, dan], fern, "fern's share ends from the browser's own stop", at);
    const after = await fern.page.evaluate(senders);
    check(after.every((s) => !s.screen) && (await fern.page.evaluate(() => window.roost.state.call.screen)) === null,
      "fern's page no longer sends a screen on any connection");
    await mediaFlows([cole, fern, dan], `${topology}: after the shares everyone still receives everyone's audio and camera`);

    // And once more from cole: a share may start again after one ended.
    at = Date.now();
    await cole.page.click("#call-share");
    await seesScreen(fern, "cole", at);
    await cole.page.evaluate(browserStopsSharing);
    await screensGone([fern, dan], cole, "cole shares again and stops from the browser's bar", Date.now());

    const csp = (await Promise.all(opened.map((p) => p.evaluate(() => window.__csp)))).flat();
    check(csp.length === 0, "no Content-Security-Policy violations: " + JSON.stringify(csp));
    for (const p of [cole, fern, dan]) await p.page.click("#call-leave").catch(() => {});
  } finally {
    await closeAll(opened);
  }
}

// A share goes on across the call's moves (here mesh_max is 3): cole shares
// peer to peer with fern and dan; eve's joining moves the call to the server
// and everyone, eve too, sees the screen through it; eve and dan leave, the
// call returns to peer to peer, and fern still sees it.
async function moves(base, browsers) {
  const opened = [];
  const person = people(base, browsers, opened);
  try {
    const [cole, fern, dan] = [await person("cole"), await person("fern"), await person("dan")];
    for (const p of [cole, fern, dan]) await join(p);
    await mediaFlows([cole, fern, dan], "moves: cole, fern and dan in a call peer to peer");
    let at = Date.now();
    await cole.page.click("#call-share");
    await seesScreen(fern, "cole", at);
    await seesScreen(dan, "cole", at);
    const eve = await person("eve");
    at = Date.now();
    await join(eve);
    await waitUntil("with eve the call moves to the server, each page keeping only its two connections to it", async () => {
      const all = await Promise.all([cole, fern, dan, eve].map((p) => p.page.evaluate(() => ({
        topology: document.querySelector("#call-topology").textContent,
        open: window.__pcs.filter((pc) => pc.signalingState !== "closed").length,
      }))));
      return { ok: all.every((v) => v.topology.startsWith("4 in call") && v.topology.includes("via server") && v.open === 2), all };
    }, 40_000, 500);
    for (const p of [fern, dan, eve]) await seesScreen(p, "cole", at);
    at = Date.now();
    for (const p of [eve, dan]) await p.page.click("#call-leave");
    await waitUntil("eve and dan leave: at two the call is peer to peer again, one connection each", async () => {
      const all = await Promise.all([cole, fern].map((p) => p.page.evaluate(() => ({
        topology: document.querySelector("#call-topology").textContent,
        open: window.__pcs.filter((pc) => pc.signalingState !== "closed").length,
      }))));
      return { ok: all.every((v) => v.topology.includes("peer to peer") && v.open === 1), all };
    }, 40_000, 500);
    await seesScreen(fern, "cole", at);
    at = Date.now();
    await cole.page.click("#call-share");
    await screensGone([fern], cole, "cole stops sharing, peer to peer again", at);
  } finally {
    await closeAll(opened);
  }
}

async function main() {
  const ns = netns("share");
  const servers = [];
  let xvfb = null;
  let chrome;
  let firefox;
  try {
    xvfb = await startXvfb().catch((e) => (console.error(e.message), null));
    const fakeScreen = !xvfb;
    if (fakeScreen) {
      console.log("NOTE: no Xvfb here (apt-get install xvfb): Firefox's getDisplayMedia is replaced by a canvas stream in fern's page");
    } else {
      // firefoxIn's Firefox inherits the environment: it captures this display.
      process.env.DISPLAY = xvfb.display;
      console.log(`Firefox captures the Xvfb display ${xvfb.display}; Chromium its fake capturer`);
    }
    for (const meshMax of ["4", "0", "3"]) {
      servers.push(await startRoost({ ROOST_CALLS__MESH_MAX: meshMax, ROOST_MEDIA__LISTEN: `${ns.host}:0` }, "warn", {
        listen: `${ns.host}:0`,
      }));
    }
    for (const { url } of servers) {
      const users = [];
      for (const n of NAMES) {
        users.push(await api(url, "/v1/auth/register", {
          email: `${n}@example.org`, username: n, display_name: n[0].toUpperCase() + n.slice(1), password: PASSWORD,
        }));
      }
      const room = await api(url, "/v1/rooms", { name: "Slides" }, users[0].access_token);
      for (const u of users.slice(1)) await api(url, `/v1/rooms/${room.id}/members`, { user_id: u.user.id }, users[0].access_token);
    }
    chrome = await chromium.launch({
      executablePath: CHROMIUM, headless: true,
      args: [...chromiumArgs(15), `--unsafely-treat-insecure-origin-as-secure=${servers.map((s) => s.url).join(",")}`],
    });
    firefox = await firefoxIn(ns, { "dom.securecontext.allowlist": ns.host });
    const browsers = { chrome, firefox, fakeScreen };
    await part("mesh", servers[0].url, browsers);
    await part("sfu", servers[1].url, browsers);
    await moves(servers[2].url, browsers);
  } finally {
    await firefox?.close();
    await chrome?.close().catch(() => {});
    for (const s of servers) s.child.kill("SIGTERM");
    if (process.exitCode) for (const s of servers) console.error(s.stderr().split("\n").filter((l) => !l.includes("rtc::")).slice(-30).join("\n"));
    xvfb?.close();
    ns.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
