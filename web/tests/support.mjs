// What the browser tests share: Chromium's flags, the `ok - ` / `FAIL: `
// reporting, and a real `roost serve` on loopback.

import { execFileSync, spawn } from "node:child_process";
import { createWriteStream, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { deflateSync } from "node:zlib";
import { chromium } from "playwright-core";
import puppeteer from "puppeteer-core";

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

// Flags for headless Chromium on this machine (../../shared/TESTING.md), with
// fake cameras and microphones (three microphones; `cameras` cameras, default
// one); `fps` slows the fake cameras to spare the CPU.
export function chromiumArgs(fps, { cameras = 1 } = {}) {
  const fake = [fps ? `fps=${fps}` : null, cameras > 1 ? `device-count=${cameras}` : null].filter(Boolean).join(",");
  return [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    fake ? `--use-fake-device-for-media-stream=${fake}` : "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
  ];
}

export function fail(message) {
  console.error("FAIL: " + message);
  process.exitCode = 1;
  throw new Error(message);
}

export function check(cond, message) {
  if (!cond) fail(message);
  console.log("ok - " + message);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/// The password every test account has.
export const PASSWORD = "a perfectly fine passphrase";

/// A JSON request to the server (POST when there is a body); fails the test on an error status.
export async function api(base, path, body, token) {
  const res = await fetch(base + path, {
    method: body ? "POST" : "GET",
    headers: { "content-type": "application/json", ...(token ? { authorization: "Bearer " + token } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) fail(`${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/// Registers `name` (`name@example.org`) through the web client's form in a
/// playwright page and waits for the signed-in screen.
export async function register(page, base, name) {
  await page.goto(base + "/");
  await page.click("text=Create an account");
  const form = page.locator("#register-form");
  await form.locator("input[name=email]").fill(`${name}@example.org`);
  await form.locator("input[name=username]").fill(name);
  await form.locator("input[name=display_name]").fill(name[0].toUpperCase() + name.slice(1));
  await form.locator("input[name=password]").fill(PASSWORD);
  await form.locator("button[type=submit]").click();
  await page.waitForSelector("#shell:not([hidden])");
}

/// An init script for pages under test: any CSP violation is recorded in
/// `window.__csp`, and every RTCPeerConnection the page makes is kept in
/// `window.__pcs` so the test can read its statistics (the client has no
/// test hook).
export function instrument() {
  window.__csp = [];
  document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      window.__pcs.push(this);
    }
  };
}

// Starts ROOST_BIN on a free port and a fresh data directory, with none of
// the test run's own ROOST_* settings but `env`; resolves once it listens.
// It listens on `listen` (loopback unless said).
export function startRoost(env, logLevel = "warn", { listen = "127.0.0.1:0" } = {}) {
  const bin = process.env.ROOST_BIN;
  if (!bin) fail("set ROOST_BIN to the roost binary");
  const data = mkdtempSync(join(tmpdir(), "roost-browser-"));
  const childEnv = { ...process.env };
  for (const k of Object.keys(childEnv)) if (k.startsWith("ROOST_")) delete childEnv[k];
  Object.assign(childEnv, {
    ROOST_MEDIA__LISTEN: "127.0.0.1:0",
    // A test's SIGTERM ends the server at once; the drain is tested apart.
    ROOST_SHUTDOWN_DRAIN_SECS: "0",
    ROOST_LOG__FORMAT: "json",
    ROOST_LOG__LEVEL: process.env.ROOST_TEST_LOG || logLevel,
    ...env,
  });
  const child = spawn(bin, ["serve", "--listen", listen, "--data-dir", data], { env: childEnv });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  // ROOST_TEST_SERVER_LOG=FILE keeps the server's whole log, for a look after.
  if (process.env.ROOST_TEST_SERVER_LOG) child.stderr.pipe(createWriteStream(process.env.ROOST_TEST_SERVER_LOG, { flags: "a" }));
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/Roost is listening on (http:\/\/\S+)/);
      if (m) resolve({ child, url: m[1], stderr: () => stderr });
    });
    child.on("exit", (code) => reject(new Error("roost exited " + code + "\n" + stderr)));
  });
}

// A small PNG (a two-colour gradient), encoded here so the test needs no file.
export function png(width, height) {
  const table = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = table[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(body));
    return Buffer.concat([len, body, sum]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // RGB
  const rows = [];
  for (let y = 0; y < height; y++) {
    const row = Buffer.alloc(1 + width * 3);
    for (let x = 0; x < width; x++) {
      row[1 + x * 3] = Math.round((255 * x) / width);
      row[2 + x * 3] = 111;
      row[3 + x * 3] = Math.round((255 * y) / height);
    }
    rows.push(row);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(Buffer.concat(rows))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

// The call tests' harness page and call client, served on loopback from an
// origin of their own (as a client's own site would be).
export function serveHarness(host = "127.0.0.1") {
  const here = dirname(fileURLToPath(import.meta.url));
  const files = { "/harness.html": "text/html", "/call-client.js": "text/javascript" };
  const server = createServer((req, res) => {
    const type = files[req.url];
    if (!type) {
      res.writeHead(req.url === "/favicon.ico" ? 204 : 404).end();
      return;
    }
    res.writeHead(200, { "content-type": type }).end(readFileSync(join(here, req.url.slice(1))));
  });
  return new Promise((resolve) => server.listen(0, host, () => resolve(server)));
}

// A network namespace of the test's own, joined to this one by a veth pair
// (../../shared/TESTING.md): `host` is this side's address, `inside` the
// namespace's, and the namespace's default route goes over the veth. Firefox
// gathers no loopback candidate, and only the default route's address: run
// inside (`firefoxIn`), it calls a server listening on `host` with no
// traffic to this machine's own external address. Needs root.
export function netns(tag) {
  const id = process.pid % 200;
  const name = `roost-${tag}-${process.pid}`;
  const [outer, inner] = [`rv${process.pid}h`, `rv${process.pid}n`];
  const ip = (...args) => execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
  const host = `10.250.${20 + id}.1`;
  const inside = `10.250.${20 + id}.2`;
  const close = () => {
    try {
      const pids = execFileSync("ip", ["netns", "pids", name]).toString().split(/\s+/).filter(Boolean);
      for (const pid of pids) process.kill(Number(pid), "SIGKILL");
    } catch {}
    try { ip("link", "del", outer); } catch {}
    try { ip("netns", "del", name); } catch {}
  };
  try {
    ip("netns", "add", name);
    ip("link", "add", outer, "type", "veth", "peer", "name", inner);
    ip("link", "set", inner, "netns", name);
    ip("addr", "add", `${host}/24`, "dev", outer);
    ip("link", "set", outer, "up");
    ip("-n", name, "addr", "add", `${inside}/24`, "dev", inner);
    ip("-n", name, "link", "set", inner, "up");
    ip("-n", name, "link", "set", "lo", "up");
    // Firefox gathers host candidates only where a default route goes. It
    // names the veth and no gateway: only this side's address answers, and
    // nothing is forwarded on to other networks.
    ip("-n", name, "route", "add", "default", "dev", inner);
  } catch (e) {
    close();
    throw e;
  }
  return { name, host, inside, outer, close };
}

// Lets UDP from inside the namespace `ns` go to this side's veth address
// alone: Chromium offers candidates on every address of this machine, its
// external one too, and a browser in the namespace must reach none of them.
export function udpToHostOnly(ns) {
  const nft = (...args) => execFileSync("ip", ["netns", "exec", ns.name, "nft", ...args], { stdio: ["ignore", "ignore", "pipe"] });
  nft("add", "table", "inet", "roost_only_veth");
  nft("add", "chain", "inet", "roost_only_veth", "out", "{ type filter hook output priority 0; }");
  nft("add", "rule", "inet", "roost_only_veth", "out", "meta", "l4proto", "udp", "ip", "daddr", "!=", ns.host, "drop");
}

// Firefox ESR, headless, inside the namespace `ns`, driven by puppeteer-core
// over WebDriver BiDi: its remote agent listens on the namespace's loopback,
// reached through a forwarder on this side's loopback at the same port (each
// connection is carried by a small relay run inside the namespace).
export async function firefoxIn(ns, prefs) {
  const port = await freePort();
  const profile = mkdtempSync(join(tmpdir(), "firefox-"));
  const all = {
    "media.navigator.streams.fake": true,
    "media.navigator.permission.disabled": true,
    "media.peerconnection.ice.obfuscate_host_addresses": false,
    "browser.shell.checkDefaultBrowser": false,
    "datareporting.policy.dataSubmissionEnabled": false,
    "browser.startup.homepage_override.mstone": "ignore",
    ...prefs,
  };
  writeFileSync(join(profile, "user.js"),
    Object.entries(all).map(([k, v]) => `user_pref(${JSON.stringify(k)}, ${JSON.stringify(v)});`).join("\n") + "\n");
  const firefox = spawn("ip", ["netns", "exec", ns.name, process.env.FIREFOX || "/usr/bin/firefox-esr",
    "--headless", "--no-remote", "--profile", profile, `--remote-debugging-port=${port}`, "about:blank"]);
  let stderr = "";
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("Firefox did not start its remote agent:\n" + stderr)), 30_000);
    firefox.stderr.on("data", (d) => {
      stderr += d;
      if (/WebDriver BiDi listening on/.test(stderr)) {
        clearTimeout(timer);
        resolve();
      }
    });
    firefox.on("exit", (code) => reject(new Error(`Firefox exited ${code}:\n${stderr}`)));
  });
  const relay = `const s=require("net").connect(${port},"127.0.0.1");process.stdin.pipe(s);s.pipe(process.stdout);s.on("close",()=>process.exit(0));`;
  const forwarder = net.createServer((socket) => {
    const child = spawn("ip", ["netns", "exec", ns.name, process.execPath, "-e", relay]);
    socket.pipe(child.stdin);
    child.stdout.pipe(socket);
    socket.on("error", () => child.kill());
    socket.on("close", () => child.kill());
    child.on("exit", () => socket.destroy());
  });
  await new Promise((resolve) => forwarder.listen(port, "127.0.0.1", resolve));
  let browser;
  try {
    browser = await puppeteer.connect({ browserWSEndpoint: `ws://127.0.0.1:${port}/session`, protocol: "webDriverBiDi" });
  } catch (e) {
    forwarder.close();
    firefox.kill("SIGKILL");
    throw e;
  }
  return {
    browser,
    async close() {
      await browser.close().catch(() => {});
      firefox.kill("SIGKILL");
      forwarder.close();
    },
  };
}

// A TCP port free on loopback now.
export function freePort() {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// A Chromium page on loopback and a Firefox page inside the namespace `ns`
// (where the server listens, on `ns.host`), each a harness participant,
// joined to one call on the SFU (`mesh_max` 0: the first is already on it).
// `close(failed)` ends the browsers, the server and the harness servers,
// printing the server's last log lines where the test failed; the caller
// closes `ns`.
export async function chromiumAndFirefoxOnSfu(ns, roomName) {
  const made = {};
  made.close = async (failed) => {
    await made.chrome?.close().catch(() => {});
    await made.firefox?.close();
    made.roost?.child.kill("SIGTERM");
    made.harness?.close();
    made.foxHarness?.close();
    if (failed && made.roost) console.error(made.roost.stderr().split("\n").slice(-30).join("\n"));
  };
  try {
    made.harness = await serveHarness();
    made.foxHarness = await serveHarness(ns.host);
    const origin = `http://127.0.0.1:${made.harness.address().port}`;
    const foxOrigin = `http://${ns.host}:${made.foxHarness.address().port}`;
    made.roost = await startRoost({
      ROOST_CALLS__MESH_MAX: "0",
      ROOST_MEDIA__LISTEN: `${ns.host}:0`,
      ROOST_GATEWAY__ALLOWED_ORIGINS: JSON.stringify([origin, foxOrigin]),
    }, "warn", { listen: `${ns.host}:0` });
    const base = made.roost.url;
    const wsUrl = base.replace("http://", "ws://") + "/v1/ws";
    const users = [];
    for (const name of ["chromey", "foxy"]) {
      users.push(await api(base, "/v1/auth/register", { email: `${name}@example.org`, username: name, password: PASSWORD }));
    }
    const room = await api(base, "/v1/rooms", { name: roomName }, users[0].access_token);
    await api(base, `/v1/rooms/${room.id}/members`, { user_id: users[1].user.id }, users[0].access_token);

    made.chrome = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "chromium-")), {
      executablePath: CHROMIUM, headless: true, args: chromiumArgs(),
    });
    // The harness page is not a secure context there: let it use the fake devices.
    made.firefox = await firefoxIn(ns, { "media.devices.insecure.enabled": true, "media.getusermedia.insecure.enabled": true });
    made.browsers = [
      { name: "Chromium", page: await made.chrome.newPage(), origin },
      { name: "Firefox", page: await made.firefox.browser.newPage(), origin: foxOrigin },
    ];
    for (const [i, b] of made.browsers.entries()) {
      await b.page.goto(`${b.origin}/harness.html`);
      await b.page.waitForFunction(() => window.ready === true);
      await b.page.evaluate((o) => window.startParticipant(o), { wsUrl, token: users[i].access_token, roomId: room.id });
    }
    for (const b of made.browsers) {
      const r = await b.page.evaluate(() => window.participant.join());
      if (r.topology !== "sfu") fail(`${b.name} joins the call on the SFU: ${r.topology}`);
    }
    return made;
  } catch (e) {
    await made.close(true);
    throw e;
  }
}

/// A JSON request with any method (PATCH, DELETE, ...); fails the test on an error status.
export async function apiRequest(base, method, path, body, token) {
  const res = await fetch(base + path, {
    method,
    headers: { "content-type": "application/json", ...(token ? { authorization: "Bearer " + token } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) fail(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/// Polls `fn` (async, returning `{ok, ...}`) every `every` ms until `ok`:
/// reports `what` as passed and returns the last value, or fails with it.
export async function waitUntil(what, fn, ms = 15_000, every = 250) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last && last.ok) {
      check(true, what);
      return last;
    }
    await sleep(every);
  }
  fail(`${what} within ${ms / 1000} s; last: ${JSON.stringify(last)}`);
}

/// Signs `name` in through the web client's form and opens the room named
/// `roomName`, in a playwright or a puppeteer page (only the calls the two
/// share: goto, type, click, evaluate, waitForSelector).
export async function signInAndOpen(page, base, name, roomName) {
  await page.goto(base + "/");
  await page.waitForSelector("#login-form:not([hidden])");
  await page.type("#login-form input[name=email]", `${name}@example.org`);
  await page.type("#login-form input[name=password]", PASSWORD);
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("#shell:not([hidden])");
  const deadline = Date.now() + 15_000;
  while (!(await page.evaluate((room) => {
    const entry = [...document.querySelectorAll("#room-list .name")].find((e) => e.textContent.includes(room));
    entry?.click();
    return document.querySelector("#room-title")?.textContent === room;
  }, roomName))) {
    if (Date.now() > deadline) fail(`${name} opens the room ${roomName}`);
    await sleep(200);
  }
}

// Xvfb, where installed: an X display of the test's own (for Firefox, which
// captures a screen only from a real display). Resolves to `{display,
// close}`, or null where there is no Xvfb.
export async function startXvfb() {
  const bin = process.env.XVFB || "/usr/bin/Xvfb";
  try {
    execFileSync("test", ["-x", bin]);
  } catch {
    return null;
  }
  // With -displayfd it picks a free display and writes its number once it is ready.
  const child = spawn(bin, ["-displayfd", "1", "-screen", "0", "1280x720x24", "-nolisten", "tcp"], { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr.on("data", (d) => (err += d));
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/^(\d+)\n/);
      if (m) resolve({ display: `:${m[1]}`, close: () => child.kill("SIGTERM") });
    });
    child.on("exit", (code) => reject(new Error(`Xvfb exited ${code}: ${err}`)));
  });
}
