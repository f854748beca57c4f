// Simulcast on the SFU (ADR 0025, docs/webrtc.md "Simulcast"): a Chromium
// and a Firefox camera each send three encodings (rids q, h and f, a
// quarter, half and full size of 1280x720), and each viewer receives the
// one that fits the size it asks for (`call.subscribe` with `max_width` and
// `max_height`):
//
// - both cameras send their encodings (a browser may hold its largest back,
//   for its own estimate or its CPU), and a viewer asking nothing receives
//   the largest one sent;
// - a viewer that asks for 320x180 tiles receives the small layer (its
//   frame width, and a fraction of the bytes the other viewer gets), while
//   the viewer that asks nothing keeps the full one;
// - asking for the full size again moves it up within 10 s, at a keyframe:
//   its frames keep being decoded across the switch, with no gap over a
//   second, and few keyframe requests (PLI) from it;
// - a paused camera sends that viewer nothing;
// - with every viewer on small tiles, each camera is told to send its
//   smallest encoding alone (`sfu.layers`), and the others come back when
//   a viewer asks for the full size.
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
    for (const name of ["camera", "foxcam", "small", "large"]) {
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
    const small = await chrome.newPage();
    const large = await chrome.newPage();
    const pages = [camera, foxCam, small, large];
    for (const [i, page] of pages.entries()) {
      await page.goto(`${i === 1 ? foxOrigin : origin}/harness.html`);
      await page.waitForFunction(() => window.ready === true);
      await page.evaluate((o) => window.startParticipant(o), {
        wsUrl, token: users[i].access_token, roomId: room.id, simulcast: i < 2, video: i < 2 ? HD : undefined,
      });
    }
    const ids = [];
    for (const page of pages) {
      const r = await page.evaluate(() => window.participant.join());
      if (r.topology !== "sfu") fail("every call is on the SFU here");
      ids.push(r.participant_id);
    }
    const cameras = [["Chromium", 0], ["Firefox", 1]];
    const streams = (page) => page.evaluate(() => window.participant.videoStreams());
    const from = (seen, i) => seen.received.find((r) => r.from === ids[i]) || { width: 0, frames: 0, bytes: 0, plis: 0 };
    const subscribe = (page, i, want) => page.evaluate(({ id, want }) =>
      window.participant.request({ type: "call.subscribe", call_id: window.participant.callId, participant_id: id, source: "camera", ...want }),
    { id: ids[i], want });
    // The encodings a camera's page sends now (their bytes grow over 300 ms).
    const sending = async (page) => {
      const a = (await streams(page)).sent;
      await sleep(300);
      const b = (await streams(page)).sent;
      return b.filter((e) => e.bytes > (a.find((x) => x.rid === e.rid)?.bytes || 0));
    };
    // Waits until `ok(seen)` holds for a page's streams, or fails saying `what`.
    const until = async (page, ok, ms, what) => {
      const deadline = Date.now() + ms;
      for (;;) {
        const seen = await streams(page);
        if (await ok(seen)) return seen;
        if (Date.now() > deadline) {
          const sent = await Promise.all([camera, foxCam].map(streams));
          fail(`${what} (within ${ms / 1000} s): ${JSON.stringify({ ids, seen, sent: sent.map((s) => s.sent) })}`);
        }
        await sleep(250);
      }
    };

    // Both viewers decode both cameras.
    for (const viewer of [small, large]) {
      await until(viewer, (seen) => from(seen, 0).frames > 0 && from(seen, 1).frames > 0, 30_000,
        "a viewer decodes a Chromium and a Firefox camera that each send three encodings");
    }
    check(true, "both viewers decode a Chromium and a Firefox camera that each send three encodings (q, h, f)");
    // Browsers start on their smallest encoding and add the others as their
    // estimate grows: asking nothing, each viewer is moved up to the largest.
    // A browser may hold its largest encoding back (its own estimate, or
    // its CPU): each viewer gets the largest one the camera sends.
    const started = Date.now();
    let widest;
    for (const viewer of [small, large]) {
      await until(viewer, async (seen) => {
        widest = await Promise.all(cameras.map(([, i]) => sending(pages[i])));
        const largest = (i) => Math.max(...widest[i].map((e) => e.width));
        return cameras.every(([, i]) => widest[i].length >= 2 && from(seen, i).width >= 0.9 * largest(i));
      }, 20_000, "a viewer asking nothing receives the largest layer each camera sends, of two at least");
    }
    const sizes = (i) => widest[i].map((e) => `${e.rid} ${e.width}`).join(", ");
    check(true, `asking nothing, both viewers receive the largest layer each camera sends (Chromium: ${sizes(0)}; Firefox: ${sizes(1)}) within ${((Date.now() - started) / 1000).toFixed(1)} s`);

    // The small viewer asks for 320x180 tiles; the large one says nothing.
    for (const [, i] of cameras) await subscribe(small, i, { max_width: 320, max_height: 180 });
    const asked = Date.now();
    await until(small, (seen) => cameras.every(([, i]) => from(seen, i).width > 0 && from(seen, i).width <= 400), 5_000,
      "the small viewer moves down to the small layer of both cameras");
    check(true, `the viewer asking for 320x180 moves down to the small layers within ${((Date.now() - asked) / 1000).toFixed(1)} s`);

    // Three seconds of both viewers and both cameras.
    const before = await Promise.all(pages.map(streams));
    const smallWidths = [new Set(), new Set()];
    for (let n = 0; n < 6; n++) {
      await sleep(500);
      const seen = await streams(small);
      for (const [, i] of cameras) smallWidths[i].add(from(seen, i).width);
    }
    const after = await Promise.all(pages.map(streams));
    for (const [browser, i] of cameras) {
      const growing = after[i].sent.filter((s) => s.bytes > (before[i].sent.find((b) => b.rid === s.rid)?.bytes || 0));
      check(growing.length >= 2 && growing.some((s) => s.rid === "q"),
        `the ${browser} camera sends ${growing.map((s) => s.rid).join(", ")} of q, h and f: ${JSON.stringify(after[i].sent)}`);
      const got = (v) => from(after[v], i).bytes - from(before[v], i).bytes;
      const [smallBytes, largeBytes] = [got(2), got(3)];
      const [smallWidth, largeWidth] = [from(after[2], i).width, from(after[3], i).width];
      check(smallWidth <= 400 && largeWidth >= 2 * smallWidth,
        `the small viewer receives ${browser}'s camera ${smallWidth} px wide, the large one ${largeWidth} px`);
      check(smallBytes > 0 && smallBytes < 0.75 * largeBytes,
        `over 3 s the small viewer receives ${Math.round(smallBytes * 8 / 3000)} kbit/s of it, the large one ${Math.round(largeBytes * 8 / 3000)} kbit/s`);
      check(smallWidths[i].size === 1, `the small viewer's frame size stays the same: ${[...smallWidths[i]].join(", ")} px wide`);
      check(from(after[2], i).frames > from(before[2], i).frames && from(after[3], i).frames > from(before[3], i).frames,
        "and both keep decoding it");
    }

    // The small viewer asks for the full size again: it moves up, at a
    // keyframe, without its decoder stopping.
    const plisBefore = await streams(small);
    for (const [, i] of cameras) await subscribe(small, i, {});
    const up = Date.now();
    const last = cameras.map(([, i]) => ({ frames: from(plisBefore, i).frames, at: up, gap: 0 }));
    let moved;
    for (;;) {
      await sleep(100);
      const seen = await streams(small);
      const big = await streams(large);
      for (const [, i] of cameras) {
        const now = Date.now();
        if (from(seen, i).frames > last[i].frames) {
          last[i].gap = Math.max(last[i].gap, now - last[i].at);
          last[i] = { ...last[i], frames: from(seen, i).frames, at: now };
        }
      }
      if (cameras.every(([, i]) => from(seen, i).width >= 0.9 * from(big, i).width && from(seen, i).width > 400)) {
        moved = seen;
        break;
      }
      if (Date.now() - up > 10_000) fail("the small viewer moves up to the full layers within 10 s: " + JSON.stringify({ seen, big }));
    }
    // A few more seconds on the new layers, still decoding.
    await sleep(2000);
    const settled = await streams(small);
    for (const [browser, i] of cameras) {
      const gap = Math.max(last[i].gap, Date.now() - last[i].at - 2000);
      check(from(settled, i).frames > from(moved, i).frames,
        `the switch up took ${((Date.now() - up - 2000) / 1000).toFixed(1)} s at most; ${browser}'s camera is decoded on after it (${from(settled, i).width} px wide)`);
      check(gap <= 1000, `no gap over 1 s in ${browser}'s frames across the switch (longest ${gap} ms)`);
      const plis = from(settled, i).plis - from(plisBefore, i).plis;
      check(plis <= 3, `the viewer asked for ${plis} keyframes of it across the switch`);
    }

    // Paused: nothing more of that camera reaches the small viewer.
    await subscribe(small, 1, { paused: true });
    await sleep(1000);
    const pausedAt = await streams(small);
    await sleep(2000);
    const pausedAfter = await streams(small);
    check(from(pausedAfter, 1).bytes === from(pausedAt, 1).bytes,
      `a paused camera sends the viewer nothing (${from(pausedAfter, 1).bytes - from(pausedAt, 1).bytes} bytes in 2 s)`);
    check(from(pausedAfter, 0).bytes > from(pausedAt, 0).bytes, "while the other camera goes on");

    // Both viewers ask for small tiles, and the two cameras' pages pause
    // each other: no one receives the larger layers, and the server tells
    // each camera to stop them (sfu.layers); when one viewer asks for the
    // full size again, they come back.
    for (const viewer of [small, large]) {
      for (const [, i] of cameras) await subscribe(viewer, i, { max_width: 320, max_height: 180 });
    }
    await subscribe(camera, 1, { paused: true });
    await subscribe(foxCam, 0, { paused: true });
    const smallOnly = Date.now();
    const onlyQ = [];
    for (const [browser, i] of cameras) {
      for (;;) {
        const now = await sending(pages[i]);
        if (now.length === 1 && now[0].rid === "q") break;
        if (Date.now() - smallOnly > 10_000) {
          fail(`with every viewer on small tiles, the ${browser} camera sends q alone within 10 s: ${JSON.stringify(now)}`);
        }
        await sleep(200);
      }
      onlyQ.push(`${browser} ${((Date.now() - smallOnly) / 1000).toFixed(1)} s`);
    }
    const told = await Promise.all([camera, foxCam].map((p) => p.evaluate(() => window.participant.layersTold || 0)));
    check(told.every((n) => n > 0), `with every viewer on small tiles, both cameras are told to send q alone and do (${onlyQ.join(", ")}; told ${told.join(", ")} times)`);
    for (const [, i] of cameras) await subscribe(large, i, {});
    // The browser's encoder starts the layers again as its own estimate
    // allows: seconds, as it sent little meanwhile.
    const back = Date.now();
    const backIn = [];
    await until(large, (seen) => {
      for (const [browser, i] of cameras) {
        if (from(seen, i).width >= 960 && !backIn[i]) backIn[i] = `${browser} ${((Date.now() - back) / 1000).toFixed(1)} s`;
      }
      return cameras.every(([, i]) => backIn[i]);
    }, 15_000, "a viewer asking for the full size again receives it from both cameras");
    check(true, `asked for the full size again, the larger layers come back and the viewer receives them 1280 px wide (${backIn.join(", ")})`);

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
