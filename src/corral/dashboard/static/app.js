// The Corral dashboard: plain JavaScript over the control-plane API (same origin, session
// cookie). Every value from the system is put in the page as text (textContent), never as
// markup, so a service's log line or span name cannot inject anything.

const POLL_MS = 2000;
const PALETTE = ["#58a6ff", "#3fb950", "#d29922", "#bc8cff", "#ff7b72", "#39c5cf", "#f778ba",
  "#a5d6ff", "#7ee787", "#e3b341", "#d2a8ff", "#ffa198"];

const state = {
  status: null, summary: null, graph: null, view: null, timers: [], charts: {},
  colours: {}, logSource: null, logPaused: false, selectedTrace: null,
  deadLetters: null, deadLettersAt: 0, tracesPaused: false, shownTraces: "",
};

// --- small helpers -------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "style") Object.assign(node.style, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) {
    // Through the CSSOM: the page's CSP refuses style attributes.
    if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value);
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function ms(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const value = seconds * 1000;
  if (value >= 1000) return `${(value / 1000).toFixed(2)} s`;
  if (value >= 10) return `${value.toFixed(0)} ms`;
  return `${value.toFixed(value >= 1 ? 1 : 2)} ms`;
}

function rate(value) {
  if (!value) return "0";
  return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
}

function percent(fraction) {
  if (fraction === null || fraction === undefined) return "–";
  return `${(fraction * 100).toFixed(fraction && fraction < 0.01 ? 2 : 1)}%`;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

function clock(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleTimeString([], { hour12: false });
}

function colour(service) {
  if (!(service in state.colours)) {
    const used = Object.keys(state.colours).length;
    state.colours[service] = PALETTE[used % PALETTE.length];
  }
  return state.colours[service];
}

class Unauthorized extends Error {}

async function api(path) {
  const response = await fetch(path, { headers: { accept: "application/json" } });
  if (response.status === 401) throw new Unauthorized();
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    const error = new Error(problem.detail || problem.title || response.statusText);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

// A change (POST): the browser sends the page's Origin, which the API checks against
// its own (with the SameSite=Strict cookie, that is the CSRF protection).
async function send(path, body, method = "POST") {
  const response = await fetch(path, {
    method,
    headers: { accept: "application/json", "content-type": "application/json" },
    body: JSON.stringify(body ?? {}),
  });
  if (response.status === 401) throw new Unauthorized();
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.detail || answer.title || response.statusText);
  return answer;
}

// --- login ---------------------------------------------------------------------------

function showLogin(message) {
  stopTimers();
  closeLogs();
  document.querySelectorAll(".view").forEach((v) => { v.hidden = true; });
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  if (message) $("login-message").textContent = message;
}

async function exchangeLoginToken() {
  const match = location.hash.match(/^#login=([A-Za-z0-9_-]+)$/);
  if (!match) return true;
  // The token leaves the address bar (and the history) before it is even used.
  history.replaceState(null, "", location.pathname + "#/overview");
  const answer = await fetch("/v1/dashboard/session", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token: match[1] }),
  });
  if (answer.ok) return true;
  const problem = await answer.json().catch(() => ({}));
  showLogin(`${problem.title || "login refused"}: ${problem.detail || ""}`);
  return false;
}

// --- views ---------------------------------------------------------------------------

function stopTimers() {
  state.timers.forEach(clearInterval);
  state.timers = [];
}

function every(ms, fn) {
  const run = () => fn().catch(handleError);
  run();
  state.timers.push(setInterval(run, ms));
}

function handleError(error) {
  if (error instanceof Unauthorized) {
    showLogin("Your session has ended. Run `corral dashboard` for a new login link.");
    return;
  }
  $("updated").textContent = `error: ${error.message}`;
  $("updated").className = "bad";
}

function route() {
  const hash = location.hash || "#/overview";
  const [, view = "overview", arg] = hash.split("/");
  const known = ["overview", "services", "traces", "events", "logs", "config", "chaos"];
  const name = known.includes(view) ? view : "overview";
  stopTimers();
  if (name !== "logs") closeLogs();
  state.view = name;
  document.querySelectorAll(".view").forEach((v) => { v.hidden = v.id !== `view-${name}`; });
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === name));
  ({ overview, services, traces, events, logs, config, chaos })[name](arg ? decodeURIComponent(arg) : undefined);
}

async function refreshStatus() {
  state.status = await api("/v1/status");
  const s = state.status;
  $("system").textContent = s.system;
  const ready = s.instances.filter((i) => !i.component && i.ready).length;
  const total = s.instances.filter((i) => !i.component).length;
  // Health is more than readiness: what is failing while every instance is ready.
  const crashing = s.instances.filter((i) => i.state === "crashloop" || i.state === "backoff").length;
  const circuits = (s.open_circuits || []).length;
  const chaos = (s.chaos || []).length;
  const letters = await deadLetters();
  const parts = [`${s.state} · ${ready}/${total} ready`];
  if (crashing) parts.push(`${crashing} crashing`);
  if (circuits) parts.push(`${circuits} circuit${circuits > 1 ? "s" : ""} open`);
  if (letters) parts.push(`${letters} dead letter${letters > 1 ? "s" : ""}`);
  if (chaos) parts.push(`${chaos} chaos`);
  const pill = $("state");
  pill.textContent = parts.join(" · ");
  const bad = crashing || circuits || letters;
  pill.className = `pill ${bad ? "bad" : s.state === "running" && ready === total && !chaos ? "ok" : "warn"}`;
  pill.dataset.circuits = circuits;
  pill.dataset.deadLetters = letters;
  $("updated").className = "muted";
  $("updated").textContent = `updated ${clock(Date.now() / 1000)}`;
  Object.keys(s.services).forEach(colour);
  return s;
}

// Dead letters waiting, for the status pill: asked at most every 10 s (the bus is read
// at the moment asked); null when the system has no event bus.
async function deadLetters() {
  if (state.deadLetters === "none" || Date.now() - state.deadLettersAt < 10000) {
    return state.deadLetters === "none" ? 0 : state.deadLetters || 0;
  }
  state.deadLettersAt = Date.now();
  try {
    state.deadLetters = (await api("/v1/telemetry/events")).dead_letters;
  } catch (error) {
    if (error instanceof Unauthorized) throw error;
    state.deadLetters = error.status === 404 ? "none" : state.deadLetters;
  }
  return state.deadLetters === "none" ? 0 : state.deadLetters || 0;
}

