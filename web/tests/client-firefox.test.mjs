// The built-in web client in Firefox ESR (driven by puppeteer-core over
// WebDriver BiDi) with a second person in Chromium (playwright-core), against
// a real `roost serve`: alice in Firefox registers, creates a room
// and invites bob; they chat both ways live with typing and read markers;
// alice attaches an image that both see previewed; they call each other peer
// to peer and each receives the other's audio and decodes the other's video
// (Firefox and Chromium's WebRTC stacks, VP8 and Opus); carol joins from a
// second Chromium context, the call moves to the server (mesh_max is 2 here)
// and Firefox sends to and receives from Roost's SFU; a reload in Firefox
// keeps her signed in with every message once.
//
// Firefox gathers no loopback candidate, so it runs in a network namespace
// of the test's own whose default route is a veth to this side, and Roost
// listens on the veth's address here: Firefox's traffic stays on the veth
// and never goes to this machine's own external address. The two browsers
// are told to treat that plain-HTTP origin as secure, as they would an
// HTTPS one.
//
//   ROOST_BIN=path/to/roost [FIREFOX=/usr/bin/firefox-esr] node client-firefox.test.mjs   (as root)

import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import {
  CHROMIUM, PASSWORD, check, chromiumArgs, fail, firefoxIn, instrument, netns, png, register, sleep, startRoost, waitUntil,
} from "./support.mjs";


// What the page receives in its call on its open connections: audio packets
// and decoded video frames, and how many tracks of each carry something.
function received() {
  return (async () => {
    const s = { audio: 0, video: 0, audioTracks: 0, videoTracks: 0, open: 0 };
    s.topology = document.querySelector("#call-topology")?.textContent || "";
    for (const pc of window.__pcs) {
      if (pc.connectionState === "closed" || pc.signalingState === "closed") continue;
      s.open += 1;
      // A connection closed while its stats are read may never answer: such
      // a round counts nothing from it, and the caller asks again.
      const stats = await Promise.race([pc.getStats(), new Promise((r) => setTimeout(() => r(new Map()), 3000))]);
      for (const r of stats.values()) {
        if (r.type !== "inbound-rtp") continue;
        if (r.kind === "audio" && r.packetsReceived > 0) {
          s.audio += r.packetsReceived;
          s.audioTracks += 1;
        }
        if (r.kind === "video" && r.framesDecoded > 0) {
          s.video += r.framesDecoded;
          s.videoTracks += 1;
        }
      }
    }
    return s;
  })();
}

// Polls `fn` every 300 ms until it says `ok` (support.mjs's waitUntil).
const until = (what, fn, ms = 15_000) => waitUntil(what, fn, ms, 300);

// The text of the elements matching `selector` in a puppeteer page.
const texts = (page, selector) => page.$$eval(selector, (els) => els.map((e) => e.textContent));

async function firefoxShows(page, selector, text, what) {
  await until(what, async () => ({ ok: (await texts(page, selector)).some((t) => t.includes(text)) }));
}

