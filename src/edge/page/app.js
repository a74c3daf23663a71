// InsPro Edge's page: cameras with live view and their detect switch, the event list with
// filters, a track's detail. Plain JavaScript against the JSON API (docs/api.md); the token, when
// the daemon wants one, comes from `?token=` once and is kept in localStorage.
"use strict";
const params = new URLSearchParams(location.search);
if (params.get("token")) localStorage.setItem("inspro-token", params.get("token"));
const token = () => localStorage.getItem("inspro-token") || "";
const withToken = (url) => token() ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token()) : url;

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token()) headers["Authorization"] = "Bearer " + token();
  const r = await fetch(path, Object.assign({}, options, { headers }));
  if (r.status === 401) {
    const t = prompt("This InsPro Edge needs its API token");
    if (t) { localStorage.setItem("inspro-token", t); location.reload(); }
    throw new Error("unauthorized");
  }
  if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
  return r.json();
}

const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
};
// Live streams never finish loading: they start after the page's load event, so the page is
// "loaded" (no endless spinner) and the stream does not hold it up.
const loaded = new Promise((r) => document.readyState === "complete" ? r() : addEventListener("load", r));
const time = (t) => t == null ? "" : new Date(t * 1000).toLocaleString();

const cards = new Map();
async function refreshCameras() {
  let cams;
  try { cams = await api("/api/cameras"); } catch (e) { return; }
  const grid = document.getElementById("cameras");
  const select = document.getElementById("filter-camera");
  for (const c of cams) {
    let card = cards.get(c.name);
    if (!card) {
      const img = el("img", { class: "live", alt: c.name + " live" });
      loaded.then(() => { img.src = withToken("/api/" + encodeURIComponent(c.name) + "/live"); });
      const detect = el("input", { type: "checkbox", class: "detect" });
      detect.addEventListener("change", async () => {
        detect.disabled = true;
        try {
          await api("/api/cameras/" + encodeURIComponent(c.name) + "/detect", { method: "POST", body: detect.checked ? "ON" : "OFF" });
        } finally { detect.disabled = false; }
      });
      const status = el("span", { class: "status" });
      const fps = el("span", { class: "muted fps" });
      card = el("div", { class: "camera", "data-camera": c.name }, img,
        el("div", { class: "bar" }, el("span", { class: "name" }, c.name), status, fps,
          el("label", {}, detect, " detect")));
      card.parts = { detect, status, fps };
      cards.set(c.name, card);
      grid.append(card);
      select.append(el("option", { value: c.name }, c.name));
    }
    card.parts.status.textContent = c.status;
    card.parts.status.className = "status status-" + c.status;
    card.parts.fps.textContent = c.fps.toFixed(1) + " fps";
    if (!card.parts.detect.disabled) card.parts.detect.checked = c.detect;
  }
}

function filterQuery() {
  const q = new URLSearchParams({ limit: "200" });
  const v = (id) => document.getElementById(id).value.trim();
  if (v("filter-camera")) q.set("camera", v("filter-camera"));
  if (v("filter-label")) q.set("label", v("filter-label"));
  if (v("filter-zone")) q.set("zone", v("filter-zone"));
  for (const [id, key] of [["filter-after", "after"], ["filter-before", "before"]]) {
    if (v(id)) q.set(key, String(new Date(v(id)).getTime() / 1000));
  }
  return q.toString();
}

let selected = null;
async function refreshEvents() {
  let rows;
  try { rows = await api("/api/events?" + filterQuery()); } catch (e) { return; }
  const body = document.querySelector("#events tbody");
  body.replaceChildren(...rows.map((r) => {
    const tr = el("tr", { "data-id": r.id, "data-camera": r.camera, "data-label": r.label },
      el("td", {}, time(r.start_time)), el("td", {}, r.camera), el("td", { class: "label" }, r.label),
      el("td", {}, r.score.toFixed(2)), el("td", {}, r.end_reason || "live"));
    if (r.id === selected) tr.classList.add("selected");
    tr.addEventListener("click", () => showDetail(r.id));
    return tr;
  }));
  // The open detail follows its track (its end, then its clip).
  if (selected && !document.getElementById("detail").hidden) showDetail(selected);
}

async function showDetail(id) {
  selected = id;
  let r;
  try { r = await api("/api/events/" + encodeURIComponent(id)); } catch (e) { return; }
  document.getElementById("detail").hidden = false;
  document.getElementById("detail-title").textContent = r.camera + " · " + r.label + " #" + r.track_id;
  const base = "/api/events/" + encodeURIComponent(id);
  const img = document.querySelector("#detail img.snapshot");
  if (img.dataset.id !== id) {
    img.dataset.id = id;
    // A track born a moment ago may not have its snapshot on disk yet: one more try.
    img.onerror = () => { img.onerror = null; setTimeout(() => { if (selected === id) img.src = withToken(base + "/snapshot.jpg?retry=1"); }, 1500); };
    img.src = withToken(base + "/snapshot.jpg");
  }
  // The clip, once its track ended and it is written.
  const video = document.querySelector("#detail video.clip");
  video.hidden = !r.has_clip;
  if (r.has_clip) {
    const src = withToken(base + "/clip");
    if (video.dataset.src !== src) { video.dataset.src = src; video.src = src; }
  } else if (video.dataset.src) { video.removeAttribute("src"); delete video.dataset.src; video.load(); }
  const facts = [["id", r.id], ["score", r.score.toFixed(3) + " (top " + r.top_score.toFixed(3) + ")"],
    ["zones", (r.zones || []).join(", ") || "none"], ["start", time(r.start_time)],
    ["end", r.end_time ? time(r.end_time) + " (" + r.end_reason + ")" : "live"]];
  document.getElementById("detail-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  for (const tr of document.querySelectorAll("#events tbody tr")) tr.classList.toggle("selected", tr.dataset.id === id);
}

async function refreshHealth() {
  try {
    const h = await api("/api/health");
    document.getElementById("health").textContent =
      h.cameras_online + "/" + h.cameras + " cameras online · " + h.engine + (h.mqtt_connected ? " · MQTT connected" : " · MQTT down");
  } catch (e) { document.getElementById("health").textContent = "no answer"; }
}

document.getElementById("filters").addEventListener("input", refreshEvents);
document.getElementById("filters").addEventListener("submit", (e) => e.preventDefault());
refreshHealth(); refreshCameras(); refreshEvents();
setInterval(refreshHealth, 5000);
setInterval(refreshCameras, 2000);
setInterval(refreshEvents, 3000);
