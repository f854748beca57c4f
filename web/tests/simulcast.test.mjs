// Publishers that offer simulcast (three encodings, rids q, h and f, as
// Chromium and Firefox do when asked for them) get an answer that makes them
// send one encoding, and a viewer receives one stream per publisher whose
// frame size does not jump between layers. Until Roost forwards simulcast
// layers by choice, mixing two sizes into one stream is the failure a viewer
// sees (ADR 0005, docs/webrtc.md).
//
//   ROOST_BIN=path/to/roost node simulcast.test.mjs

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { CHROMIUM, PASSWORD, api, check, chromiumArgs, fail, serveHarness, sleep, startRoost } from "./support.mjs";
const HD = { width: 1280, height: 720 };

async function main() {
  const harness = await serveHarness();
  const origin = `http://127.0.0.1:${harness.address().port}`;
  let roost;
  let chrome;
  try {
    roost = await startRoost({
      ROOST_CALLS__MESH_MAX: "0",
      ROOST_GATEWAY__ALLOWED_ORIGINS: JSON.stringify([origin]),
    });
    const base = roost.url;
    const wsUrl = base.replace("http://", "ws://") + "/v1/ws";
    const users = [];
    for (const name of ["camera", "viewer"]) {
      users.push(await api(base, "/v1/auth/register", { email: `${name}@example.org`, username: name, password: PASSWORD }));
    }
    const room = await api(base, "/v1/rooms", { name: "simulcast room" }, users[0].access_token);
    for (const u of users.slice(1)) {
      await api(base, `/v1/rooms/${room.id}/members`, { user_id: u.user.id }, users[0].access_token);
    }

    chrome = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "chromium-")), {
      executablePath: CHROMIUM, headless: true, args: chromiumArgs(),
    });
    const camera = await chrome.newPage();
    const viewer = await chrome.newPage();
    const pages = [camera, viewer];
    for (const [i, page] of pages.entries()) {
      await page.goto(`${origin}/harness.html`);
      await page.waitForFunction(() => window.ready === true);
      await page.evaluate((o) => window.startParticipant(o), {
        wsUrl, token: users[i].access_token, roomId: room.id, simulcast: i === 0, video: HD,
      });
    }
    const ids = [];
    for (const page of pages) {
      const r = await page.evaluate(() => window.participant.join());
      if (r.topology !== "sfu") fail("every call is on the SFU here");
      ids.push(r.participant_id);
    }
    const streams = (page) => page.evaluate(() => window.participant.videoStreams());

    // The viewer decodes the camera.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const seen = await streams(viewer);
      if (seen.received.some((r) => r.from === ids[0] && r.frames > 0)) break;
      if (Date.now() > deadline) {
        fail("the viewer decodes the camera within 30 s: " + JSON.stringify({ seen, sent: await streams(camera) }));
      }
      await sleep(300);
    }
    check(true, "a viewer decodes a Chromium camera that offered three encodings (q, h, f)");

    // Over three seconds: what the camera sends, what the viewer gets.
    const before = await Promise.all(pages.map(streams));
    const widths = new Set();
    for (let n = 0; n < 6; n++) {
      await sleep(500);
      for (const r of (await streams(viewer)).received) if (r.from === ids[0] && r.width > 0) widths.add(r.width);
    }
    const after = await Promise.all(pages.map(streams));
    const growing = after[0].sent.filter((s) => s.bytes > (before[0].sent.find((b) => b.rid === s.rid)?.bytes || 0));
    check(growing.length === 1 && growing[0].rid === "f",
      `the camera sends one encoding, its largest (f), not three: ${JSON.stringify(after[0].sent)}`);
    const received = after[1].received.filter((r) => r.from === ids[0]);
    check(received.length === 1, `the viewer receives one video stream from it: ${JSON.stringify(received)}`);
    const was = before[1].received.find((r) => r.from === ids[0]);
    check(received[0].frames > (was ? was.frames : 0), "and keeps decoding it");
    check(widths.size === 1, `its frame size stays the same: ${[...widths].join(", ")} px wide`);
    const logs = (await Promise.all(pages.map((p) => p.evaluate(() => window.participant.log)))).flat();
    check(logs.length === 0, "no signalling step failed: " + JSON.stringify(logs));
  } catch (e) {
    process.exitCode = 1;
    throw e;
  } finally {
    await chrome?.close().catch(() => {});
    roost?.child.kill("SIGTERM");
    harness.close();
    if (process.exitCode && roost) console.error(roost.stderr().split("\n").filter((l) => /WARN|ERROR|refused|sdp/i.test(l)).slice(-30).join("\n"));
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
