// Call moderation in the built-in web client, in headless Chromium against a
// real `roost serve` on loopback: olive creates a room (its owner) and milo
// is a plain member; they are in a call through the SFU (`mesh_max` 0).
//
// - olive mutes milo's microphone from his tile: within 500 ms of her ack
//   milo's page says a moderator muted it, and the audio olive receives
//   from him stops (the server stops forwarding it: her inbound packet
//   count stays flat; the time from the ack to its last growth is printed);
//   milo unmutes himself and his audio flows again;
// - milo, who is no moderator, sees no moderation buttons, and his page's
//   call.moderate on olive is refused (`forbidden`);
// - olive turns milo's camera off: his page turns it off, no frame of it
//   reaches her; he turns it on again;
// - milo shares his screen and olive stops it from his tile: the share ends
//   on both pages;
// - with the room's `call_self_unmute` off (PATCH /v1/rooms/{id}), olive's
//   mute is locked: milo's button says so, his unmute is refused with a
//   message and no audio flows, until olive allows it; then it does;
// - olive removes milo: his page says he was removed and leaves the call
//   (connections closed, devices stopped), and olive's grid drops his tile.
//
// Then the same mute and removal in a call peer to peer (a second server
// with the default mesh_max): no server forwards there, so the mute shows
// as milo's own (his track disabled, silence at olive's end).
//
//   ROOST_BIN=path/to/roost node moderation.test.mjs

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import {
  CHROMIUM, PASSWORD, api, apiRequest, check, chromiumArgs, fail, instrument, signInAndOpen, sleep, startRoost, waitUntil,
} from "./support.mjs";

// An init script: times of the page's call.moderate answers (`__acks`),
// of the call notices it shows (`__notices`), and every 20 ms the audio
// packets and energy it has received and video frames decoded on its open
// connections (`__samples`: [time, packets, energy, frames]).
function recorder() {
  window.__acks = [];
  window.__notices = [];
  window.__samples = [];
  // The client's module has run by DOMContentLoaded (modules are deferred).
  addEventListener("DOMContentLoaded", () => {
    const live = window.roost.live;
    const request = live.request.bind(live);
    live.request = (frame, options) => {
      const sent = Date.now();
      const p = request(frame, options);
      if (frame.type === "call.moderate") {
        p.then(() => window.__acks.push({ action: frame.action, sent, at: Date.now() }),
          (e) => window.__acks.push({ action: frame.action, nack: e.code, sent, at: Date.now() }));
      }
      return p;
    };
    const notice = document.querySelector("#call-notice");
    new MutationObserver(() => {
      if (!notice.hidden && notice.textContent) window.__notices.push({ text: notice.textContent, at: Date.now() });
    }).observe(notice, { childList: true, characterData: true, subtree: true, attributes: true });
  });
  setInterval(async () => {
    let packets = 0;
    let energy = 0;
    let frames = 0;
    for (const pc of window.__pcs || []) {
      if (pc.signalingState === "closed") continue;
      for (const r of (await pc.getStats()).values()) {
        if (r.type !== "inbound-rtp") continue;
        if (r.kind === "audio") {
          packets += r.packetsReceived || 0;
          energy += r.totalAudioEnergy || 0;
        } else frames += r.framesDecoded || 0;
      }
    }
    window.__samples.push([Date.now(), packets, energy, frames]);
    if (window.__samples.length > 3000) window.__samples.splice(0, 1000);
  }, 20);
}

async function person(name, base) {
  const ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "chromium-")), {
    executablePath: CHROMIUM, headless: true, args: chromiumArgs(15), viewport: { width: 1280, height: 800 },
  });
  await ctx.addInitScript(instrument);
  await ctx.addInitScript(recorder);
  const page = ctx.pages()[0] || (await ctx.newPage());
  page.on("console", (m) => m.type() === "error" && console.error(`[${name}] ${m.text()}`));
  page.on("pageerror", (e) => console.error(`[${name}] ${e}`));
  await signInAndOpen(page, base, name, "Council");
  return { ctx, page, name };
}

const samples = (page) => page.evaluate(() => window.__samples.slice());
const lastAck = (page, action) => page.evaluate((a) => window.__acks.filter((x) => x.action === a).at(-1), action);

// The last time the audio packets received grew, in `s` (samples).
function lastGrowth(s, index = 1) {
  let last = s[0][0];
  for (let i = 1; i < s.length; i++) if (s[i][index] > s[i - 1][index]) last = s[i][0];
  return last;
}

