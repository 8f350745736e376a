// The gslb status page: draws /status (the same document the API serves to scripts) every
// POLL_MS. No library, nothing fetched but this API; text goes in with textContent only.
"use strict";

const POLL_MS = 1500;
const MAX_SHARE = 0.1; // a /status that takes long (thousands of endpoints) is asked for less often
const SVG = "http://www.w3.org/2000/svg";
const state = { doc: null, zone: null, record: null, token: "", map: null, failures: 0 };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// Equirectangular, as tools/make_world_svg.py drew the map: a 360 x 180 viewBox.
function project(lat, lon) { return [lon + 180, 90 - lat]; }

function whenParts(iso) {
  const date = new Date(iso);
  const seconds = Math.round((Date.now() - date.getTime()) / 1000);
  const ago = seconds < 60 ? `${Math.max(seconds, 0)}s ago` : seconds < 3600 ? `${Math.round(seconds / 60)}m ago`
    : `${Math.round(seconds / 3600)}h ago`;
  return [`${date.toISOString().slice(11, 19)}Z`, `(${ago})`];
}

function when(iso) { return iso ? whenParts(iso).join(" ") : ""; }

function whenCell(iso) {
  return el("td", { class: "muted when" }, ...(iso ? whenParts(iso).map((part) => el("span", {}, part)) : []));
}

function rtt(seconds) { return seconds == null ? "" : `${(seconds * 1000).toFixed(1)} ms`; }

// -- the map -----------------------------------------------------------------------------------

async function loadMap() {
  const response = await fetch("/ui/world.svg");
  const text = await response.text();
  const parsed = new DOMParser().parseFromString(text, "image/svg+xml").documentElement;
  const world = document.importNode(parsed, true);
  world.setAttribute("role", "img");
  world.setAttribute("aria-label", "world map of regions");
  const overlay = svg("g", { id: "overlay" });
  world.append(overlay);
  document.getElementById("map").append(world);
  state.map = overlay;
}

function drawMap(doc) {
  const overlay = state.map;
  if (!overlay) return;
  overlay.replaceChildren();
  const zone = state.zone;
  const regions = (doc.regions[zone] || {}).regions || {};
  const routing = doc.routing[zone] || {};
  const routes = svg("g", { class: "routes" });
  const marks = svg("g", { class: "regions" });
  overlay.append(routes, marks);
  for (const [code, continent] of Object.entries(routing)) {
    const [x1, y1] = project(continent.point[0], continent.point[1]);
    routes.append(svg("circle", { class: "continent", cx: x1, cy: y1, r: 0.9 }));
    routes.append(svg("text", { class: "continent-label", x: x1 + 1.5, y: y1 + 1 }, code));
    const sent = state.record ? continent.records[state.record] : null;
    const target = sent ? sent.region : continent.region;
    const location = target && regions[target] ? regions[target].location : null;
    if (!location) continue;
    const [x2, y2] = project(location[0], location[1]);
    const bend = 0.2 * Math.hypot(x2 - x1, y2 - y1);
    const mx = (x1 + x2) / 2, my = (y1 + y2) / 2 - bend;
    let kind = "route";
    if (sent && sent.all_down) kind += " alldown";
    else if (target !== continent.region) kind += " fallback";
    const line = svg("path", { class: kind, d: `M${x1} ${y1}Q${mx} ${my} ${x2} ${y2}`,
      "data-continent": code, "data-region": target });
    line.append(svg("title", {}, `${continent.name} (${continent.rule}) -> ${target}`));
    routes.append(line);
  }
  for (const [name, region] of Object.entries(regions)) {
    if (!region.location) continue;
    const [x, y] = project(region.location[0], region.location[1]);
    const group = svg("g", { class: `region ${region.health}`, "data-region": name, "data-health": region.health });
    group.append(svg("circle", { cx: x, cy: y, r: 2.6 }));
    group.append(svg("text", { x: x + 3.4, y: y + 1.4 }, name));
    const counts = region.counts;
    group.append(svg("title", {}, `${name}: ${region.health} (${counts.UP} up, ${counts.DRAIN} drain, ${counts.DOWN} down)`));
    marks.append(group);
  }
}

// -- panels ------------------------------------------------------------------------------------

function fillSelect(select, values, current) {
  const same = select.options.length === values.length && values.every((v, i) => select.options[i].value === v);
  if (!same) select.replaceChildren(...values.map((v) => el("option", { value: v }, v)));
  if (current !== null && values.includes(current)) select.value = current;
  return select.value || null;
}

function drawHeader(doc) {
  const node = document.getElementById("node");
  node.textContent = doc.node_name ? `${doc.node_name} - gslb ${doc.gslb}` : `gslb ${doc.gslb}`;
  const summary = document.getElementById("summary");
  const down = doc.endpoints.filter((e) => e.status !== "UP").length;
  summary.textContent = `generation ${doc.config.generation}, ${doc.endpoints.length} endpoints, ${down} not up`;
}

