// The demo page: plain JavaScript against the service's own API (no libraries, works offline).
"use strict";

const $ = (id) => document.getElementById(id);
// configLoaded: the server's fusion and weights are shown; touched: the user changed one. Until one of
// them holds, searches send no fusion or weights, so the server's own settings apply (never the HTML defaults).
const state = { branches: [], weights: {}, enabled: {}, timer: null, seq: 0, rerank: false, configLoaded: false, touched: false };

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value;
  if (key) h["X-API-Key"] = key;
  return h;
}

async function call(method, path, body) {
  const res = await fetch(path, { method, headers: headers(), body: body ? JSON.stringify(body) : undefined });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const detail = Array.isArray(data.detail) ? data.detail.map((d) => d.loc + ": " + d.msg).join("; ") : data.detail;
    throw new Error(res.status + " " + (data.error || "") + ": " + (detail || res.statusText));
  }
  return data;
}

function showError(err) {
  $("error").hidden = !err;
  $("error").textContent = err ? String(err.message || err) : "";
}

async function init() {
  $("api-key").value = sessionStorage.getItem("hr-api-key") || "";
  try {
    const ready = await call("GET", "/ready");
    $("status").textContent = ready.documents + " documents · " + ready.store;
    state.branches = ready.branches;
  } catch (err) {
    $("status").textContent = "not ready";
    showError(err);
    return;
  }
  try {
    const cfg = await call("GET", "/config");
    for (const b of cfg.retriever.branches) state.weights[b.name || b.kind] = b.weight;
    $("method").value = cfg.retriever.fusion.method;
    $("normalization").value = cfg.retriever.fusion.normalization;
    $("k").max = cfg.server.max_k;
    state.rerank = !!cfg.rerank_available;
    $("rerank").disabled = !state.rerank;
    $("rerank").checked = state.rerank;  // a server with a rerank stage reranks by default
    $("rerank-note").textContent = state.rerank
      ? "(" + cfg.rerank.model + ", top " + cfg.rerank.depth + ")"
      : "(not on this server)";
    document.body.dataset.config = "loaded";  // the server's own weights and fusion are shown
    state.configLoaded = true;
    showError(null);
  } catch (err) {
    // e.g. no key yet: searches use the server's own fusion and weights until the key is given
    for (const b of state.branches) state.weights[b] = 1;
    state.configLoaded = false;
    document.body.dataset.config = "missing";
    $("summary").textContent = String(err.message || err).startsWith("401")
      ? "Enter the API key to load the server's fusion settings; until then searches use them unchanged."
      : "The server's settings could not be loaded; searches use them unchanged.";
  }
  renderBranchControls();
}

function renderBranchControls() {
  const box = $("branches");
  box.textContent = "";
  for (const b of state.branches) {
    state.enabled[b] = state.enabled[b] ?? true;
    const wrap = document.createElement("span");
    wrap.className = "branch-control";
    const label = document.createElement("label");
    const check = document.createElement("input");
    check.type = "checkbox";
    check.id = "use-" + b;
    label.append(check, " " + b + " ");
    const slider = document.createElement("input");
    Object.assign(slider, { type: "range", id: "weight-" + b, min: "0", max: "1", step: "0.05" });
    const shown = document.createElement("span");
    shown.id = "weight-" + b + "-value";
    wrap.append(label, slider, " ", shown);
    box.appendChild(wrap);
    check.checked = state.enabled[b];
    slider.value = state.weights[b] ?? 1;
    $("weight-" + b + "-value").textContent = Number(slider.value).toFixed(2);
    check.addEventListener("change", () => { state.enabled[b] = check.checked; state.touched = true; schedule(0); });
    slider.addEventListener("input", () => {
      state.weights[b] = Number(slider.value);
      state.touched = true;
      $("weight-" + b + "-value").textContent = Number(slider.value).toFixed(2);
      schedule(150);
    });
  }
}

function schedule(delay) {
  clearTimeout(state.timer);
  state.timer = setTimeout(search, delay);
}

async function search() {
  const query = $("query").value.trim();
  if (!query) return;
  const weights = {};
  for (const b of state.branches) weights[b] = state.enabled[b] ? (state.weights[b] ?? 1) : 0;
  const body = { query, k: Number($("k").value) || 10 };
  if (state.configLoaded || state.touched) {  // else the server's own fusion and weights
    body.fusion = { method: $("method").value, normalization: $("normalization").value };
    body.weights = weights;
  }
  if (state.rerank) body.rerank = $("rerank").checked;  // only a server with a rerank stage takes true
  if ($("group").checked) body.group_by = "source";  // one hit per file: its best chunk
  const seq = ++state.seq;
  try {
    const res = await call("POST", "/search", body);
    if (seq !== state.seq) return;  // a newer request is on its way
    showError(null);
    render(res);
  } catch (err) {
    if (seq === state.seq) showError(err);
  }
}