// Overview: graph, instances, RED per service, circuits.
function overview() {
  let polls = 0;
  every(POLL_MS, async () => {
    const [status, summary] = await Promise.all([refreshStatus(), api("/v1/telemetry/summary?window=60")]);
    state.summary = summary;
    // The plan's part never changes; observed calls do, slowly: every fifth poll.
    if (!state.graph || polls++ % 5 === 0) state.graph = await api("/v1/telemetry/graph");
    drawGraph(state.graph, status, summary);
    drawInstances(status);
    drawRed(summary);
    drawCircuits(summary, status);
    await drawOverviewCharts(summary);
  });
}

function drawInstances(status) {
  const rows = [];
  for (const name of Object.keys(status.services)) {
    const records = status.instances.filter((i) => i.service === name);
    const info = status.services[name];
    rows.push(el("tr", { "data-service": name }, el("td", { class: "service-group", colspan: 7 },
      el("span", { class: "dot", style: { background: colour(name) } }),
      `${name} · ${info.ready}/${info.replicas} ready`,
      records.some((r) => r.component) ? null : serviceActions(name, info))));
    for (const r of records) {
      rows.push(el("tr", { "data-instance": r.instance },
        el("td", { text: r.instance }),
        el("td", { class: `state-${r.state}`, text: r.state }),
        el("td", { class: r.ready ? "ok" : "bad", text: r.ready ? "yes" : "no" }),
        el("td", { class: `num ${r.restarts ? "warn" : ""}`, text: r.restarts }),
        el("td", { class: "num", text: r.port ?? "–" }),
        el("td", { class: "num", text: r.pid ?? "–" }),
        el("td", { class: "num", text: duration(r.uptime) })));
    }
  }
  fill($("instances").tBodies[0], rows);
}

// Actions on one service. Each that takes instances away asks first.
const ACTIONS = { "−": "scale-down", "+": "scale-up", "rolling restart": "rolling-restart" };
function serviceActions(name, info) {
  const act = (label, path, body, question) => el("button", {
    type: "button", "data-action": ACTIONS[label] || label, text: label,
    onclick: async () => {
      if (question && !window.confirm(question)) return;
      const message = $("action-message");
      message.hidden = false;
      message.className = "muted";
      message.textContent = `${label} ${name}…`;
      try {
        const change = await send(`/v1/services/${encodeURIComponent(name)}/${path}`, body);
        message.textContent = change.detail || `${name}: ${label} done`;
      } catch (error) {
        if (error instanceof Unauthorized) throw error;
        message.className = "bad";
        message.textContent = `${label} ${name} failed: ${error.message}`;
      }
    },
  });
  const stopped = info.replicas === 0;
  return el("span", { class: "actions" },
    stopped ? act("start", "start") : act("stop", "stop", null, `Stop every instance of ${name}?`),
    stopped ? null : act("restart", "restart", { rolling: false }, `Restart every instance of ${name} at once?`),
    stopped ? null : act("rolling restart", "restart", { rolling: true }),
    stopped ? null : act("−", "scale", { replicas: Math.max(info.replicas - 1, 0) },
      `Scale ${name} down to ${Math.max(info.replicas - 1, 0)}?`),
    act("+", "scale", { replicas: info.replicas + 1 }));
}

function serviceRow(s, label) {
  const errors = s.error_rate ? `${percent(s.error_rate)} (${s.errors})` : "0";
  return el("tr", {},
    el("td", {}, el("span", { class: "dot", style: { background: colour(label) } }),
      el("a", { href: `#/services/${encodeURIComponent(s.service)}`, text: label })),
    el("td", { class: "num", text: rate(s.rate) }),
    el("td", { class: `num ${s.errors ? "bad" : ""}`, text: errors }),
    el("td", { class: "num", text: ms(s.p50) }),
    el("td", { class: "num", text: ms(s.p95) }),
    el("td", { class: "num", text: ms(s.p99) }),
    el("td", { class: "num", text: s.cpu !== undefined ? `${(s.cpu * 100).toFixed(1)}%` : "–" }),
    el("td", { class: "num", text: s.in_flight ?? 0 }));
}

function drawRed(summary) {
  const rows = summary.services.map((s) => serviceRow(s, s.service));
  if (summary.gateway) rows.unshift(serviceRow(summary.gateway, "gateway"));
  fill($("red").tBodies[0], rows);
}

function drawCircuits(summary, status) {
  const open = new Map((status.open_circuits || []).map((c) => [`${c.service}→${c.target}`, c]));
  const rows = [];
  for (const s of summary.services) {
    for (const c of s.clients) {
      const states = Object.entries(c.circuits);
      const worst = states.some(([k]) => k === "open") ? "open" : states.some(([k]) => k === "half-open") ? "half-open" : "closed";
      const reported = open.get(`${s.service}→${c.target}`);
      const text = states.length > 1 ? states.map(([k, n]) => `${n} ${k}`).join(", ") : worst;
      rows.push(el("tr", {},
        el("td", { text: `${s.service} → ${c.target}` }),
        el("td", {}, el("span", { class: `pill ${worst === "closed" ? "ok" : worst === "open" ? "bad" : "warn"}`,
          text: reported && reported.retry_after ? `${text} (retry in ${duration(reported.retry_after)})` : text })),
        el("td", { class: "num", text: c.calls }),
        el("td", { class: `num ${c.failed ? "bad" : ""}`, text: c.failed }),
        el("td", { class: `num ${c.retries ? "warn" : ""}`, text: c.retries }),
        el("td", { class: `num ${c.circuit_changes ? "warn" : ""}`, text: c.circuit_changes }),
        el("td", { class: `num ${c.bulkhead_rejections ? "bad" : ""}`, text: c.bulkhead_rejections }),
        el("td", { class: "num", text: c.fallbacks })));
    }
  }
  fill($("circuits").tBodies[0], rows);
  $("circuits-empty").hidden = rows.length > 0;
}

