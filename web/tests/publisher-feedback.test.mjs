// The feedback the SFU owes a publisher (docs/webrtc.md, "RTCP"; ADR 0023),
// as real browsers read it: a Chromium and a Firefox participant in one call
// on the SFU (mesh_max 0), each sending its camera and receiving the
// other's.
//
// - Chromium sends on loopback. Its bandwidth estimator lives on the
//   server's transport-wide congestion feedback: with none it stays at its
//   start (300 kbit/s); with it, its probes lift `availableOutgoingBitrate`
//   within seconds. Its `remote-inbound-rtp` carries the round trip it
//   reckons from the server's receiver reports (their last sender report
//   and the delay since).
// - Firefox runs in a network namespace of the test's own, where 8% of
//   the UDP datagrams it sends are dropped once the call plays: an
//   nftables rule on the namespace's output (`numgen random`), as this
//   machine's kernel has no `netem` queueing discipline.
//   The server asks for each lost video packet again (NACK), and Firefox
//   resends it: its `outbound-rtp.nackCount` grows, and Chromium, watching
//   Firefox's video through the server, sees far fewer packets lost than
//   the link lost.
//
//   ROOST_BIN=path/to/roost [FIREFOX=/usr/bin/firefox-esr] node publisher-feedback.test.mjs   (as root)

import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import {
  CHROMIUM, PASSWORD, api, check, chromiumArgs, fail, firefoxIn, netns, serveHarness, sleep, startRoost,
} from "./support.mjs";

const LOSS = 8; // percent, on Firefox's side of the link

// What a page's connections to the server report: on the one it sends on,
// the video it sends (`outbound-rtp`), what the server's receiver reports
// said of it (`remote-inbound-rtp`) and the estimate of the path
// (`candidate-pair`); on the one it receives on, the video it receives.
function feedbackStats() {
  return (async () => {
    const out = { sent: {}, report: {}, pair: {}, received: {} };
    const p = window.participant;
    if (p.sendPc) {
      const stats = await p.sendPc.getStats();
      for (const r of stats.values()) {
        if (r.type === "outbound-rtp" && r.kind === "video") {
          out.sent = { packetsSent: r.packetsSent, nackCount: r.nackCount, retransmitted: r.retransmittedPacketsSent };
        }
        if (r.type === "remote-inbound-rtp" && r.kind === "video") {
          out.report = {
            packetsLost: r.packetsLost, fractionLost: r.fractionLost, roundTripTime: r.roundTripTime,
            measurements: r.roundTripTimeMeasurements, jitter: r.jitter,
          };
        }
        if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") {
          out.pair = { availableOutgoingBitrate: r.availableOutgoingBitrate };
        }
      }
    }
    if (p.recvPc) {
      for (const r of (await p.recvPc.getStats()).values()) {
        if (r.type === "inbound-rtp" && r.kind === "video") {
          out.received = { packetsReceived: r.packetsReceived, packetsLost: r.packetsLost, framesDecoded: r.framesDecoded };
        }
      }
    }
    return out;
  })();
}

async function main() {
  const ns = netns("feedback");
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
    for (const name of ["chromey", "foxy"]) {
      users.push(await api(base, "/v1/auth/register", { email: `${name}@example.org`, username: name, password: PASSWORD }));
    }
    const room = await api(base, "/v1/rooms", { name: "feedback room" }, users[0].access_token);
    await api(base, `/v1/rooms/${room.id}/members`, { user_id: users[1].user.id }, users[0].access_token);

    chrome = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "chromium-")), {
      executablePath: CHROMIUM, headless: true, args: chromiumArgs(),
    });
    firefox = await firefoxIn(ns, { "media.devices.insecure.enabled": true, "media.getusermedia.insecure.enabled": true });
    const [chromium_, firefox_] = [
      { name: "Chromium", page: await chrome.newPage(), origin },
      { name: "Firefox", page: await firefox.browser.newPage(), origin: foxOrigin },
    ];
    const browsers = [chromium_, firefox_];
    for (const [i, b] of browsers.entries()) {
      await b.page.goto(`${b.origin}/harness.html`);
      await b.page.waitForFunction(() => window.ready === true);
      await b.page.evaluate((o) => window.startParticipant(o), { wsUrl, token: users[i].access_token, roomId: room.id });
    }
    for (const b of browsers) {
      const r = await b.page.evaluate(() => window.participant.join());
      if (r.topology !== "sfu") fail(`${b.name} joins the call on the SFU: ${r.topology}`);
    }
    // Each decodes the other's video through the server.
    for (const b of browsers) {
      const ms = await b.page.evaluate(() => window.participant.firstFrames(1, 30000));
      if (ms === null) fail(`${b.name} decodes the other's video within 30 s`);
    }

    // Firefox's side of the link starts losing what it sends.
    const nft = (...args) => execFileSync("ip", ["netns", "exec", ns.name, "nft", ...args]);
    nft("add", "table", "inet", "roost_loss");
    nft("add", "chain", "inet", "roost_loss", "out", "{ type filter hook output priority 0; }");
    nft("add", "rule", "inet", "roost_loss", "out", "meta", "l4proto", "udp", "numgen", "random", "mod", "100", "<", `${LOSS}`, "drop");
    const before = await chromium_.page.evaluate(feedbackStats);
    await sleep(12_000);
    const chromeSees = await chromium_.page.evaluate(feedbackStats);
    const foxSees = await firefox_.page.evaluate(feedbackStats);
    console.log(`# Chromium: ${JSON.stringify(chromeSees)}`);
    console.log(`# Firefox: ${JSON.stringify(foxSees)}`);

    // Transport-wide feedback: Chromium's estimate left its start.
    const estimate = chromeSees.pair.availableOutgoingBitrate || 0;
    check(estimate > 600_000,
      `Chromium's bandwidth estimate rises on the server's congestion feedback: ${Math.round(estimate / 1000)} kbit/s (it starts at 300)`);
    // Receiver reports: a round trip from their last sender report and delay.
    check(chromeSees.report.measurements > 0 && chromeSees.report.roundTripTime < 0.5,
      `Chromium reckons its round trip to the server from the receiver reports: ${chromeSees.report.roundTripTime} s ` +
      `over ${chromeSees.report.measurements} reports`);
    check(chromeSees.report.packetsLost === 0, `the reports on Chromium's lossless link count no loss: ${chromeSees.report.packetsLost}`);

    // NACKs: Firefox is asked for what its link lost, and resends it.
    check(foxSees.sent.nackCount > 0, `the server asks Firefox again for video its link lost: ${foxSees.sent.nackCount} NACKs`);
    const received = chromeSees.received.packetsReceived - before.received.packetsReceived;
    const lost = chromeSees.received.packetsLost - before.received.packetsLost;
    check(received > 300, `Chromium keeps receiving Firefox's video through the server: ${received} packets in 12 s`);
    const share = (100 * lost) / (received + lost);
    check(share < LOSS / 4,
      `with ${LOSS}% lost on Firefox's link, Chromium misses ${share.toFixed(2)}% of its video packets (${lost} of ${received + lost})`);

    const logs = (await Promise.all(browsers.map((b) => b.page.evaluate(() => window.participant.log)))).flat();
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