function fmt(x) { return x === null || x === undefined ? "–" : Number(x).toFixed(3); }

function bar(value, max, cls) {
  const d = document.createElement("div");
  d.className = "bar" + (cls ? " " + cls : "");
  const s = document.createElement("span");
  s.style.width = Math.max(0, Math.min(1, max > 0 ? value / max : 0)) * 100 + "%";
  d.appendChild(s);
  return d;
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function render(res) {
  const head = $("results-head"), body = $("results-body");
  head.textContent = "";
  body.textContent = "";
  const columns = ["#", "id", res.reranked ? "final" : "fused"]
    .concat(res.branches.map((b) => b + " (w " + res.weights[b].toFixed(2) + ")"))
    .concat(res.reranked ? ["rerank"] : [], ["text"]);
  for (const c of columns) { const th = document.createElement("th"); th.textContent = c; head.appendChild(th); }
  const top = res.hits.length ? res.hits[0].score : 0;
  for (const h of res.hits) {
    const tr = document.createElement("tr");
    tr.dataset.id = h.id;
    cell(tr, h.rank, "num");
    const idCell = cell(tr, h.id, "doc-id");
    if (h.group) {
      const g = document.createElement("div");
      g.className = "dim group";
      g.textContent = h.group.matched + " of its chunks matched (ranks " + h.group.ranks.join(", ") + ")";
      idCell.appendChild(g);
    }
    const fused = cell(tr, fmt(h.score), "num fused");
    fused.appendChild(bar(h.score, top, "fused"));
    for (const b of res.branches) {
      const p = h.provenance[b] || {};
      const text = fmt(p.raw) + (p.completed ? "*" : "") + "  #" + (p.rank ?? "–");
      const td = cell(tr, text, "num branch branch-" + b + (res.weights[b] === 0 ? " off" : ""));
      td.dataset.raw = p.raw ?? "";
      td.dataset.rank = p.rank ?? "";
      td.appendChild(bar(p.normalized ?? 0, 1));
    }
    if (res.reranked) {
      const rr = h.rerank || {};
      const text = fmt(rr.raw) + "  #" + (rr.rank ?? "–") + (rr.fused_rank ? "  (fused #" + rr.fused_rank + ")" : "");
      const td = cell(tr, text, "num branch rerank" + (rr.error ? " off" : ""));
      td.dataset.raw = rr.raw ?? "";
      td.dataset.rank = rr.rank ?? "";
      td.dataset.fusedRank = rr.fused_rank ?? "";
      if (rr.error) td.title = rr.error;
      td.appendChild(bar(rr.normalized ?? 0, 1, "rerank"));
    }
    cell(tr, h.text.length > 220 ? h.text.slice(0, 219) + "…" : h.text, "doc-text");
    body.appendChild(tr);
  }
  $("results").hidden = false;
  $("summary").textContent = res.hits.length + (res.hits.length && res.hits[0].group ? " sources in " : " hits in ") + res.took_ms.toFixed(1) + " ms · " +
    res.fusion.method + (res.fusion.method === "rrf" ? " (k=" + res.fusion.rrf_k + ")" : " (" + res.fusion.normalization + ")") +
    (res.reranked ? " · reranked" : "");
}

async function addDocument(ev) {
  ev.preventDefault();
  let metadata = {};
  try {
    metadata = $("doc-meta").value.trim() ? JSON.parse($("doc-meta").value) : {};
  } catch (err) {
    $("add-result").textContent = "metadata is not valid JSON";
    return;
  }
  try {
    const res = await call("POST", "/documents", { documents: [{ id: $("doc-id").value, text: $("doc-text").value, metadata }] });
    $("add-result").textContent = "added " + res.ids.join(", ") + "; the index holds " + res.count + " documents";
    $("status").textContent = res.count + " documents";
    schedule(0);
  } catch (err) {
    $("add-result").textContent = String(err.message || err);
  }
}

$("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); schedule(0); });
$("query").addEventListener("input", () => schedule(300));
$("k").addEventListener("change", () => schedule(0));
$("method").addEventListener("change", () => { state.touched = true; schedule(0); });
$("normalization").addEventListener("change", () => { state.touched = true; schedule(0); });
$("group").addEventListener("change", () => schedule(0));
$("rerank").addEventListener("change", () => schedule(0));
$("api-key").addEventListener("change", () => { sessionStorage.setItem("hr-api-key", $("api-key").value); init(); });
$("add-form").addEventListener("submit", addDocument);
init();
