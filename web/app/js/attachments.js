// Files in the room view: uploads from the picker, a paste or a drop (with
// progress), image thumbnails and the lightbox, file cards with a download.
// Downloads need the bearer token, so they are fetched and shown as blob URLs.

import { upload, blobUrl } from "./api.js";
import { h, $, formatSize } from "./dom.js";

/// Wires the picker, paste and drop. `target()` names the room files go to
/// (or null), `sent(roomId, fileId)` sends the message that carries one.
export function wireUploads({ target, sent, failed }) {
  async function attach(files) {
    const roomId = target();
    if (!roomId) return;
    for (const file of files) {
      const bar = h("progress", { max: "1", value: "0", "aria-label": "Uploading " + (file.name || "file") });
      const row = h("li", {}, h("span", {}, file.name || "pasted file"), bar);
      $("#uploads").append(row);
      try {
        const stored = await upload(file, (p) => (bar.value = p));
        sent(roomId, stored.id);
      } catch (e) {
        failed(e);
      } finally {
        row.remove();
      }
    }
  }

  $("#file-input").addEventListener("change", (e) => {
    attach([...e.target.files]);
    e.target.value = "";
  });

  $("#composer-input").addEventListener("paste", (e) => {
    const files = [...(e.clipboardData?.files || [])];
    if (files.length) {
      e.preventDefault();
      attach(files);
    }
  });

  let dragDepth = 0;
  const room = $("#room");
  room.addEventListener("dragenter", (e) => {
    if (![...e.dataTransfer.types].includes("Files")) return;
    dragDepth++;
    $("#drop-hint").hidden = false;
  });
  room.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) $("#drop-hint").hidden = true;
  });
  room.addEventListener("dragover", (e) => e.preventDefault());
  room.addEventListener("drop", (e) => {
    e.preventDefault();
    dragDepth = 0;
    $("#drop-hint").hidden = true;
    attach([...e.dataTransfer.files]);
  });

  $("#lightbox").addEventListener("click", (e) => {
    if (e.target === $("#lightbox")) $("#lightbox").close();
  });
}

/// An attachment in a message: a thumbnail button for images, else a card.
export function attachmentElement(a, failed) {
  if (a.thumbnail) {
    const img = h("img", { alt: a.name, width: String(a.thumbnail.width), height: String(a.thumbnail.height) });
    blobUrl(a.thumbnail.url).then((u) => (img.src = u), () => (img.alt = a.name + " (could not load)"));
    return h("button", { type: "button", class: "thumb", "aria-label": "Open image " + a.name, onclick: () => openImage(a, failed) }, img);
  }
  return h(
    "div",
    { class: "file-card" },
    h("div", {}, h("div", { class: "file-name" }, a.name), h("div", { class: "file-size" }, formatSize(a.size))),
    h("button", { type: "button", class: "quiet", onclick: () => download(a, failed) }, "Download"),
  );
}

async function openImage(a, failed) {
  const dialog = $("#lightbox");
  const img = $("#lightbox-img");
  img.alt = a.name;
  img.removeAttribute("src");
  dialog.showModal();
  try {
    img.src = await blobUrl(a.url);
  } catch (e) {
    failed(e);
  }
}

async function download(a, failed) {
  try {
    const url = await blobUrl(a.url);
    const link = h("a", { href: url, download: a.name });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (e) {
    failed(e);
  }
}
