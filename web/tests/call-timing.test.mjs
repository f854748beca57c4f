// What a person notices when a call changes: how long someone who joins a
// call on the SFU waits for the others' video, and whether anyone's video
// stops while a call moves from peer to peer to the SFU. Headless Chromium
// pages (the documented protocol only, web/tests/call-client.js) against a
// real `roost serve` on loopback with `calls.mesh_max = 2`.
//
//   ROOST_BIN=path/to/roost node call-timing.test.mjs
//
// Targets, on loopback: no participant goes more than 300 ms without a new
// frame from any other across a move to the SFU; a joiner decodes every
// publisher's video within 400 ms of its `call.join` ack (median of runs).

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { CHROMIUM, PASSWORD, api, check, chromiumArgs, fail, serveHarness, sleep, startRoost } from "./support.mjs";

const MOVE_GAP_MS = 300;
const FIRST_FRAME_MS = 400;
const JOINS = Number(process.env.ROOST_TIMING_JOINS || 7);

const stats = (page) => page.evaluate(() => window.participant.stats());

async function until(pages, pred, ms, what) {
  const deadline = Date.now() + ms;
  let last = [];
  while (Date.now() < deadline) {
    last = await Promise.all(pages.map(stats));
    if (last.every(pred)) return last;
    await sleep(200);
  }
  fail(`${what} within ${ms / 1000} s; last stats: ${JSON.stringify(last.map((s) => ({ ...s, log: s.log })))}`);
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

async function main() {
  const harness = await serveHarness();
  const origin = `http://127.0.0.1:${harness.address().port}`;
  const roost = await startRoost({
    ROOST_CALLS__MESH_MAX: "2",
    ROOST_CALLS__SFU_GRACE_SECS: "60",
    ROOST_GATEWAY__ALLOWED_ORIGINS: JSON.stringify([origin]),
  });
  const browsers = [];
  try {
    const base = roost.url;
    const wsUrl = base.replace("http://", "ws://") + "/v1/ws";
    const users = [];
    for (let i = 0; i < 4; i++) {
      users.push(await api(base, "/v1/auth/register", {
        email: `timing${i}@example.org`, username: `timing${i}`, password: PASSWORD,
      }));
    }
    const room = await api(base, "/v1/rooms", { name: "timing room" }, users[0].access_token);
    for (const u of users.slice(1)) {
      await api(base, `/v1/rooms/${room.id}/members`, { user_id: u.user.id }, users[0].access_token);
    }
    // Two browser processes of two pages each.
    const pages = [];
    for (let b = 0; b < 2; b++) {
      const ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "chromium-")), {
        executablePath: CHROMIUM, headless: true, args: chromiumArgs(),
      });
      browsers.push(ctx);
      for (let i = 0; i < 2; i++) pages.push(await ctx.newPage());
    }
    for (const [i, page] of pages.entries()) {
      page.on("console", (m) => m.type() === "error" && console.error(`[page ${i}] ${m.text()}`));
      await page.goto(`${origin}/harness.html`);
      await page.waitForFunction(() => window.ready === true);
      // B's device is slow: it answers the server's offers 1.5 s late, so
      // A plays B through the SFU long before B plays A there.
      await page.evaluate((o) => window.startParticipant(o), {
        wsUrl, token: users[i].access_token, roomId: room.id, answerDelayMs: i === 1 ? 1500 : 0,
      });
    }
    const joinCall = (i) => pages[i].evaluate(() => window.participant.join());
    const leaveCall = (i) => pages[i].evaluate(() => window.participant.leave());
    const [a, b, c, d] = pages;

    // A move to the SFU: A and B peer to peer, then C joins. Neither may go
    // without the other's video while the SFU takes over, though B is slow.
    check((await joinCall(0)).topology === "mesh" && (await joinCall(1)).topology === "mesh", "two participants call peer to peer");
    await until([a, b], (s) => s.mesh.videoFrames > 20, 20000, "A and B decode each other peer to peer");
    await Promise.all([a, b].map((p) => p.evaluate(() => window.participant.watchFrames())));
    await sleep(1000);
    check((await joinCall(2)).topology === "sfu", "the third participant moves the call to the SFU");
    await until([a, b, c], (s) => s.topology === "sfu" && s.meshPeers === 0 && s.sfu.videoTracksDecoding >= 2,
      30000, "all three decode the other two through the SFU and the peer connections are closed");
    await sleep(1000);
    const gaps = await Promise.all([a, b].map((p) => p.evaluate(() => window.participant.stopWatch())));
    console.log("longest time without a new frame across the move (ms): " + JSON.stringify(gaps));
    for (const [i, g] of gaps.entries()) {
      const other = Object.entries(g);
      check(other.length === 1, `participant ${i} watched the other's video across the move`);
      for (const [id, ms] of other) {
        check(ms <= MOVE_GAP_MS, `participant ${i} never went more than ${MOVE_GAP_MS} ms without a frame from ${id.slice(0, 8)} across the move (${ms} ms)`);
      }
    }

    // A joiner on the SFU: time from its call.join ack to decoding all three publishers.
    const times = [];
    for (let run = 0; run < JOINS; run++) {
      const r = await joinCall(3);
      if (r.topology !== "sfu") fail("the fourth participant joins the SFU");
      const ms = await d.evaluate(() => window.participant.firstFrames(3));
      if (ms === null) fail(`run ${run}: the joiner decoded fewer than three publishers within 10 s`);
      times.push(Math.round(ms));
      await leaveCall(3);
      await sleep(1500);
    }
    const m = median(times);
    console.log(`first decoded frame of every publisher after call.join's ack (ms): ${times.join(", ")}; median ${m}`);
    check(m <= FIRST_FRAME_MS, `a joiner decodes every publisher's video within ${FIRST_FRAME_MS} ms of its ack (median ${m} ms of ${JOINS})`);
    const logs = (await Promise.all([a, b, c].map(stats))).flatMap((s) => s.log);
    check(logs.length === 0, "no signalling step failed: " + JSON.stringify(logs));
  } finally {
    for (const b of browsers) await b.close().catch(() => {});
    roost.child.kill("SIGTERM");
    harness.close();
    if (process.exitCode) console.error(roost.stderr().split("\n").slice(-40).join("\n"));
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
