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
import { check, chromiumAndFirefoxOnSfu, fail, netns, sleep } from "./support.mjs";

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
  let call;
  try {
    call = await chromiumAndFirefoxOnSfu(ns, "feedback room");
    const { browsers } = call;
    const [chromium_, firefox_] = browsers;
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
    await call?.close(process.exitCode);
    ns.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
