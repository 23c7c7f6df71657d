// The officer desk: the queue and the lanes poll the console once a second; a truck's page
// draws its weight trace and reloads itself when the lane or an officer changed its state.
// Every value from a lane is put in with textContent, never as markup.
"use strict";

const POLL_MS = 1000;
const RETRY_MS = 2000;
const BLUE = "#2f6fb5";
let lastOk = 0;

const $ = (id) => document.getElementById(id);

function kg(value) {
  return typeof value === "number" ? `${Math.round(value).toLocaleString("en")} kg` : "-";
}

function signedKg(value) {
  if (typeof value !== "number") return "";
  const rounded = Math.round(value);
  return ` (${rounded >= 0 ? "+" : ""}${rounded.toLocaleString("en")})`;
}

function age(seconds) {
  if (typeof seconds !== "number" || seconds < 0) return "-";
  if (seconds < 90) return `${seconds.toFixed(0)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function when(stamp) {
  if (!stamp) return "-";
  const date = new Date(stamp);
  return Number.isNaN(date.getTime()) ? String(stamp) : date.toLocaleTimeString("en-GB");
}

function td(content, className) {
  const cell = document.createElement("td");
  if (content instanceof Node) cell.appendChild(content);
  else cell.textContent = content === null || content === undefined || content === "" ? "-"
    : String(content);
  if (className) cell.className = className;
  return cell;
}

function codes(list, className) {
  const span = document.createElement("span");
  for (const code of list) {
    const item = document.createElement("code");
    item.className = className;
    item.textContent = code;
    span.appendChild(item);
  }
  return span;
}

// Replace a table's rows only when what they show changed (no flicker, hover kept).
function fill(tbody, rows, key) {
  if (tbody.dataset.shown === key) return;
  tbody.replaceChildren(...rows);
  tbody.dataset.shown = key;
}

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (response.status === 401) {
    window.location.assign("/login");
    throw new Error("logged out");
  }
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.json();
}

function linkState(ok, broker) {
  const link = $("link");
  if (!link) return;
  if (ok) {
    lastOk = Date.now();
    link.textContent = broker === false ? "live (broker unreachable: actions cannot be sent)"
      : "live";
    link.className = broker === false ? "link down" : "link";
  } else {
    const since = lastOk ? `${Math.round((Date.now() - lastOk) / 1000)} s` : "start";
    link.textContent = `console unreachable since ${since}`;
    link.className = "link down";
  }
}

// -- the queue --------------------------------------------------------------------------
function truckPath(lane, transit) {
  return `/truck/${encodeURIComponent(lane)}/${encodeURIComponent(transit)}`;
}

function truckRow(t) {
  const tr = document.createElement("tr");
  tr.dataset.lane = t.lane;
  tr.dataset.transit = t.transit_id;
  const link = document.createElement("a");
  link.href = truckPath(t.lane, t.transit_id);
  link.textContent = t.transit_id;
  const pass = t.pass ? (t.pass.release_no || (t.pass.valid ? "valid" : t.pass.reason)) : null;
  const status = t.pending ? `${t.pending.action} sent by ${t.pending.officer}` : "waiting";
  tr.append(
    td(t.lane), td(link), td(age(t.held_for_s)), td(codes(t.reasons, "reason")),
    td(kg(t.weight_kg)), td(kg(t.declared_gross_kg) + signedKg(t.difference_kg)),
    td(t.plates_read.join(", ") || "none"), td(pass), td(status, t.pending ? "pending" : ""),
  );
  return tr;
}

function laneRow(l) {
  const tr = document.createElement("tr");
  tr.dataset.lane = l.lane;
  const link = l.online === true ? "online" : l.online === false ? `offline (${l.offline_reason})`
    : "unknown";
  const mode = l.mode + (l.mode_by ? ` by ${l.mode_by}` : "");
  const backlog = `${l.backlog}` + (l.missing ? `, ${l.missing} missing` : "") +
    (typeof l.outbox_waiting === "number"
      ? `; ${l.outbox_waiting} in the lane's outbox at its last report` : "");
  const last = l.last_event_type ? `${l.last_event_type} at ${when(l.last_event_at)}` : null;
  const state = l.machine_state
    ? `${l.machine_state} (report ${age(l.health_age_s)} ago)` : "no health report yet";
  tr.append(
    td(l.lane), td(link, l.online === true ? "ok" : l.online === false ? "bad" : "unknown"),
    td(mode), td(state), td(l.held), td(backlog), td(last),
    td(l.problems.join("; ") || "none", l.problems.length ? "bad" : "ok"),
  );
  return tr;
}