// How much of column `index` (1: audio packets, 2: audio energy, 3: video
// frames) arrived in the last `ms` of the samples.
function grewBy(s, ms, index = 1) {
  const end = s.at(-1);
  const from = s.find((x) => x[0] >= end[0] - ms) || s[0];
  return end[index] - from[index];
}

// A moderation button on the tile of `who` (by the name its label starts with).
const tileButton = (page, who, action) =>
  page.locator("#call-grid .tile", { has: page.locator(".label", { hasText: new RegExp(`^${who}`) }) })
    .locator(`button[data-action=${action}]`);

async function setUp(base, token, roomId, { sfu }) {
  const olive = await person("olive", base);
  const milo = await person("milo", base);
  await olive.page.click("#call-join");
  await olive.page.waitForSelector("#call:not([hidden])");
  await milo.page.locator("#call-join", { hasText: "Join call (1)" }).waitFor({ timeout: 10_000 });
  await milo.page.click("#call-join");
  const where = sfu ? "via server" : "peer to peer";
  await waitUntil(`olive and milo are in a call ${where}, each hearing and seeing the other`, async () => {
    const all = await Promise.all([olive, milo].map(async (p) => ({
      grew: grewBy(await samples(p.page), 1000), frames: grewBy(await samples(p.page), 1000, 3),
      topology: await p.page.textContent("#call-topology"),
    })));
    return { ok: all.every((x) => x.grew > 10 && x.frames > 3 && x.topology.includes(where)), all };
  }, 30_000, 500);
  return { olive, milo };
}

// Audio keeps arriving at `listener`'s end (packets over the last second).
async function audioFlows(listener, what) {
  return waitUntil(what, async () => {
    const s = await samples(listener.page);
    return { ok: grewBy(s, 1000) > 20, packets: grewBy(s, 1000) };
  }, 10_000, 200);
}

