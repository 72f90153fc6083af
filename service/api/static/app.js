// The review page of ccrl: a class's top indexed segments and review queue, labels by reference.
// Plain browser JavaScript, no build step; it calls nothing but this service's API.
"use strict";

const TOKEN_KEY = "ccrl-token";
const CLASS_KEY = "ccrl-class";
const state = { prevRanks: new Map(), prevClass: null, marked: new Map() };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null) node.append(c);
  return node;
}

function setStatus(text, isError = false) {
  const s = $("status");
  s.textContent = text;
  s.className = isError ? "error" : "muted";
}

async function api(path, options = {}) {
  const resp = await fetch(path, options);
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    const detail = body && body.detail ? body.detail : resp.statusText;
    throw new Error(`${resp.status}: ${detail}`);
  }
  return body;
}

// ------------------------------------------------------------------ token (entered once)
function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function showToken() {
  $("token-state").textContent = token() ? "token set for this tab" : "no token";
}

function saveToken(event) {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  showToken();
}

// ------------------------------------------------------------------ classes
async function loadClasses() {
  const data = await api("/classes");
  const select = $("class-select");
  select.replaceChildren();
  for (const c of data.classes) {
    const label = `${c.class_id}: ${c.name} (+${c.bank.positive} / -${c.bank.negative})`;
    select.append(el("option", { value: String(c.class_id), text: label }));
  }
  const wanted = new URLSearchParams(location.hash.slice(1)).get("class")
    || sessionStorage.getItem(CLASS_KEY);
  if (wanted !== null && select.querySelector(`option[value="${wanted}"]`)) select.value = wanted;
}

function currentClass() { return Number($("class-select").value); }

// ------------------------------------------------------------------ rows
function segmentText(s) { return `${s.video_id} · ${s.start}–${s.end}`; }
function member(s) { return `${s.video_id}:${s.start}`; }

function scoreCell(score, scale) {
  const bar = el("span", { class: "bar" });
  bar.style.width = `${Math.max(0, Math.min(1, score / scale)) * 4}rem`;
  return el("td", { class: "num" }, score.toFixed(4), bar);
}

function markButtons(s, enabled) {
  const cell = el("td", { class: "num" });
  const done = state.marked.get(`${currentClass()}|${member(s)}`);
  for (const [label, text, cls] of [[1, "+", "pos"], [0, "−", "neg"]]) {
    const b = el("button", {
      type: "button",
      class: `mark ${cls}${done === label ? " done" : ""}`,
      title: enabled ? (label ? "mark positive" : "mark negative")
        : "embedding not kept: label it with its frames",
      "data-label": String(label),
      onclick: () => mark(s, label),
    }, text);
    b.disabled = !enabled;
    cell.append(b);
  }
  return cell;
}

function moveCell(m, rank) {
  if (state.prevClass !== currentClass()) return el("td");
  const before = state.prevRanks.get(m);
  if (before === undefined) return el("td", { class: "new", text: "new" });
  const d = before - rank;
  if (d > 0) return el("td", { class: "up", text: `▲${d}` });
  if (d < 0) return el("td", { class: "down", text: `▼${-d}` });
  return el("td", { class: "muted", text: "=" });
}

function evidenceBlock(ev) {
  const box = el("details", { class: "evidence" }, el("summary", {
    text: `why: margin ${ev.margin.toFixed(3)} = bias ${ev.bias.toFixed(3)} + features`,
  }));
  const grid = el("div", { class: "contrib" });
  const scale = Math.max(...ev.contributions.map((c) => Math.abs(c.contribution)), 1e-9);
  for (const c of ev.contributions) {
    const bar = el("span", { class: `bar ${c.contribution >= 0 ? "plus" : "minus"}` });
    bar.style.width = `${(Math.abs(c.contribution) / scale) * 6}rem`;
    const value = c.value === null ? "missing" : c.value.toPrecision(3);
    grid.append(el("span", { text: `${c.feature} = ${value}` }),
      el("span", { class: "num", text: c.contribution.toFixed(3) }), bar);
  }
  grid.append(el("span", { class: "muted", text: "other features" }),
    el("span", { class: "num", text: ev.rest.toFixed(3) }), el("span"));
  box.append(grid);
  for (const [kind, list] of [["positives", ev.neighbours.positive],
    ["negatives", ev.neighbours.negative]]) {
    const items = list.map((n) => `${n.video_id}:${n.start} (cos ${n.cosine.toFixed(3)})`);
    box.append(el("p", { class: "near", text: `nearest labelled ${kind}: ${items.join(", ") || "none"}` }));
  }
  return box;
}