function showLanes(lanes) {
  const table = $("lanes");
  if (table) fill(table.tBodies[0], lanes.map(laneRow), JSON.stringify(lanes));
}

function showQueue(doc) {
  const held = doc.held;
  $("held-count").textContent = String(held.length);
  $("empty").hidden = held.length > 0;
  // held_for_s moves every poll: key the rows on what else they show, then refresh ages.
  const key = JSON.stringify(held.map((t) => ({ ...t, held_for_s: null })));
  const tbody = $("queue").tBodies[0];
  fill(tbody, held.map(truckRow), key);
  held.forEach((t, i) => {
    const cell = tbody.rows[i] && tbody.rows[i].cells[2];
    if (cell) cell.textContent = age(t.held_for_s);
  });
  showLanes(doc.lanes);
}

async function poll(render) {
  let wait = POLL_MS;
  try {
    const doc = await getJson(document.body.dataset.api);
    render(doc);
    linkState(true, doc.broker);
  } catch (err) {
    wait = RETRY_MS;
    linkState(false);
  }
  window.setTimeout(() => poll(render), wait);
}

// -- one truck --------------------------------------------------------------------------
function drawTrace(doc) {
  const box = $("plot");
  const trace = doc.trace || [];
  const frames = doc.indicator_frames || [];
  if (!trace.length && !frames.length) {
    box.textContent = "no weight trace with this hold";
    box.className = "muted";
    return;
  }
  const times = [...trace.map((p) => p[0]), ...frames.map((f) => f.t)];
  const zero = Math.max(...times);
  const xs = [...new Set(times)].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const line = xs.map(() => null);
  const still = xs.map(() => null);
  for (const [t, value] of trace) line[index.get(t)] = value;
  for (const f of frames) still[index.get(f.t)] = f.kg;
  const declared = doc.declared_gross_kg;
  const tolerance = doc.tolerance_kg;
  const flat = (value) => xs.map(() => (typeof value === "number" ? value : null));
  const series = [
    {},
    { label: "deck kg", stroke: BLUE, width: 2, spanGaps: true, points: { show: false } },
    { label: "standstill", stroke: "#1f8a3b", width: 0, points: { show: true, size: 6 } },
    { label: "declared", stroke: "#d9822b", width: 2, points: { show: false } },
    { label: "tolerance", stroke: "#f0b27a", width: 1, dash: [6, 4], points: { show: false } },
    { label: "tolerance", stroke: "#f0b27a", width: 1, dash: [6, 4], points: { show: false } },
  ];
  const hasTolerance = typeof declared === "number" && typeof tolerance === "number";
  const data = [
    xs.map((x) => x - zero), line, still, flat(declared),
    flat(hasTolerance ? declared + tolerance : null),
    flat(hasTolerance ? declared - tolerance : null),
  ];
  const opts = {
    width: Math.max(320, box.clientWidth),
    height: 260,
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: false } },
    axes: [
      { label: "seconds (0 = last reading)" },
      { label: "kg", size: 70 },
    ],
    series,
  };
  const plot = new uPlot(opts, data, box);
  new ResizeObserver(() => plot.setSize({ width: Math.max(320, box.clientWidth), height: 260 }))
    .observe(box);
}

function signature(doc) {
  const answered = doc.actions.filter((a) => a.answer !== null).length;
  return `${doc.status}|${doc.actions.length}|${doc.lane_answers.length}|${answered}`;
}

async function watchTruck() {
  const api = document.body.dataset.api;
  try {
    const doc = await getJson(api);
    drawTrace(doc);
    linkState(true);
  } catch (err) {
    linkState(false);
  }
  const check = async () => {
    let wait = POLL_MS;
    try {
      const doc = await getJson(api);
      linkState(true);
      if (signature(doc) !== document.body.dataset.shown) {
        window.location.reload();  // the lane or an officer changed it: show the new state
        return;
      }
    } catch (err) {
      wait = RETRY_MS;
      linkState(false);
    }
    window.setTimeout(check, wait);
  };
  window.setTimeout(check, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "queue") poll(showQueue);
  else if (page === "lanes") poll((doc) => showLanes(doc.lanes));
  else if (page === "truck") watchTruck();
});
