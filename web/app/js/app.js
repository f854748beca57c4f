// The web client: sign-in, the rooms list and the room view, over the
// documented REST API and WebSocket. No framework: a little state and
// functions that bring the DOM in line with it.

import { api, session, clearBlobs, ApiError } from "./api.js";
import { attachmentElement, wireUploads } from "./attachments.js";
import { Live } from "./live.js";
import { Call } from "./call.js";
import { h, $, formatTime, newClientMsgId, showError } from "./dom.js";

const PAGE = 50;
const TYPING_EVERY_MS = 3000;

const state = {
  rooms: new Map(), // id -> room view from GET /v1/rooms, kept current by events
  users: new Map(), // user id -> public user
  current: null, // id of the room on screen
  rooms_loaded: false,
  // Per room: messages by id, whether older history remains, pending sends, typers, read markers.
  chat: new Map(),
  call: null, // the Call this page is in, if any
  callStates: new Map(), // room id -> participants in its call (from call.state)
  presence: new Map(), // user id -> online | away | offline
  replyTo: null, // the message the composer answers, if any
};

const live = new Live();
window.roost = { state, live }; // for debugging and tests

function chatOf(roomId) {
  if (!state.chat.has(roomId)) {
    state.chat.set(roomId, {
      messages: new Map(),
      loaded: false,
      hasMore: true,
      loadingOlder: false,
      pending: new Map(), // client_msg_id -> {body}
      typers: new Map(), // user id -> expiry (ms)
      reads: new Map(), // user id -> message seq
      members: [], // from GET /v1/rooms/{id}/members
      quoted: new Map(), // id -> message replied to outside the loaded pages (null while fetched)
      membersLoaded: false,
    });
  }
  return state.chat.get(roomId);
}

const me = () => session.user;

function nameOf(userId) {
  const u = state.users.get(userId);
  return u ? u.display_name || u.username : "someone";
}

function roomName(room) {
  if (room.name) return room.name;
  if (room.kind === "dm") {
    const other = room.dm_other && state.users.get(room.dm_other);
    return other ? other.display_name || other.username : "Direct message";
  }
  return "Room";
}

function preview(message) {
  if (!message) return "No messages yet";
  if (message.deleted_at) return "Message deleted";
  if (message.kind === "system") return systemText(message);
  const who = message.sender_id === me()?.id ? "You" : nameOf(message.sender_id);
  const text = message.body || (message.kind === "image" ? "sent an image" : message.kind === "file" ? "sent a file" : "");
  return `${who}: ${text}`;
}

function systemText(message) {
  const d = message.data || {};
  switch (d.event) {
    case "member_joined":
      return `${nameOf(d.user_id)} joined`;
    case "member_left":
      return d.reason === "kicked" ? `${nameOf(d.user_id)} was removed` : `${nameOf(d.user_id)} left`;
    case "room_renamed":
      return `${nameOf(d.by)} renamed the room to ${d.name}`;
    case "call_started":
      return "A call started";
    case "call_ended":
      return "The call ended";
    default:
      return d.event ? d.event.replaceAll("_", " ") : "";
  }
}

// ---------------------------------------------------------------- sign in

function showAuth(which = "login") {
  $("#shell").hidden = true;
  $("#auth").hidden = false;
  $("#login-form").hidden = which !== "login";
  $("#register-form").hidden = which !== "register";
  $(which === "login" ? "#login-form input[name=email]" : "#register-form input[name=email]").focus();
}

for (const b of document.querySelectorAll("[data-show]")) {
  b.addEventListener("click", () => showAuth(b.dataset.show));
}

async function submitting(form, fn) {
  const error = form.querySelector(".error") || form.closest(".actions").querySelector(".error");
  const button = form.querySelector("button[type=submit]");
  error.hidden = true;
  button.disabled = true;
  try {
    await fn(new FormData(form));
    form.reset();
  } catch (e) {
    showError(error, e);
  } finally {
    button.disabled = false;
  }
}

$("#login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  submitting(e.target, (f) => session.login(f.get("email"), f.get("password")));
});

$("#register-form").addEventListener("submit", (e) => {
  e.preventDefault();
  submitting(e.target, (f) => session.register(f.get("email"), f.get("username"), f.get("password"), f.get("display_name")));
});

$("#logout").addEventListener("click", () => session.logout());

session.onChange((user) => {
  if (user) start();
  else stop();
});

// ---------------------------------------------------------------- start and stop

async function start() {
  $("#auth").hidden = true;
  $("#shell").hidden = false;
  const user = me();
  state.users.set(user.id, user);
  $("#me").textContent = user.display_name || user.username;
  showAdminLink(user);
  live.start();
  // The stored account may be stale (a role changed since sign-in).
  api("GET", "/v1/auth/me").then((fresh) => {
    session.setUser(fresh);
    state.users.set(fresh.id, fresh);
    showAdminLink(fresh);
  }, () => {});
  await loadRooms();
  route();
}

const isAdmin = (user) => user && (user.role === "admin" || user.role === "super_admin");

function showAdminLink(user) {
  $("#admin-link").hidden = !isAdmin(user);
}

function stop() {
  if (state.call) state.call.leave();
  live.stop();
  clearBlobs();
  state.users.clear();
  state.rooms.clear();
  state.chat.clear();
  state.current = null;
  state.rooms_loaded = false;
  state.presence.clear();
  state.replyTo = null;
  $("#room-list").replaceChildren();
  $("#directory").replaceChildren();
  $("#admin-users").replaceChildren();
  $("#message-list").replaceChildren();
  banner(null);
  showAuth("login");
}

