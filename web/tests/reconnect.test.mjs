// A change of network mid-call, in the built-in web client: alice's
// Firefox runs in a network namespace of the test's own, bob's Chromium on
// this side, both in one call, first on the server's SFU and then peer to
// peer. Mid-call the namespace's interface moves to a new address (the old
// one deleted, as when a laptop changes Wi-Fi), which breaks both her media
// connections and her WebSocket (its TCP connection goes nowhere now).
// Her page says "reconnecting", finds its socket dead by an unanswered
// ping, opens a new one and takes her place in the call back
// (`call.resume`, within the server's grace), restarts ICE by itself (on
// the SFU a new offer of her sending connection and `sfu.restart` for her
// receiving one; peer to peer a new offer to bob), and media flows both
// ways again over the new address, with nobody leaving the call.
//
// Printed for each: when alice's page noticed, and how long after that and
// after the move media was back. Firefox notices at once (the address
// goes); the new address is usable from the move on. On the SFU, then,
// alice's UDP is cut for 17 s: the server gives up on her media
// connections, and her page makes new ones when UDP is back.
//
//   ROOST_BIN=path/to/roost [FIREFOX=/usr/bin/firefox-esr] node reconnect.test.mjs   (as root)

import { execFileSync } from "node:child_process";
import { chromium } from "playwright-core";
import {
  CHROMIUM, PASSWORD, api, check, chromiumArgs, fail, firefoxIn, instrument, netns, udpToHostOnly, signInAndOpen, sleep, startRoost,
} from "./support.mjs";

// Decoded video frames and audio packets a page receives on its open connections.
function received() {
  return (async () => {
    const s = { audio: 0, video: 0, t: Date.now() };
    s.topology = document.querySelector("#call-topology")?.textContent || "";
    for (const pc of window.__pcs) {
      if (pc.connectionState === "closed" || pc.signalingState === "closed") continue;
      const stats = await Promise.race([pc.getStats(), new Promise((r) => setTimeout(() => r(new Map()), 2000))]);
      for (const r of stats.values()) {
        if (r.type !== "inbound-rtp") continue;
        if (r.kind === "audio") s.audio += r.packetsReceived || 0;
        if (r.kind === "video") s.video += r.framesDecoded || 0;
      }
    }
    return s;
  })();
}

// Waits until both pages receive each other's audio and decode video:
// returns when, or fails after `ms`.
async function bothFlow(pages, ms, what) {
  const start = await Promise.all(pages.map((p) => p.evaluate(received)));
  const deadline = Date.now() + ms;
  let last = start;
  while (Date.now() < deadline) {
    await sleep(250);
    last = await Promise.all(pages.map((p) => p.evaluate(received)));
    const flowing = last.every((s, i) => s.video >= start[i].video + 5 && s.audio >= start[i].audio + 10);
    if (flowing) {
      check(true, what);
      return Date.now();
    }
  }
  fail(`${what} within ${ms / 1000} s; from ${JSON.stringify(start)} to ${JSON.stringify(last)}`);
}

// What alice's page knows of its call and socket, for a failure's report.
const state = (alice) => alice.evaluate(() => {
  const c = window.roost.state.call;
  const l = window.roost.live;
  return { socketDown: c?.socketDown, reconnecting: c?.reconnecting.size, ended: c?.ended, error: c?.error,
    ws: l.ws?.readyState, ready: l.ready, drops: l.drops,
    pcs: window.__pcs.map((pc) => `${pc.iceConnectionState}/${pc.connectionState}/${pc.signalingState}`) };
}).catch((e) => String(e));

// Moves the namespace's side of the veth from its address to `to`.
function moveAddress(ns, to) {
  const ip = (...args) => execFileSync("ip", ["-n", ns.name, ...args], { stdio: ["ignore", "ignore", "pipe"] });
  const dev = `rv${process.pid}n`;
  // Deleted first: the kernel takes the other addresses of a subnet away
  // with its first one.
  ip("addr", "del", `${ns.address}/24`, "dev", dev);
  ip("addr", "add", `${to}/24`, "dev", dev);
  ip("route", "replace", "default", "dev", dev);
  ns.address = to;
}

// `limit`: how soon media must be back after alice's page restarts ICE.
async function changeOfNetwork(ns, alice, bob, what, next, limit) {
  await bothFlow([alice, bob], 30_000, `alice (Firefox) and bob (Chromium) are in the call ${what}, each receiving the other`);
  const before = await alice.evaluate(() => document.querySelector("#call-topology").textContent);
  const moved = Date.now();
  moveAddress(ns, next);
  // Alice's page notices, and restarts by itself.
  let noticed = null;
  while (Date.now() - moved < 20_000) {
    const text = await alice.evaluate(() => document.querySelector("#call-topology").textContent);
    if (text.includes("reconnecting")) {
      noticed = Date.now();
      break;
    }
    await sleep(100);
  }
  if (!noticed) fail(`alice's page shows it reconnects after her address changed (it said "${before}")`);
  check(true, `alice's page says it is reconnecting ${noticed - moved} ms after her address changed`);
  const back = await bothFlow([alice, bob], 15_000, `media flows both ways again ${what}, over alice's new address`)
    .catch(async (e) => {
      console.error("alice's page:", JSON.stringify(await state(alice)));
      throw e;
    });
  console.log(`  (media back ${back - noticed} ms after her page restarted ICE, ${back - moved} ms after the move)`);
  check(back - noticed <= limit, `media is back within ${limit / 1000} s of the restart (${back - noticed} ms)`);
  const after = await alice.evaluate(() => document.querySelector("#call-topology").textContent);
  const bobSees = await bob.evaluate(() => document.querySelector("#call-topology").textContent);
  check(after.startsWith("2 in call") && !after.includes("reconnecting") && bobSees.startsWith("2 in call"),
    `both are still in the call, no longer reconnecting ("${after}", "${bobSees}")`);
}

