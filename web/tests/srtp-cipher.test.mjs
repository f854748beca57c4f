// Which SRTP protection profile calls through the SFU use: a Chromium and a
// Firefox participant on the server (mesh_max is 0 here) each read, from
// getStats(), the `transport` of both their connections to the server (what
// they send, what they receive).
//
// The server is the DTLS server on every connection and offers
// AEAD_AES_128_GCM, AEAD_AES_256_GCM, AES_CM_128_HMAC_SHA1_80 and _32.
// Firefox lists AEAD_AES_128_GCM first; Chromium lists
// AES_CM_128_HMAC_SHA1_80 first (then AEAD_AES_256_GCM, AEAD_AES_128_GCM).
// Roost's own transport (ADR 0020) answers the client's hello with the
// first profile of the server's order that the hello offers, on the
// connections a browser sends on and on those it receives on, so both
// browsers must use GCM on both. Both browsers report `srtpCipher`
// with the IANA registry's name, `SRTP_AEAD_AES_128_GCM`; the name without
// the `SRTP_` prefix (RFC 7714's) is taken too.
//
// Firefox runs in a network namespace of the test's own (it gathers no
// loopback candidate, and its traffic must not go to this machine's own
// external address); the server listens on the veth's address on this side.
//
//   ROOST_BIN=path/to/roost [FIREFOX=/usr/bin/firefox-esr] node srtp-cipher.test.mjs   (as root)

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import {
  CHROMIUM, PASSWORD, api, check, chromiumArgs, fail, firefoxIn, netns, serveHarness, sleep, startRoost,
} from "./support.mjs";

const GCM = /^(SRTP_)?AEAD_AES_128_GCM$/;

// The page's connections to the server (`send`: its media to the server,
// `recv`: everyone else's from it), each with its transport's DTLS state and
// SRTP cipher as getStats() reports them.
function transports() {
  return (async () => {
    const out = {};
    const pcs = { send: window.participant.sendPc, recv: window.participant.recvPc };
    for (const [name, pc] of Object.entries(pcs)) {
      if (!pc) continue;
      const t = { connectionState: pc.connectionState };
      for (const r of (await pc.getStats()).values()) {
        if (r.type === "transport") {
          Object.assign(t, { dtlsState: r.dtlsState, dtlsRole: r.dtlsRole, srtpCipher: r.srtpCipher, dtlsCipher: r.dtlsCipher });
        }
      }
      out[name] = t;
    }
    return out;
  })();
}

async function main() {
  const ns = netns("srtp");
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
      // No peer-to-peer calls: the first participant is already on the SFU.
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
    const room = await api(base, "/v1/rooms", { name: "srtp room" }, users[0].access_token);
    await api(base, `/v1/rooms/${room.id}/members`, { user_id: users[1].user.id }, users[0].access_token);

    chrome = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "chromium-")), {
      executablePath: CHROMIUM, headless: true, args: chromiumArgs(),
    });
    // The harness page is not a secure context there: let it use the fake devices.
    firefox = await firefoxIn(ns, { "media.devices.insecure.enabled": true, "media.getusermedia.insecure.enabled": true });
    const browsers = [
      { name: "Chromium", page: await chrome.newPage(), origin },
      { name: "Firefox", page: await firefox.browser.newPage(), origin: foxOrigin },
    ];
    for (const [i, b] of browsers.entries()) {
      await b.page.goto(`${b.origin}/harness.html`);
      await b.page.waitForFunction(() => window.ready === true);
      await b.page.evaluate((o) => window.startParticipant(o), { wsUrl, token: users[i].access_token, roomId: room.id });
    }
    for (const b of browsers) {
      const r = await b.page.evaluate(() => window.participant.join());
      if (r.topology !== "sfu") fail(`${b.name} joins the call on the SFU: ${r.topology}`);
    }

    // Both connections of each page finish DTLS and report an SRTP cipher.
    const deadline = Date.now() + 30_000;
    for (const b of browsers) {
      for (;;) {
        b.seen = await b.page.evaluate(transports);
        const done = ["send", "recv"].every((k) => b.seen[k]?.dtlsState === "connected" && b.seen[k].srtpCipher);
        if (done) break;
        if (Date.now() > deadline) {
          fail(`${b.name}'s connections to the server finish DTLS-SRTP within 30 s: ${JSON.stringify(b.seen)}`);
        }
        await sleep(300);
      }
    }
    // What each browser reports, in the log whether the checks pass or not.
    for (const b of browsers) console.log(`# ${b.name}: ${JSON.stringify(b.seen)}`);

    for (const b of browsers) {
      for (const [k, what] of [["send", "the connection it sends on"], ["recv", "the connection it receives on"]]) {
        const t = b.seen[k];
        check(GCM.test(t.srtpCipher),
          `${b.name}: ${what} uses SRTP AEAD_AES_128_GCM (srtpCipher ${t.srtpCipher}, DTLS ${t.dtlsRole})`);
      }
    }
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