// The graph: gateway on the left, services in columns by call depth, topics on the right.
function drawGraph(graph, status, summary) {
  const root = $("graph");
  const services = graph.nodes.filter((n) => n.kind === "service");
  const topics = graph.nodes.filter((n) => n.kind === "topic");
  const gateway = graph.nodes.find((n) => n.kind === "gateway");
  const calls = graph.edges.filter((e) => e.kind === "call" || e.kind === "depends_on");
  const depth = {};
  services.forEach((n) => { depth[n.id] = 0; });
  for (let round = 0; round < services.length; round++) {
    for (const e of calls) {
      if (e.from in depth && e.to in depth && e.from !== e.to && depth[e.to] < depth[e.from] + 1) {
        depth[e.to] = Math.min(depth[e.from] + 1, services.length);
      }
    }
  }
  const columns = [];
  if (gateway) columns.push([gateway]);
  const maxDepth = Math.max(0, ...Object.values(depth));
  for (let d = 0; d <= maxDepth; d++) columns.push(services.filter((n) => depth[n.id] === d));
  if (topics.length) columns.push(topics);
  const tallest = Math.max(1, ...columns.map((c) => c.length));
  const nodeW = 140, topicW = 180, nodeH = 46, gapY = 22, minGapX = 56;
  // Drawn at least as wide as its columns need (nodes never overlap, topic names are not
  // cut), then scaled to the panel: a deep call graph gets smaller, not tangled.
  const shown = root.clientWidth || 600;
  const lastW = topics.length ? topicW : nodeW;
  const width = Math.max(shown, (columns.length - 1) * (nodeW + minGapX) + lastW + 20);
  const height = Math.max(240, tallest * (nodeH + gapY) + 30);
  root.setAttribute("viewBox", `0 0 ${width} ${height}`);
  root.style.height = `${Math.round(height * (shown / width))}px`;
  const gapX = columns.length > 1 ? (width - 20 - lastW) / (columns.length - 1) : 0;
  const pos = {};
  columns.forEach((column, ci) => {
    const top = (height - column.length * (nodeH + gapY) + gapY) / 2;
    column.forEach((node, ri) => {
      pos[node.id] = { x: 10 + ci * gapX, y: top + ri * (nodeH + gapY) };
    });
  });
  const widthOf = (id) => (graph.nodes.find((n) => n.id === id)?.kind === "topic" ? topicW : nodeW);
  const red = Object.fromEntries((summary?.services || []).map((s) => [s.service, s]));
  const children = [];
  const seen = new Set();
  // Edge labels never overlap: each moves down a line until its box is free.
  const placed = [];
  const labelAt = (x, y, text) => {
    const w = text.length * 6.4 + 6, h = 13;
    let top = y - h;
    const hits = (b) => x - w / 2 < b.x + b.w && b.x < x + w / 2 && top < b.y + b.h && b.y < top + h;
    for (let i = 0; i < 12 && placed.some(hits); i++) top += h;
    placed.push({ x: x - w / 2, y: top, w, h });
    return top + h - 3;
  };
  for (const e of graph.edges) {
    const a = pos[e.from], b = pos[e.to];
    if (!a || !b) continue;
    const key = `${e.from}>${e.to}`;
    if (e.kind === "depends_on" && graph.edges.some((o) => o.kind === "call" && `${o.from}>${o.to}` === key)) continue;
    if (seen.has(key + e.kind)) continue;
    seen.add(key + e.kind);
    const forward = b.x > a.x;
    const x1 = forward ? a.x + widthOf(e.from) : a.x, y1 = a.y + nodeH / 2;
    const x2 = forward ? b.x : b.x + widthOf(e.to), y2 = b.y + nodeH / 2;
    const bend = forward ? Math.max(40, (x2 - x1) / 2) : -60;
    // An edge that skips a column arcs over the nodes in between instead of through them.
    const skips = Math.abs(x2 - x1) > gapX + 1 || !forward;
    const lift = skips && Math.abs(y2 - y1) < nodeH ? nodeH + gapY / 2 : 0;
    const path = `M${x1},${y1} C${x1 + bend},${y1 - lift} ${x2 - bend},${y2 - lift} ${x2},${y2}`;
    children.push(svg("path", { d: path, class: `edge ${e.kind}`, "marker-end": `url(#arrow-${e.kind})` }));
    if (e.label) {
      const x = (x1 + x2) / 2;
      children.push(svg("text", { x, y: labelAt(x, (y1 + y2) / 2 - 2 - lift * 0.75, e.label), class: "edge-label", "text-anchor": "middle" }, e.label));
    }
  }
  for (const node of graph.nodes) {
    const p = pos[node.id];
    if (!p) continue;
    const g = svg("g", { class: `node ${node.kind}`, transform: `translate(${p.x},${p.y})`, "data-node": node.id });
    // A node leads to its detail: a service to its charts, a topic to the event bus.
    if (node.kind === "service") g.addEventListener("click", () => { location.hash = `#/services/${encodeURIComponent(node.id)}`; });
    if (node.kind === "topic") g.addEventListener("click", () => { location.hash = "#/events"; });
    g.append(svg("rect", { width: widthOf(node.id), height: nodeH, rx: 8 }));
    if (node.kind === "service") {
      g.append(svg("rect", { width: 4, height: nodeH - 16, x: 0, y: 8, rx: 2, style: `fill:${colour(node.id)};stroke:none` }));
      const info = status.services[node.id] || {};
      const r = red[node.id];
      const sub = `${info.ready ?? 0}/${info.replicas ?? 0} ready` + (r ? ` · ${rate(r.rate)}/s` : "");
      g.append(svg("text", { x: 14, y: 19 }, node.label));
      g.append(svg("text", { x: 14, y: 36, class: "sub" }, sub));
      const records = status.instances.filter((i) => i.service === node.id);
      records.slice(0, 8).forEach((rec, i) => {
        const c = rec.ready ? "var(--ok)" : ["crashloop", "failed"].includes(rec.state) ? "var(--bad)" : "var(--warn)";
        g.append(svg("circle", { cx: nodeW - 12 - i * 10, cy: 14, r: 3.5, style: `fill:${c}` }));
      });
    } else {
      g.append(svg("text", { x: 12, y: 28 }, node.kind === "topic" ? `topic ${node.label}` : node.label));
    }
    children.push(g);
  }
  const defs = svg("defs");
  for (const [kind, c] of [["route", "var(--accent)"], ["call", "var(--ok)"], ["depends_on", "var(--muted)"], ["publish", "var(--topic)"], ["subscribe", "var(--subscribe)"]]) {
    const marker = svg("marker", { id: `arrow-${kind}`, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", style: `fill:${c}` }));
    defs.append(marker);
  }
  root.replaceChildren(defs, ...children);
}

// --- charts (uPlot) ------------------------------------------------------------------

function chart(id, labels, colours, format, { gaps = false } = {}) {
  const container = $(id);
  const key = `${id}:${labels.join("|")}`;
  const existing = state.charts[id];
  if (existing && existing.key === key && document.body.contains(existing.plot.root)) return existing;
  if (existing) existing.plot.destroy();
  container.replaceChildren();
  const width = Math.max(280, container.clientWidth - 4);
  const opts = {
    width, height: 200,
    legend: { live: true },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: [
      { stroke: "#8590a0", grid: { stroke: "#222a33" }, ticks: { stroke: "#2a323d" }, space: 70,
        values: (u, ticks) => ticks.map((t) => clock(t).slice(0, 5)) },
      { stroke: "#8590a0", grid: { stroke: "#222a33" }, ticks: { stroke: "#2a323d" }, size: 60,
        values: (u, ticks) => ticks.map(format) },
    ],
    series: [{}, ...labels.map((label, i) => ({
      label, stroke: colours[i], width: 2, spanGaps: gaps, points: { show: gaps, size: 4 },
      fill: labels.length === 1 ? `${colours[i]}22` : undefined,
      value: (u, v) => (v === null || v === undefined ? "–" : format(v)),
    }))],
  };
  const plot = new uPlot(opts, [[], ...labels.map(() => [])], container);
  state.charts[id] = { key, plot, setData: (data) => draw(id, plot, data) };
  return state.charts[id];
}

function draw(id, plot, data) {
  plot.setData(data);
  // How many points carry a value: what a reader (or a test) can tell an empty chart by.
  const points = data.slice(1).reduce((n, column) => n + column.filter((v) => v).length, 0);
  $(id).dataset.points = String(points);
}

function sizeCharts() {
  for (const [id, { plot }] of Object.entries(state.charts)) {
    const width = Math.max(280, $(id).clientWidth - 4);
    if (Math.abs(plot.width - width) > 2) plot.setSize({ width, height: 200 });
  }
}

async function drawOverviewCharts(summary) {
  const names = summary.services.map((s) => s.service);
  if (!names.length) return;
  const all = await Promise.all(names.map((n) => api(`/v1/telemetry/services/${encodeURIComponent(n)}/series?window=300&step=5`)));
  const t = all[0].t;
  const colours = names.map(colour);
  chart("chart-rate", names, colours, rate).setData([t, ...all.map((s) => s.rate)]);
  chart("chart-p95", names, colours, ms, { gaps: true }).setData([t, ...all.map((s) => s.p95)]);
}

// Services: charts and routes of one service.
function services(name) {
  const select = $("service-select");
  every(POLL_MS, async () => {
    const [status, summary] = await Promise.all([refreshStatus(), api("/v1/telemetry/summary?window=60")]);
    const names = summary.services.map((s) => s.service);
    if (summary.gateway) names.push("corral-gateway");
    if (select.options.length !== names.length) {
      select.replaceChildren(...names.map((n) => el("option", { value: n, text: n === "corral-gateway" ? "gateway" : n })));
    }
    const current = name && names.includes(name) ? name : select.value || names[0];
    if (!current) return;
    select.value = current;
    const s = current === "corral-gateway" ? summary.gateway : summary.services.find((x) => x.service === current);
    const series = await api(`/v1/telemetry/services/${encodeURIComponent(current)}/series?window=300&step=5`);
    const routes = Object.keys(series.routes);
    const colours = routes.map((_, i) => PALETTE[i % PALETTE.length]);
    const t = series.t;
    chart("chart-svc-rate", routes.length ? routes : ["all"], colours, rate).setData(
      [t, ...(routes.length ? routes.map((r) => series.routes[r].rate) : [series.rate])]);
    chart("chart-svc-errors", ["5xx"], ["#f85149"], percent).setData([t, series.error_rate]);
    chart("chart-svc-latency", ["p50", "p95", "p99"], ["#3fb950", "#d29922", "#f85149"], ms, { gaps: true }).setData(
      [t, series.p50, series.p95, series.p99]);
    fill($("routes").tBodies[0], (s?.routes || []).map((r) => el("tr", {},
      el("td", {}, el("code", { text: `${r.method} ${r.route}`.trim() })),
      el("td", { class: "num", text: r.requests }),
      el("td", { class: "num", text: rate(r.rate) }),
      el("td", { class: `num ${r.errors ? "bad" : ""}`, text: r.errors ? `${r.errors} (${percent(r.error_rate)})` : "0" }),
      el("td", { class: "num", text: ms(r.p50) }),
      el("td", { class: "num", text: ms(r.p95) }),
      el("td", { class: "num", text: ms(r.p99) }),
      el("td", { class: "muted", text: Object.entries(r.statuses).map(([k, v]) => `${k}×${v}`).join("  ") }))));
    void status;
  });
  every(POLL_MS * 5, () => drawHistory(() => select.value || name));
  $("history-window").onchange = () => { drawHistory(() => select.value || name).catch(handleError); };
  select.onchange = () => { location.hash = `#/services/${encodeURIComponent(select.value)}`; };
}

// The kept history of one service (the store's rollups): survives `corral down`/`up`.
async function drawHistory(current) {
  const service = current();
  if (!service) return;
  const window = Number($("history-window").value) || 3600;
  const step = window <= 3600 ? 30 : window <= 21600 ? 120 : 300;
  let found;
  try {
    found = await api(`/v1/telemetry/services/${encodeURIComponent(service)}/history?window=${window}&step=${step}`);
  } catch (error) {
    if (error instanceof Unauthorized) throw error;
    $("history-message").textContent = error.message;
    return;
  }
  const kept = found.requests.filter((n) => n !== null).length;
  $("history-message").textContent = kept ? "" : "nothing kept yet for this service";
  const t = found.t;
  chart("chart-hist-rate", ["req/s"], ["#58a6ff"], rate, { gaps: false }).setData([t, found.rate]);
  chart("chart-hist-errors", ["5xx"], ["#f85149"], percent).setData([t, found.error_rate]);
  chart("chart-hist-p95", ["p95"], ["#d29922"], ms, { gaps: true }).setData([t, found.p95]);
}

// --- traces ----------------------------------------------------------------------------

function traceQuery() {
  const query = new URLSearchParams({ limit: "60" });
  if ($("trace-service").value) query.set("service", $("trace-service").value);
  if ($("trace-route").value.trim()) query.set("route", $("trace-route").value.trim());
  const min = parseFloat($("trace-min").value);
  if (min > 0) query.set("min_duration", String(min));
  if ($("trace-errors").checked) query.set("status", "error");
  return query;
}

function traces(traceId) {
  if (traceId) state.selectedTrace = traceId;
  const list = $("traces").closest(".card");
  // The list holds still while it is read: while the pointer is on it, while it is
  // scrolled down, or while paused; new traces are counted meanwhile, not shown.
  let hovering = false;
  list.onmouseenter = () => { hovering = true; };
  list.onmouseleave = () => { hovering = false; };
  const pause = $("trace-live");
  pause.textContent = state.tracesPaused ? "resume" : "pause";
  pause.onclick = () => {
    state.tracesPaused = !state.tracesPaused;
    pause.textContent = state.tracesPaused ? "resume" : "pause";
  };
  const filters = $("trace-filters");
  let filtered = "";
  const poll = async () => {
    const status = await refreshStatus();
    const select = $("trace-service");
    const names = Object.keys(status.services);
    if (select.options.length !== names.length + 1) {
      const value = select.value;
      select.replaceChildren(el("option", { value: "", text: "any" }), ...names.map((n) => el("option", { value: n, text: n })));
      select.value = value;
    }
    const query = traceQuery().toString();
    const found = await api(`/v1/traces?${query}`);
    const ids = found.map((t) => t.trace_id).join(",");
    const still = query === filtered && (state.tracesPaused || hovering || list.scrollTop > 0);
    if (still && ids !== state.shownTraces) {
      const shown = new Set(state.shownTraces.split(","));
      const fresh = found.filter((t) => !shown.has(t.trace_id)).length;
      $("traces-new").textContent = fresh ? `${fresh} new (held while you read)` : "";
    }
    if (!still && ids !== state.shownTraces) {
      filtered = query;
      state.shownTraces = ids;
      $("traces-new").textContent = "";
      $("traces-empty").hidden = found.length > 0;
      fill($("traces").tBodies[0], found.map((t) => el("tr", {
        "data-trace": t.trace_id, class: t.trace_id === state.selectedTrace ? "selected" : "",
        onclick: () => { location.hash = `#/traces/${t.trace_id}`; } },
        el("td", { class: "muted", text: clock(t.start) }),
        el("td", {}, el("span", { class: "dot", style: { background: colour(t.service) } }), el("span", { text: t.name }),
          t.errors ? el("span", { class: "bad", text: ` · ${t.errors} error${t.errors > 1 ? "s" : ""}` }) : null),
        el("td", { class: "muted", text: t.services.join(", ") }),
        el("td", { class: "num", text: t.span_count }),
        el("td", { class: "num", text: `${t.duration_ms.toFixed(t.duration_ms < 10 ? 2 : 1)} ms` }))));
    }
    // By default the latest trace that crossed services: the interesting kind.
    if (!state.selectedTrace && found.length) {
      state.selectedTrace = (found.find((t) => t.services.length > 1) || found[0]).trace_id;
    }
    // A trace already drawn changes only while its spans still arrive: redrawn a few times.
    if (state.selectedTrace && (state.drawnTrace !== state.selectedTrace || state.traceDraws++ < 3)) {
      if (state.drawnTrace !== state.selectedTrace) state.traceDraws = 0;
      state.drawnTrace = state.selectedTrace;
      await drawTrace(state.selectedTrace);
    }
  };
  filters.onchange = () => { state.shownTraces = ""; filtered = ""; poll().catch(handleError); };
  filters.onsubmit = (event) => { event.preventDefault(); filters.onchange(); };
  every(POLL_MS * 2, poll);
}

async function drawTrace(traceId) {
  let trace;
  try {
    trace = await api(`/v1/traces/${traceId}`);
  } catch (error) {
    if (error.status === 404) { $("waterfall").replaceChildren(el("p", { class: "muted", text: "This trace is no longer kept." })); return; }
    throw error;
  }
  $("trace-title").textContent = `Trace ${trace.name} · ${trace.duration_ms.toFixed(2)} ms · ${trace.span_count} spans`;
  const logsLink = $("trace-logs");
  logsLink.hidden = trace.logs === undefined;
  logsLink.href = `#/logs/trace=${trace.trace_id}`;
  logsLink.textContent = `${trace.logs ?? 0} log line${trace.logs === 1 ? "" : "s"} of this trace →`;
  const spans = trace.spans;
  const byId = Object.fromEntries(spans.map((s) => [s.span_id, s]));
  const children = {};
  const roots = [];
  for (const s of spans) {
    if (s.parent_span_id && byId[s.parent_span_id]) (children[s.parent_span_id] ||= []).push(s);
    else roots.push(s);
  }
  const ordered = [];
  const walk = (s, depth) => {
    ordered.push([s, depth]);
    (children[s.span_id] || []).sort((a, b) => a.start - b.start).forEach((c) => walk(c, depth + 1));
  };
  roots.sort((a, b) => a.start - b.start).forEach((r) => walk(r, 0));
  const t0 = Math.min(...spans.map((s) => s.start));
  const total = Math.max(1e-6, Math.max(...spans.map((s) => s.end)) - t0);
  const axis = el("div", { class: "wf-axis" }, el("span", { text: "span" }),
    el("div", { class: "ticks" }, ...[0, 0.25, 0.5, 0.75, 1].map((f) => el("span", { text: ms(total * f) }))));
  const rows = ordered.map(([s, depth]) => {
    const left = ((s.start - t0) / total) * 100;
    const width = Math.max(0.3, ((s.end - s.start) / total) * 100);
    const row = el("div", { class: "wf-row", "data-service": s.service, onclick: () => showSpan(s, row) },
      el("div", { class: "wf-name", style: { paddingLeft: `${depth * 14}px` }, title: `${s.service}: ${s.name}` },
        el("span", { class: "svc", style: { color: colour(s.service) }, text: s.service }), el("span", { text: s.name })),
      el("div", { class: "wf-track" },
        el("div", { class: `wf-bar ${s.status === "error" ? "error" : ""}`, style: { left: `${left}%`, width: `${width}%`, background: colour(s.service) } }),
        el("span", { class: "wf-time", style: left + width < 80 ? { left: `calc(${left + width}% + 6px)` } : { right: `calc(${100 - left}% + 6px)` }, text: `${s.duration_ms.toFixed(2)} ms` })));
    return row;
  });
  const legend = el("div", { class: "wf-legend" }, ...trace.services.map((name) =>
    el("span", {}, el("span", { class: "dot", style: { background: colour(name) } }), name)));
  $("waterfall").replaceChildren(axis, ...rows, legend);
  document.querySelectorAll("#traces tbody tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.trace === traceId));
}

function showSpan(span, row) {
  document.querySelectorAll(".wf-row").forEach((r) => r.classList.toggle("selected", r === row));
  const detail = $("span-detail");
  detail.hidden = false;
  detail.textContent = JSON.stringify({
    name: span.name, service: span.service, instance: span.instance, kind: span.kind,
    status: span.status, duration_ms: span.duration_ms, attributes: span.attributes, events: span.events,
  }, null, 2);
}

// --- events ----------------------------------------------------------------------------

function events() {
  every(POLL_MS * 2, async () => {
    await refreshStatus();
    let bus;
    try {
      bus = await api("/v1/telemetry/events");
    } catch (error) {
      if (error instanceof Unauthorized) throw error;
      $("events-message").hidden = false;
      $("events-message").textContent = error.message;
      fill($("topics").tBodies[0], []);
      fill($("dlq").tBodies[0], []);
      return;
    }
    $("events-message").hidden = true;
    const rows = [];
    for (const topic of bus.topics) {
      const consumers = topic.consumers.length ? topic.consumers : [null];
      consumers.forEach((c, i) => rows.push(el("tr", {},
        el("td", {}, i === 0 ? el("code", { text: topic.topic }) : null),
        el("td", { class: "muted", text: i === 0 ? topic.producers.join(", ") : "" }),
        el("td", { class: "num", text: i === 0 ? topic.messages : "" }),
        el("td", { text: c ? c.consumer : topic.provisioned ? "no consumer bound yet" : "not provisioned" }),
        el("td", { class: `num ${c && c.pending ? "warn" : ""}`, text: c ? c.pending : "" }),
        el("td", { class: "num", text: c ? c.ack_pending : "" }),
        el("td", { class: `num ${c && c.redelivered ? "warn" : ""}`, text: c ? c.redelivered : "" }))));
    }
    fill($("topics").tBodies[0], rows);
    const count = $("dlq-count");
    count.textContent = String(bus.dead_letters);
    count.className = `pill ${bus.dead_letters ? "bad" : "ok"}`;
    fill($("dlq").tBodies[0], bus.recent_dead_letters.map((d) => el("tr", { "data-seq": d.seq },
      el("td", { class: "num", text: d.seq }), el("td", { text: d.service }), el("td", {}, el("code", { text: d.topic })),
      el("td", { class: "num", text: d.deliveries }), el("td", { class: "bad", text: d.error }),
      el("td", { class: "actions" },
        el("button", { type: "button", "data-action": "show", text: "show", onclick: () => letterAction(d.seq, "show") }),
        el("button", { type: "button", "data-action": "replay", text: "replay", onclick: () => letterAction(d.seq, "replay") })))));
  });
  every(POLL_MS * 5, drawBusHistory);
  $("dlq-replay-all").onclick = () => letterAction(null, "replay");
  $("dlq-purge").onclick = () => letterAction(null, "purge");
}

// Topic rates and consumer lag over the last hour (the control plane samples the bus
// every 10 s since this `corral up`).
async function drawBusHistory() {
  let found;
  try {
    found = await api("/v1/telemetry/events/history?window=3600");
  } catch (error) {
    if (error instanceof Unauthorized) throw error;
    return; // no bus, or not answering: the table above says why
  }
  const topics = Object.keys(found.topics);
  const consumers = Object.keys(found.lag);
  if (topics.length) {
    chart("chart-topic-rate", topics, topics.map((_, i) => PALETTE[i % PALETTE.length]), rate, { gaps: true })
      .setData([found.t, ...topics.map((n) => found.topics[n])]);
  }
  if (consumers.length) {
    chart("chart-consumer-lag", consumers, consumers.map((_, i) => PALETTE[(i + 3) % PALETTE.length]), (v) => (v === null || Number.isInteger(v) ? String(v ?? "–") : ""), { gaps: true })
      .setData([found.t, ...consumers.map((n) => found.lag[n])]);
  }
}

// Dead letters: show one, send one or all back to the failing service, or purge all
// (asked first: the events are gone for good).
async function letterAction(seq, action) {
  const base = "/v1/telemetry/events/dead-letters";
  const message = $("dlq-message");
  try {
    if (action === "show") {
      const letter = await api(`${base}/${seq}`);
      $("dlq-detail").hidden = false;
      $("dlq-detail").textContent = JSON.stringify(letter, null, 2);
      return;
    }
    if (action === "purge") {
      if (!window.confirm("Delete every dead letter? The events are lost for good.")) return;
      const answer = await send(base, null, "DELETE");
      message.textContent = `purged ${answer.purged}`;
    } else {
      const answer = await send(seq === null ? `${base}/replay` : `${base}/${seq}/replay`);
      message.textContent = `replayed ${answer.replayed.length}`;
    }
    state.deadLettersAt = 0;  // the pill asks again
  } catch (error) {
    if (error instanceof Unauthorized) { handleError(error); return; }
    message.textContent = `${action} failed: ${error.message}`;
  }
}

// --- config ----------------------------------------------------------------------------

// Versions (newest first), what one changed, and the version each instance took. Values
// come from the API already safe: a secret is its fingerprint, never its value.
function config(arg) {
  let selected = arg ? Number(arg) : null;
  let shownVersions = "";
  every(POLL_MS * 2, async () => {
    await refreshStatus();
    const [history, instances] = await Promise.all([api("/v1/config/history"), api("/v1/config/instances")]);
    const newest = history.slice().reverse();
    const ids = newest.map((v) => v.version).join(",");
    if (ids !== shownVersions) {
      shownVersions = ids;
      fill($("config-versions").tBodies[0], newest.map((v) => el("tr", {
        "data-version": v.version, class: v.version === selected ? "selected" : "",
        onclick: () => { location.hash = `#/config/${v.version}`; } },
        el("td", { class: "num", text: v.version }),
        el("td", { class: "muted", text: new Date(v.time * 1000).toLocaleString([], { hour12: false }) }),
        el("td", { text: v.author }),
        el("td", {}, el("span", { class: `pill ${v.kind === "restore" ? "bad" : v.kind === "rollback" ? "warn" : "ok"}`, text: v.kind })),
        el("td", { text: v.message }),
        el("td", { class: "num", text: v.changes.length }))));
    }
    if (selected === null && newest.length) selected = newest[0].version;
    if (selected !== null && $("config-diff").dataset.version !== String(selected)) await drawDiff(selected);
    fill($("config-instances").tBodies[0], instances.map((i) => el("tr", { "data-instance": i.instance },
      el("td", { text: i.instance }),
      el("td", {}, el("span", { class: "dot", style: { background: colour(i.service) } }), i.service),
      el("td", { class: `num ${i.version !== null && !i.current ? "warn" : ""}`, text: i.version ?? "–" }),
      el("td", { class: i.outcome === "rejected" ? "bad" : i.outcome ? "ok" : "muted",
        text: i.outcome ?? "does not report (not a corral.sdk service, or starting)" }),
      el("td", { class: "num", title: i.latency === null && i.outcome ? "this instance started with the version it reports" : null,
        text: i.latency !== null ? ms(i.latency) : i.outcome ? "at start" : "–" }),
      el("td", { class: "muted", text: i.reported_at ? clock(i.reported_at) : "–" }))));
  });
}

async function drawDiff(version) {
  const table = $("config-diff");
  table.dataset.version = String(version);
  document.querySelectorAll("#config-versions tbody tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.version === String(version)));
  const before = Math.max(1, version - 1);
  const found = version === 1
    ? { from: 1, to: 1, changes: (await api("/v1/config/history")).find((v) => v.version === 1)?.changes || [] }
    : await api(`/v1/config/diff?a=${before}&b=${version}`);
  $("config-diff-title").textContent = version === 1 ? "version 1" : `version ${found.from} → ${found.to}`;
  const value = (v, cls) => (v === null ? el("td", { class: "muted", text: "(not set)" }) : el("td", {}, el("code", { class: cls, text: v })));
  fill(table.tBodies[0], found.changes.map((c) => el("tr", {},
    el("td", { text: c.service }), el("td", {}, el("code", { text: c.key })),
    value(c.old, "bad"), value(c.new, "ok"))));
  $("config-diff-empty").hidden = found.changes.length > 0;
}

// --- chaos -----------------------------------------------------------------------------

// Active and ended experiments, and the runs of `corral chaos run` with their verdicts.
// Stopping an experiment asks first.
function chaos() {
  every(POLL_MS, async () => {
    await refreshStatus();
    const [overview, runs] = await Promise.all([api("/v1/chaos"), api("/v1/chaos/runs?limit=50")]);
    const count = $("chaos-count");
    count.textContent = String(overview.active.length);
    count.className = `pill ${overview.active.length ? "warn" : "ok"}`;
    fill($("chaos-active").tBodies[0], overview.active.map((e) => el("tr", { "data-experiment": e.id },
      el("td", {}, el("code", { text: e.id })), el("td", { text: e.kind }), el("td", { text: e.target }),
      el("td", { class: "muted", text: e.detail }), el("td", { class: "muted", text: clock(e.started_at) }),
      el("td", { class: "num", text: e.remaining === null ? "–" : duration(e.remaining) }),
      el("td", { class: "actions" }, el("button", { type: "button", "data-action": "stop", text: "stop",
        onclick: () => stopExperiment(e) })))));
    $("chaos-active-empty").hidden = overview.active.length > 0;
    fill($("chaos-recent").tBodies[0], overview.recent.map((e) => el("tr", { "data-experiment": e.id },
      el("td", {}, el("code", { text: e.id })), el("td", { text: e.kind }), el("td", { text: e.target }),
      el("td", { class: e.state === "failed" ? "bad" : "muted", text: e.state }),
      el("td", { class: "muted", text: e.outcome ?? "" }),
      el("td", { class: "muted", text: clock(e.started_at) }),
      el("td", { class: "muted", text: e.ended_at ? clock(e.ended_at) : "–" }))));
    const rows = runs.map((r) => el("tr", { "data-run": r.id, onclick: () => showRun(r.id) },
      el("td", {}, el("code", { text: r.id })), el("td", { text: r.title }),
      el("td", {}, el("span", { class: `pill ${r.verdict === "held" ? "ok" : "bad"}`, text: r.verdict })),
      el("td", { class: "muted", text: r.reason }),
      el("td", { class: "muted", text: clock(r.started_at) }),
      el("td", { class: `num ${r.during_failed ? "bad" : ""}`, text: `${r.during_failed}/${r.during_checks}` })));
    fill($("chaos-runs").tBodies[0], rows);
    $("chaos-runs-empty").hidden = runs.length > 0;
  });
}

async function stopExperiment(experiment) {
  if (!window.confirm(`Stop ${experiment.id} (${experiment.kind} ${experiment.target}) now?`)) return;
  const message = $("chaos-message");
  message.hidden = false;
  message.className = "muted";
  try {
    const stopped = await send(`/v1/chaos/${encodeURIComponent(experiment.id)}`, null, "DELETE");
    message.textContent = `${stopped.id} ${stopped.state}${stopped.outcome ? `: ${stopped.outcome}` : ""}`;
  } catch (error) {
    if (error instanceof Unauthorized) { handleError(error); return; }
    message.className = "bad";
    message.textContent = `stop ${experiment.id} failed: ${error.message}`;
  }
}

async function showRun(id) {
  const run = await api(`/v1/chaos/runs/${encodeURIComponent(id)}`).catch(handleError);
  if (!run) return;
  document.querySelectorAll("#chaos-runs tbody tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.run === id));
  const detail = $("chaos-run-detail");
  detail.hidden = false;
  detail.textContent = JSON.stringify({
    id: run.id, title: run.title, file: run.file, verdict: run.verdict, reason: run.reason,
    steps: run.steps.map((s) => ({ step: s.step, action: s.action, ok: s.ok, detail: s.detail })),
    before: run.before, after: run.after, checks: `${run.during_failed} of ${run.during_checks} failed`,
  }, null, 2);
}

// --- logs ----------------------------------------------------------------------------

function closeLogs() {
  if (state.logSource) state.logSource.close();
  state.logSource = null;
}

const RUN_SERVICE = "corral-run"; // run markers: where each `corral up` began


function logLine(entry) {
  let text = entry.line;
  let level = entry.level || (entry.stream === "stderr" ? "stderr" : "");
  let traceId = entry.trace_id || null;
  try {
    const parsed = JSON.parse(entry.line);
    if (parsed && typeof parsed === "object") {
      // The SDK's default names, or ECS's (CORRAL_LOG_FORMAT=ecs).
      level = parsed.level || parsed["log.level"] || level;
      const given = parsed.trace_id ?? parsed["trace.id"];
      traceId = traceId || (typeof given === "string" && /^[0-9a-f]{32}$/.test(given) ? given : null);
      const skip = new Set(["event", "level", "timestamp", "service", "instance", "logger", "trace_id", "span_id",
        "message", "log.level", "@timestamp", "service.name", "service.node.name", "log.logger", "trace.id",
        "span.id", "ecs.version"]);
      const rest = Object.entries(parsed).filter(([k]) => !skip.has(k)).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
      text = [parsed.event ?? parsed.message ?? "", ...rest].join("  ");
    }
  } catch { /* not JSON: shown as it came */ }
  if (traceId && /^0+$/.test(traceId)) traceId = null;
  const run = entry.service === RUN_SERVICE ? "run" : "";
  return el("div", { class: `log-line ${entry.stream} ${level} ${run}`, "data-service": entry.service, "data-level": level },
    el("span", { class: "t", text: clock(entry.t) }),
    el("span", { style: { color: colour(entry.service) }, text: entry.instance }),
    el("span", { class: "msg" }, text,
      traceId ? el("a", { class: "trace-link", href: `#/traces/${traceId}`, text: "trace →" }) : null));
}

function logFilters() {
  return {
    service: $("log-service").value,
    instance: $("log-instance").value.trim(),
    level: $("log-level").value,
    q: $("log-text").value.trim(),
    trace: $("log-trace").value.trim().toLowerCase(),
  };
}

function logs(arg) {
  const select = $("log-service");
  // `#/logs/trace=ID&level=error`: the filters come with the link (from a trace).
  const given = new URLSearchParams(arg || "");
  $("log-trace").value = given.get("trace") || "";
  $("log-text").value = given.get("q") || "";
  $("log-level").value = given.get("level") || "";
  $("log-instance").value = given.get("instance") || "";
  every(POLL_MS * 5, async () => {
    const status = await refreshStatus();
    const names = Object.keys(status.services);
    if (select.options.length !== names.length + 1) {
      const value = select.value;
      select.replaceChildren(el("option", { value: "", text: "all" }), ...names.map((n) => el("option", { value: n, text: n })));
      select.value = value || (arg ? new URLSearchParams(arg).get("service") || "" : "");
    }
  });
  const box = $("log-lines");
  const older = $("log-older");
  let oldest = null;
  // With a filter beyond the service: a search of the kept index (newest last, older
  // lines on demand); without: the live tail.
  const search = async (more) => {
    const f = logFilters();
    const query = new URLSearchParams({ limit: "300" });
    for (const key of ["instance", "level", "q", "trace"]) if (f[key]) query.set(key, f[key]);
    if (f.service) query.set("service", f.service);
    if (more && oldest !== null) query.set("before", String(oldest));
    const found = await api(`/v1/telemetry/logs?${query}`);
    const lines = found.slice().reverse().map(logLine);
    if (more) box.prepend(...lines); else box.replaceChildren(...lines);
    if (found.length) oldest = found[found.length - 1].id;
    older.hidden = found.length < 300;
    $("log-status").textContent = `${box.childElementCount} kept line${box.childElementCount === 1 ? "" : "s"} match`;
    if (!more) box.scrollTop = box.scrollHeight;
  };
  const open = () => {
    closeLogs();
    box.replaceChildren();
    oldest = null;
    older.hidden = true;
    const f = logFilters();
    if (f.instance || f.level || f.q || f.trace) {
      $("log-pause").hidden = true;
      $("log-status").textContent = "searching…";
      search(false).catch(handleError);
      return;
    }
    $("log-pause").hidden = false;
    const query = new URLSearchParams({ follow: "true", tail: "200" });
    if (f.service) query.append("service", f.service);
    const source = new EventSource(`/v1/logs?${query}`);
    state.logSource = source;
    $("log-status").textContent = "connecting…";
    source.onopen = () => { $("log-status").textContent = "live"; };
    source.onerror = () => { $("log-status").textContent = "reconnecting…"; };
    source.addEventListener("log", (message) => {
      if (state.logPaused) return;
      const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 30;
      box.append(logLine(JSON.parse(message.data)));
      while (box.childElementCount > 1500) box.firstElementChild.remove();
      if (atBottom) box.scrollTop = box.scrollHeight;
    });
  };
  select.onchange = open;
  $("log-filters").onsubmit = (event) => { event.preventDefault(); open(); };
  $("log-level").onchange = open;
  $("log-clear").onclick = () => {
    for (const id of ["log-instance", "log-text", "log-trace"]) $(id).value = "";
    $("log-level").value = "";
    if (location.hash !== "#/logs") location.hash = "#/logs"; else open();
  };
  older.onclick = () => { search(true).catch(handleError); };
  $("log-pause").onclick = () => {
    state.logPaused = !state.logPaused;
    $("log-pause").textContent = state.logPaused ? "resume" : "pause";
  };
  open();
}

// --- start -----------------------------------------------------------------------------

async function boot() {
  if (!(await exchangeLoginToken())) return;
  try {
    await refreshStatus();
  } catch (error) {
    if (error instanceof Unauthorized) { showLogin(); return; }
    throw error;
  }
  $("login").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = false;
  $("logout").onclick = async () => {
    const answer = await fetch("/v1/dashboard/session", { method: "DELETE" });
    if (!answer.ok) {
      const problem = await answer.json().catch(() => ({}));
      handleError(new Error(`logout refused: ${problem.title || answer.status}`));
      return;
    }
    showLogin("Logged out. Run `corral dashboard` to log in again.");
  };
  window.addEventListener("hashchange", route);
  window.addEventListener("resize", sizeCharts);
  route();
}

window.addEventListener("load", () => { boot().catch(handleError); });
