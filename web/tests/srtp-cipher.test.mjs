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

import { check, chromiumAndFirefoxOnSfu, fail, netns, sleep } from "./support.mjs";

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
  let call;
  try {
    call = await chromiumAndFirefoxOnSfu(ns, "srtp room");
    const { browsers } = call;

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
    await call?.close(process.exitCode);
    ns.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