async function loadRooms() {
  try {
    const rooms = [];
    let cursor = null;
    do {
      const page = await api("GET", "/v1/rooms?limit=100" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
      rooms.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    for (const r of rooms) {
      const old = state.rooms.get(r.id);
      state.rooms.set(r.id, { ...r, dm_other: old?.dm_other });
    }
    for (const id of [...state.rooms.keys()]) if (!rooms.some((r) => r.id === id)) state.rooms.delete(id);
    state.rooms_loaded = true;
    renderRooms();
    await Promise.all(rooms.filter((r) => r.kind === "dm" && !r.dm_other).map((r) => loadMembers(r.id)));
    renderRooms();
    loadPresence();
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) console.error(e);
  }
}

async function loadMembers(roomId) {
  const chat = chatOf(roomId);
  const members = [];
  let cursor = null;
  do {
    const page = await api("GET", `/v1/rooms/${roomId}/members?limit=100` + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
    members.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  for (const m of members) {
    state.users.set(m.user.id, m.user);
    // Markers others set before this page opened; live events move them on.
    if (m.user.id !== me().id && m.last_read_seq > (chat.reads.get(m.user.id) || 0)) {
      chat.reads.set(m.user.id, m.last_read_seq);
    }
  }
  chat.members = members;
  chat.membersLoaded = true;
  const room = state.rooms.get(roomId);
  if (room && room.kind === "dm") room.dm_other = members.find((m) => m.user.id !== me().id)?.user.id;
  const unknown = members.map((m) => m.user.id).filter((id) => id !== me().id && !state.presence.has(id));
  if (unknown.length) loadPresence(unknown);
  return members;
}

// ---------------------------------------------------------------- presence

/// Asks for the presence of `ids` (default: everyone known), 100 at a time.
async function loadPresence(ids) {
  const wanted = (ids || [...state.users.keys()]).filter((id) => id !== me()?.id);
  for (let i = 0; i < wanted.length; i += 100) {
    try {
      const answer = await api("GET", "/v1/presence?user_ids=" + wanted.slice(i, i + 100).join(","));
      for (const [id, status] of Object.entries(answer.presence)) state.presence.set(id, status);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) console.error(e);
    }
  }
  renderPresence();
}

/// A dot for someone's presence (this page's own user is online).
function presenceDot(userId, props = {}) {
  const status = userId === me()?.id ? "online" : state.presence.get(userId) || "offline";
  return h("span", { ...props, class: "presence " + status, title: status, role: "img", "aria-label": status });
}

function renderPresence() {
  renderRooms();
  const room = state.current && state.rooms.get(state.current);
  const other = room && room.kind === "dm" && room.dm_other;
  $("#room-presence").replaceWith(
    other ? presenceDot(other, { id: "room-presence" }) : h("span", { id: "room-presence", hidden: true }),
  );
  if (!$("#members").hidden) renderMembers();
}

// Away after a while in the background, online again on return.
let awayTimer = null;
document.addEventListener("visibilitychange", () => {
  clearTimeout(awayTimer);
  if (!session.signedIn) return;
  if (document.visibilityState === "hidden") {
    awayTimer = setTimeout(() => live.ready && live.request({ type: "presence.set", status: "away" }).catch(() => {}), 120_000);
  } else if (live.ready) {
    live.request({ type: "presence.set", status: "online" }).catch(() => {});
  }
});

// ---------------------------------------------------------------- banner

let bannerTimer = null;
function banner(text) {
  clearTimeout(bannerTimer);
  const b = $("#banner");
  if (!text) {
    b.hidden = true;
    return;
  }
  b.textContent = text;
  b.hidden = false;
}

live.addEventListener("down", () => {
  // A blip that heals at once is not worth a flash of yellow.
  clearTimeout(bannerTimer);
  bannerTimer = setTimeout(() => banner("Reconnecting…"), 400);
});

live.addEventListener("ready", (e) => {
  banner(null);
  const listed = new Set(e.detail.rooms.map((r) => r.room_id));
  // A room joined or left while away: the list is reloaded to match.
  const known = new Set(state.rooms.keys());
  if (state.rooms_loaded && (listed.size !== known.size || [...listed].some((id) => !known.has(id)))) loadRooms();
  // History fetched before the stream began may miss a message sent in
  // between; the newest page is merged again (by id, so nothing doubles).
  if (state.current && chatOf(state.current).loaded) mergeNewest(state.current);
  // Presence and calls changed while away are not replayed: ask again.
  if (state.rooms_loaded) loadPresence();
  if (state.current) loadCallState(state.current);
});

async function mergeNewest(roomId) {
  try {
    const page = await api("GET", `/v1/rooms/${roomId}/messages?limit=${PAGE}`);
    const chat = chatOf(roomId);
    for (const m of page.items) {
      const held = chat.messages.get(m.id);
      // An event may have brought a newer state of the message meanwhile.
      if (!held || ((held.edited_at || "") <= (m.edited_at || "") && !held.deleted_at)) chat.messages.set(m.id, m);
      if (m.client_msg_id) chat.pending.delete(m.client_msg_id);
    }
    if (state.current === roomId) renderMessages();
  } catch (e) {
    console.error(e);
  }
}

addEventListener("online", () => live.kick());

// ---------------------------------------------------------------- live events

live.addEventListener("frame", (e) => {
  const f = e.detail;
  switch (f.type) {
    case "message.new":
    case "message.updated":
    case "message.deleted":
      return onMessage(f.message, f.type === "message.new");
    case "typing":
      return onTyping(f);
    case "message.read":
      return onRead(f);
    case "presence.update":
      state.presence.set(f.user_id, f.status);
      return renderPresence();
    case "resume.reset":
      return onReset(f.room_id);
    case "room.member_joined":
      state.users.set(f.member.user.id, f.member.user);
      if (f.member.user.id === me().id && !state.rooms.has(f.room_id)) loadRooms();
      return;
    case "room.member_left":
      if (f.user_id === me().id) {
        state.rooms.delete(f.room_id);
        if (state.current === f.room_id) location.hash = "#/";
        renderRooms();
      }
      return;
    case "room.updated": {
      const r = state.rooms.get(f.room_id);
      if (r) {
        Object.assign(r, f.room);
        renderRooms();
        if (state.current === f.room_id) $("#room-title").textContent = roomName(r);
      }
      return;
    }
    case "room.deleted":
      state.rooms.delete(f.room_id);
      state.chat.delete(f.room_id);
      if (state.current === f.room_id) location.hash = "#/";
      renderRooms();
      return;
    case "call.state":
      if (f.state === "active" && f.participants > 0) state.callStates.set(f.room_id, f.participants);
      else state.callStates.delete(f.room_id);
      return renderCall();
    case "reconnect":
      return; // the close that follows reconnects
  }
});

function onMessage(message, isNew) {
  const roomId = message.room_id;
  const room = state.rooms.get(roomId);
  if (!room) {
    loadRooms();
    return;
  }
  const chat = chatOf(roomId);
  const known = chat.messages.has(message.id);
  if (chat.loaded || state.current === roomId) chat.messages.set(message.id, message);
  if (message.client_msg_id) chat.pending.delete(message.client_msg_id);
  chat.typers.delete(message.sender_id);
  if (!room.last_message || message.seq >= room.last_message.seq) room.last_message = message;
  if (isNew && !known && message.sender_id !== me().id && message.kind !== "system") {
    if (state.current === roomId && document.visibilityState === "visible") markRead(roomId);
    else room.unread_count = (room.unread_count || 0) + 1;
  }
  renderRooms();
  if (state.current === roomId) {
    renderMessages();
    renderTyping();
  }
}

function onTyping(f) {
  if (f.user_id === me().id) return;
  const chat = chatOf(f.room_id);
  chat.typers.set(f.user_id, Date.now() + f.expires_in_ms);
  if (!state.users.has(f.user_id) && !chat.membersLoaded) loadMembers(f.room_id).then(renderTyping, () => {});
  if (state.current === f.room_id) renderTyping();
  setTimeout(() => state.current === f.room_id && renderTyping(), f.expires_in_ms + 50);
}

function onRead(f) {
  const chat = chatOf(f.room_id);
  if (f.user_id === me().id) {
    const room = state.rooms.get(f.room_id);
    // Read on another device: nothing left unread here either.
    if (room && room.last_message && f.message_seq >= room.last_message.seq) {
      room.unread_count = 0;
      renderRooms();
    }
    return;
  }
  if ((chat.reads.get(f.user_id) || 0) < f.message_seq) chat.reads.set(f.user_id, f.message_seq);
  if (state.current === f.room_id) renderMessages();
}

async function onReset(roomId) {
  // The server no longer holds what was missed: the room is loaded afresh.
  const chat = chatOf(roomId);
  chat.messages.clear();
  chat.loaded = false;
  chat.hasMore = true;
  await loadRooms();
  if (state.current === roomId) await loadHistory(roomId);
}

// ---------------------------------------------------------------- rooms list

function renderRooms() {
  const list = $("#room-list");
  const rooms = [...state.rooms.values()].sort((a, b) => {
    const ta = a.last_message?.created_at || a.created_at;
    const tb = b.last_message?.created_at || b.created_at;
    return tb.localeCompare(ta);
  });
  $("#no-rooms").hidden = rooms.length > 0 || !state.rooms_loaded;
  list.replaceChildren(
    ...rooms.map((room) => {
      const unread = room.unread_count || 0;
      const link = h(
        "a",
        { href: "#/room/" + room.id, "data-room": room.id },
        h("span", { class: "name" }, room.kind === "dm" && room.dm_other ? presenceDot(room.dm_other) : null, roomName(room)),
        unread ? h("span", { class: "badge", "aria-label": `${unread} unread` }, String(unread)) : h("span"),
        h("span", { class: "last" }, preview(room.last_message)),
      );
      if (room.id === state.current) link.setAttribute("aria-current", "page");
      return h("li", {}, link);
    }),
  );
}

const sidebarError = $(".actions .error");

function sidebarAction(form, fn) {
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submitting(form, fn);
  });
}

