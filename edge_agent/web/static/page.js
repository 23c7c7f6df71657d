// The lane page: polls /api/live four times a second and draws what the agent reports.
// Every value from the agent is put in with textContent, never as markup.
"use strict";

const POLL_MS = 250;
const RETRY_MS = 1000;
const trace = { seq: 0, t: [], kg: [], stable: [], flag: undefined, windowS: 120 };
let plot = null;
let frameSeq = null;
let lastOk = 0;

const $ = (id) => document.getElementById(id);

function text(id, value) {
  const node = $(id);
  const shown = value === null || value === undefined || value === "" ? "-" : String(value);
  if (node.textContent !== shown) node.textContent = shown;
}

function kg(value) {
  return typeof value === "number" ? `${Math.round(value).toLocaleString("en")} kg` : "-";
}

function age(seconds) {
  if (typeof seconds !== "number") return "-";
  if (seconds < 90) return `${seconds.toFixed(1)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function bytes(value) {
  if (typeof value !== "number") return "-";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = value;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// -- weight trace ------------------------------------------------------------------------
function makePlot() {
  const box = $("plot");
  const opts = {
    width: Math.max(300, box.clientWidth),
    height: 240,
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    scales: {
      x: { time: false, range: () => [-trace.windowS, 0] },
      y: { range: (u, min, max) => [Math.min(0, min), Math.max(1000, max * 1.1)] },
    },
    axes: [
      { label: "seconds ago", values: (u, ticks) => ticks.map((t) => `${-t}`) },
      { label: "kg", size: 70 },
    ],
    series: [
      {},
      { label: "kg", stroke: "#2f6fb5", width: 2, points: { show: false } },
      { label: "stable", stroke: "#1f8a3b", width: 5, points: { show: false } },
    ],
  };
  plot = new uPlot(opts, [[], [], []], box);
  new ResizeObserver(() => plot.setSize({ width: Math.max(300, box.clientWidth), height: 240 }))
    .observe(box);
}

function addSamples(weights, now) {
  if (weights.last_seq < trace.seq) {  // the agent restarted: its clock and counter too
    trace.t = []; trace.kg = []; trace.stable = [];
  }
  trace.windowS = weights.window_s;
  for (const [, t, value, stable] of weights.samples) {
    trace.t.push(t); trace.kg.push(value); trace.stable.push(stable === true ? value : null);
    trace.flag = stable;  // null: the indicator sends no motion flag
  }
  trace.seq = weights.last_seq;
  let drop = 0;
  while (drop < trace.t.length && trace.t[drop] < now - trace.windowS) drop += 1;
  if (drop) { trace.t.splice(0, drop); trace.kg.splice(0, drop); trace.stable.splice(0, drop); }
  if (plot) plot.setData([trace.t.map((t) => t - now), trace.kg, trace.stable]);
}

// -- camera frame ------------------------------------------------------------------------
function showFrame(frame) {
  const img = $("frame");
  const svg = $("outline");
  $("no-frame").hidden = frame !== null;
  if (frame === null) { text("frame-age", ""); return; }
  text("frame-age", `${age(frame.age_s)} old`);
  if (frame.seq !== frameSeq) {
    frameSeq = frame.seq;
    img.src = `/frame.jpg?seq=${frame.seq}`;
    $("frame-box").style.aspectRatio = `${frame.width} / ${frame.height}`;
    svg.setAttribute("viewBox", `0 0 ${frame.width} ${frame.height}`);
  }
  const points = frame.polygons.map((poly) => poly.map(([x, y]) => `${x},${y}`).join(" "));
  const drawn = Array.from(svg.children).map((p) => p.getAttribute("points"));
  if (drawn.join("|") === points.join("|")) return;
  svg.replaceChildren(...points.map((p) => {
    const polygon = document.createElementNS("http://www.w3.org/2000/svg", "polygon");
    polygon.setAttribute("points", p);
    return polygon;
  }));
}

// -- tables ------------------------------------------------------------------------------
function row(cells, classes = []) {
  const tr = document.createElement("tr");
  cells.forEach((value, i) => {
    const td = document.createElement("td");
    td.textContent = value === null || value === undefined ? "-" : String(value);
    if (classes[i]) td.className = classes[i];
    tr.appendChild(td);
  });
  return tr;
}

function fill(tbody, rows) {
  const html = rows.map((r) => r.outerHTML).join("");
  if (tbody.dataset.shown !== html) { tbody.replaceChildren(...rows); tbody.dataset.shown = html; }
}

function showDecisions(decisions) {
  fill($("decisions").tBodies[0], decisions.map((d) => row([
    new Date(d.at * 1000).toLocaleTimeString("en-GB"),
    d.transit_id,
    d.decision + (d.by && d.by !== "policy" ? ` (${d.by})` : ""),
    d.reasons.length ? d.reasons.join(", ") + (d.detail ? ` - ${d.detail}` : "") : "-",
    kg(d.weight_kg),
    kg(d.declared_gross_kg),
    typeof d.latency_ms === "number" ? `${d.latency_ms.toFixed(1)} ms` : "-",
  ], [null, null, d.decision])));
}

function health(up) {
  return up === true ? "ok" : up === false ? "bad" : "unknown";
}

function showDevices(doc) {
  const dev = doc.devices || {};
  const io = dev.io_board || {};
  const wb = dev.weighbridge || {};
  const cam = dev.camera || {};
  const tel = dev.telemetry || {};
  const host = dev.host || {};
  // Before the reader reports, a fresh frame on this page is the camera's own word.
  const camUp = cam.up ?? (doc.frame ? doc.frame.age_s < 2 : null);
  const rows = [
    ["indicator", doc.indicator_up ? "reading" : "silent", doc.indicator_up,
      `${kg(wb.kg)}; last reading ${age(doc.indicator_age_s)} ago; ` +
      `${wb.frames ?? "-"} frames, ${wb.errors ?? "-"} refused`],
    ["IO board", `link ${io.link ?? "?"}`, io.link === undefined ? null : io.link === "up",
      `barrier ${io.barrier ?? "?"}; faults ${(io.faults || []).join(", ") || "none"}; ` +
      `firmware ${io.firmware ?? "?"}`],
    ["camera", camUp === true ? "up" : camUp === false ? "down" : "no frame yet", camUp,
      `${cam.frames ?? "-"} frames, ${cam.reads ?? "-"} reads, ` +
      `${cam.decode_failures ?? "-"} decoder failures`],
    ["broker", tel.connected ? "connected" : "not connected", tel.connected === true,
      `${tel.connects ?? "-"} connects, ${tel.losses ?? "-"} losses` +
      (tel.last_error ? `; ${tel.last_error}` : "")],
    ["outbox", `${host.outbox_events ?? tel.pending ?? "-"} waiting`,
      host.outbox_oldest_age_s === undefined ? null
        : host.outbox_oldest_age_s === null || host.outbox_oldest_age_s < 300,
      `oldest ${age(host.outbox_oldest_age_s)}` + (tel.disk_alarm ? "; DISK ALARM" : "")],
    ["disk", `${bytes(host.disk_free_bytes)} free`,
      typeof host.disk_free_bytes === "number" ? host.disk_free_bytes > 200 * 2 ** 20 : null,
      "state directory"],
  ];
  fill($("devices").tBodies[0], rows.map(([name, summary, up, detail]) =>
    row([name, summary, detail], [null, health(up), null])));
}

function showLane(doc) {
  const lane = `${doc.site}/${doc.lane}`;
  text("lane-name", `Lane ${lane}`);
  if (document.title !== `Lane ${lane}`) document.title = `Lane ${lane}`;
  const state = $("state");
  text("state", doc.state);
  state.className = `badge ${doc.state}`;
  const mode = doc.mode || {};
  text("mode", mode.mode ? `${mode.mode}${mode.by ? ` by ${mode.by}` : ""}` : "mode ?");
  $("mode").className = `badge mode ${mode.mode || ""}`;
  if (mode.reason) $("mode").title = mode.reason;
  const t = doc.transit;
  text("t-id", t ? t.id : "none");
  text("t-pass", t ? t.pass : null);
  text("t-valid", t && t.pass_valid !== null ? (t.pass_valid ? "valid" : "refused") : null);
  text("t-weight", t ? kg(t.weight_kg) : null);
  text("t-hold", t && t.hold_reasons.length ? t.hold_reasons.join(", ") : null);
  const last = trace.kg.length ? trace.kg[trace.kg.length - 1] : null;
  text("kg", kg(last));
  const flag = last === null ? undefined : trace.flag;
  text("stable", flag === true ? "stable" : flag === false ? "in motion"
    : flag === null ? "no motion flag" : "-");
  $("stable").className = `tag ${flag === true ? "stable" : flag === false ? "motion" : ""}`;
  const v = doc.versions || {};
  text("versions", `agent ${v.agent ?? "?"} · firmware ${v.firmware ?? "?"}` +
    (v.firmware_manifest ? ` (${v.firmware_manifest})` : "") +
    ` · config ${v.config_sha256 ?? "?"} · up ${age(doc.uptime_s)}`);
}

function render(doc) {
  $("logout").hidden = !doc.login;
  addSamples(doc.weights, doc.now);
  showLane(doc);
  showFrame(doc.frame);
  showDecisions(doc.decisions);
  showDevices(doc);
}

async function poll() {
  let wait = POLL_MS;
  try {
    const response = await fetch(`/api/live?after=${trace.seq}`, { cache: "no-store" });
    if (response.status === 401) { window.location.assign("/login"); return; }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
    lastOk = Date.now();
    text("link", "live");
    $("link").className = "link";
  } catch (err) {
    wait = RETRY_MS;
    const since = lastOk ? `${((Date.now() - lastOk) / 1000).toFixed(0)} s` : "start";
    text("link", `agent unreachable since ${since}`);
    $("link").className = "link down";
  }
  window.setTimeout(poll, wait);
}

document.addEventListener("DOMContentLoaded", () => {
  makePlot();
  poll();
});
