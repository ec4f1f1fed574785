// rumor dashboard: polls /api/state and draws it with plain SVG (no library, no CDN).
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const POLL_MS = 1000;
const RAMP = ["#d73027", "#fc8d59", "#fee08b", "#91cf60", "#1a9850"];
const positions = new Map(); // peer index -> {x, y, vx, vy}
let lastVersion = -1;

function el(name, attrs, parent) {
  const node = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function text(id, value) {
  const node = document.getElementById(id);
  if (node && node.textContent !== String(value)) node.textContent = value;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

function fmtBytes(b) {
  if (b === null || b === undefined) return "–";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let u = 0;
  while (Math.abs(b) >= 1000 && u < units.length - 1) { b /= 1000; u++; }
  return (u === 0 ? b.toFixed(0) : b.toPrecision(3)) + " " + units[u];
}

function fmt(v, digits) {
  return v === null || v === undefined ? "–" : Number(v).toFixed(digits);
}

// ---------------------------------------------------------------- colours
function hexToRgb(h) {
  return [1, 3, 5].map(i => parseInt(h.slice(i, i + 2), 16));
}

function rampColour(t) {
  t = Math.max(0, Math.min(1, t));
  const pos = t * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(pos));
  const f = pos - i;
  const a = hexToRgb(RAMP[i]), b = hexToRgb(RAMP[i + 1]);
  const c = a.map((v, k) => Math.round(v + (b[k] - v) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

// one fixed scale, so a colour means the same accuracy on every page and every round
function accDomain() { return [0, 1]; }

// ---------------------------------------------------------------- the mesh
// Fruchterman-Reingold in unbounded coordinates (positions persist between updates, so
// the drawing moves only as much as the mesh changed); fit() maps them onto the page.
function layout(peers, edges) {
  const n = peers.length;
  const k = 40;
  peers.forEach((p, j) => {
    if (!positions.has(p.i)) {
      const a = (2 * Math.PI * j) / Math.max(1, n) - Math.PI / 2;
      const R = k * Math.sqrt(n) * 0.8;
      positions.set(p.i, { x: R * Math.cos(a), y: R * Math.sin(a) });
    }
  });
  if (n > 150) return; // a large mesh keeps its circle: O(n^2) springs would lag
  const fresh = peers.some(p => !positions.get(p.i).settled);
  const iters = fresh ? 300 : 40;
  const moving = peers.filter(p => p.state !== "killed");
  for (let it = 0; it < iters; it++) {
    const temp = (fresh ? k : k / 6) * (1 - it / iters) + 0.2;
    const disp = new Map(moving.map(p => [p.i, { x: 0, y: 0 }]));
    for (let a = 0; a < moving.length; a++) {
      const pa = positions.get(moving[a].i);
      for (let b = a + 1; b < moving.length; b++) {
        const pb = positions.get(moving[b].i);
        let dx = pa.x - pb.x, dy = pa.y - pb.y;
        const d = Math.hypot(dx, dy) || 0.01;
        const f = (k * k) / d;
        dx /= d; dy /= d;
        const da = disp.get(moving[a].i), db = disp.get(moving[b].i);
        da.x += dx * f; da.y += dy * f; db.x -= dx * f; db.y -= dy * f;
      }
    }
    for (const [a, b] of edges) {
      const da = disp.get(a), db = disp.get(b);
      if (!da || !db) continue;
      const pa = positions.get(a), pb = positions.get(b);
      let dx = pa.x - pb.x, dy = pa.y - pb.y;
      const d = Math.hypot(dx, dy) || 0.01;
      const f = (d * d) / k;
      dx /= d; dy /= d;
      da.x -= dx * f; da.y -= dy * f; db.x += dx * f; db.y += dy * f;
    }
    for (const p of moving) {
      const pos = positions.get(p.i), dv = disp.get(p.i);
      dv.x -= pos.x * 0.4; // gravity: loose peers and separate parts stay near
      dv.y -= pos.y * 0.4;
      const d = Math.hypot(dv.x, dv.y) || 0.01;
      pos.x += (dv.x / d) * Math.min(d, temp);
      pos.y += (dv.y / d) * Math.min(d, temp);
    }
  }
  peers.forEach(p => { positions.get(p.i).settled = true; });
}

// screen coordinates of every peer: the layout's bounding box fitted into W x H
function fit(peers, W, H, pad) {
  const pts = peers.map(p => positions.get(p.i));
  const xs = pts.map(p => p.x), ys = pts.map(p => p.y);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const s = Math.min((W - 2 * pad) / Math.max(1e-9, x1 - x0), (H - 2 * pad) / Math.max(1e-9, y1 - y0));
  const scale = Number.isFinite(s) && s > 0 ? Math.min(s, 4) : 1;
  const ox = W / 2 - ((x0 + x1) / 2) * scale, oy = H / 2 - ((y0 + y1) / 2) * scale;
  const out = new Map();
  peers.forEach(p => {
    const q = positions.get(p.i);
    out.set(p.i, { x: ox + q.x * scale, y: oy + q.y * scale });
  });
  return out;
}

function drawMesh(state) {
  const svg = document.getElementById("mesh");
  const W = 600, H = 560;
  const peers = state.peers, edges = state.edges;
  layout(peers, edges);
  clear(svg);
  if (!peers.length) {
    el("text", { x: W / 2, y: H / 2, class: "chart-empty" }, svg).textContent =
      "waiting for peers…";
    return;
  }
  const [lo, hi] = accDomain();
  text("ramp-lo", lo.toFixed(1));
  text("ramp-hi", hi.toFixed(1));
  const r = peers.length <= 16 ? 15 : peers.length <= 40 ? 11 : peers.length <= 120 ? 7 : 4;
  const screen = fit(peers, W, H, r + 8);
  const gEdges = el("g", { class: "edges" }, svg);
  for (const [a, b] of edges) {
    const pa = screen.get(a), pb = screen.get(b);
    if (!pa || !pb) continue;
    el("line", { x1: pa.x, y1: pa.y, x2: pb.x, y2: pb.y, class: "edge" }, gEdges);
  }
  const gNodes = el("g", { class: "nodes" }, svg);
  const order = peers.filter(p => p.state === "killed")
    .concat(peers.filter(p => p.state !== "killed")); // live peers drawn on top
  for (const p of order) {
    const pos = screen.get(p.i);
    const classes = ["node", p.state];
    if (p.byzantine) classes.push("byzantine");
    const fill = p.acc === null || p.acc === undefined
      ? "#9ca3af" : rampColour((p.acc - lo) / Math.max(1e-9, hi - lo));
    const c = el("circle", {
      cx: pos.x, cy: pos.y, r, fill, class: classes.join(" "),
      "data-peer": p.i, "data-state": p.state,
    }, gNodes);
    const tip = el("title", {}, c);
    tip.textContent = `peer ${p.label}${p.peer ? " (" + p.peer + ")" : ""}\n` +
      `state ${p.state}${p.byzantine ? ", Byzantine" : ""}\nround ${p.round}\n` +
      `accuracy ${fmt(p.acc, 4)}\nneighbours ${p.neighbours}\n` +
      `rejects ${p.rejects ?? "–"}\nbytes sent ${fmtBytes(p.bytes_sent)}`;
    if (r >= 11) {
      const t = el("text", { x: pos.x, y: pos.y, class: "node-label" }, gNodes);
      t.textContent = p.label;
    }
  }
  const alive = peers.filter(p => p.state !== "killed").length;
  text("mesh-note", `${peers.length} peers, ${edges.length} links` +
    (alive < peers.length ? `, ${peers.length - alive} killed` : ""));
}

// ---------------------------------------------------------------- charts
function niceTicks(lo, hi, count) {
  if (!(hi > lo)) { hi = lo + 1; }
  const span = hi - lo;
  const step0 = Math.pow(10, Math.floor(Math.log10(span / count)));
  const err = (count * step0) / span;
  const step = step0 * (err <= 0.15 ? 10 : err <= 0.35 ? 5 : err <= 0.75 ? 2 : 1);
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push(Number(v.toPrecision(12)));
  }
  return ticks;
}

function fmtTick(v) {
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(a >= 1e10 ? 0 : 1) + "G";
  if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
  if (a >= 1e3) return (v / 1e3).toFixed(a >= 1e4 ? 0 : 1) + "k";
  return String(Number(v.toPrecision(3)));
}

// series: [{name, colour, points: [[x, y]], band: [[x, lo, hi]], bars}]
function chart(svg, series, opts) {
  clear(svg);
  const W = 440, H = 230, m = { l: 54, r: 12, t: 28, b: 36 };
  const iw = W - m.l - m.r, ih = H - m.t - m.b;
  const xs = [], ys = [];
  for (const s of series) {
    for (const [x, y] of s.points) { if (y !== null) { xs.push(x); ys.push(y); } }
    for (const [x, lo, hi] of s.band || []) {
      if (lo !== null) { xs.push(x); ys.push(lo, hi); }
    }
  }
  if (!xs.length) {
    el("text", { x: W / 2, y: H / 2, class: "chart-empty" }, svg).textContent =
      opts.empty || "waiting for the first round…";
    return;
  }
  let x0 = Math.min(...xs, opts.xmin ?? Infinity), x1 = Math.max(...xs);
  if (x1 <= x0) x1 = x0 + 1;
  if (series.some(s => s.bars)) { x0 -= 0.5; x1 += 0.5; }
  let y0 = opts.ymin ?? Math.min(...ys), y1 = opts.ymax ?? Math.max(...ys);
  if (opts.zero) y0 = Math.min(0, y0);
  if (y1 <= y0) y1 = y0 + (Math.abs(y0) || 1) * 0.1;
  if (opts.pad) { const p = (y1 - y0) * 0.08; y1 += p; if (!opts.zero) y0 -= p; }
  const X = v => m.l + ((v - x0) / (x1 - x0)) * iw;
  const Y = v => m.t + ih - ((v - y0) / (y1 - y0)) * ih;
  const grid = el("g", { class: "grid" }, svg);
  const axis = el("g", { class: "axis" }, svg);
  for (const t of niceTicks(y0, y1, 5)) {
    if (t < y0 - 1e-12 || t > y1 + 1e-12) continue;
    el("line", { x1: m.l, x2: W - m.r, y1: Y(t), y2: Y(t) }, grid);
    el("text", { x: m.l - 6, y: Y(t) + 4, "text-anchor": "end" }, axis).textContent =
      fmtTick(t);
  }
  const xt = niceTicks(Math.max(0, x0), x1, 6).filter(t => Number.isInteger(t));
  for (const t of xt) {
    if (t < x0 || t > x1) continue;
    el("line", { x1: X(t), x2: X(t), y1: m.t + ih, y2: m.t + ih + 4 }, axis);
    el("text", { x: X(t), y: m.t + ih + 16, "text-anchor": "middle" }, axis).textContent =
      String(t);
  }
  el("line", { x1: m.l, x2: W - m.r, y1: m.t + ih, y2: m.t + ih }, axis);
  el("line", { x1: m.l, x2: m.l, y1: m.t, y2: m.t + ih }, axis);
  el("text", { x: m.l + iw / 2, y: H - 4, "text-anchor": "middle", class: "chart-title" },
     svg).textContent = opts.xlabel || "round";
  el("text", { x: 11, y: m.t + ih / 2, "text-anchor": "middle", class: "chart-title",
               transform: `rotate(-90 11 ${m.t + ih / 2})` }, svg).textContent =
    opts.ylabel || "";
  for (const r of opts.markers || []) {
    if (r < x0 || r > x1) continue;
    el("line", { x1: X(r), x2: X(r), y1: m.t, y2: m.t + ih, class: "marker" }, svg);
  }
  for (const s of series) {
    if (s.band && s.band.length) {
      const ok = s.band.filter(b => b[1] !== null && b[2] !== null);
      const d = ok.map((b, k) => `${k ? "L" : "M"}${X(b[0])},${Y(b[2])}`).join("") +
        ok.slice().reverse().map(b => `L${X(b[0])},${Y(b[1])}`).join("") + "Z";
      el("path", { d, class: "band", fill: s.bandColour || "rgba(37,99,235,0.16)" }, svg);
    }
    if (s.bars) {
      const bw = Math.max(1, Math.min(18, (iw / Math.max(1, s.points.length)) * 0.7));
      for (const [x, y] of s.points) {
        if (y === null) continue;
        el("rect", { x: X(x) - bw / 2, y: Y(y), width: bw, height: Y(y0) - Y(y),
                     fill: s.colour, class: "bar" }, svg);
      }
    } else {
      const pts = s.points.filter(p => p[1] !== null);
      if (pts.length) {
        el("path", { d: pts.map((p, k) => `${k ? "L" : "M"}${X(p[0])},${Y(p[1])}`).join(""),
                     class: "series", stroke: s.colour }, svg);
        if (pts.length < 40) {
          for (const p of pts) el("circle", { cx: X(p[0]), cy: Y(p[1]), r: 2.4,
                                              fill: s.colour }, svg);
        }
      }
    }
  }
  // legend, top right
  let lx = W - m.r - 4;
  const entries = [];
  for (const s of series) {
    entries.push([s.name, s.colour, s.bars ? "bar" : "line"]);
    if (s.band && s.bandName) entries.push([s.bandName, s.bandColour, "band"]);
  }
  if ((opts.markers || []).length) entries.push(["timeline event", "#dc2626", "marker"]);
  for (const [name, colour, kind] of entries.reverse()) {
    const t = el("text", { x: lx, y: 15, "text-anchor": "end", class: "legend-text" }, svg);
    t.textContent = name;
    let w = name.length * 6.5;
    try { w = t.getComputedTextLength() || w; } catch (e) { /* not laid out yet */ }
    lx -= w + 4;
    if (kind === "band") {
      el("rect", { x: lx - 14, y: 6, width: 14, height: 10, fill: colour }, svg);
    } else if (kind === "bar") {
      el("rect", { x: lx - 11, y: 6, width: 10, height: 10, fill: colour }, svg);
    } else if (kind === "marker") {
      el("line", { x1: lx - 6, x2: lx - 6, y1: 3, y2: 19, class: "marker" }, svg);
    } else {
      el("line", { x1: lx - 16, x2: lx - 2, y1: 11, y2: 11, stroke: colour,
                   "stroke-width": 2.4 }, svg);
    }
    lx -= 30;
  }
}

function drawCharts(state) {
  const rows = state.rows;
  // an event that came after round r completed happened during round r + 1
  const markers = [...new Set(state.events
    .filter(e => e.event !== "go" && e.round !== null).map(e => e.round + 0.5))];
  chart(document.getElementById("acc-chart"), [{
    name: "mean", colour: "#2563eb",
    points: rows.map(r => [r.round, r.acc_mean]),
    band: rows.map(r => [r.round, r.acc_min, r.acc_max]),
    bandName: "min–max over peers", bandColour: "rgba(37,99,235,0.16)",
  }], { ylabel: "test accuracy", ymin: 0, ymax: 1, markers, xmin: 0 });
  const cd = rows.map(r => [r.round, r.consensus_distance]);
  chart(document.getElementById("cd-chart"), [{
    name: "sqrt(mean ||x_i − x̄||²)", colour: "#7c3aed", points: cd,
  }], { ylabel: "consensus distance", zero: true, pad: true, markers, xmin: 0,
        empty: rows.length ? "not measured in this run" : undefined });
  chart(document.getElementById("bytes-chart"), [{
    name: "bytes sent (all peers)", colour: "#0d9488", bars: true,
    points: rows.map(r => [r.round, r.bytes_sent]),
  }], { ylabel: "bytes", zero: true, pad: true, xmin: 0 });
}

function drawRejects(state) {
  const box = document.getElementById("rejects");
  clear(box);
  const entries = Object.entries(state.rejects).sort((a, b) => b[1] - a[1]);
  if (!entries.length) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = "no message rejected so far";
    box.appendChild(p);
    return;
  }
  const max = entries[0][1];
  for (const [reason, n] of entries.slice(0, 12)) {
    const row = document.createElement("div");
    row.className = "bar-row";
    row.innerHTML = '<span class="reason"></span><span class="bar-track">' +
      '<span class="bar-fill" style="display:block"></span></span><span class="count"></span>';
    row.querySelector(".reason").textContent = reason;
    row.querySelector(".reason").title = reason;
    row.querySelector(".bar-fill").style.width = `${(100 * n) / max}%`;
    row.querySelector(".count").textContent = n;
    box.appendChild(row);
  }
}

function drawEvents(state) {
  const list = document.getElementById("events");
  clear(list);
  const events = state.events.slice().reverse();
  if (!events.length) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "no timeline event yet";
    list.appendChild(li);
    return;
  }
  for (const e of events) {
    const li = document.createElement("li");
    const r = document.createElement("span");
    r.className = "ev-round";
    r.textContent = e.round !== null ? `round ${e.round + 1}` : "";
    r.title = e.round !== null ? `after round ${e.round} completed` : "";
    const k = document.createElement("span");
    k.className = `ev-kind ${e.event}`;
    k.textContent = e.event;
    const t = document.createElement("span");
    t.textContent = e.text;
    li.append(r, k, t);
    list.appendChild(li);
  }
}

function drawHeader(state) {
  text("title", state.title);
  document.title = `${state.title} · rumor dashboard`;
  const badge = document.getElementById("status");
  badge.className = `badge ${state.status}`;
  badge.textContent = state.status;
  text("mode", state.mode);
  text("round", state.round);
  text("rounds-target", state.rounds_target ? ` / ${state.rounds_target}` : "");
  const peers = state.peers;
  text("peer-count", peers.length);
  const alive = peers.filter(p => p.state !== "killed").length;
  text("peer-alive", alive < peers.length ? `(${alive} alive)` : "");
  const last = state.rows.length ? state.rows[state.rows.length - 1] : null;
  text("acc-now", last ? fmt(last.acc_mean, 4) : "–");
  text("cd-now", last && last.consensus_distance !== null ? fmt(last.consensus_distance, 4)
       : "–");
  const bytes = state.rows.reduce((s, r) => s + (r.bytes_sent || 0), 0);
  text("bytes-now", state.rows.length ? fmtBytes(bytes) : "–");
  text("rejects-now", Object.values(state.rejects).reduce((s, n) => s + n, 0));
  text("detail", state.detail || "");
  document.body.dataset.round = state.round;
  document.body.dataset.peers = peers.length;
  document.body.dataset.status = state.status;
}

function render(state) {
  drawHeader(state);
  drawMesh(state);
  drawCharts(state);
  drawRejects(state);
  drawEvents(state);
  document.body.dataset.version = state.version;
}

async function poll() {
  try {
    const resp = await fetch("/api/state", { cache: "no-store" });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const state = await resp.json();
    if (state.version !== lastVersion) {
      lastVersion = state.version;
      render(state);
    }
    text("updated", new Date().toLocaleTimeString());
    text("poll-error", "");
  } catch (err) {
    const badge = document.getElementById("status");
    if (lastVersion >= 0 && badge.textContent !== "finished") {
      badge.className = "badge offline";
      badge.textContent = "offline";
    }
    text("poll-error", `cannot reach the run (${err.message}); retrying`);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