sidebarAction($("#create-room"), async (f) => {
  const room = await api("POST", "/v1/rooms", { name: f.get("name"), visibility: f.get("public") ? "public" : "private" });
  await loadRooms();
  location.hash = "#/room/" + room.id;
});

sidebarAction($("#start-dm"), async (f) => {
  const wanted = String(f.get("username")).trim().replace(/^@/, "");
  let user;
  try {
    user = await api("GET", "/v1/users/by-username/" + encodeURIComponent(wanted));
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) throw new Error(`There is no one called ${wanted} here.`);
    throw e;
  }
  if (user.id === me().id) throw new Error("That is you.");
  state.users.set(user.id, user);
  const room = await api("POST", "/v1/dms", { user_id: user.id });
  await loadRooms();
  location.hash = "#/room/" + room.id;
});

const ROOM_ID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

async function joinRoom(roomId) {
  await api("POST", `/v1/rooms/${roomId}/join`);
  await loadRooms();
  location.hash = "#/room/" + roomId;
}

// A room id or link joins at once; anything else searches the directory.
sidebarAction($("#join-room"), async (f) => {
  const text = String(f.get("room")).trim();
  const id = text.match(ROOM_ID);
  if (id) return joinRoom(id[0]);
  const page = await api("GET", "/v1/rooms/public?limit=50" + (text ? "&q=" + encodeURIComponent(text) : ""));
  const list = $("#directory");
  if (!page.items.length) {
    list.replaceChildren(h("li", { class: "empty" }, text ? `No public room is called anything like “${text}”.` : "There are no public rooms yet."));
    return;
  }
  list.replaceChildren(
    ...page.items.map((room) =>
      h(
        "li",
        { "data-room": room.id },
        h("span", { class: "name" }, room.name),
        h("span", { class: "count" }, `${room.member_count} ${room.member_count === 1 ? "member" : "members"}`),
        room.my_role
          ? h("a", { href: "#/room/" + room.id, class: "quiet button" }, "Open")
          : h("button", { type: "button", class: "quiet", onclick: (e) => {
              e.target.disabled = true;
              joinRoom(room.id).catch((err) => {
                e.target.disabled = false;
                showError(sidebarError, err);
              });
            } }, "Join"),
      ),
    ),
  );
});

sidebarAction($("#accept-invite"), async (f) => {
  const code = String(f.get("code")).trim().split("/").pop();
  await acceptInvite(code);
});

async function acceptInvite(code) {
  const result = await api("POST", `/v1/invites/${encodeURIComponent(code)}/accept`);
  const roomId = result.room_id || result.id || result.room?.id;
  await loadRooms();
  location.hash = roomId ? "#/room/" + roomId : "#/";
}

// ---------------------------------------------------------------- routing

