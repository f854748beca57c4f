// The REST API and the session: tokens live in localStorage so a reload
// stays signed in; refreshes are serialised across tabs with a Web Lock, as
// each refresh token works once and a second use revokes the whole session.

const KEY = "roost.session";
// Refresh this long before the access token expires: a minute, or a quarter
// of the token's life when the server hands out short ones.
const early = (s) => Math.min(60_000, (s.access_ttl_ms || 900_000) / 4);

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

function load() {
  try {
    return JSON.parse(localStorage.getItem(KEY) || "null");
  } catch {
    return null;
  }
}

function store(session) {
  if (session) localStorage.setItem(KEY, JSON.stringify(session));
  else localStorage.removeItem(KEY);
}

function fromAuth(body, user) {
  return {
    user: body.user || user,
    access_token: body.access_token,
    access_expires_at: Date.now() + body.expires_in * 1000,
    access_ttl_ms: body.expires_in * 1000,
    refresh_token: body.refresh_token,
  };
}

async function parse(res) {
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!res.ok) {
    const e = (body && body.error) || {};
    throw new ApiError(res.status, e.code || "http_" + res.status, e.message || res.statusText, e.details);
  }
  return body;
}

async function post(path, body) {
  const res = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return parse(res);
}

function withLock(fn) {
  if (navigator.locks) return navigator.locks.request("roost.refresh", fn);
  return fn();
}

export const session = {
  listeners: new Set(),

  get user() {
    return load()?.user || null;
  },

  get signedIn() {
    return !!load();
  },

  onChange(fn) {
    this.listeners.add(fn);
  },

  changed() {
    for (const fn of this.listeners) fn(this.user);
  },

  async register(email, username, password, display_name) {
    const body = { email, username, password };
    if (display_name) body.display_name = display_name;
    store(fromAuth(await post("/v1/auth/register", body)));
    this.changed();
  },

  async login(email, password) {
    store(fromAuth(await post("/v1/auth/login", { email, password })));
    this.changed();
  },

  async logout() {
    const s = load();
    if (s) {
      try {
        await fetch("/v1/auth/logout", { method: "POST", headers: { authorization: "Bearer " + s.access_token } });
      } catch {
        // Signed out here whatever the server says.
      }
    }
    store(null);
    this.changed();
  },

  /// A valid access token, refreshed first when it is about to expire (or
  /// when `force`, after the server called it expired).
  async token(force = false) {
    const before = load();
    if (!before) throw new ApiError(401, "unauthorized", "signed out");
    if (!force && before.access_expires_at - Date.now() > early(before)) return before.access_token;
    return withLock(async () => {
      const s = load();
      if (!s) throw new ApiError(401, "unauthorized", "signed out");
      // Another tab may have refreshed while this one waited for the lock.
      if (s.access_token !== before.access_token || (!force && s.access_expires_at - Date.now() > early(s))) {
        return s.access_token;
      }
      try {
        const body = await post("/v1/auth/refresh", { refresh_token: s.refresh_token });
        const next = fromAuth(body, s.user);
        store(next);
        return next.access_token;
      } catch (e) {
        if (e.status === 401) {
          store(null);
          this.changed();
        }
        throw e;
      }
    });
  },

  /// When the current access token needs refreshing, in ms from now.
  refreshDue() {
    const s = load();
    return s ? Math.max(1_000, s.access_expires_at - Date.now() - early(s)) : null;
  },

  setUser(user) {
    const s = load();
    if (s) store({ ...s, user });
  },
};

/// An authenticated request; a 401 `token_expired` refreshes once and retries.
export async function api(method, path, body) {
  for (let attempt = 0; ; attempt++) {
    const token = await session.token(attempt > 0);
    const headers = { authorization: "Bearer " + token };
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    try {
      return await parse(res);
    } catch (e) {
      if (attempt === 0 && e.status === 401 && e.code === "token_expired") continue;
      if (e.status === 401 && (e.code === "session_revoked" || e.code === "unauthorized")) {
        store(null);
        session.changed();
      }
      throw e;
    }
  }
}

/// Uploads a file as a raw body, reporting progress (0..1) as it goes.
export async function upload(file, onProgress) {
  const token = await session.token();
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/files?name=" + encodeURIComponent(file.name || "pasted"));
    xhr.setRequestHeader("authorization", "Bearer " + token);
    xhr.setRequestHeader("content-type", file.type || "application/octet-stream");
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else {
        const e = (body && body.error) || {};
        reject(new ApiError(xhr.status, e.code || "http_" + xhr.status, e.message || "upload failed"));
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "network", "the upload broke off")));
    xhr.send(file);
  });
}

const blobs = new Map();

/// Forgets the downloads of the user who signed out.
export function clearBlobs() {
  for (const p of blobs.values()) p.then((u) => URL.revokeObjectURL(u), () => {});
  blobs.clear();
}

/// A blob URL for a download (which needs the bearer token), cached per URL.
export function blobUrl(url) {
  if (!blobs.has(url)) {
    const p = (async () => {
      const token = await session.token();
      const res = await fetch(url, { headers: { authorization: "Bearer " + token } });
      if (!res.ok) throw new ApiError(res.status, "download_failed", "download failed");
      return URL.createObjectURL(await res.blob());
    })();
    p.catch(() => blobs.delete(url));
    blobs.set(url, p);
  }
  return blobs.get(url);
}