async function sfuPart(base, token, roomId) {
  const { olive, milo } = await setUp(base, token, roomId, { sfu: true });
  try {
    // A member has no moderation buttons; the server refuses him anyway.
    check(await milo.page.locator("#call-grid .tile-actions button").count() === 0, "milo, a plain member, sees no moderation buttons");
    check(await olive.page.locator("#call-grid .tile-actions button").count() >= 3,
      `olive, the owner, sees them on milo's tile (${await olive.page.locator("#call-grid .tile-actions button").allTextContents()})`);
    const refused = await milo.page.evaluate(async () => {
      const call = window.roost.state.call;
      const owner = [...call.participants.keys()][0];
      try {
        await call.moderate(owner, "mute_audio");
        return "acked";
      } catch (e) {
        return e.code;
      }
    });
    check(refused === "forbidden", `milo's call.moderate on olive is refused: ${refused}`);
    await audioFlows(olive, "the refused request changes nothing: milo's audio still reaches olive");
    await audioFlows(milo, "and olive's reaches milo");

    // olive mutes milo.
    await tileButton(olive.page, "Milo", "mute_audio").click();
    await waitUntil("olive's mute of milo is acknowledged", async () => ({ ok: !!(await lastAck(olive.page, "mute_audio")) }), 5000, 50);
    const ack = await lastAck(olive.page, "mute_audio");
    check(!ack.nack, `olive's mute is acked (${JSON.stringify(ack)})`);
    await milo.page.locator("#call-notice", { hasText: "A moderator muted your microphone" }).waitFor({ timeout: 5000 });
    const notice = (await milo.page.evaluate(() => window.__notices)).find((n) => n.text.includes("A moderator muted your microphone"));
    // Timed from olive's request going out (its ack may come after the frames it caused).
    const shownIn = notice.at - ack.sent;
    check(shownIn <= 500, `milo's page says a moderator muted his microphone ${shownIn} ms after olive's request`);
    check(await milo.page.textContent("#call-mic") === "Unmute mic" && !(await milo.page.evaluate(() =>
      window.roost.state.call.stream.getAudioTracks()[0].enabled)), "milo's microphone is off in his page (the button offers to unmute)");
    await olive.page.locator("#call-grid .tile .label", { hasText: "Milo (muted by a moderator)" }).waitFor({ timeout: 5000 });
    check(true, "olive's grid shows milo muted by a moderator");
    await sleep(2500);
    let s = await samples(olive.page);
    const stopped = lastGrowth(s) - ack.sent;
    const since = s.filter((x) => x[0] >= ack.sent);
    check(stopped <= 500 && grewBy(s, 2000) === 0,
      `the server stops forwarding milo's audio: olive's packets last grew ${stopped} ms after her request and stayed flat for the next ${s.at(-1)[0] - lastGrowth(s)} ms (${since.length} samples)`);

    // milo unmutes himself: his audio flows again.
    const unmuted = Date.now();
    await milo.page.click("#call-mic");
    const back = await audioFlows(olive, "milo unmutes himself and olive receives his audio again");
    s = await samples(olive.page);
    const flat = s.find((x) => x[0] >= unmuted)[1];
    const resumed = s.find((x) => x[0] >= unmuted && x[1] > flat)[0];
    console.log(`  (his audio is back at olive's end ${resumed - unmuted} ms after his click; ${back.packets} packets in the last second)`);
    await olive.page.locator("#call-grid .tile .label", { hasText: /^Milo$/ }).waitFor({ timeout: 5000 });
    check(await milo.page.isHidden("#call-notice"), "and his notice is gone");

    // olive turns milo's camera off: his page turns it off and no frame of it reaches her.
    await tileButton(olive.page, "Milo", "mute_video").click();
    await milo.page.locator("#call-notice", { hasText: "A moderator turned your camera off" }).waitFor({ timeout: 5000 });
    await olive.page.locator('#call-grid .tile[data-video="off"]', { hasText: "Milo" }).waitFor({ timeout: 5000 });
    await sleep(1500);
    s = await samples(olive.page);
    check(grewBy(s, 1000, 3) === 0 && await milo.page.textContent("#call-cam") === "Turn camera on",
      "olive turns milo's camera off: his page says so and offers to turn it on, her tile shows his name, and no frame of his arrives");
    await milo.page.click("#call-cam");
    await waitUntil("milo turns his camera on again and olive decodes it", async () => {
      const x = await samples(olive.page);
      return { ok: grewBy(x, 1000, 3) > 3, frames: grewBy(x, 1000, 3) };
    }, 10_000, 250);

    // stop_screen: milo shares, olive stops it.
    await milo.page.click("#call-share");
    await olive.page.locator("#call-screens .screen .label", { hasText: "Milo is sharing their screen" }).waitFor({ timeout: 15_000 });
    await waitUntil("olive sees milo's screen large", async () => {
      const w = await olive.page.evaluate(() => document.querySelector("#call-screens video")?.videoWidth || 0);
      return { ok: w > 0, width: w };
    }, 15_000, 200);
    await tileButton(olive.page, "Milo", "stop_screen").click();
    const stopAt = Date.now();
    await milo.page.locator("#call-share", { hasText: "Share screen" }).waitFor({ timeout: 5000 });
    await olive.page.locator("#call-screens .screen").waitFor({ state: "detached", timeout: 5000 });
    const ended = await milo.page.evaluate(() => window.roost.state.call.screen === null && window.__pcs.every((pc) =>
      pc.signalingState === "closed" || pc.getSenders().every((s) => !s.track || s.track.kind !== "video" || s.track.readyState === "live")));
    check(ended, `olive stops milo's share: his page stops it (${Date.now() - stopAt} ms) and her large view goes away`);
    check(await milo.page.locator("#call-notice", { hasText: "A moderator stopped your screen share" }).isVisible(), "milo's page says a moderator stopped it");
    check(await olive.page.locator("#call-grid .tile-actions button[data-action=stop_screen]").count() === 0, "olive's Stop share button goes with the share");

    // A room that does not let the muted unmute themselves.
    const room = await apiRequest(base, "PATCH", `/v1/rooms/${roomId}`, { call_self_unmute: false }, token);
    check(room.call_self_unmute === false, "olive turns the room's call_self_unmute off over the API");
    await tileButton(olive.page, "Milo", "mute_audio").click();
    await milo.page.locator("#call-mic", { hasText: "Mic locked by a moderator" }).waitFor({ timeout: 5000 });
    check(true, "olive mutes milo again: his button says a moderator locked his microphone");
    await milo.page.click("#call-mic");
    await milo.page.locator("#call-error", { hasText: "once a moderator allows it" }).waitFor({ timeout: 5000 });
    check(true, `milo's unmute is refused with a message: "${await milo.page.textContent("#call-error")}"`);
    await sleep(2000);
    s = await samples(olive.page);
    check(grewBy(s, 1800) === 0 && !(await milo.page.evaluate(() => window.roost.state.call.stream.getAudioTracks()[0].enabled)),
      "no audio of milo's reaches olive, and his microphone stays off");
    await tileButton(olive.page, "Milo", "allow_audio").click();
    await milo.page.locator("#call-notice", { hasText: "allowed you to turn your microphone on" }).waitFor({ timeout: 5000 });
    await milo.page.locator("#call-mic", { hasText: "Unmute mic" }).waitFor({ timeout: 5000 });
    check(true, "olive allows it: milo's page says so and his button offers to unmute");
    await milo.page.click("#call-mic");
    await audioFlows(olive, "milo unmutes himself and olive receives his audio again");
    await apiRequest(base, "PATCH", `/v1/rooms/${roomId}`, { call_self_unmute: true }, token);

    await remove(olive, milo);
  } finally {
    await olive.ctx.close().catch(() => {});
    await milo.ctx.close().catch(() => {});
  }
}