async function route() {
  if (!session.signedIn) {
    const m = location.hash.match(/^#\/invite\/(.+)$/);
    if (m) sessionStorage.setItem("roost.invite", decodeURIComponent(m[1]));
    showAuth("login");
    return;
  }
  const invite = location.hash.match(/^#\/invite\/(.+)$/)?.[1] || sessionStorage.getItem("roost.invite");
  if (invite) {
    sessionStorage.removeItem("roost.invite");
    try {
      await acceptInvite(decodeURIComponent(invite));
    } catch (e) {
      location.hash = "#/";
      showError(sidebarError, e);
      $(".actions").open = true;
    }
    return;
  }
  if (location.hash === "#/admin") return openAdmin();
  $("#admin").hidden = true;
  const roomId = location.hash.match(/^#\/room\/([0-9a-f-]+)$/)?.[1] || null;
  openRoom(roomId);
}

addEventListener("hashchange", route);

// ---------------------------------------------------------------- room view

function openRoom(roomId) {
  if (roomId && !state.rooms.has(roomId)) {
    if (state.rooms_loaded) location.hash = "#/";
    return;
  }
  state.current = roomId;
  $("#shell").classList.toggle("in-room", !!roomId);
  $("#room").hidden = !roomId;
  $("#placeholder").hidden = !!roomId;
  $("#invite-box").hidden = true;
  $("#members").hidden = true;
  $("#members-toggle").setAttribute("aria-expanded", "false");
  if (state.replyTo && state.replyTo.room_id !== roomId) setReply(null);
  renderRooms();
  if (!roomId) return;
  const room = state.rooms.get(roomId);
  $("#room-title").textContent = roomName(room);
  renderPresence();
  $("#invite").hidden = room.kind === "dm" || !["owner", "moderator"].includes(room.my_role);
  $("#message-list").replaceChildren();
  rendered.clear();
  const chat = chatOf(roomId);
  if (!chat.membersLoaded) loadMembers(roomId).then(() => state.current === roomId && (renderMessages(), renderPresence()), () => {});
  loadCallState(roomId);
  if (!chat.loaded) loadHistory(roomId);
  else {
    renderMessages(true);
    markRead(roomId);
  }
  renderTyping();
  $("#composer-input").focus();
}

async function loadHistory(roomId) {
  const chat = chatOf(roomId);
  $("#history-state").textContent = "Loading…";
  try {
    const page = await api("GET", `/v1/rooms/${roomId}/messages?limit=${PAGE}`);
    for (const m of page.items) chat.messages.set(m.id, m);
    chat.hasMore = page.has_more;
    chat.loaded = true;
    if (state.current === roomId) {
      renderMessages(true);
      markRead(roomId);
      fillScreen();
    }
  } catch (e) {
    $("#history-state").textContent = "Could not load the history.";
    console.error(e);
  }
}

async function loadOlder() {
  const roomId = state.current;
  const chat = chatOf(roomId);
  if (!chat.loaded || !chat.hasMore || chat.loadingOlder) return;
  const oldest = sorted(chat)[0];
  if (!oldest) return;
  chat.loadingOlder = true;
  $("#history-state").textContent = "Loading older messages…";
  try {
    const page = await api("GET", `/v1/rooms/${roomId}/messages?limit=${PAGE}&before=${oldest.id}`);
    for (const m of page.items) if (!chat.messages.has(m.id)) chat.messages.set(m.id, m);
    chat.hasMore = page.has_more;
    if (state.current === roomId) {
      const box = $("#messages");
      const fromBottom = box.scrollHeight - box.scrollTop;
      renderMessages();
      box.scrollTop = box.scrollHeight - fromBottom;
    }
  } finally {
    chat.loadingOlder = false;
  }
}

// A first page shorter than the screen cannot be scrolled: load more until it fills.
async function fillScreen() {
  const box = $("#messages");
  for (let i = 0; i < 5 && state.current && chatOf(state.current).hasMore; i++) {
    if (box.scrollHeight > box.clientHeight + 80) return;
    await loadOlder();
  }
}

$("#messages").addEventListener("scroll", () => {
  if ($("#messages").scrollTop < 80) loadOlder();
});

function sorted(chat) {
  return [...chat.messages.values()].sort((a, b) => a.seq - b.seq);
}

function markRead(roomId) {
  const chat = chatOf(roomId);
  const room = state.rooms.get(roomId);
  const newest = sorted(chat).at(-1);
  if (room) room.unread_count = 0;
  renderRooms();
  if (!newest || chat.readSent === newest.id) return;
  chat.readSent = newest.id;
  live.request({ type: "read", room_id: roomId, message_id: newest.id }, { retry: true }).catch(() => {
    chat.readSent = null;
  });
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && state.current) markRead(state.current);
});

// Message elements, kept between renders so that an edit in progress and
// loaded images survive new messages arriving.
const rendered = new Map(); // key -> {el, version}

function renderMessages(toBottom = false) {
  const roomId = state.current;
  if (!roomId) return;
  const chat = chatOf(roomId);
  const box = $("#messages");
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 120;
  const list = sorted(chat);
  // "Seen": under the newest message others have read up to.
  const seenSeq = Math.max(0, ...chat.reads.values());
  const seenBy = [...chat.reads].filter(([, seq]) => seq >= seenSeq).map(([u]) => nameOf(u));
  const seenMsg = seenSeq ? list.filter((m) => m.seq <= seenSeq && m.kind !== "system").at(-1) : null;
  const items = [];
  for (const m of list) {
    const seen = m === seenMsg ? seenBy.join(", ") : "";
    const who = m.kind === "system" ? systemText(m) : nameOf(m.sender_id);
    const quoted = m.reply_to ? chat.messages.get(m.reply_to) || chat.quoted.get(m.reply_to) : null;
    const quote = quoted ? [quoted.body, quoted.deleted_at].join("|") : "";
    const version = [m.body, m.edited_at, m.deleted_at, seen, who, quote].join("\u0000");
    let r = rendered.get(m.id);
    if (!r || (r.version !== version && r.el.dataset.editing !== "1")) {
      r = { el: messageElement(m, seen), version };
      rendered.set(m.id, r);
    }
    items.push(r.el);
  }
  for (const [cid, p] of chat.pending) {
    const key = "pending:" + cid;
    let r = rendered.get(key);
    if (!r) {
      r = { el: pendingElement(p), version: "" };
      rendered.set(key, r);
    }
    items.push(r.el);
  }
  const ol = $("#message-list");
  // Bring the list in line without recreating elements that did not change.
  items.forEach((el, i) => {
    if (ol.children[i] !== el) ol.insertBefore(el, ol.children[i] || null);
  });
  while (ol.children.length > items.length) ol.lastElementChild.remove();
  $("#history-state").textContent = !chat.loaded ? "Loading…" : chat.hasMore ? "Scroll up for older messages" : "The beginning of the room";
  if (toBottom || nearBottom) box.scrollTop = box.scrollHeight;
}

function messageElement(m, seen) {
  const mine = m.sender_id === me().id;
  if (m.kind === "system") {
    return h("li", { class: "msg system", "data-id": m.id }, systemText(m));
  }
  const li = h("li", { class: "msg" + (mine ? " mine" : ""), "data-id": m.id, "data-seq": String(m.seq) });
  li.append(
    h(
      "div",
      { class: "meta" },
      h("span", { class: "sender" }, mine ? "You" : nameOf(m.sender_id)),
      h("time", { datetime: m.created_at }, formatTime(m.created_at)),
      m.edited_at && !m.deleted_at ? h("span", { class: "edited" }, "edited") : null,
    ),
  );
  if (m.deleted_at) {
    li.append(h("p", { class: "body deleted" }, "This message was deleted."));
    return li;
  }
  if (m.reply_to) li.append(quoteOf(m.room_id, m.reply_to));
  if (m.body) li.append(h("p", { class: "body" }, m.body));
  for (const a of m.attachments || []) li.append(attachmentElement(a, alertError));
  const tools = h("div", { class: "tools" });
  tools.append(h("button", { type: "button", class: "quiet reply", onclick: () => setReply(m) }, "Reply"));
  li.append(tools);
  if (mine) {
    if (m.kind === "text" || m.body) {
      tools.append(h("button", { type: "button", class: "quiet edit", onclick: () => startEdit(li, m) }, "Edit"));
    }
    const del = h("button", { type: "button", class: "quiet delete" }, "Delete");
    del.addEventListener("click", () => {
      if (del.dataset.armed !== "1") {
        del.dataset.armed = "1";
        del.textContent = "Really delete?";
        setTimeout(() => {
          del.dataset.armed = "";
          del.textContent = "Delete";
        }, 4000);
        return;
      }
      live.request({ type: "message.delete", room_id: m.room_id, message_id: m.id }).catch((e) => alertError(e));
    });
    tools.append(del);
  }
  if (seen) li.append(h("p", { class: "seen" }, "Seen by " + seen));
  return li;
}

/// What a reply quotes: the sender and the start of the message, a link that
/// scrolls to it when it is loaded.
function quoteOf(roomId, messageId) {
  const chat = chatOf(roomId);
  const target = chat.messages.get(messageId) || chat.quoted.get(messageId);
  if (!target && !chat.quoted.has(messageId)) fetchQuoted(roomId, messageId);
  const text = !target
    ? "an earlier message"
    : target.deleted_at
      ? "a deleted message"
      : `${target.sender_id === me().id ? "You" : nameOf(target.sender_id)}: ${excerpt(target)}`;
  return h(
    "a",
    {
      class: "quote",
      href: "#/room/" + roomId,
      "data-reply-to": messageId,
      onclick: (e) => {
        e.preventDefault();
        jumpTo(roomId, messageId);
      },
    },
    "↩ " + text,
  );
}

/// Scrolls to a message, loading older pages until it is among them.
async function jumpTo(roomId, messageId) {
  const chat = chatOf(roomId);
  for (let i = 0; i < 40 && !chat.messages.has(messageId) && chat.hasMore && state.current === roomId; i++) {
    if (chat.loadingOlder) await new Promise((r) => setTimeout(r, 100)); // a scroll's load is under way
    else await loadOlder();
  }
  const el = document.querySelector(`#message-list [data-id="${messageId}"]`);
  if (!el) return;
  el.scrollIntoView({ block: "center" });
  el.classList.add("flash");
  setTimeout(() => el.classList.remove("flash"), 1500);
}

// The original of a reply, fetched on its own: it is kept apart from the
// loaded pages, whose oldest message anchors the next older page.
async function fetchQuoted(roomId, messageId) {
  const chat = chatOf(roomId);
  chat.quoted.set(messageId, null);
  try {
    chat.quoted.set(messageId, await api("GET", `/v1/rooms/${roomId}/messages/${messageId}`));
    if (state.current === roomId) renderMessages();
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 404)) chat.quoted.delete(messageId);
  }
}

