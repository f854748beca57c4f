// The WebSocket, kept open: `hello` with the highest `seq` held per room, so
// a reconnect replays exactly what was missed; requests answered by `ack` or
// `nack`; idempotent requests (sends) survive a reconnect and go again.

import { session } from "./api.js";

export class Live extends EventTarget {
  constructor() {
    super();
    this.seqs = new Map(); // room id -> highest seq seen
    this.pending = new Map(); // request id -> {frame, resolve, reject, retry}
    this.nextId = 1;
    this.ready = false;
    this.stopped = true;
    this.attempt = 0;
    this.drops = []; // close codes of connections that ended, newest last
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.heartbeat);
    clearTimeout(this.refreshTimer);
    if (this.ws) this.ws.close(1000);
    this.ws = null;
    this.ready = false;
    for (const p of this.pending.values()) p.reject(new Error("signed out"));
    this.pending.clear();
    this.seqs.clear(); // the next user resumes nothing of this one's
    this.drops = [];
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  async connect() {
    if (this.stopped) return;
    let token;
    try {
      token = await session.token();
    } catch (e) {
      if (e.status === 401) return; // signed out: the app shows the login
      return this.retry();
    }
    const url = location.origin.replace(/^http/, "ws") + "/v1/ws";
    const ws = new WebSocket(url, ["roost.v1", "bearer." + token]);
    this.ws = ws;
    ws.addEventListener("open", () => this.hello(ws));
    ws.addEventListener("message", (e) => this.receive(e.data));
    ws.addEventListener("close", (e) => this.closed(ws, e.code));
  }

  hello(ws) {
    const resume = {};
    for (const [room, seq] of this.seqs) resume[room] = seq;
    const id = "h" + this.nextId++;
    this.pending.set(id, {
      frame: null,
      retry: false,
      resolve: (result) => {
        this.ready = true;
        this.attempt = 0;
        for (const r of result.rooms) if (!this.seqs.has(r.room_id)) this.seqs.set(r.room_id, r.last_seq);
        clearInterval(this.heartbeat);
        // A ping unanswered by the next one's time means a dead connection.
        const every = result.heartbeat_interval_ms * 0.6;
        this.heartbeat = setInterval(() => this.probe(every), every);
        this.scheduleRefresh();
        // Requests that waited for the connection, and sends that may not have arrived.
        for (const [rid, p] of this.pending) if (p.frame) this.ws.send(JSON.stringify({ ...p.frame, id: rid }));
        this.emit("ready", result);
      },
      reject: () => ws.close(),
    });
    ws.send(JSON.stringify({ type: "hello", id, resume }));
  }

  scheduleRefresh() {
    clearTimeout(this.refreshTimer);
    const due = session.refreshDue();
    if (due === null) return;
    this.refreshTimer = setTimeout(async () => {
      try {
        const token = await session.token();
        await this.request({ type: "auth.refresh", access_token: token });
      } catch {
        // The close that follows reconnects with a fresh token.
      }
      this.scheduleRefresh();
    }, due);
  }

  closed(ws, code) {
    if (this.ws !== ws) return;
    this.drops.push(code);
    this.ready = false;
    this.ws = null;
    clearInterval(this.heartbeat);
    for (const [id, p] of this.pending) {
      if (!p.retry) {
        p.reject(Object.assign(new Error("disconnected"), { code: "disconnected" }));
        this.pending.delete(id);
      }
    }
    if (this.stopped) return;
    this.emit("down", { code });
    if (code === 4001) {
      // The session ended or the token lapsed: a refresh tells which.
      session.token(true).then(() => this.retry(), () => {});
      return;
    }
    this.retry();
  }

  /// Pings, and drops the connection and reconnects at once where no
  /// answer comes within `ms`: after a change of network the old TCP
  /// connection may look open for a long while, its packets going nowhere.
  /// Resolves to whether the connection answered.
  probe(ms) {
    const ws = this.ws;
    if (!ws || !this.ready) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        resolve(false);
        if (this.ws !== ws) return;
        this.closed(ws, 4000);
        // Not 1000: the server keeps our place in a call for the new socket.
        try {
          ws.close(4000, "no answer to a ping");
        } catch {}
        this.kick();
      }, ms);
      this.request({ type: "ping" }).then(
        () => { clearTimeout(timer); resolve(true); },
        () => { clearTimeout(timer); resolve(false); },
      );
    });
  }

  retry() {
    if (this.stopped) return;
    const delay = Math.min(10_000, 500 * 2 ** this.attempt) * (0.75 + Math.random() / 2);
    this.attempt++;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /// Reconnects now (used when the page comes back online).
  kick() {
    if (!this.ws && !this.stopped) {
      this.attempt = 0;
      clearTimeout(this.retryTimer);
      this.connect();
    }
  }

  receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame.type === "ack" || frame.type === "nack" || frame.type === "pong") {
      const p = this.pending.get(frame.id);
      if (!p) return;
      this.pending.delete(frame.id);
      if (frame.type === "nack") p.reject(Object.assign(new Error(frame.message), { code: frame.code }));
      else p.resolve(frame.result || {});
      return;
    }
    if (frame.room_id && typeof frame.seq === "number") {
      const held = this.seqs.get(frame.room_id) || 0;
      if (frame.seq > held) this.seqs.set(frame.room_id, frame.seq);
    }
    if (frame.type === "room.deleted" || (frame.type === "room.member_left" && frame.user_id === session.user?.id)) {
      this.seqs.delete(frame.room_id);
    }
    this.emit("frame", frame);
  }

  /// Sends a request; the promise settles with its `ack` result or rejects
  /// with the `nack`. With `retry`, a request made while disconnected waits
  /// for the connection, and one in flight is sent again after a reconnect
  /// (only for idempotent requests).
  request(frame, { retry = false } = {}) {
    const id = String(this.nextId++);
    return new Promise((resolve, reject) => {
      if (!this.ready && !retry) {
        reject(Object.assign(new Error("disconnected"), { code: "disconnected" }));
        return;
      }
      this.pending.set(id, { frame, resolve, reject, retry });
      if (this.ready) this.ws.send(JSON.stringify({ ...frame, id }));
    });
  }
}