function renderTop(data) {
  const body = $("top-table").querySelector("tbody");
  body.replaceChildren();
  const scale = Math.max(...data.segments.map((s) => Math.abs(s.score)), 1e-9);
  data.segments.forEach((s, i) => {
    const m = member(s);
    const done = state.marked.get(`${currentClass()}|${m}`);
    const row = el("tr", { "data-member": m, "data-score": String(s.score),
      class: done === undefined ? "" : `labelled-${done}` },
    el("td", { class: "num", text: String(i + 1) }), moveCell(m, i + 1),
    el("td", { text: segmentText(s) }), scoreCell(s.score, scale), markButtons(s, true));
    body.append(row);
  });
  if (!data.segments.length) body.append(el("tr", {}, el("td", { colspan: "5", class: "muted",
    text: "nothing indexed for this class yet: POST /localize with a video_id" })));
  state.prevRanks = new Map(data.segments.map((s, i) => [member(s), i + 1]));
  state.prevClass = currentClass();
}

function renderQueue(data) {
  const body = $("queue-table").querySelector("tbody");
  body.replaceChildren();
  const scale = Math.max(...data.segments.map((s) => Math.abs(s.score)), 1e-9);
  data.segments.forEach((s, i) => {
    const seg = el("td", { text: segmentText(s) });
    if (s.evidence) seg.append(evidenceBlock(s.evidence));
    body.append(el("tr", { "data-member": member(s), "data-score": String(s.score) },
      el("td", { class: "num", text: String(i + 1) }), seg, scoreCell(s.score, scale),
      el("td", { class: "num", text: s.margin.toFixed(3) }), markButtons(s, s.kept)));
  });
  if (!data.segments.length) body.append(el("tr", {}, el("td", { colspan: "5", class: "muted",
    text: "no unlabelled segment to review" })));
  $("bank-counts").textContent =
    `bank: ${data.bank.positive} positive, ${data.bank.negative} negative`;
}

// ------------------------------------------------------------------ actions
async function refresh() {
  const c = currentClass();
  sessionStorage.setItem(CLASS_KEY, String(c));
  const strategy = $("strategy").value;
  const [top, queue] = await Promise.all([
    api(`/classes/${c}/top-segments?limit=15`),
    api(`/classes/${c}/review?limit=10&explain=true&strategy=${strategy}`),
  ]);
  renderTop(top);
  renderQueue(queue);
  return { top, queue };
}

async function mark(s, label) {
  const c = currentClass();
  if (!token()) { setStatus("enter the API token first (labels need it)", true); return; }
  setStatus(`labelling ${member(s)}…`);
  try {
    const out = await api(`/classes/${c}/labels`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token()}` },
      body: JSON.stringify({ video_id: s.video_id, segments: [{ start: s.start, label }] }),
    });
    state.marked.set(`${c}|${member(s)}`, label);
    const option = $("class-select").querySelector(`option[value="${c}"]`);
    if (option) {
      option.textContent = option.textContent.replace(/\(\+\d+ \/ -\d+\)$/,
        `(+${out.bank.positive} / -${out.bank.negative})`);
    }
    await refresh();
    const rescored = out.rescored === undefined ? "none" : out.rescored;
    setStatus(`labelled ${member(s)} ${label ? "positive" : "negative"}: bank ` +
      `${out.bank.positive}+ / ${out.bank.negative}−, ${rescored} kept segments re-scored`);
  } catch (e) {
    setStatus(`label not stored: ${e.message}`, true);
  }
}

async function reload() {
  try {
    await refresh();
    setStatus(`class ${currentClass()} loaded`);
  } catch (e) {
    setStatus(`could not load: ${e.message}`, true);
  }
}

async function start() {
  $("token-form").addEventListener("submit", saveToken);
  $("class-select").addEventListener("change", reload);
  $("strategy").addEventListener("change", reload);
  $("refresh").addEventListener("click", reload);
  showToken();
  try {
    await loadClasses();
  } catch (e) {
    setStatus(`could not list the classes: ${e.message}`, true);
    return;
  }
  await reload();
}

document.addEventListener("DOMContentLoaded", start);