function excerpt(m) {
  const text = m.body || (m.kind === "image" ? "an image" : m.kind === "file" ? "a file" : "");
  return text.length > 80 ? text.slice(0, 80) + "…" : text;
}

function setReply(m) {
  state.replyTo = m;
  $("#reply-bar").hidden = !m;
  if (m) {
    $("#reply-text").textContent = `Replying to ${m.sender_id === me().id ? "yourself" : nameOf(m.sender_id)}: ${excerpt(m)}`;
    $("#composer-input").focus();
  }
}

$("#reply-cancel").addEventListener("click", () => {
  setReply(null);
  $("#composer-input").focus();
});

function startEdit(li, m) {
  li.dataset.editing = "1";
  const body = li.querySelector(".body");
  const input = h("textarea", { class: "edit-input", "aria-label": "Edit message", rows: "2" });
  input.value = m.body || "";
  const done = () => {
    li.dataset.editing = "";
    rendered.delete(m.id);
    renderMessages();
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Escape") done();
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      const text = input.value;
      if (!text.trim() || text === m.body) return done();
      live
        .request({ type: "message.edit", room_id: m.room_id, message_id: m.id, body: text })
        .then(done, (err) => alertError(err));
    }
  });
  if (body) body.replaceWith(input);
  else li.insertBefore(input, li.querySelector(".tools"));
  input.focus();
}

function pendingElement(p) {
  return h(
    "li",
    { class: "msg mine pending", "aria-busy": "true" },
    h("div", { class: "meta" }, h("span", { class: "sender" }, "You"), h("span", {}, "sending…")),
    h("p", { class: "body" }, p.body),
  );
}

function alertError(e) {
  banner(e.message || String(e));
  bannerTimer = setTimeout(() => banner(null), 4000);
}

function renderTyping() {
  const chat = state.current && chatOf(state.current);
  const now = Date.now();
  const names = chat ? [...chat.typers].filter(([, until]) => until > now).map(([u]) => nameOf(u)) : [];
  $("#typing").textContent =
    names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…` : `${names.join(", ")} are typing…`;
}

// ---------------------------------------------------------------- composer

const input = $("#composer-input");
let lastTyping = 0;

function grow() {
  input.style.height = "auto";
  input.style.height = Math.min(input.scrollHeight + 2, 160) + "px";
}

input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    sendText();
  }
  if (e.key === "Escape" && state.replyTo) setReply(null);
});

input.addEventListener("input", () => {
  grow();
  const now = Date.now();
  if (state.current && input.value.trim() && now - lastTyping > TYPING_EVERY_MS && live.ready) {
    lastTyping = now;
    live.request({ type: "typing.start", room_id: state.current }).catch(() => {});
  }
});

$("#composer").addEventListener("submit", (e) => {
  e.preventDefault();
  sendText();
});

function sendText() {
  const body = input.value;
  if (!body.trim() || !state.current) return;
  input.value = "";
  grow();
  lastTyping = 0;
  const replyTo = state.replyTo?.room_id === state.current ? state.replyTo.id : null;
  setReply(null);
  send(state.current, { body, replyTo });
}

/// Sends a message over the socket with a fresh `client_msg_id`; shown as
/// pending until the server has it. A send cut off by a reconnect goes again
/// with the same id, so it is stored once.
function send(roomId, { body, attachments, replyTo = null }) {
  const chat = chatOf(roomId);
  const client_msg_id = newClientMsgId();
  chat.pending.set(client_msg_id, { body: body || (attachments ? "Attachment" : "") });
  if (state.current === roomId) renderMessages(true);
  const frame = { type: "message.send", room_id: roomId, client_msg_id, reply_to: replyTo };
  if (body) frame.body = body;
  if (attachments) frame.attachments = attachments;
  live.request(frame, { retry: true }).then(
    (result) => onMessage(result.message, true),
    (e) => {
      chat.pending.delete(client_msg_id);
      rendered.delete("pending:" + client_msg_id);
      if (state.current === roomId) renderMessages();
      alertError(e);
    },
  );
}

wireUploads({
  target: () => state.current,
  sent: (roomId, fileId) => send(roomId, { attachments: [fileId] }),
  failed: alertError,
});

// ---------------------------------------------------------------- invites

$("#invite").addEventListener("click", async () => {
  try {
    const invite = await api("POST", `/v1/rooms/${state.current}/invites`, {});
    $("#invite-link").value = `${location.origin}/#/invite/${invite.code}`;
    $("#invite-box").hidden = false;
    $("#invite-link").select();
  } catch (e) {
    alertError(e);
  }
});

