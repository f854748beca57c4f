// H.264 simulcast sized by what the stream says (docs/webrtc.md
// "Simulcast"): a Chromium camera sends H.264 in three encodings of a
// 960x540 picture (240, 480 and 960 px wide), and the server reads each
// layer's size from the sequence parameter set that comes with its
// keyframes, as it reads VP8's from the keyframe header. A viewer that asks
// for 600x340 tiles is given the smallest layer that fills them, the 960 px
// one; had the server reckoned the sizes from a 1280x720 top layer, it would
// have given the middle layer (reckoned 640 px, 480 in fact), a picture
// smaller than the tile. A viewer asking for 240x135 gets the 240 px layer.
//
//   ROOST_BIN=path/to/roost node h264-simulcast.test.mjs

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import {
  CHROMIUM, PASSWORD, api, check, chromiumArgs, fail, serveHarness, sleep, startRoost,
} from "./support.mjs";

const CAMERA = { width: 960, height: 540 };

async function main() {
  let harness;
  let roost;
  let chrome;
  try {
    harness = await serveHarness();
    const origin = `http://127.0.0.1:${harness.address().port}`;
    roost = await startRoost({
      ROOST_CALLS__MESH_MAX: "0",
      ROOST_GATEWAY__ALLOWED_ORIGINS: JSON.stringify([origin]),
    });
    const wsUrl = roost.url.replace("http://", "ws://") + "/v1/ws";
    const users = [];
    for (const name of ["cam", "large", "small"]) {
      users.push(await api(roost.url, "/v1/auth/register", { email: `${name}@example.org`, username: name, password: PASSWORD }));
    }
    const room = await api(roost.url, "/v1/rooms", { name: "h264 room" }, users[0].access_token);
    for (const u of users.slice(1)) {
      await api(roost.url, `/v1/rooms/${room.id}/members`, { user_id: u.user.id }, users[0].access_token);
    }
    chrome = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "chromium-")), {
      executablePath: CHROMIUM, headless: true, args: chromiumArgs(),
    });
    const pages = [];
    for (const [i, u] of users.entries()) {
      const page = await chrome.newPage();
      await page.goto(`${origin}/harness.html`);
      await page.waitForFunction(() => window.ready === true);
      await page.evaluate((o) => window.startParticipant(o), {
        wsUrl, token: u.access_token, roomId: room.id,
        ...(i === 0 ? { simulcast: true, videoCodec: "H264", video: CAMERA } : {}),
      });
      pages.push(page);
    }
    const ids = [];
    for (const page of pages) {
      const r = await page.evaluate(() => window.participant.join());
      if (r.topology !== "sfu") fail("the call is on the SFU here");
      ids.push(r.participant_id);
    }
    const [cam, large, small] = pages;
    for (const [page, box] of [[large, [600, 340]], [small, [240, 135]]]) {
      await page.evaluate(({ id, box }) => window.participant.request({
        type: "call.subscribe", call_id: window.participant.callId, participant_id: id, source: "camera",
        max_width: box[0], max_height: box[1],
      }), { id: ids[0], box });
    }
    // The camera sends H.264 in its three sizes.
    const deadline = Date.now() + 30_000;
    let sent;
    for (;;) {
      const s = await cam.evaluate(() => window.participant.videoStreams());
      const codec = await cam.evaluate(async () => {
        for (const r of (await window.participant.sendPc.getStats()).values()) {
          if (r.type === "codec" && r.mimeType.startsWith("video/")) return r.mimeType;
        }
        return null;
      });
      sent = s.sent;
      const widths = sent.map((e) => e.width).sort((a, b) => a - b);
      if (codec === "video/H264" && widths.join() === "240,480,960") break;
      if (Date.now() > deadline) fail(`the camera sends H.264 at 240, 480 and 960 px: ${codec} ${JSON.stringify(sent)}`);
      await sleep(500);
    }
    check(true, `the Chromium camera sends H.264 in three encodings (${sent.map((e) => `${e.rid} ${e.width} px`).join(", ")})`);
    // Each viewer decodes the layer its tiles call for, by the layers' real sizes.
    for (const [page, want, what] of [[large, 960, "600x340"], [small, 240, "240x135"]]) {
      const until = Date.now() + 20_000;
      let got;
      for (;;) {
        const r = (await page.evaluate(() => window.participant.videoStreams())).received.find((x) => x.from === ids[0]);
        got = r;
        if (r && r.frames > 0 && r.width === want) break;
        if (Date.now() > until) fail(`a viewer of ${what} tiles decodes the ${want} px layer: ${JSON.stringify(got)}`);
        await sleep(500);
      }
      const before = got.frames;
      await sleep(2000);
      const after = (await page.evaluate(() => window.participant.videoStreams())).received.find((x) => x.from === ids[0]);
      check(after.width === want && after.frames > before,
        `a viewer of ${what} tiles decodes the ${want} px layer (${after.width}x${after.height}, ${after.frames - before} frames in 2 s)`);
    }
  } catch (e) {
    process.exitCode = 1;
    throw e;
  } finally {
    await chrome?.close().catch(() => {});
    roost?.child.kill("SIGTERM");
    harness?.close();
    if (process.exitCode && roost) console.error(roost.stderr().split("\n").slice(-30).join("\n"));
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
