// The search page: plain JS, no build step. Talks to the same /v1 API as every other client.
"use strict";

const $ = (id) => document.getElementById(id);
let labelValues = {};
let maxK = null; // the service's limit (GET /v1/info); the page never asks for more

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

function showLatency(started, body) {
  const total = performance.now() - started;
  const server = body && typeof body.took_ms === "number" ? `, server ${body.took_ms.toFixed(1)} ms` : "";
  $("latency").textContent = `latency ${total.toFixed(1)} ms${server}`;
}

function filter() {
  const level = $("filter-level").value, value = $("filter-value").value;
  return level && value ? { [level]: value } : null;
}

function k() {
  const value = parseInt($("k").value, 10);
  const wanted = Number.isFinite(value) && value > 0 ? value : 12;
  return maxK ? Math.min(wanted, maxK) : wanted;
}

async function call(url, options) {
  const started = performance.now();
  const response = await fetch(url, options);
  const body = await response.json().catch(() => null);
  showLatency(started, body);
  if (!response.ok) {
    throw new Error(body && body.detail ? `${body.title}: ${body.detail}` : `HTTP ${response.status}`);
  }
  return body;
}

function meta(hit) {
  const el = document.createElement("div");
  el.className = "meta";
  el.textContent = `${hit.score.toFixed(3)} · ${hit.labels.join(" › ")}`;
  return el;
}

// What found a hybrid hit: the picture (vector), its words' meaning (caption), its words
// themselves (lexical). A signal that did not propose the hit has no score and no badge.
const SIGNAL_NAMES = { vector: "picture", caption: "meaning", lexical: "words" };

function signalBadges(hit) {
  const el = document.createElement("div");
  el.className = "signals";
  for (const [signal, score] of Object.entries(hit.signals || {})) {
    if (score === null || (signal === "lexical" && score <= 0)) continue;
    const badge = document.createElement("span");
    badge.className = `signal signal-${signal}`;
    badge.textContent = SIGNAL_NAMES[signal] || signal;
    badge.title = `${signal} score ${score.toFixed(3)}`;
    el.append(badge);
  }
  return el;
}

// An image hit's name: its own text where the index stores one, else a "name" in its metadata.
function hitName(hit) {
  if (hit.text) return hit.text;
  return hit.metadata && typeof hit.metadata.name === "string" ? hit.metadata.name : "";
}

function renderImages(hits) {
  const grid = $("results-images");
  grid.replaceChildren(...hits.map((hit) => {
    const card = document.createElement("figure");
    card.className = "result";
    card.dataset.id = hit.id;
    const img = document.createElement("img");
    img.src = hit.url;
    const name = hitName(hit);
    img.alt = name || hit.labels.join(", ") || `item ${hit.id}`;
    img.loading = "lazy";
    card.append(img);
    if (name) {
      const caption = document.createElement("figcaption");
      caption.className = "name";
      caption.textContent = name;
      card.append(caption);
    }
    card.append(meta(hit));
    if (hit.signals) card.append(signalBadges(hit));
    return card;
  }));
  if (!hits.length) grid.textContent = "no results";
}

function renderTexts(hits) {
  const list = $("results-texts");
  list.replaceChildren(...hits.map((hit) => {
    const item = document.createElement("li");
    item.className = "result-text";
    item.dataset.id = hit.id;
    const text = document.createElement("div");
    text.textContent = hit.text;
    item.append(text, meta(hit));
    return item;
  }));
}

async function searchText(event) {
  event.preventDefault();
  showError("");
  const text = $("query").value.trim();
  if (!text) return;
  try {
    const body = await call("/v1/search/text-to-image", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text, k: k(), labels: filter(), mode: "hybrid", explain: true }),
    });
    renderImages(body.results);
  } catch (err) {
    showError(err.message);
  }
}

async function searchImage(file) {
  showError("");
  if (!file) return;
  $("preview").src = URL.createObjectURL(file);
  $("preview").hidden = false;
  const form = new FormData();
  form.append("file", file);
  form.append("k", String(k()));
  const labels = filter();
  if (labels) form.append("labels", JSON.stringify(labels));
  try {
    const body = await call("/v1/search/image-to-text", { method: "POST", body: form });
    renderTexts(body.results);
  } catch (err) {
    showError(err.message);
  }
}

function fillValues() {
  const level = $("filter-level").value;
  const select = $("filter-value");
  const options = [new Option("any", "")].concat((labelValues[level] || []).map((v) => new Option(v, v)));
  select.replaceChildren(...options);
  select.disabled = !level;
}

async function loadInfo() {
  try {
    const info = await (await fetch("/v1/info")).json();
    labelValues = info.label_values || {};
    $("filter-level").append(...info.levels.map((level) => new Option(level, level)));
    $("served").textContent =
      `${info.items.image} images and ${info.items.text} texts · ${info.method} checkpoint ${info.checkpoint_id}`;
    maxK = info.max_k;
    $("k").max = maxK;
    $("k").value = String(k());
  } catch (err) {
    $("served").textContent = "service not ready";
  }
}

function wireDropzone() {
  const zone = $("dropzone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    searchImage(e.dataTransfer.files[0]);
  });
  $("file-input").addEventListener("change", (e) => searchImage(e.target.files[0]));
}

document.addEventListener("DOMContentLoaded", () => {
  $("search-form").addEventListener("submit", searchText);
  $("filter-level").addEventListener("change", fillValues);
  wireDropzone();
  loadInfo();
});