$("#copy-invite").addEventListener("click", () => {
  navigator.clipboard?.writeText($("#invite-link").value).catch(() => {});
});

// ---------------------------------------------------------------- calls

const TOPOLOGY = { mesh: "peer to peer", sfu: "via server" };
const tiles = new Map(); // participant id ("me" for us) -> tile element
const screens = new Map(); // participant id -> the large view of its shared screen

// Whether we may moderate the room's call: its owner and moderators, and
// the server's admins (the server decides; this only offers the buttons).
function canModerate(roomId) {
  return isAdmin(me()) || ["owner", "moderator"].includes(state.rooms.get(roomId)?.my_role);
}

function callError(text) {
  const el = $("#call-error");
  el.textContent = text || "";
  el.hidden = !text;
}

$("#call-join").addEventListener("click", async () => {
  if (state.call || !state.current) return;
  const call = new Call(live, state.current);
  state.call = call;
  callError(null);
  call.addEventListener("change", renderCall);
  $("#call-join").disabled = true;
  try {
    await call.join();
    await fillDevices();
  } catch (e) {
    call.end(null);
    state.call = null;
    callError(e.message || String(e));
  } finally {
    $("#call-join").disabled = false;
    renderCall();
  }
});

$("#call-leave").addEventListener("click", () => {
  state.call?.leave();
  state.call = null;
  callError(null);
  renderCall();
});

for (const [sel, kind] of [["#call-mic", "audio"], ["#call-cam", "video"]]) {
  $(sel).addEventListener("click", () => {
    const call = state.call;
    if (!call) return;
    callError(null);
    call.setMuted(kind, !(kind === "audio" ? call.audioMuted : call.videoMuted)).catch((e) => callError(e.message || String(e)));
  });
}

$("#call-share").addEventListener("click", async () => {
  const call = state.call;
  if (!call) return;
  callError(null);
  try {
    if (call.screen) await call.stopShare();
    else await call.startShare();
  } catch (e) {
    // Closing the browser's picker refuses it: nothing to say.
    if (e.name === "NotAllowedError" || e.name === "AbortError") return;
    callError(`Your screen could not be shared (${e.message || e.name}).`);
  }
});

// A moderator's buttons on a tile (`tileActions`): their text and what
// they do, for screen readers and tooltips.
const MODERATION = {
  mute_audio: ["Mute", (name) => `Mute ${name}'s microphone`],
  allow_audio: ["Allow mic", (name) => `Let ${name} turn their microphone on again`],
  mute_video: ["Camera off", (name) => `Turn ${name}'s camera off`],
  allow_video: ["Allow camera", (name) => `Let ${name} turn their camera on again`],
  stop_screen: ["Stop share", (name) => `Stop ${name}'s screen share`],
  remove: ["Remove", (name) => `Remove ${name} from the call`],
};

$("#call-grid").addEventListener("click", async (e) => {
  const button = e.target.closest(".tile-actions button[data-action]");
  const call = state.call;
  if (!button || !call) return;
  const id = button.closest(".tile").dataset.participant;
  const name = nameOf(call.participants.get(id)?.user_id);
  button.disabled = true;
  callError(null);
  try {
    await call.moderate(id, button.dataset.action);
  } catch (err) {
    const why = err.code === "forbidden" ? "you may not do that to them in this room"
      : err.code === "not_found" ? "they are no longer in the call" : err.message || String(err);
    callError(`Could not do that to ${name}: ${why}.`);
  } finally {
    button.disabled = false;
  }
});

for (const [sel, kind] of [["#call-mic-device", "audio"], ["#call-cam-device", "video"]]) {
  $(sel).addEventListener("change", async (e) => {
    try {
      await state.call?.useDevice(kind, e.target.value);
    } catch (err) {
      callError(`That device could not be used (${err.name || err.message}).`);
    }
  });
}

async function fillDevices() {
  const call = state.call;
  if (!call) return;
  const devices = await navigator.mediaDevices.enumerateDevices();
  for (const [sel, kind] of [["#call-mic-device", "audio"], ["#call-cam-device", "video"]]) {
    const list = devices.filter((d) => d.kind === kind + "input");
    const current = call.currentDevice(kind);
    $(sel).replaceChildren(...list.map((d, i) =>
      h("option", { value: d.deviceId, selected: d.deviceId === current }, d.label || `${kind === "audio" ? "Microphone" : "Camera"} ${i + 1}`)));
    $(sel).closest("label").hidden = list.length < 2 || !call.hasTrack(kind);
  }
}
navigator.mediaDevices?.addEventListener?.("devicechange", () => fillDevices().catch(() => {}));

// Which tiles the grid shows: a participant's camera is not received while
// its tile is scrolled out of sight (`Call.setTileVisible`).
const tilesInSight = new IntersectionObserver((entries) => {
  for (const e of entries) {
    const id = e.target.dataset.participant;
    if (id !== "me") state.call?.setTileVisible(id, e.isIntersecting);
  }
}, { root: $("#call-grid") });

// And how large each is drawn: the server sends the camera layer that fills
// it (`Call.setTileSize`), in device pixels.
const tileSizes = new ResizeObserver((entries) => {
  for (const e of entries) {
    const id = e.target.dataset.participant;
    const box = e.contentRect;
    const scale = window.devicePixelRatio || 1;
    if (id !== "me" && box.width > 0) state.call?.setTileSize(id, box.width * scale, box.height * scale);
  }
});