// olive removes milo: his page leaves the call and says why; her grid drops him.
async function remove(olive, milo) {
  await tileButton(olive.page, "Milo", "remove").click();
  await milo.page.locator("#call-error", { hasText: "You were removed from the call" }).waitFor({ timeout: 5000 });
  await milo.page.waitForSelector("#call", { state: "hidden", timeout: 5000 });
  const left = await milo.page.evaluate(() => ({
    call: window.roost.state.call,
    open: window.__pcs.filter((pc) => pc.signalingState !== "closed").length,
    join: document.querySelector("#call-join").hidden,
  }));
  check(left.call === null && left.open === 0 && !left.join,
    `olive removes milo: his page says so, closes its connections (${left.open} open) and offers to join again`);
  await olive.page.locator("#call-grid .tile", { hasText: "Milo" }).waitFor({ state: "detached", timeout: 5000 });
  check(await olive.page.locator("#call-grid .tile").count() === 1, "olive's grid drops milo's tile");
  const s = await samples(milo.page);
  await sleep(1000);
  const later = await samples(milo.page);
  check(later.at(-1)[1] === s.at(-1)[1] && later.at(-1)[3] === s.at(-1)[3], "milo's page receives nothing more");
}

async function meshPart(base, token, roomId) {
  const { olive, milo } = await setUp(base, token, roomId, { sfu: false });
  try {
    await sleep(1500);
    const heard = grewBy(await samples(olive.page), 1500, 2);
    await tileButton(olive.page, "Milo", "mute_audio").click();
    await milo.page.locator("#call-notice", { hasText: "A moderator muted your microphone" }).waitFor({ timeout: 5000 });
    await olive.page.locator("#call-grid .tile .label", { hasText: "Milo (muted by a moderator)" }).waitFor({ timeout: 5000 });
    check(true, "peer to peer too, olive's mute reaches milo's page and shows on her grid");
    await sleep(2000);
    const s = await samples(olive.page);
    // (A disabled track sends silence: near zero, not nothing.)
    const energy = grewBy(s, 1500, 2);
    check(energy < heard / 1000 && !(await milo.page.evaluate(() => window.roost.state.call.stream.getAudioTracks()[0].enabled)),
      `milo's page turns his microphone off: olive hears silence (audio energy over 1.5 s: ${heard.toExponential(2)} before, ${energy.toExponential(2)} after)`);
    await milo.page.click("#call-mic");
    await waitUntil("milo unmutes himself and olive hears him again", async () => {
      const x = await samples(olive.page);
      return { ok: grewBy(x, 2000, 2) > 0, energy: grewBy(x, 2000, 2) };
    }, 10_000, 250);
    await remove(olive, milo);
  } finally {
    await olive.ctx.close().catch(() => {});
    await milo.ctx.close().catch(() => {});
  }
}

async function main() {
  const servers = [];
  try {
    for (const env of [{ ROOST_CALLS__MESH_MAX: "0" }, {}]) {
      const roost = await startRoost(env);
      servers.push(roost);
      const base = roost.url;
      const users = [];
      for (const n of ["olive", "milo"]) {
        users.push(await api(base, "/v1/auth/register", {
          email: `${n}@example.org`, username: n, display_name: n[0].toUpperCase() + n.slice(1), password: PASSWORD,
        }));
      }
      const room = await api(base, "/v1/rooms", { name: "Council" }, users[0].access_token);
      await api(base, `/v1/rooms/${room.id}/members`, { user_id: users[1].user.id }, users[0].access_token);
      if (room.call_self_unmute !== true) fail(`a new room lets the muted unmute themselves: ${JSON.stringify(room)}`);
      if (env.ROOST_CALLS__MESH_MAX === "0") await sfuPart(base, users[0].access_token, room.id);
      else await meshPart(base, users[0].access_token, room.id);
    }
  } finally {
    for (const s of servers) s.child.kill("SIGTERM");
    if (process.exitCode) for (const s of servers) console.error(s.stderr().split("\n").filter((l) => !l.includes("rtc")).slice(-30).join("\n"));
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
