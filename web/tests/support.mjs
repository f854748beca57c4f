// What the browser tests share: Chromium's flags, the `ok - ` / `FAIL: `
// reporting, and a real `roost serve` on loopback.

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { deflateSync } from "node:zlib";

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
export function startRoost(env, logLevel = "warn") {
  const bin = process.env.ROOST_BIN;
  if (!bin) fail("set ROOST_BIN to the roost binary");
  const data = mkdtempSync(join(tmpdir(), "roost-browser-"));
  const childEnv = { ...process.env };
  for (const k of Object.keys(childEnv)) if (k.startsWith("ROOST_")) delete childEnv[k];
  Object.assign(childEnv, {
    ROOST_MEDIA__LISTEN: "127.0.0.1:0",
    ROOST_LOG__FORMAT: "json",
    ROOST_LOG__LEVEL: process.env.ROOST_TEST_LOG || logLevel,
    ...env,
  });
  const child = spawn(bin, ["serve", "--listen", "127.0.0.1:0", "--data-dir", data], { env: childEnv });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
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
export function serveHarness() {
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
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}