function tileFor(key) {
  let tile = tiles.get(key);
  if (!tile) {
    const video = h("video", { autoplay: true, playsinline: true });
    tile = h("li", { class: "tile", "data-participant": key }, video,
      h("span", { class: "placeholder-name" }), h("span", { class: "label" }),
      key === "me" ? null : h("div", { class: "tile-actions" }));
    tiles.set(key, tile);
    tilesInSight.observe(tile);
    tileSizes.observe(tile);
  }
  return tile;
}

// The moderator's buttons a participant's tile offers now (none where we
// may not moderate).
function tileActions(tile, p, name, moderator) {
  const box = tile.querySelector(".tile-actions");
  if (!box) return;
  const wanted = !moderator ? [] : [
    p.audio_locked ? "allow_audio" : !p.audio_muted && "mute_audio",
    p.video_locked ? "allow_video" : !p.video_muted && "mute_video",
    p.screen_sharing && "stop_screen",
    "remove",
  ].filter(Boolean);
  const key = wanted.join() + "|" + name;
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.replaceChildren(...wanted.map((action) => {
    const [text, label] = MODERATION[action];
    return h("button", { type: "button", "data-action": action, class: action === "remove" ? "danger" : null, title: label(name), "aria-label": label(name) }, text);
  }));
}

function fillTile(tile, { name, stream, local, videoOn, speaking, audioMuted, mutedBy, held }) {
  const video = tile.querySelector("video");
  video.muted = !!local; // our own preview is silent; everyone else is heard
  if (video.srcObject !== stream) video.srcObject = stream || null;
  // Held back by the server for our connection's bandwidth: the picture
  // would stand still, so the tile says why instead.
  const hasVideo = !held && !!stream && videoOn && stream.getVideoTracks().some((t) => t.readyState === "live");
  video.classList.toggle("off", !hasVideo);
  const placeholder = tile.querySelector(".placeholder-name");
  placeholder.replaceChildren(name, ...(held && videoOn ? [h("small", { class: "tile-note" }, "Video paused: your connection is slow")] : []));
  placeholder.hidden = hasVideo;
  tile.dataset.held = held && videoOn ? "bandwidth" : "";
  tile.querySelector(".label").textContent = name + (audioMuted ? (mutedBy ? " (muted by a moderator)" : " (muted)") : "");
  tile.classList.toggle("speaking", !!speaking);
  tile.dataset.video = hasVideo ? "on" : "off";
}

// The large views of the screens shared in the call `c` (none without a
// call), each asked of the server at the size it is drawn.
const screenSizes = new ResizeObserver((entries) => {
  for (const e of entries) {
    const box = e.contentRect;
    const scale = window.devicePixelRatio || 1;
    if (box.width > 0) state.call?.setScreenSize(e.target.dataset.participant, box.width * scale, box.height * scale);
  }
});

function renderScreens(c) {
  const list = $("#call-screens");
  const shown = [];
  for (const [id, p] of c ? c.participants : []) {
    const stream = c.screenOf(id);
    if (!stream) continue;
    let view = screens.get(id);
    if (!view) {
      view = h("li", { class: "screen", "data-participant": id },
        h("video", { autoplay: true, playsinline: true, muted: true }), h("span", { class: "label" }));
      screens.set(id, view);
      screenSizes.observe(view.querySelector("video"));
      view.querySelector("video").dataset.participant = id;
    }
    const video = view.querySelector("video");
    video.muted = true;
    if (video.srcObject !== stream) video.srcObject = stream;
    view.querySelector(".label").textContent = `${nameOf(p.user_id)} is sharing their screen`;
    shown.push(view);
  }
  for (const [id, view] of screens) {
    if (shown.includes(view)) continue;
    const video = view.querySelector("video");
    screenSizes.unobserve(video);
    video.srcObject = null;
    screens.delete(id);
  }
  if (shown.some((v, i) => list.children[i] !== v) || list.children.length !== shown.length) {
    list.replaceChildren(...shown);
    for (const v of shown) v.querySelector("video").play().catch(() => {});
  }
  $("#call").classList.toggle("sharing", shown.length > 0);
}

// A call already going on when the room opens: `call.state` events tell
// only of changes, the room's call records of what is.
async function loadCallState(roomId) {
  try {
    const page = await api("GET", `/v1/rooms/${roomId}/calls?limit=1`);
    const call = page.items[0];
    const here = call && !call.ended_at ? call.participants.filter((p) => !p.left_at).length : 0;
    if (here > 0) state.callStates.set(roomId, here);
    else state.callStates.delete(roomId);
    if (state.current === roomId) renderCall();
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) console.error(e);
  }
}

