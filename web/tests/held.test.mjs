// A slow connection in the built-in web client: alice's Firefox runs in a
// network namespace of the test's own, bob and carol's Chromium on this
// side, all three in one call on the server's SFU (`calls.mesh_max` is 0).
// Once alice decodes both cameras, her link from the server is cut to
// 250 kbit/s (tbf on this side's veth): the server fits what it sends her
// to her connection's estimate, keeps one camera at its smallest layer and
// holds the other back (`sfu.held`). Her page says so on that tile ("Video
// paused: your connection is slow") rather than showing a frozen picture or
// a camera that is off, and she keeps hearing both. When the cap is lifted,
// the held camera comes back and the note goes.
//
//   ROOST_BIN=path/to/roost [FIREFOX=/usr/bin/firefox-esr] node held.test.mjs   (as root)

import { execFileSync } from "node:child_process";
import { chromium } from "playwright-core";
import {
  CHROMIUM, PASSWORD, api, check, chromiumArgs, fail, firefoxIn, instrument, netns, udpToHostOnly, signInAndOpen, sleep, startRoost,
} from "./support.mjs";

const CAP = "250kbit";

// What alice's page shows and receives: per remote tile, whether its video
// shows and whether it is held; audio packets and decoded frames per
// connection track.
function seen() {
  return (async () => {
    const tiles = [...document.querySelectorAll("#call-grid .tile")]
      .filter((t) => t.dataset.participant !== "me")
      .map((t) => ({ video: t.dataset.video, held: t.dataset.held || "", note: t.querySelector(".tile-note")?.textContent || "" }));
    const s = { tiles, audio: 0, frames: [] };
    for (const pc of window.__pcs) {
      if (pc.connectionState === "closed" || pc.signalingState === "closed") continue;
      const stats = await Promise.race([pc.getStats(), new Promise((r) => setTimeout(() => r(new Map()), 2000))]);
      for (const r of stats.values()) {
        if (r.type !== "inbound-rtp") continue;
        if (r.kind === "audio") s.audio += r.packetsReceived || 0;
        if (r.kind === "video" && r.framesDecoded > 0) s.frames.push(r.framesDecoded);
      }
    }
    return s;
  })();
}

async function main() {
  const ns = netns("held");
  const tc = (...args) => execFileSync("tc", args, { stdio: ["ignore", "ignore", "pipe"] });
  let fx;
  let chrome;
  let roost;
  try {
    udpToHostOnly(ns);
    fx = await firefoxIn(ns, { "dom.securecontext.allowlist": ns.host });
    roost = await startRoost({ ROOST_CALLS__MESH_MAX: "0", ROOST_MEDIA__ALLOCATE_BANDWIDTH: "true", ROOST_MEDIA__LISTEN: `${ns.host}:0` }, "warn", { listen: `${ns.host}:0` });
    const base = roost.url;
    chrome = await chromium.launch({
      executablePath: CHROMIUM, headless: true,
      args: [...chromiumArgs(15), `--unsafely-treat-insecure-origin-as-secure=${base}`],
    });
    const users = [];
    for (const n of ["alice", "bob", "carol"]) {
      users.push(await api(base, "/v1/auth/register", {
        email: `${n}@example.org`, username: n, display_name: n[0].toUpperCase() + n.slice(1), password: PASSWORD,
      }));
    }
    const room = await api(base, "/v1/rooms", { name: "Slow lane" }, users[0].access_token);
    for (const u of users.slice(1)) await api(base, `/v1/rooms/${room.id}/members`, { user_id: u.user.id }, users[0].access_token);

    const alice = await fx.browser.newPage();
    await alice.evaluateOnNewDocument(instrument);
    alice.on("pageerror", (e) => console.error(`[alice, firefox] ${e}`));
    await signInAndOpen(alice, base, "alice", "Slow lane");
    await alice.click("#call-join");
    const others = [];
    for (const name of ["bob", "carol"]) {
      const ctx = await chrome.newContext({ viewport: { width: 1000, height: 700 } });
      const page = await ctx.newPage();
      page.on("pageerror", (e) => console.error(`[${name}, chromium] ${e}`));
      await signInAndOpen(page, base, name, "Slow lane");
      await page.locator("#call-join", { hasText: "Join call" }).waitFor({ timeout: 10_000 });
      await page.click("#call-join");
      others.push(page);
    }

    // Both cameras play at alice's, neither held.
    const until = async (what, ok, ms) => {
      const deadline = Date.now() + ms;
      let last;
      for (;;) {
        const a = await alice.evaluate(seen);
        await sleep(1000);
        const b = await alice.evaluate(seen);
        last = { tiles: b.tiles, audio: b.audio - a.audio, fps: b.frames.map((f, i) => f - (a.frames[i] || 0)) };
        if (ok(last)) return last;
        if (Date.now() > deadline) fail(`${what} (within ${ms / 1000} s): ${JSON.stringify(last)}`);
      }
    };
    const bothPlay = (s) => s.tiles.length === 2 && s.tiles.every((t) => t.video === "on" && !t.held)
      && s.fps.filter((f) => f > 0).length >= 2;
    await until("alice decodes bob's and carol's cameras on the SFU", bothPlay, 40_000);
    check(true, "alice (Firefox) decodes bob's and carol's cameras through the SFU");

    // Her link is cut.
    tc("qdisc", "add", "dev", ns.outer, "root", "tbf", "rate", CAP, "burst", "16kb", "latency", "300ms");
    const capAt = Date.now();
    const oneHeld = (s) => s.tiles.filter((t) => t.held === "bandwidth").length === 1
      && s.tiles.some((t) => t.note.includes("connection is slow"))
      && s.tiles.some((t) => t.video === "on" && !t.held);
    const held = await until("at 250 kbit/s, one camera is held back and her page says so", oneHeld, 20_000);
    check(true, `${((Date.now() - capAt) / 1000).toFixed(1)} s after her link is cut to 250 kbit/s, one tile says "${held.tiles.find((t) => t.held).note}", the other plays`);
    // A few seconds on: still told, and both still heard.
    await sleep(3000);
    const later = await until("the held camera stays held, and she hears both", (s) => oneHeld(s) && s.audio >= 40, 10_000);
    check(true, `she keeps hearing both meanwhile (${later.audio} audio packets a second)`);

    tc("qdisc", "del", "dev", ns.outer, "root");
    const liftAt = Date.now();
    await until("with the cap lifted, both cameras play again and no tile is held", bothPlay, 20_000);
    check(true, `${((Date.now() - liftAt) / 1000).toFixed(1)} s after the cap is lifted both cameras play again, no tile held`);
  } catch (e) {
    process.exitCode = 1;
    throw e;
  } finally {
    try { tc("qdisc", "del", "dev", ns.outer, "root"); } catch {}
    await fx?.close();
    await chrome?.close();
    roost?.child.kill("SIGTERM");
    if (process.exitCode && roost) console.error(roost.stderr().split("\n").filter((l) => !l.includes("rtc")).slice(-30).join("\n"));
    ns.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
