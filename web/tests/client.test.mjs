// The built-in web client in headless Chromium against a real `roost serve`
// on loopback: two people register in two browsers, one creates a room and
// invites the other by link, they chat both ways live (typing, read marker,
// edit, delete, a reply, an image with its preview), the connection drops and
// heals, and a reload mid-conversation (cutting off a token refresh) shows
// every message exactly once. Then direct messages by username with presence
// dots, the public room directory, keyboard reach, a call started without
// devices or on a plain HTTP page, and the admin page.
// Screenshots of the main screens are taken on every run, into a temporary
// directory; with ROOST_SCREENSHOTS=1 they replace those in docs/screenshots/.
//
//   ROOST_BIN=path/to/roost [ROOST_SCREENSHOTS=1] node client.test.mjs

import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { CHROMIUM, PASSWORD, check, chromiumArgs, fail, instrument, png, register, sleep, startRoost } from "./support.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const shots = process.env.ROOST_SCREENSHOTS
  ? join(here, "../../docs/screenshots")
  : mkdtempSync(join(tmpdir(), "roost-shots-"));

// A browser of its own; `devices: false` leaves out the fake camera and
// microphone, as on a machine that has none; `extraArgs` adds flags.
async function browser({ devices = true, extraArgs = [] } = {}) {
  const args = [...chromiumArgs().filter((a) => devices || !a.startsWith("--use-fake")), ...extraArgs];
  const ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "chromium-")), {
    executablePath: CHROMIUM, headless: true, args, viewport: { width: 1280, height: 800 },
  });
  // Any Content-Security-Policy violation the client causes is recorded.
  await ctx.addInitScript(instrument);
  const page = ctx.pages()[0] || (await ctx.newPage());
  return { ctx, page };
}

// The bodies of the messages on screen, in order.
const bodies = (page) => page.$$eval("#message-list .msg[data-id] .body", (els) => els.map((e) => e.textContent));
const ids = (page) => page.$$eval("#message-list .msg[data-id]", (els) => els.map((e) => e.dataset.id));

async function waitText(page, selector, text, what, ms = 10_000) {
  try {
    await page.locator(selector, { hasText: text }).first().waitFor({ timeout: ms });
  } catch {
    fail(`${what}: "${text}" did not show in ${selector} within ${ms / 1000} s`);
  }
  check(true, what);
}