function renderCall() {
  const call = state.call;
  if (call && call.ended) {
    if (call.error) callError(call.error);
    state.call = null;
  }
  const inCall = state.call && state.call.roomId === state.current;
  const here = state.callStates.get(state.current);
  const join = $("#call-join");
  join.hidden = !state.current || !!state.call;
  join.textContent = here ? `Join call (${here})` : "Start call";
  $("#call").hidden = !inCall;
  if (!state.call) {
    for (const t of tiles.values()) {
      t.querySelector("video").srcObject = null;
      tilesInSight.unobserve(t);
      tileSizes.unobserve(t);
    }
    tiles.clear();
    $("#call-grid").replaceChildren();
    renderScreens(null);
    $("#call-notice").hidden = true;
    return;
  }
  if (!inCall) return;
  const c = state.call;
  if (c.error) callError(c.error);
  $("#call-topology").textContent = c.topology
    ? `${c.participants.size + 1} in call · ${TOPOLOGY[c.topology] || c.topology}${c.reconnecting.size || c.socketDown ? " · reconnecting…" : ""}`
    : "Joining…";
  $("#call-topology").dataset.topology = c.topology || "";
  // Mute buttons; one a moderator locked says so (pressing it explains).
  const mic = $("#call-mic");
  mic.textContent = c.audioLocked ? "Mic locked by a moderator" : c.audioMuted ? "Unmute mic" : "Mute mic";
  mic.setAttribute("aria-pressed", String(c.audioMuted));
  mic.classList.toggle("locked", c.audioLocked);
  const cam = $("#call-cam");
  cam.hidden = !c.stream || !c.hasTrack("video");
  cam.textContent = c.videoLocked ? "Camera locked by a moderator" : c.videoMuted ? "Turn camera on" : "Turn camera off";
  cam.setAttribute("aria-pressed", String(c.videoMuted));
  cam.classList.toggle("locked", c.videoLocked);
  const share = $("#call-share");
  share.hidden = !navigator.mediaDevices?.getDisplayMedia; // phones cannot share a screen
  share.textContent = c.screen ? "Stop sharing" : "Share screen";
  share.setAttribute("aria-pressed", String(!!c.screen));
  $("#call-notice").textContent = c.notice || "";
  $("#call-notice").hidden = !c.notice;
  const moderator = canModerate(c.roomId);
  const shown = [];
  if (c.stream) {
    const t = tileFor("me");
    fillTile(t, {
      name: "You", stream: c.stream, local: true, videoOn: !c.videoMuted, audioMuted: c.audioMuted, mutedBy: c.mutedBy.audio,
    });
    shown.push(t);
  }
  for (const [id, p] of c.participants) {
    const t = tileFor(id);
    const name = nameOf(p.user_id);
    fillTile(t, {
      name, stream: c.streamOf(id), videoOn: !p.video_muted,
      speaking: c.speaking.has(id), audioMuted: p.audio_muted, mutedBy: p.audio_muted_by || p.audio_locked,
      held: c.isHeld(id, "camera"),
    });
    tileActions(t, p, name, moderator);
    shown.push(t);
  }
  renderScreens(c);
  for (const [key, t] of tiles) {
    if (!shown.includes(t)) {
      t.querySelector("video").srcObject = null;
      tilesInSight.unobserve(t);
      tileSizes.unobserve(t);
      tiles.delete(key);
    }
  }
  const grid = $("#call-grid");
  if (shown.some((t, i) => grid.children[i] !== t) || grid.children.length !== shown.length) {
    grid.replaceChildren(...shown);
    // A media element taken out of the document pauses: play it again.
    for (const t of shown) t.querySelector("video").play().catch(() => {});
  }
  // Names of people not yet known (joined the room since it was loaded).
  if ([...c.participants.values()].some((p) => !state.users.has(p.user_id)) && !c.loadingMembers) {
    c.loadingMembers = true;
    loadMembers(c.roomId).then(renderCall, () => {});
  }
}

// ---------------------------------------------------------------- members

$("#members-toggle").addEventListener("click", async () => {
  const panel = $("#members");
  const open = panel.hidden;
  panel.hidden = !open;
  $("#members-toggle").setAttribute("aria-expanded", String(open));
  if (!open || !state.current) return;
  renderMembers();
  const roomId = state.current;
  try {
    await loadMembers(roomId);
    if (state.current === roomId) renderMembers();
  } catch (e) {
    alertError(e);
  }
});

const ROLE_ORDER = { owner: 0, moderator: 1, member: 2 };

function renderMembers() {
  const chat = state.current && chatOf(state.current);
  if (!chat) return;
  const members = [...chat.members].sort(
    (a, b) => ROLE_ORDER[a.role] - ROLE_ORDER[b.role] || nameOf(a.user.id).localeCompare(nameOf(b.user.id)),
  );
  $("#members").replaceChildren(
    ...members.map((m) =>
      h(
        "li",
        { "data-user": m.user.id },
        presenceDot(m.user.id),
        h("span", { class: "name" }, nameOf(m.user.id) + (m.user.id === me().id ? " (you)" : "")),
        h("span", { class: "handle" }, "@" + m.user.username),
        m.role === "member" ? null : h("span", { class: "role" }, m.role),
      ),
    ),
  );
}

// ---------------------------------------------------------------- admin

const admin = { query: "", role: "", cursor: null, loading: false };

function openAdmin() {
  if (!isAdmin(me())) {
    location.hash = "#/";
    return;
  }
  state.current = null;
  renderRooms();
  $("#shell").classList.add("in-room");
  $("#room").hidden = true;
  $("#placeholder").hidden = true;
  $("#admin").hidden = false;
  loadAdminUsers(true);
}

$("#admin-search").addEventListener("submit", (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  admin.query = String(f.get("q") || "").trim();
  admin.role = String(f.get("role") || "");
  loadAdminUsers(true);
});

$("#admin-more").addEventListener("click", () => loadAdminUsers(false));

async function loadAdminUsers(fresh) {
  if (admin.loading) return;
  admin.loading = true;
  $("#admin-error").hidden = true;
  try {
    if (fresh) admin.cursor = null;
    const params = new URLSearchParams({ limit: "50" });
    if (admin.query) params.set("q", admin.query);
    if (admin.role) params.set("role", admin.role);
    if (admin.cursor) params.set("cursor", admin.cursor);
    const page = await api("GET", "/v1/admin/users?" + params);
    const rows = page.items.map(adminRow);
    if (fresh) $("#admin-users").replaceChildren(...rows);
    else $("#admin-users").append(...rows);
    admin.cursor = page.next_cursor;
    $("#admin-more").hidden = !page.next_cursor;
  } catch (e) {
    showError($("#admin-error"), e);
  } finally {
    admin.loading = false;
  }
}

function adminRow(user) {
  const self = user.id === me().id;
  const superAdmin = me().role === "super_admin";
  const actions = h("td", { class: "actions-cell" });
  // Admins manage users; a super_admin manages anyone; nobody themselves.
  const mayManage = !self && (superAdmin || user.role === "user");
  if (superAdmin && !self && user.role !== "super_admin") {
    const next = user.role === "admin" ? "user" : "admin";
    actions.append(
      h("button", { type: "button", class: "quiet", onclick: () => adminAct(user, "role", { role: next }) },
        next === "admin" ? "Make admin" : "Remove admin"),
    );
  }
  if (mayManage) {
    actions.append(
      user.disabled
        ? h("button", { type: "button", class: "quiet", onclick: () => adminAct(user, "enable") }, "Enable")
        : h("button", { type: "button", class: "danger", onclick: () => adminAct(user, "disable") }, "Disable"),
    );
  }
  return h(
    "tr",
    { "data-user": user.id },
    h("td", {}, h("span", { class: "name" }, user.display_name), " ", h("span", { class: "handle" }, "@" + user.username)),
    h("td", { class: "email" }, user.email),
    h("td", { class: "role" }, user.role),
    h("td", { class: "status" }, user.disabled ? "disabled" : "active"),
    actions,
  );
}

async function adminAct(user, action, body) {
  $("#admin-error").hidden = true;
  try {
    const updated = await api("POST", `/v1/admin/users/${user.id}/${action}`, body);
    const row = document.querySelector(`#admin-users tr[data-user="${user.id}"]`);
    row?.replaceWith(adminRow(updated));
  } catch (e) {
    showError($("#admin-error"), e);
  }
}

// ---------------------------------------------------------------- boot

if (session.signedIn) start();
else route();