function drawRegions(doc) {
  const zone = state.zone;
  const regions = (doc.regions[zone] || {}).regions || {};
  const byKey = new Map(doc.endpoints.map((e) => [`${e.check || ""}/${e.address}`, e]));
  const cards = [];
  for (const [name, region] of Object.entries(regions)) {
    const card = el("div", { class: `region-card ${region.health}`, "data-region": name });
    const counts = region.counts;
    card.append(el("h3", {}, name, el("span", { class: "word" },
      `${region.health} - ${counts.UP} up, ${counts.DRAIN} drain, ${counts.DOWN} down`)));
    const table = el("table", {}, el("tr", {}, ...["endpoint", "check", "state", "why", "RTT", "last change", ""]
      .map((h) => el("th", {}, h))));
    for (const [check, address] of region.endpoints) {
      const report = byKey.get(`${check || ""}/${address}`);
      if (!report) continue;
      const row = el("tr", { "data-address": address },
        el("td", {}, address), el("td", { class: "muted" }, check || "-"),
        el("td", { class: `state ${report.status}` }, report.status + (report.override ? ` (${report.override})` : "")),
        el("td", {}, report.reason), el("td", { class: "num" }, rtt(report.rtt)),
        whenCell(report.last_change), el("td", {}, adminButtons(address, check)));
      table.append(row);
    }
    card.append(table);
    cards.push(card);
  }
  const container = el("div", { class: "regions" }, ...cards);
  document.getElementById("regions").replaceChildren(container);
}

function drawEvents(doc) {
  const recent = doc.recent || { health_changes: [], reloads: [], traffic: { qps: 0, by_region: {}, by_rcode: {}, history: [] } };
  const changes = recent.health_changes.slice(0, 30).map((c) => el("li", {}, el("time", {}, when(c.at)),
    `${c.check ? c.check + "/" : ""}${c.address} ${c.from} -> `, el("span", { class: `state ${c.to}` }, c.to),
    ` ${c.reason}`));
  document.getElementById("changes").replaceChildren(...(changes.length ? changes
    : [el("li", { class: "empty" }, "none since the page's server started")]));
  const reloads = recent.reloads.slice(0, 20).map((r) => el("li", {}, el("time", {}, when(r.at)),
    `generation ${r.generation}: ${r.ok ? "loaded" : "refused"} (${r.reason || ""})`,
    ...(r.problems && r.problems.length ? [el("div", { class: "muted" }, r.problems.join("; "))] : [])));
  document.getElementById("reloads").replaceChildren(...reloads);
  const traffic = recent.traffic;
  document.getElementById("qps").textContent = traffic.qps.toFixed(1);
  fillRates("by-region", traffic.by_region);
  fillRates("by-rcode", traffic.by_rcode);
  const history = traffic.history;
  const top = Math.max(1, ...history);
  const points = history.map((v, i) => `${(60 - history.length + i).toFixed(0)},${(20 - (v / top) * 19).toFixed(2)}`);
  document.getElementById("sparkline").setAttribute("points", points.join(" "));
}

function fillRates(id, rates) {
  const rows = Object.entries(rates).sort((a, b) => b[1] - a[1])
    .map(([name, value]) => el("tr", {}, el("td", {}, name), el("td", { class: "num" }, value.toFixed(1))));
  document.querySelector(`#${id} tbody`).replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "muted" }, "idle"))]));
}

// -- admin (only with a token) --------------------------------------------------------------------

function adminButtons(address, check) {
  if (!state.token) return "";
  const span = el("span", {});
  for (const action of ["up", "down", "drain", "auto"]) {
    const button = el("button", { type: "button" }, action);
    button.addEventListener("click", () => setEndpoint(address, check, action));
    span.append(button, " ");
  }
  return span;
}

async function setEndpoint(address, check, action) {
  const result = document.getElementById("admin-result");
  const body = { state: action };
  if (check) body.check = check;
  try {
    const response = await fetch(`/admin/endpoints/${encodeURIComponent(address)}`, {
      method: "POST", headers: { "Content-Type": "application/json", Authorization: `Bearer ${state.token}` },
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    result.textContent = response.ok ? `${address}: ${action}` : `${address}: ${answer.error}`;
  } catch (error) {
    result.textContent = `${address}: ${error}`;
  }
  poll(false);
}

// -- the loop ----------------------------------------------------------------------------------

function draw(doc) {
  state.doc = doc;
  const zones = Object.keys(doc.regions);
  state.zone = fillSelect(document.getElementById("zone"), zones, state.zone);
  const records = doc.records.filter((r) => r.zone === state.zone).map((r) => r.record);
  state.record = fillSelect(document.getElementById("record"), records, state.record);
  drawHeader(doc);
  drawMap(doc);
  drawRegions(doc);
  drawEvents(doc);
}

let timer = null;

async function poll(schedule = true) {
  const live = document.getElementById("live");
  const started = performance.now();
  let delay = POLL_MS;
  try {
    const response = await fetch("/status", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    draw(await response.json());
    state.failures = 0;
    live.className = "live ok";
    live.textContent = `live, updated ${new Date().toISOString().slice(11, 19)}Z`;
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
    delay = Math.max(POLL_MS, (performance.now() - started) / MAX_SHARE);
  } catch (error) {
    state.failures += 1;
    live.className = "live stale";
    live.textContent = `no answer from the server (${error.message}); retrying`;
  }
  if (schedule) {
    clearTimeout(timer);
    timer = setTimeout(poll, delay);
  }
}

async function start() {
  document.getElementById("zone").addEventListener("change", (e) => { state.zone = e.target.value; state.record = null; draw(state.doc); });
  document.getElementById("record").addEventListener("change", (e) => { state.record = e.target.value; draw(state.doc); });
  document.getElementById("token-form").addEventListener("submit", (e) => e.preventDefault());
  document.getElementById("token").addEventListener("input", (e) => { state.token = e.target.value.trim(); if (state.doc) draw(state.doc); });
  try {
    await loadMap();
  } catch (error) {
    document.getElementById("map").textContent = `map not loaded: ${error.message}`;
  }
  poll();
}

document.addEventListener("DOMContentLoaded", start);