async function main() {
  mkdirSync(shots, { recursive: true });
  const roost = await startRoost({
    // Short-lived access tokens, so the client refreshes several times during the test.
    ROOST_AUTH__ACCESS_TOKEN_TTL_SECS: "6",
    // alice becomes super_admin on registering: the admin page is hers.
    ROOST_SUPER_ADMIN_EMAIL: "alice@example.org",
  });
  const base = roost.url;
  const contexts = [];
  try {
    // The server serves the client itself, under a strict policy.
    const index = await fetch(base + "/");
    const csp = index.headers.get("content-security-policy") || "";
    check(index.ok && (index.headers.get("content-type") || "").startsWith("text/html"), "GET / serves the client's HTML");
    check(csp.includes("script-src 'self'") && csp.includes("object-src 'none'") && !csp.includes("unsafe"), "the client is served with a strict CSP");
    const missing = await fetch(base + "/v1/no-such-thing");
    check(missing.status === 404 && (await missing.json()).error.code === "not_found", "unknown API paths are still JSON 404s");

    const a = await browser();
    const b = await browser();
    contexts.push(a.ctx, b.ctx);
    for (const [name, p] of [["alice", a.page], ["bob", b.page]]) {
      p.on("console", (m) => m.type() === "error" && console.error(`[${name}] ${m.text()}`));
      p.on("pageerror", (e) => console.error(`[${name}] ${e}`));
    }
    const alice = a.page;
    const bob = b.page;

    await alice.goto(base + "/");
    await alice.waitForSelector("#login-form:not([hidden])");
    check(true, "a new visitor sees the sign-in form");
    await alice.screenshot({ path: join(shots, "login.png") });

    await register(alice, base, "alice");
    check(true, "alice registers in the browser and sees her (empty) rooms list");
    await register(bob, base, "bob");
    check(true, "bob registers in a second browser");
    const firstToken = await alice.evaluate(() => JSON.parse(localStorage.getItem("roost.session")).access_token);

    // Alice creates a room and invites Bob by link.
    await alice.click("text=New room or direct message");
    await alice.fill("#create-room input[name=name]", "Book club");
    await alice.click("#create-room button[type=submit]");
    await waitText(alice, "#room-title", "Book club", "alice creates a room and it opens");
    await alice.click("#invite");
    await alice.waitForSelector("#invite-box:not([hidden])");
    const link = await alice.inputValue("#invite-link");
    check(/#\/invite\/\S+$/.test(link), "alice gets an invite link: " + link);
    await bob.goto(link);
    await waitText(bob, "#room-title", "Book club", "bob opens the invite link and is in the room");
    await waitText(bob, "#room-list .name", "Book club", "the room is in bob's rooms list");

    // Both ways, live.
    await alice.fill("#composer-input", "Hello Bob, welcome to the club");
    await alice.press("#composer-input", "Enter");
    await waitText(bob, "#message-list .msg .body", "Hello Bob, welcome to the club", "bob sees alice's message live");

    await bob.click("#composer-input");
    await bob.keyboard.type("Thanks Ali", { delay: 30 });
    await waitText(alice, "#typing", "Bob is typing", "alice sees that bob is typing");
    await bob.keyboard.type("ce!");
    await bob.keyboard.press("Enter");
    await waitText(alice, "#message-list .msg .body", "Thanks Alice!", "alice sees bob's reply live");
    await alice.waitForFunction(() => document.querySelector("#typing").textContent === "", null, { timeout: 5000 });
    check(true, "the typing indicator goes once bob's message arrives");

    // Read marker: Bob has the room open, so he has read Alice's message.
    await alice.fill("#composer-input", "Seen?");
    await alice.press("#composer-input", "Enter");
    await waitText(bob, "#message-list .msg .body", "Seen?", "bob receives a third message");
    await waitText(alice, "#message-list .msg.mine .seen", "Seen by Bob", "alice sees that bob has read her message");

    // Shift+Enter breaks the line; Enter sends.
    await alice.click("#composer-input");
    await alice.keyboard.type("line one");
    await alice.keyboard.press("Shift+Enter");
    await alice.keyboard.type("line two");
    await alice.keyboard.press("Enter");
    await waitText(bob, "#message-list .msg .body", "line one\nline two", "Shift+Enter breaks the line, Enter sends it as one message");

    // Edit and delete.
    const seen = alice.locator("#message-list .msg.mine", { hasText: "Seen?" });
    await seen.locator("button.edit").click();
    await alice.fill("#message-list textarea.edit-input", "Seen? (edited)");
    await alice.press("#message-list textarea.edit-input", "Enter");
    await waitText(bob, "#message-list .msg .body", "Seen? (edited)", "alice edits her message and bob sees the edit");
    const first = alice.locator("#message-list .msg.mine", { hasText: "Hello Bob" });
    await first.locator("button.delete").click();
    await first.locator("button.delete").click();
    await waitText(bob, "#message-list .msg .deleted", "This message was deleted", "alice deletes her message and bob sees it gone");
    check(!(await bodies(bob)).some((t) => t.includes("Hello Bob")), "the deleted text is nowhere on bob's screen");

    // An image, attached with the file picker.
    await alice.setInputFiles("#file-input", { name: "harbour.png", mimeType: "image/png", buffer: png(640, 400) });
    const thumbLoaded = (page) => page.waitForFunction(() => {
      const img = document.querySelector("#message-list .thumb img");
      return img && img.src.startsWith("blob:") && img.complete && img.naturalWidth > 0;
    }, null, { timeout: 15_000 });
    await thumbLoaded(alice);
    await thumbLoaded(bob);
    const width = await bob.$eval("#message-list .thumb img", (img) => img.naturalWidth);
    check(width === 320, "bob sees the image's thumbnail (320 px wide, fetched with his token)");
    await bob.screenshot({ path: join(shots, "image-message.png") });
    await bob.click("#message-list .thumb");
    await bob.waitForFunction(() => {
      const img = document.querySelector("#lightbox-img");
      return document.querySelector("#lightbox").open && img.complete && img.naturalWidth === 640;
    }, null, { timeout: 10_000 });
    check(true, "clicking the thumbnail opens the full image");
    await bob.keyboard.press("Escape");

    // A file dropped on the room, and one pasted into the composer: cards with a download.
    await alice.evaluate(() => {
      const dt = new DataTransfer();
      dt.items.add(new File(["minutes of the first meeting\n".repeat(40)], "minutes.txt", { type: "text/plain" }));
      const room = document.querySelector("#room");
      room.dispatchEvent(new DragEvent("dragenter", { dataTransfer: dt, bubbles: true }));
      room.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
    });
    await waitText(bob, "#message-list .file-card", "minutes.txt", "a dropped file reaches bob as a card");
    await waitText(bob, "#message-list .file-card .file-size", "1.1 KB", "the card shows the file's size");
    await alice.evaluate(() => {
      const dt = new DataTransfer();
      dt.items.add(new File(["a,b\n1,2\n"], "table.csv", { type: "text/csv" }));
      document.querySelector("#composer-input").dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true }));
    });
    await waitText(bob, "#message-list .file-card", "table.csv", "a pasted file reaches bob as a card");
    const [download] = await Promise.all([
      bob.waitForEvent("download"),
      bob.locator("#message-list .file-card", { hasText: "minutes.txt" }).locator("button").click(),
    ]);
    check(download.suggestedFilename() === "minutes.txt", "bob downloads the file under its name");

    // Unread badge: Bob looks at the rooms list only, Alice writes twice.
    await bob.goto(base + "/#/");
    await bob.waitForSelector("#room-list a");
    await alice.fill("#composer-input", "Are you there?");
    await alice.press("#composer-input", "Enter");
    await alice.fill("#composer-input", "Bob?");
    await alice.press("#composer-input", "Enter");
    await waitText(bob, "#room-list .badge", "2", "bob's rooms list shows 2 unread with the room closed");
    await waitText(bob, "#room-list .last", "Alice: Bob?", "the rooms list shows the last message");
    await bob.click("#room-list a");
    await bob.waitForSelector("#room:not([hidden])");
    await bob.waitForFunction(() => !document.querySelector("#room-list .badge"), null, { timeout: 5000 });
    check(true, "opening the room clears the badge");
    await bob.screenshot({ path: join(shots, "rooms-and-room.png") });

    // The connection drops (offline), messages are sent meanwhile, it heals.
    await bob.context().setOffline(true);
    await bob.evaluate(() => window.roost.live.ws && window.roost.live.ws.close());
    await waitText(bob, "#banner", "Reconnecting", "bob sees the reconnecting banner while offline");
    for (const text of ["while you were away 1", "while you were away 2"]) {
      await alice.fill("#composer-input", text);
      await alice.press("#composer-input", "Enter");
    }
    await sleep(500);
    await bob.context().setOffline(false);
    await waitText(bob, "#message-list .msg .body", "while you were away 2", "after reconnecting bob has what was sent meanwhile");
    await bob.waitForSelector("#banner", { state: "hidden", timeout: 10_000 });
    check(true, "the banner goes once the connection is back");
    const afterResume = await bodies(bob);
    check(afterResume.filter((t) => t.startsWith("while you were away")).length === 2, "each message missed while offline shows exactly once");

    // Older history: 60 more messages, then a reload mid-conversation.
    const token = await alice.evaluate(() => JSON.parse(localStorage.getItem("roost.session")).access_token);
    const roomId = await alice.evaluate(() => window.roost.state.current);
    for (let i = 1; i <= 60; i++) {
      const res = await fetch(`${base}/v1/rooms/${roomId}/messages`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: "Bearer " + token },
        body: JSON.stringify({ body: `bulk ${i}`, client_msg_id: `bulk-${i}` }),
      });
      if (!res.ok) fail(`sending bulk ${i}: ${res.status} ${await res.text()}`);
    }
    await waitText(bob, "#message-list .msg .body", "bulk 60", "bob receives a burst of 60 messages live");
    // The reload cuts off a token refresh: the server rotates bob's refresh
    // token but the answer never reaches the page, which keeps the old one.
    let cutOff;
    const refreshLost = new Promise((resolve) => (cutOff = resolve));
    await bob.route("**/v1/auth/refresh", async (route) => {
      await route.fetch();
      await route.abort("connectionreset");
      cutOff();
    });
    await refreshLost;
    await bob.unroute("**/v1/auth/refresh");
    const reload = bob.reload();
    await alice.fill("#composer-input", "sent during the reload");
    await alice.press("#composer-input", "Enter");
    await reload;
    await bob.waitForSelector("#shell:not([hidden])");
    check(true, "bob is still signed in after a reload that cut off a token refresh");
    await waitText(bob, "#message-list .msg .body", "sent during the reload", "after the reload bob sees the message sent meanwhile");
    // Scroll to the top until the beginning of the room.
    for (let i = 0; i < 10; i++) {
      const done = await bob.$eval("#history-state", (e) => e.textContent.includes("beginning"));
      if (done) break;
      await bob.$eval("#messages", (e) => e.scrollTo(0, 0));
      await sleep(700);
    }
    await waitText(bob, "#history-state", "beginning", "scrolling up loads older pages to the beginning of the room");
    const all = await bodies(bob);
    const shown = await ids(bob);
    check(new Set(shown).size === shown.length, `no message shows twice (${shown.length} on screen)`);
    const expected = ["Thanks Alice!", "Seen? (edited)", "line one\nline two", "Are you there?", "Bob?",
      "while you were away 1", "while you were away 2", "sent during the reload",
      ...Array.from({ length: 60 }, (_, i) => `bulk ${i + 1}`)];
    const counts = expected.map((t) => all.filter((x) => x === t).length);
    check(counts.every((c) => c === 1), "after the reload every message shows exactly once");
    const order = all.filter((t) => t.startsWith("bulk ")).map((t) => Number(t.slice(5)));
    check(order.every((n, i) => n === i + 1), "history is in order, oldest at the top");
    const imgs = await bob.$$eval("#message-list .thumb img", (els) => els.length);
    check(imgs === 1, "the image message survives the reload");
    const pending = await bob.$$eval("#message-list .pending", (els) => els.length);
    check(pending === 0, "no message is left showing as still sending");
    await bob.$eval("#messages", (e) => e.scrollTo(0, e.scrollHeight));

    // Read markers set before a page opens are shown too.
    await alice.reload();
    await waitText(alice, "#message-list .msg.mine .seen", "Seen by Bob", "after a reload alice still sees what bob has read");

    // A reply, made from the keyboard: Tab to the message's Reply, Enter.
    const asked = bob.locator("#message-list .msg", { hasText: "Are you there?" });
    await asked.locator("button.reply").focus();
    await bob.keyboard.press("Enter");
    await waitText(bob, "#reply-bar", "Replying to Alice: Are you there?", "bob picks alice's question to reply to");
    await bob.keyboard.type("Yes, here");
    await bob.keyboard.press("Enter");
    const answer = alice.locator("#message-list .msg", { hasText: "Yes, here" });
    await waitText(alice, "#message-list .msg .quote", "You: Are you there?", "alice sees bob's reply quoting her question");
    check((await answer.locator(".quote").textContent()).includes("Are you there?"), "the quote sits in bob's answer");
    check(await bob.locator("#reply-bar").isHidden(), "the reply bar closes once the reply is sent");
    // The question lies before the pages alice's reload loaded: the quote fetched it on its own.
    await answer.locator(".quote").click();
    await alice.locator("#message-list .msg.flash", { hasText: "Are you there?" }).waitFor({ timeout: 10_000 });
    const inView = await alice.locator("#message-list .msg.mine .body", { hasText: "Are you there?" }).evaluate((el) => {
      const box = document.querySelector("#messages").getBoundingClientRect();
      const r = el.getBoundingClientRect();
      return r.top >= box.top && r.bottom <= box.bottom;
    });
    check(inView, "clicking the quote loads older pages back to the question and scrolls it into view");

    // Every control can be reached with Tab.
    await alice.evaluate(() => document.activeElement?.blur());
    const reached = new Set();
    for (let i = 0; i < 400 && reached.size < 6; i++) {
      await alice.keyboard.press("Tab");
      const el = await alice.evaluate(() => {
        const a = document.activeElement;
        return a ? `${a.id ? "#" + a.id : ""}${a.closest("#room-list") ? " room-link" : ""}${a.classList.contains("reply") ? " reply" : ""}` : "";
      });
      for (const want of ["#logout", " room-link", "#call-join", " reply", "#composer-input", "#members-toggle"]) {
        if (el.includes(want)) reached.add(want);
      }
    }
    check(reached.size === 6, `Tab reaches log out, the rooms, the call, a message's Reply, the members and the composer (${[...reached].join(", ")})`);

    // Phone width: one pane at a time.
    await bob.setViewportSize({ width: 390, height: 800 });
    const sidebarShown = await bob.$eval("#sidebar", (e) => getComputedStyle(e).display !== "none");
    check(!sidebarShown, "at phone width the room view alone is shown");
    await bob.screenshot({ path: join(shots, "phone-room.png") });
    await bob.click(".back");
    await bob.waitForFunction(() => getComputedStyle(document.querySelector("#sidebar")).display !== "none");
    check(true, "the back link returns to the rooms list at phone width");

    // A direct message, started by username, arrives live with a badge.
    await bob.setViewportSize({ width: 1280, height: 800 });
    await bob.click("text=New room or direct message");
    await bob.fill("#start-dm input[name=username]", "alice");
    await bob.click("#start-dm button[type=submit]");
    await waitText(bob, "#room-title", "Alice", "bob starts a direct message with alice by her username");
    const dm = await bob.evaluate(() => window.roost.state.current);
    const dmLink = `#room-list a[data-room="${dm}"]`;
    await bob.fill("#composer-input", "psst, a private word");
    await bob.press("#composer-input", "Enter");
    await waitText(alice, "#room-list a", "Bob: psst, a private word", "the direct message appears live in alice's rooms list");
    await waitText(alice, "#room-list a:has-text('psst') .badge", "1", "with one unread");
    await alice.locator(dmLink + " .presence.online").waitFor({ timeout: 10_000 });
    check(true, "alice's rooms list shows bob online beside the direct message");
    check(await bob.locator("#room-presence.online").isVisible(), "bob's direct message shows alice online in its header");

    // A direct message with someone who shares no room: carol, found by her username.
    const carol = await fetch(base + "/v1/auth/register", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: "carol@example.org", username: "carol", display_name: "Carol", password: PASSWORD }),
    });
    check(carol.status === 201, "carol registers (over REST)");
    await alice.evaluate(() => (document.querySelector(".actions").open = true));
    await alice.fill("#start-dm input[name=username]", "Carol");
    await alice.click("#start-dm button[type=submit]");
    await waitText(alice, "#room-title", "Carol", "alice starts a direct message with carol, a stranger, by her username");
    await alice.fill("#start-dm input[name=username]", "nobody-here");
    await alice.click("#start-dm button[type=submit]");
    await waitText(alice, ".actions .error", "There is no one called nobody-here", "an unknown username is said so");

    // A public room, found in the directory.
    await alice.fill("#create-room input[name=name]", "Lobby");
    await alice.check("#create-room input[name=public]");
    await alice.click("#create-room button[type=submit]");
    await waitText(alice, "#room-title", "Lobby", "alice creates a public room");
    await bob.fill("#join-room input[name=room]", "lob");
    await bob.click("#join-room button[type=submit]");
    await waitText(bob, "#directory li", "Lobby", "bob finds the public room in the directory");
    check(await bob.locator("#directory li", { hasText: "Book club" }).count() === 0, "private rooms stay out of the directory");
    await bob.locator("#directory li", { hasText: "Lobby" }).locator("button", { hasText: "Join" }).click();
    await waitText(bob, "#room-title", "Lobby", "bob joins the public room from the directory");
    await bob.fill("#composer-input", "hello lobby");
    await bob.press("#composer-input", "Enter");
    await waitText(alice, "#message-list .msg .body", "hello lobby", "alice sees bob's message in the public room");
    await alice.screenshot({ path: join(shots, "rooms-list.png") });

    // Tokens lived 6 s: alice's were refreshed, over REST and on the socket, without a drop.
    const lastToken = await alice.evaluate(() => JSON.parse(localStorage.getItem("roost.session")).access_token);
    const drops = await alice.evaluate(() => window.roost.live.drops);
    const ttl = await alice.evaluate(() => JSON.parse(localStorage.getItem("roost.session")).access_ttl_ms);
    check(lastToken !== firstToken && !drops.includes(4001),
      `alice's access token was refreshed and her socket never closed for an expired token (drops: ${JSON.stringify(drops)}, ttl ${ttl} ms)`);

    // No camera or microphone at all: starting a call says so and joins nothing.
    const d = await browser({ devices: false });
    contexts.push(d.ctx);
    await register(d.page, base, "dave");
    await d.page.click("text=New room or direct message");
    await d.page.fill("#create-room input[name=name]", "Solo");
    await d.page.click("#create-room button[type=submit]");
    await waitText(d.page, "#room-title", "Solo", "dave, on a machine with no camera or microphone, opens a room");
    await d.page.click("#call-join");
    await waitText(d.page, "#call-error", "Your microphone and camera could not be used", "starting a call tells dave his microphone and camera could not be used");
    check(await d.page.locator("#call").isHidden() && await d.page.locator("#call-join").isVisible(),
      "dave is not in a call and can try again");
    await d.ctx.close();
    contexts.pop();

    // A page that is not a secure context (plain HTTP at a name other than
    // localhost) has no microphone or camera at all: starting a call says
    // to use HTTPS, not that the devices were refused.
    const port = new URL(base).port;
    const insecure = `http://roost.test:${port}`;
    const e = await browser({ extraArgs: ["--host-resolver-rules=MAP roost.test 127.0.0.1"] });
    contexts.push(e.ctx);
    await register(e.page, insecure, "erin");
    check(!(await e.page.evaluate(() => window.isSecureContext)), `${insecure} is not a secure context`);
    await e.page.click("text=New room or direct message");
    await e.page.fill("#create-room input[name=name]", "Plain HTTP");
    await e.page.click("#create-room button[type=submit]");
    await waitText(e.page, "#room-title", "Plain HTTP", "erin, on a plain HTTP page, opens a room");
    await e.page.click("#call-join");
    await waitText(e.page, "#call-error", "HTTPS", "starting a call on a plain HTTP page says calls need HTTPS");
    const said = await e.page.textContent("#call-error");
    check(!/could not be used|refused/.test(said), `and does not blame the devices: "${said}"`);
    check(await e.page.locator("#call").isHidden() && await e.page.locator("#call-join").isVisible(),
      "erin is not in a call");
    await e.ctx.close();
    contexts.pop();

    // The admin page: alice is super_admin, bob is not.
    check(await bob.locator("#admin-link").isHidden(), "bob, a user, has no admin link");
    await bob.goto(base + "/#/admin");
    await bob.waitForFunction(() => location.hash === "#/");
    check(await bob.locator("#admin").isHidden(), "bob is sent back from the admin page");
    await alice.click("#admin-link");
    await alice.waitForSelector("#admin:not([hidden])");
    for (const name of ["alice", "bob", "carol"]) {
      await waitText(alice, "#admin-users tr", "@" + name, `the admin page lists ${name}`);
    }
    const bobRow = () => alice.locator("#admin-users tr", { hasText: "@bob" });
    await bobRow().locator("button", { hasText: "Make admin" }).click();
    await waitText(alice, "#admin-users tr:has-text('@bob') .role", "admin", "alice makes bob an admin");
    const carolRow = alice.locator("#admin-users tr", { hasText: "@carol" });
    await carolRow.locator("button", { hasText: "Disable" }).click();
    await waitText(alice, "#admin-users tr:has-text('@carol') .status", "disabled", "alice disables carol");
    const carolLogin = await fetch(base + "/v1/auth/login", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: "carol@example.org", password: PASSWORD }),
    });
    check(carolLogin.status === 401, "carol can no longer sign in");
    await alice.fill("#admin-search input[name=q]", "car");
    await alice.click("#admin-search button[type=submit]");
    await alice.waitForFunction(() => document.querySelectorAll("#admin-users tr").length === 1);
    check(true, "the admin search narrows the list to carol");
    await alice.screenshot({ path: join(shots, "admin.png") });
    await bob.reload();
    await bob.locator("#admin-link").waitFor({ timeout: 10_000 });
    check(true, "bob, now an admin, gets the admin link");
    await alice.goto(base + "/#/");

    // Logging out ends the session; a reload shows the sign-in form.
    await alice.locator(dmLink + " .presence.online").waitFor({ timeout: 10_000 });
    await bob.click("#logout");
    await bob.waitForSelector("#login-form:not([hidden])");
    await alice.locator(dmLink + " .presence.offline").waitFor({ timeout: 10_000 });
    check(true, "alice sees bob go offline when he logs out");
    await bob.reload();
    await bob.waitForSelector("#login-form:not([hidden])");
    check(true, "bob logs out and stays logged out across a reload");

    for (const [name, p] of [["alice", alice], ["bob", bob]]) {
      const violations = await p.evaluate(() => window.__csp);
      check(violations.length === 0, `no CSP violation in ${name}'s page` + (violations.length ? ": " + violations.join("; ") : ""));
    }
  } finally {
    for (const c of contexts) await c.close().catch(() => {});
    roost.child.kill("SIGTERM");
    if (process.exitCode) console.error(roost.stderr().split("\n").slice(-40).join("\n"));
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
