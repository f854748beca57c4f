// Publishers that offer simulcast (three encodings, rids q, h and f, as
// Chromium and Firefox do when asked for them) get an answer that makes them
// send one encoding, and a viewer receives one stream per publisher whose
// frame size does not jump between layers. Until Roost forwards simulcast
// layers by choice, mixing two sizes into one stream is the failure a viewer
// sees (ADR 0015, docs/webrtc.md).
//
// Firefox runs in a network namespace of the test's own (it gathers no
// loopback candidate, and its traffic must not go to this machine's own
// external address); the server listens on the veth's address on this side.
//
//   ROOST_BIN=path/to/roost [FIREFOX=/usr/bin/firefox-esr] node simulcast.test.mjs   (as root)

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import {
  CHROMIUM, PASSWORD, api, check, chromiumArgs, fail, firefoxIn, netns, serveHarness, sleep, startRoost,
} from "./support.mjs";
const HD = { width: 1280, height: 720 };

async function main() {
  // Firefox runs in a namespace of the test's own and reaches the server at
  // the veth's address on this side (it gathers no loopback candidate);
  // Chromium reaches the same address locally.
  const ns = netns("simulcast");
  let harness;
  let foxHarness;
  let roost;
  let chrome;
  let firefox;
  try {
    harness = await serveHarness();
    foxHarness = await serveHarness(ns.host);
    const origin = `http://127.0.0.1:${harness.address().port}`;
    const foxOrigin = `http://${ns.host}:${foxHarness.address().port}`;
    roost = await startRoost({
      ROOST_CALLS__MESH_MAX: "0",
      ROOST_MEDIA__LISTEN: `${ns.host}:0`,
      ROOST_GATEWAY__ALLOWED_ORIGINS: JSON.stringify([origin, foxOrigin]),
    }, "warn", { listen: `${ns.host}:0` });
    const base = roost.url;
    const wsUrl = base.replace("http://", "ws://") + "/v1/ws";
    const users = [];
    for (const name of ["camera", "foxcam", "viewer"]) {
      users.push(await api(base, "/v1/auth/register", { email: `${name}@example.org`, username: name, password: PASSWORD }));
    }
    const room = await api(base, "/v1/rooms", { name: "simulcast room" }, users[0].access_token);
    for (const u of users.slice(1)) {
      await api(base, `/v1/rooms/${room.id}/members`, { user_id: u.user.id }, users[0].access_token);
    }

    chrome = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "chromium-")), {
      executablePath: CHROMIUM, headless: true, args: chromiumArgs(),
    });
    // The harness page is not a secure context there: let it use the fake devices.
    firefox = await firefoxIn(ns, { "media.devices.insecure.enabled": true, "media.getusermedia.insecure.enabled": true });
    const camera = await chrome.newPage();
    const foxCam = await firefox.browser.newPage();
    const viewer = await chrome.newPage();
    const pages = [camera, foxCam, viewer];
    for (const [i, page] of pages.entries()) {
      await page.goto(`${i === 1 ? foxOrigin : origin}/harness.html`);
      await page.waitForFunction(() => window.ready === true);
      await page.evaluate((o) => window.startParticipant(o), {
        wsUrl, token: users[i].access_token, roomId: room.id, simulcast: i < 2, video: HD,
      });
    }
    const ids = [];
    for (const page of pages) {
      const r = await page.evaluate(() => window.participant.join());
      if (r.topology !== "sfu") fail("every call is on the SFU here");
      ids.push(r.participant_id);
    }
    const streams = (page) => page.evaluate(() => window.participant.videoStreams());

    // The viewer decodes both cameras.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const seen = await streams(viewer);
      const decoding = new Set(seen.received.filter((r) => r.frames > 0).map((r) => r.from));
      if (decoding.has(ids[0]) && decoding.has(ids[1])) break;
      if (Date.now() > deadline) {
        fail("the viewer decodes both cameras within 30 s: " + JSON.stringify({ ids, seen, sent: await Promise.all([camera, foxCam].map(streams)) }));
      }
      await sleep(300);
    }
    check(true, "a viewer decodes a Chromium and a Firefox camera that each offered three encodings (q, h, f)");

    // Over three seconds: what each camera sends, what the viewer gets.
    const before = await Promise.all(pages.map(streams));
    const widths = [new Set(), new Set()];
    for (let n = 0; n < 6; n++) {
      await sleep(500);
      for (const r of (await streams(viewer)).received) {
        const i = ids.indexOf(r.from);
        if (i === 0 || i === 1) if (r.width > 0) widths[i].add(r.width);
      }
    }
    const after = await Promise.all(pages.map(streams));
    for (const [i, browser] of ["Chromium", "Firefox"].entries()) {
      const growing = after[i].sent.filter((s) => s.bytes > (before[i].sent.find((b) => b.rid === s.rid)?.bytes || 0));
      check(growing.length === 1 && growing[0].rid === "f",
        `the ${browser} camera sends one encoding, its largest (f), not three: ${JSON.stringify(after[i].sent)}`);
      const received = after[2].received.filter((r) => r.from === ids[i]);
      check(received.length === 1, `the viewer receives one video stream from it: ${JSON.stringify(received)}`);
      const was = before[2].received.find((r) => r.from === ids[i]);
      check(received[0].frames > (was ? was.frames : 0), "and keeps decoding it");
      check(widths[i].size === 1, `its frame size stays the same: ${[...widths[i]].join(", ")} px wide`);
    }
    const logs = (await Promise.all(pages.map((p) => p.evaluate(() => window.participant.log)))).flat();
    check(logs.length === 0, "no signalling step failed: " + JSON.stringify(logs));
  } catch (e) {
    process.exitCode = 1;
    throw e;
  } finally {
    await chrome?.close().catch(() => {});
    await firefox?.close();
    roost?.child.kill("SIGTERM");
    harness?.close();
    foxHarness?.close();
    if (process.exitCode && roost) console.error(roost.stderr().split("\n").slice(-30).join("\n"));
    ns.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
