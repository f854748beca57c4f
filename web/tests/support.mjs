// What the browser tests share: Chromium's flags, the `ok - ` / `FAIL: `
// reporting, and a real `roost serve` on loopback.

import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

// Flags for headless Chromium on this machine (../../shared/TESTING.md), with
// fake camera and microphone; `fps` slows the fake camera to spare the CPU.
export function chromiumArgs(fps) {
  return [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    fps ? `--use-fake-device-for-media-stream=fps=${fps}` : "--use-fake-device-for-media-stream",
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