async function main() {
  // Two people talk peer to peer; a third moves the call to the server.
  const ns = netns("firefox");
  let roost;
  let fx;
  let chrome;
  try {
    roost = await startRoost({ ROOST_CALLS__MESH_MAX: "2", ROOST_MEDIA__LISTEN: `${ns.host}:0` }, "warn", {
      listen: `${ns.host}:0`,
    });
    const base = roost.url;
    // Fake devices granted without asking and plain host candidates (in
    // firefoxIn), and the page a secure context.
    fx = await firefoxIn(ns, { "dom.securecontext.allowlist": ns.host });
    const firefox = fx.browser;
    const version = await firefox.version();
    check(/firefox/i.test(version), `Firefox runs headless (${version})`);
    const alice = await firefox.newPage();
    await alice.setViewport({ width: 1280, height: 800 });
    await alice.evaluateOnNewDocument(instrument);
    alice.on("pageerror", (e) => console.error(`[alice, firefox] ${e}`));

    // One Chromium process, a context (own storage, own session) per person.
    chrome = await chromium.launch({
      executablePath: CHROMIUM, headless: true,
      args: [...chromiumArgs(15), `--unsafely-treat-insecure-origin-as-secure=${base}`],
    });
    const chromiumPage = async (name) => {
      const ctx = await chrome.newContext({ viewport: { width: 1280, height: 800 } });
      await ctx.addInitScript(instrument);
      const page = await ctx.newPage();
      page.on("pageerror", (e) => console.error(`[${name}, chromium] ${e}`));
      return page;
    };
    const bob = await chromiumPage("bob");

    // alice registers and creates a room, in Firefox.
    await alice.goto(base + "/");
    await alice.waitForSelector("#login-form:not([hidden])");
    await alice.click("button[data-show=register]");
    await alice.type("#register-form input[name=email]", "alice@example.org");
    await alice.type("#register-form input[name=username]", "alice");
    await alice.type("#register-form input[name=display_name]", "Alice");
    await alice.type("#register-form input[name=password]", PASSWORD);
    await alice.click("#register-form button[type=submit]");
    await alice.waitForSelector("#shell:not([hidden])");
    check(true, "alice registers in Firefox");
    await alice.evaluate(() => (document.querySelector(".actions").open = true));
    await alice.type("#create-room input[name=name]", "Harbour");
    await alice.click("#create-room button[type=submit]");
    await firefoxShows(alice, "#room-title", "Harbour", "alice creates a room in Firefox");
    await alice.click("#invite");
    await alice.waitForSelector("#invite-box:not([hidden])");
    const link = await alice.$eval("#invite-link", (e) => e.value);

    // bob registers in Chromium and follows the link.
    await register(bob, base, "bob");
    await bob.goto(link);
    await bob.locator("#room-title", { hasText: "Harbour" }).waitFor({ timeout: 10_000 });
    check(true, "bob, in Chromium, joins alice's room by her invite link");

    // Chat both ways.
    await alice.type("#composer-input", "Hello from Firefox");
    await alice.keyboard.press("Enter");
    await bob.locator("#message-list .msg .body", { hasText: "Hello from Firefox" }).waitFor({ timeout: 10_000 });
    check(true, "bob sees alice's message, sent from Firefox, live");
    await bob.click("#composer-input");
    await bob.keyboard.type("Hello from Chromi", { delay: 30 });
    await firefoxShows(alice, "#typing", "Bob is typing", "Firefox shows that bob is typing");
    await bob.keyboard.type("um");
    await bob.keyboard.press("Enter");
    await firefoxShows(alice, "#message-list .msg .body", "Hello from Chromium", "Firefox shows bob's message live");
    await alice.type("#composer-input", "Read this?");
    await alice.keyboard.press("Enter");
    await firefoxShows(alice, "#message-list .msg.mine .seen", "Seen by Bob", "Firefox shows that bob has read alice's message");

    // An image from Firefox's file picker, previewed on both sides.
    const dir = mkdtempSync(join(tmpdir(), "roost-firefox-"));
    writeFileSync(join(dir, "lighthouse.png"), png(640, 400));
    const picker = await alice.$("#file-input");
    await picker.uploadFile(join(dir, "lighthouse.png"));
    const thumb = () => {
      const img = document.querySelector("#message-list .thumb img");
      return img && img.src.startsWith("blob:") && img.complete ? img.naturalWidth : 0;
    };
    await until("Firefox shows alice's image as a 320 px preview", async () => ({ ok: (await alice.evaluate(thumb)) === 320 }));
    await until("bob sees the image Firefox sent as a 320 px preview", async () => ({ ok: (await bob.evaluate(thumb)) === 320 }));

    // A call between Firefox and Chromium, peer to peer.
    await alice.click("#call-join");
    await firefoxShows(alice, "#call-topology", "in call", "alice starts a call in Firefox");
    await bob.locator("#call-join", { hasText: "Join call (1)" }).waitFor({ timeout: 10_000 });
    await bob.click("#call-join");
    const media = async () => {
      const [a, b] = [await alice.evaluate(received), await bob.evaluate(received)];
      return { ok: a.audio > 20 && a.video > 10 && b.audio > 20 && b.video > 10, firefox: a, chromium: b };
    };
    const first = await until("Firefox and Chromium each receive the other's audio and decode the other's video", media, 30_000);
    check(first.firefox.topology.includes("peer to peer") && first.chromium.topology.includes("peer to peer"),
      `both show the call as peer to peer ("${first.firefox.topology}", "${first.chromium.topology}")`);
    await sleep(2000);
    const later = await media();
    check(later.firefox.video > first.firefox.video && later.chromium.video > first.chromium.video
      && later.firefox.audio > first.firefox.audio && later.chromium.audio > first.chromium.audio,
      `media keeps flowing both ways (Firefox decoded ${first.firefox.video}→${later.firefox.video} frames, Chromium ${first.chromium.video}→${later.chromium.video})`);
    await alice.click("#call-mic");
    await bob.locator("#call-grid .tile .label", { hasText: "Alice (muted)" }).waitFor({ timeout: 10_000 });
    check(true, "bob sees alice's microphone muted from Firefox");
    await alice.click("#call-mic");
    await bob.locator("#call-grid .tile .label", { hasText: /^Alice$/ }).waitFor({ timeout: 10_000 });

    // carol joins from Chromium: three is more than mesh_max, so the call goes via the server.
    const carol = await chromiumPage("carol");
    await register(carol, base, "carol");
    await carol.goto(link);
    await carol.locator("#call-join", { hasText: "Join call (2)" }).waitFor({ timeout: 10_000 });
    await carol.click("#call-join");
    const sfu = async () => {
      const all = [await alice.evaluate(received), await bob.evaluate(received), await carol.evaluate(received)];
      const ok = all.every((s) => s.topology.startsWith("3 in call") && s.topology.includes("via server")
        && s.open === 2 && s.audioTracks >= 2 && s.videoTracks >= 2);
      return { ok, firefox: all[0], bob: all[1], carol: all[2] };
    };
    const viaServer = await until(
      "with carol the call moves to the server: Firefox and both Chromium pages each receive the other two's audio and video over their two connections to it",
      sfu, 40_000);
    await sleep(2000);
    const after = await sfu();
    check(after.firefox.video > viaServer.firefox.video && after.firefox.audio > viaServer.firefox.audio
      && after.carol.video > viaServer.carol.video && after.bob.video > viaServer.bob.video,
      `media keeps flowing via the server (Firefox decoded ${viaServer.firefox.video}→${after.firefox.video} frames, carol ${viaServer.carol.video}→${after.carol.video})`);

    await alice.click("#call-leave");
    await bob.locator("#call-grid .tile", { hasText: "Alice" }).waitFor({ state: "detached", timeout: 10_000 });
    check(true, "alice leaves the call and bob's grid drops her tile");

    // A reload keeps alice signed in, with every message once.
    await alice.reload();
    await alice.waitForSelector("#shell:not([hidden])");
    await firefoxShows(alice, "#message-list .msg .body", "Read this?", "after a reload Firefox is still signed in with the room's history");
    const bodies = await texts(alice, "#message-list .msg[data-id] .body");
    const once = ["Hello from Firefox", "Hello from Chromium", "Read this?"].every((t) => bodies.filter((b) => b === t).length === 1);
    check(once, "every message shows exactly once after the reload");
    const violations = await alice.evaluate(() => window.__csp);
    check(violations.length === 0, "no CSP violation in Firefox" + (violations.length ? ": " + violations.join("; ") : ""));
  } finally {
    await fx?.close();
    await chrome?.close().catch(() => {});
    roost?.child.kill("SIGTERM");
    if (process.exitCode && roost) console.error(roost.stderr().split("\n").slice(-40).join("\n"));
    ns.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