// Alice's UDP is cut for longer than the server waits on a silent media
// connection (15 s) while her socket (TCP) stays up: the server gives up on
// her connections, her restarts are refused with `not_on_sfu`, and her page
// opens new connections to the server, staying in the call.
async function mediaGivenUp(ns, alice, bob) {
  await bothFlow([alice, bob], 30_000, "alice and bob are in the call via server again");
  const nft = (...args) => execFileSync("ip", ["netns", "exec", ns.name, "nft", ...args]);
  nft("add", "table", "inet", "roost_cut");
  nft("add", "chain", "inet", "roost_cut", "out", "{ type filter hook output priority 0; }");
  nft("add", "chain", "inet", "roost_cut", "in", "{ type filter hook input priority 0; }");
  nft("add", "rule", "inet", "roost_cut", "out", "meta", "l4proto", "udp", "drop");
  nft("add", "rule", "inet", "roost_cut", "in", "meta", "l4proto", "udp", "drop");
  const cut = Date.now();
  if (process.env.ROOST_TEST_CONSOLE) console.error(`cut at ${cut % 100000}`);
  await sleep(17_000);
  nft("delete", "table", "inet", "roost_cut");
  const restored = Date.now();
  const back = await bothFlow([alice, bob], 25_000, "after 17 s without UDP, media flows both ways again over new connections")
    .catch(async (e) => {
      console.error("alice's page:", JSON.stringify(await state(alice)));
      throw e;
    });
  console.log(`  (media back ${back - restored} ms after UDP came back, ${back - cut} ms after it was cut)`);
  const after = await alice.evaluate(() => document.querySelector("#call-topology").textContent);
  check(after.startsWith("2 in call") && !after.includes("reconnecting"), `alice is still in the call ("${after}")`);
}

async function main() {
  const ns = netns("move");
  ns.address = ns.inside;
  const [a, b, c] = ns.inside.split(".");
  const servers = [];
  let fx;
  let chrome;
  try {
    udpToHostOnly(ns);
    fx = await firefoxIn(ns, { "dom.securecontext.allowlist": ns.host });
    // On the SFU, then peer to peer.
    // Through the server, 3 s. Peer to peer the browsers check the new
    // paths between themselves, which takes Firefox and Chromium 3 to 7 s
    // here (the server only relays the new offer and candidates).
    for (const [env, what, next, limit] of [
      [{ ROOST_CALLS__MESH_MAX: "0" }, "via server", `${a}.${b}.${c}.3`, 3000],
      [{}, "peer to peer", `${a}.${b}.${c}.4`, 10_000],
    ]) {
      const roost = await startRoost({ ...env, ROOST_MEDIA__LISTEN: `${ns.host}:0` }, "warn", { listen: `${ns.host}:0` });
      servers.push(roost);
      const base = roost.url;
      await chrome?.close();
      chrome = await chromium.launch({
        executablePath: CHROMIUM, headless: true,
        args: [...chromiumArgs(15), `--unsafely-treat-insecure-origin-as-secure=${base}`],
      });
      const users = [];
      for (const n of ["alice", "bob"]) {
        users.push(await api(base, "/v1/auth/register", {
          email: `${n}@example.org`, username: n, display_name: n[0].toUpperCase() + n.slice(1), password: PASSWORD,
        }));
      }
      const room = await api(base, "/v1/rooms", { name: "Travels" }, users[0].access_token);
      await api(base, `/v1/rooms/${room.id}/members`, { user_id: users[1].user.id }, users[0].access_token);

      const alice = await fx.browser.newPage();
      await alice.evaluateOnNewDocument(instrument);
      alice.on("pageerror", (e) => console.error(`[alice, firefox] ${e}`));
      alice.on("console", (m) => process.env.ROOST_TEST_CONSOLE && console.error(`[alice ${Date.now() % 100000}] ${m.text()}`));
      const ctx = await chrome.newContext({ viewport: { width: 1280, height: 800 } });
      await ctx.addInitScript(instrument);
      const bob = await ctx.newPage();
      bob.on("pageerror", (e) => console.error(`[bob, chromium] ${e}`));
      // Plain HTTP on the veth's address, a secure context for both browsers
      // as an HTTPS origin would be.
      await signInAndOpen(alice, base, "alice", "Travels");
      await signInAndOpen(bob, base, "bob", "Travels");
      await alice.click("#call-join");
      await bob.locator("#call-join", { hasText: "Join call (1)" }).waitFor({ timeout: 10_000 });
      await bob.click("#call-join");
      await changeOfNetwork(ns, alice, bob, what, next, limit);
      if (what === "via server") await mediaGivenUp(ns, alice, bob);
      await alice.close();
      await ctx.close();
    }
  } finally {
    await fx?.close();
    await chrome?.close();
    for (const s of servers) s.child.kill("SIGTERM");
    if (process.exitCode) {
      for (const s of servers) console.error(s.stderr().split("\n").filter((l) => !l.includes("rtc")).slice(-30).join("\n"));
    }
    ns.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
