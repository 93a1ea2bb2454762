// consensus-lab dashboard: plain JavaScript + SVG, no build step, nothing fetched from elsewhere.
//
// The server sends one full "state" message when we connect (and after a reset or preset),
// then "update" frames ~20 times a second: node statuses, the messages sent since the last
// frame (with simulated send and delivery times) and new events. Between frames we estimate
// the simulated clock from the last frame's time and speed, so message dots fly smoothly and
// take exactly their simulated latency at the chosen speed.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const CX = 240, CY = 166, RING = 128, NODE_R = 30;
// The clusters, their algorithms and message kinds all come from the server's state message,
// so an algorithm the page has never heard of still gets a panel, a legend and coloured dots.
let CLUSTERS = [];

// Colours of the messages we know by name; any other kind is coloured by its phase.
const MSG_COLORS = {
  RequestVote: "#f59e0b", RequestVoteReply: "#fde68a",
  AppendEntries: "#3b82f6", AppendEntriesReply: "#93c5fd",
  Prepare: "#a855f7", Promise: "#e9d5ff",
  Accept: "#14b8a6", Accepted: "#99f6e4",
  Commit: "#22c55e", Nack: "#ef4444",
  ClientRequest: "#f8fafc", ClientReply: "#cbd5e1",
  // Membership: the operator's request, the leader's hand-over, snapshots for a new member.
  ConfigChange: "#fb923c", TimeoutNow: "#f472b6",
  InstallSnapshot: "#a3e635", InstallSnapshotReply: "#d9f99d", Learn: "#a3e635", Learned: "#d9f99d",
};
const PHASE_COLORS = {
  "replicate": "#3b82f6", "acknowledge": "#93c5fd", "commit notice": "#22c55e",
  "ask for votes": "#f59e0b", "vote / promise": "#fde68a", "rejection": "#ef4444",
  "client": "#f8fafc",
};
const colorOf = {};  // message kind -> colour, filled from each state message
// Where a node stands in its cluster's configuration; a plain voter gets no label.
const MEMBER_LABELS = {
  "voter (new)": "joining voter", "voter (old)": "leaving voter", learner: "learner",
  joining: "joining", removed: "removed",
};
const ROLE_COLORS = {
  follower: "#475569", precandidate: "#ca8a04", candidate: "#ea580c", leader: "#059669",
  crashed: "#1e293b",
};

const state = {
  snap: null,            // last full state
  clusters: {},          // cluster name -> latest cluster state
  simBase: 0, wallBase: 0, running: false, speed: 0.1, shown: 0,
  dots: {},              // cluster name -> message dots in flight
  meta: {},              // cluster name -> its algorithm: title, term_label, palette, messages
  groups: {},            // node id -> partition group (0..2)
  clickMode: "kill",
  ws: null, backoff: 500, seq: 0,
};
window.dashboard = state; // for the browser tests and for poking around in devtools

const $ = (id) => document.getElementById(id);
function el(tag, attrs = {}, parent = null) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}
function h(tag, attrs = {}, text = null) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== null) e.textContent = text;
  return e;
}

// -- connection, with reconnect and backoff ------------------------------------------------

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/ws`);
  state.ws = ws;
  setConn("connecting…", "");
  ws.onopen = () => { state.backoff = 500; setConn("connected", "ok"); };
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "state") onState(msg);
    else if (msg.type === "update") onUpdate(msg);
    else if (msg.type === "ack" && !msg.ok) flash(msg.error || "command failed");
  };
  ws.onclose = () => {
    if (state.ws !== ws) return;
    const wait = state.backoff;
    state.backoff = Math.min(state.backoff * 2, 8000);
    setConn(`disconnected — retrying in ${(wait / 1000).toFixed(1)} s`, "down");
    setTimeout(connect, wait);
  };
  ws.onerror = () => ws.close();
}
function setConn(text, cls) { const c = $("conn"); c.textContent = text; c.className = "conn " + cls; }
function send(cmd) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) { flash("not connected"); return; }
  state.ws.send(JSON.stringify({ type: "command", id: ++state.seq, ...cmd }));
}
function flash(text) {
  const ex = $("preset-explain");
  ex.dataset.saved = ex.dataset.saved || ex.innerHTML;
  ex.innerHTML = `<b>⚠ ${escapeHtml(text)}</b>`;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { ex.innerHTML = ex.dataset.saved; delete ex.dataset.saved; }, 3000);
}
function escapeHtml(s) {
  return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
}

// -- simulated clock estimate ----------------------------------------------------------------

function syncClock(msg, hard) {
  state.simBase = msg.now;
  state.wallBase = performance.now();
  state.running = msg.running;
  state.speed = msg.speed;
  if (hard) state.shown = msg.now;
}
function simNow() {
  let t = state.simBase;
  if (state.running) {
    // Never run more than two frames ahead of the last frame: a stalled server must not
    // make the dots overshoot.
    t += Math.min(performance.now() - state.wallBase, 150) * state.speed;
  }
  state.shown = Math.max(state.shown, t); // monotonic: frames jitter, time should not
  return state.shown;
}

// -- full state --------------------------------------------------------------------------------

function onState(msg) {
  state.snap = msg;
  syncClock(msg, true);
  CLUSTERS = Object.keys(msg.clusters);
  state.clusters = {};
  state.meta = {};
  state.dots = {};
  CLUSTERS.forEach((name, i) => {
    const cl = msg.clusters[name];
    // A backend that sends no descriptions still gets a usable page.
    state.meta[name] = (msg.algorithms || {})[name] || {
      title: cl.title || name, palette: i, messages: [],
      term_label: cl.nodes.some((n) => n.ballot) ? "ballot" : "term",
    };
    state.dots[name] = [];
    for (const m of state.meta[name].messages) colorOf[m.kind] = MSG_COLORS[m.kind] || PHASE_COLORS[m.phase];
  });
  document.title = `consensus-lab · ${CLUSTERS.map((n) => state.meta[n].title).join(" and ")}, live`;
  buildPanels();
  legend();
  $("mode").textContent = msg.mode;
  $("seed").value = msg.seed;
  $("nodes").value = msg.node_ids.length;
  const caps = msg.capabilities || {};
  for (const [id, cap] of [["pause", "pause"], ["step", "step"], ["resume", "pause"],
    ["drop", "drop_next"], ["reset", "reset"], ["speed", "speed"], ["add-node", "membership"]]) {
    $(id).disabled = !caps[cap];
  }
  for (const b of document.querySelectorAll("#click-mode .membership")) b.disabled = !caps.membership;
  $("preset-buttons").parentElement.classList.toggle("unsupported", !caps.presets);
  buildPresets(msg);
  buildGroups(msg.node_ids);
  for (const name of CLUSTERS) buildCluster(name, msg.clusters[name]);
  $("events").innerHTML = "";
  addEvents(msg.events);
  applyStatus(msg);
  setSpeedSlider(msg.speed);
}

function buildPresets(msg) {
  const box = $("preset-buttons");
  box.innerHTML = "";
  for (const p of msg.presets || []) {
    const b = h("button", { "data-preset": p.name, title: p.explain }, p.title);
    if (msg.preset && msg.preset.name === p.name) b.classList.add("on");
    b.onclick = () => send({ op: "preset", name: p.name, seed: Number($("seed").value) || 0 });
    box.appendChild(b);
  }
  const ex = $("preset-explain");
  delete ex.dataset.saved;
  if (msg.preset) {
    const title = /[?.!]$/.test(msg.preset.title) ? msg.preset.title : msg.preset.title + ".";
    ex.innerHTML = `<b>${escapeHtml(title)}</b> ${escapeHtml(msg.preset.explain)}`;
  }
  else if (msg.mode === "mqtt") ex.textContent = "Watching real node processes over MQTT: kill (SIGKILL), revive, time out, partition and heal act on them, and add node / remove / transfer change their membership as `cluster add/remove/transfer` does; time runs on the wall clock.";
  else ex.textContent = "Pick a scenario to replay one of the tutorial's quiz questions, or drive the clusters yourself: click a node to kill or revive it, send requests, partition and heal; add a node (it joins as a learner, then votes), remove one or hand it the leadership.";
}

function buildGroups(ids) {
  const box = $("groups");
  box.innerHTML = "";
  for (const id of ids) {
    if (!(id in state.groups)) state.groups[id] = 0;
    const chip = h("span", { class: `chip g${state.groups[id]}`, "data-node": id },
      `${id}:${"ABC"[state.groups[id]]}`);
    chip.onclick = () => { state.groups[id] = (state.groups[id] + 1) % 3; buildGroups(ids); };
    box.appendChild(chip);
  }
}

// One panel per cluster, and a "<title> only" choice for the commands.
function buildPanels() {
  const box = $("clusters");
  const target = $("target");
  const chosen = target.value;
  box.innerHTML = "";
  // "both" is the server's word for every cluster, however many there are.
  target.innerHTML = `<option value="both">${CLUSTERS.length === 2 ? "both" : "all"} clusters</option>`;
  for (const name of CLUSTERS) {
    const meta = state.meta[name];
    const sec = h("section", { class: "cluster", id: `cluster-${name}`, "data-cluster": name });
    const h2 = h("h2");
    h2.appendChild(h("span", { class: "algo" }, meta.title));
    h2.appendChild(document.createTextNode(" "));
    h2.appendChild(h("span", { class: "summary", id: `sum-${name}` }));
    sec.appendChild(h2);
    sec.appendChild(h("div", { class: "config-line", id: `cfg-${name}` }));
    el("svg", { class: "ring", viewBox: "0 0 460 330", id: `svg-${name}`, "aria-label": `${meta.title} cluster` }, sec);
    sec.appendChild(h("table", { class: "nodes", id: `table-${name}` }));
    box.appendChild(sec);
    target.appendChild(h("option", { value: name }, `${meta.title} only`));
  }
  target.value = [...target.options].some((o) => o.value === chosen) ? chosen : "both";
}

// The term as the algorithm shows it: a number, or Multi-Paxos's full ballot ("3.n2").
function usesBallots(name) { return state.meta[name].term_label === "ballot"; }

function nodePos(i, n) {
  if (n === 1) return [CX, CY];
  const a = -Math.PI / 2 + (2 * Math.PI * i) / n;
  return [CX + RING * Math.cos(a), CY + RING * Math.sin(a)];
}

function buildCluster(name, cl) {
  const svg = $(`svg-${name}`);
  svg.innerHTML = "";
  const ids = cl.nodes.map((n) => n.id);
  const pos = {};
  ids.forEach((id, i) => { pos[id] = nodePos(i, ids.length); });
  pos.web = [48, 36];
  pos.op = [48, 296];  // the operator that sends membership changes
  const links = el("g", { class: "links" }, svg);
  for (let i = 0; i < ids.length; i++) {
    for (let j = i + 1; j < ids.length; j++) {
      const [x1, y1] = pos[ids[i]], [x2, y2] = pos[ids[j]];
      el("line", { class: "link", x1, y1, x2, y2, "data-a": ids[i], "data-b": ids[j] }, links);
    }
  }
  const client = el("g", { class: "client" }, svg);
  el("rect", { x: 18, y: 22, width: 60, height: 28, rx: 6 }, client);
  el("text", { x: 48, y: 40 }, client).textContent = "client";
  const operator = el("g", { class: "client operator" }, svg);
  el("rect", { x: 14, y: 282, width: 68, height: 28, rx: 6 }, operator);
  el("text", { x: 48, y: 300 }, operator).textContent = "operator";
  const nodes = el("g", { class: "nodes" }, svg);
  const C = 2 * Math.PI * (NODE_R + 6);
  for (const id of ids) {
    const [x, y] = pos[id];
    const g = el("g", { class: "node", "data-cluster": name, "data-node": id, "data-role": "follower",
      transform: `translate(${x},${y})`, tabindex: 0, role: "button" }, nodes);
    el("title", {}, g).textContent = `${id}: click to act on it`;
    el("circle", { class: "timer-bg", r: NODE_R + 6 }, g);
    el("circle", { class: "timer", r: NODE_R + 6, transform: "rotate(-90)",
      "stroke-dasharray": `0 ${C}` }, g);
    el("circle", { class: "body", r: NODE_R }, g);
    el("text", { class: "id", y: -3 }, g).textContent = id;
    el("text", { class: "sub", y: 12 }, g);
    el("text", { class: "member", y: NODE_R + 19 }, g);
    g.addEventListener("click", () => onNodeClick(name, id));
    g.addEventListener("keydown", (e) => { if (e.key === "Enter") onNodeClick(name, id); });
  }
  el("g", { class: "dots" }, svg);
  state.clusters[name] = { ...cl, pos, circumference: C, ids: ids.join(" ") };
  const table = $(`table-${name}`);
  const term = escapeHtml(state.meta[name].term_label);
  table.innerHTML = `<colgroup><col class="c-id"><col class="c-role"><col class="c-term">
    <col class="c-commit"><col class="c-member"><col><col class="c-act"></colgroup>
    <thead><tr><th>node</th><th>role</th><th>${term}</th>
    <th>commit</th><th title="its place in the leader's configuration; snapshot index when compaction is on">member</th>
    <th>log tail: index·${term} command</th><th></th></tr></thead>`;
  const body = h("tbody");
  for (const id of ids) {
    const tr = h("tr", { "data-node": id });
    tr.innerHTML = `<td><span class="swatch"></span>${id}</td><td class="role"></td><td class="term"></td><td class="commit"></td><td class="member"></td><td class="log"></td>
      <td class="act"><button class="transfer" title="Transfer leadership to ${id}">lead</button><button class="remove" title="Remove ${id} from the cluster">✕</button></td>`;
    tr.querySelector(".transfer").onclick = () => membership("transfer", name, id);
    tr.querySelector(".remove").onclick = () => membership("remove", name, id);
    body.appendChild(tr);
  }
  table.appendChild(body);
}

// -- updates -----------------------------------------------------------------------------------

function onUpdate(msg) {
  if (!state.snap) return;
  syncClock(msg, false);
  applyStatus(msg);
  const now = simNow();
  for (const m of msg.messages || []) {
    const flight = (m.t1 === null ? 30 : m.t1 - m.t0) / Math.max(state.speed, 1e-6);
    if (flight < 20 && state.running) continue; // faster than the eye at this speed
    if ((m.t1 === null ? m.t0 + 30 : m.t1) < now) continue;
    const dots = state.dots[m.c];
    if (dots && dots.length < 600) dots.push(m);
  }
  addEvents(msg.events);
}

function applyStatus(msg) {
  const clock = $("now");
  clock.textContent = msg.mode === "mqtt" ? `${(msg.now / 1000).toFixed(1)} s` : `${(msg.now / 1000).toFixed(3)} s`;
  clock.classList.toggle("paused", !msg.running);
  $("pause").classList.toggle("on", !msg.running);
  for (const name of CLUSTERS) {
    const cl = msg.clusters[name];
    if (!cl || !state.clusters[name]) continue;
    // A node was added: lay the ring and the table out again (dots in flight keep going).
    if (cl.nodes.map((n) => n.id).join(" ") !== state.clusters[name].ids) {
      buildCluster(name, cl);
      buildGroups([...new Set(CLUSTERS.flatMap((c) => (msg.clusters[c] || state.clusters[c]).nodes.map((n) => n.id)))]);
    }
    Object.assign(state.clusters[name], cl);
    const svg = $(`svg-${name}`);
    const table = $(`table-${name}`);
    for (const n of cl.nodes) {
      const g = svg.querySelector(`.node[data-node="${n.id}"]`);
      if (!g) continue;
      g.setAttribute("data-role", n.role);
      g.setAttribute("data-alive", n.alive ? "1" : "0");
      g.setAttribute("data-member", n.member || "");
      g.querySelector(".member").textContent = MEMBER_LABELS[n.member] || "";
      const ballots = usesBallots(name);
      const label = ballots ? `${n.ballot || "0"} · c${n.commit_index}` : `T${n.term} · c${n.commit_index}`;
      g.querySelector(".sub").textContent = n.alive ? label : "down";
      const tr = table.querySelector(`tr[data-node="${n.id}"]`);
      tr.classList.toggle("down", !n.alive);
      tr.querySelector(".swatch").style.background = ROLE_COLORS[n.role] || "#475569";
      tr.querySelector(".role").textContent = n.role;
      tr.querySelector(".term").textContent = ballots ? (n.ballot || "–") : n.term;
      tr.querySelector(".commit").textContent = n.commit_index;
      tr.dataset.member = n.member || "";
      const member = tr.querySelector(".member");
      member.textContent = n.member || "–";
      if (n.snapshot_index) member.appendChild(h("small", { class: "snap" }, `snap ${n.snapshot_index}`));
      member.title = n.snapshot_index ? `${n.member}; its latest snapshot covers up to index ${n.snapshot_index}` : (n.member || "");
      const log = tr.querySelector(".log");
      log.innerHTML = "";
      for (const e of n.log || []) {
        const chip = h("span", { class: `logchip${e.ok ? " committed" : " pending"}${e.cmd === "no-op" ? " noop" : ""}`,
          "data-cmd": e.cmd, title: `${e.ok ? "committed" : "not committed yet"}: index ${e.i}, ${state.meta[name].term_label} ${e.b}: ${e.cmd}` });
        chip.innerHTML = `<i>${e.i}·${escapeHtml(e.b)}</i>${escapeHtml(e.cmd)}`;
        log.appendChild(chip);
      }
    }
    const cut = new Set((cl.blocked || []).map(([a, b]) => [a, b].sort().join(" ")));
    for (const line of svg.querySelectorAll(".link")) {
      line.classList.toggle("cut", cut.has([line.dataset.a, line.dataset.b].sort().join(" ")));
    }
    const leader = cl.leader ? `leader <b>${cl.leader}</b>` : `<span class="warn">no leader</span>`;
    const extra = cl.violations && cl.violations.length ? ` · <span class="warn">${cl.violations.length} safety violation(s)</span>` : "";
    const pending = cl.pending_requests ? ` · ${cl.pending_requests} request(s) waiting` : "";
    $(`sum-${name}`).innerHTML = `${leader} · committed <b>${cl.committed}</b>${pending}${extra}`;
    configLine(name, cl);
  }
}

// "configuration voters=n1,n2,n3 …", marked while joint, and the change in flight if any.
function configLine(name, cl) {
  const line = $(`cfg-${name}`);
  if (!line) return;
  line.classList.toggle("joint", !!cl.joint);
  line.dataset.config = cl.config || "";
  const changes = cl.changes || [];
  const last = changes.length ? changes[changes.length - 1] : null;
  let change = "";
  if (last && !last.done) change = ` · <span class="inflight">${escapeHtml(last.change)}: in flight</span>`;
  else if (last) change = ` · last change: ${escapeHtml(last.change)} <span class="${last.ok ? "okc" : "warn"}">${last.ok ? "done" : "refused: " + escapeHtml(last.result || "")}</span>`;
  const cfg = cl.config ? escapeHtml(cl.config) : "none known yet";
  line.innerHTML = `${cl.joint ? "<b>joint</b> " : ""}configuration <code>${cfg}</code>${change}`;
}

function addEvents(events) {
  if (!events || !events.length) return;
  const list = $("events");
  for (const e of events) {
    const li = h("li", { class: `k-${e.kind}` });
    const t = state.snap && state.snap.mode === "mqtt" ? (e.t / 1000).toFixed(1) + "s" : (e.t / 1000).toFixed(3) + "s";
    li.appendChild(h("span", { class: "t" }, t));
    const meta = state.meta[e.cluster];
    if (meta) li.appendChild(h("span", { class: `c p${meta.palette}` }, meta.short || meta.title));
    li.appendChild(h("span", { class: "x" }, e.text));
    list.insertBefore(li, list.firstChild);
  }
  while (list.children.length > 300) list.removeChild(list.lastChild);
}

// -- animation ---------------------------------------------------------------------------------

function frame() {
  const now = simNow();
  for (const name of CLUSTERS) drawDots(name, now);
  drawTimers(now);
  requestAnimationFrame(frame);
}

function drawDots(name, now) {
  const cl = state.clusters[name];
  if (!cl) return;
  const layer = $(`svg-${name}`).querySelector(".dots");
  if (!layer) return;
  const keep = [];
  let html = "";
  for (const m of state.dots[name]) {
    const a = cl.pos[m.s], b = cl.pos[m.d];
    if (!a || !b) continue;
    const end = m.t1 === null ? m.t0 + 30 : m.t1;
    if (now > end) continue;
    keep.push(m);
    if (now < m.t0) continue;
    let f = (now - m.t0) / Math.max(end - m.t0, 1e-6);
    if (m.t1 === null) f = 0.45 * f; // a dropped message dies halfway
    // Offset from the centre line so requests and replies between a pair don't overlap.
    const dx = b[0] - a[0], dy = b[1] - a[1], len = Math.hypot(dx, dy) || 1;
    const ox = (-dy / len) * 4, oy = (dx / len) * 4;
    const x = a[0] + dx * f + ox, y = a[1] + dy * f + oy;
    const color = colorOf[m.k] || MSG_COLORS[m.k] || "#e2e8f0";
    const r = m.hb ? 3.2 : (m.n ? 5.5 : 4.4);
    if (m.t1 === null) {
      html += `<text class="drop" x="${x.toFixed(1)}" y="${(y + 4).toFixed(1)}">×</text>`;
    } else {
      html += `<circle class="dot${m.neg ? " neg" : ""}" cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="${r}" fill="${color}"><title>${m.k} ${m.s}→${m.d}</title></circle>`;
    }
  }
  state.dots[name] = keep;
  layer.innerHTML = html;
}

function drawTimers(now) {
  const cfg = state.snap && state.snap.config;
  const full = cfg ? cfg.election_timeout_ms[1] : 300;
  for (const name of CLUSTERS) {
    const cl = state.clusters[name];
    if (!cl || !cl.nodes) continue;
    const svg = $(`svg-${name}`);
    for (const n of cl.nodes) {
      const arc = svg.querySelector(`.node[data-node="${n.id}"] .timer`);
      if (!arc) continue;
      let f = 0;
      if (n.alive && n.election_deadline !== null && n.election_deadline !== undefined) {
        f = Math.max(0, Math.min(1, (n.election_deadline - now) / full));
      }
      arc.setAttribute("stroke-dasharray", `${(f * cl.circumference).toFixed(1)} ${cl.circumference.toFixed(1)}`);
      arc.classList.toggle("low", f > 0 && f < 0.25);
    }
  }
}

// -- controls ----------------------------------------------------------------------------------

function target() { return $("target").value; }

function onNodeClick(cluster, id) {
  const which = target() === "both" ? "both" : cluster;
  const n = (state.clusters[cluster].nodes || []).find((x) => x.id === id);
  if (state.clickMode === "kill") send({ op: n && n.alive ? "kill" : "revive", node: id, cluster: which });
  else if (state.clickMode === "timeout") send({ op: "timeout", node: id, cluster: which });
  else if (state.clickMode === "remove" || state.clickMode === "transfer") membership(state.clickMode, cluster, id);
  else send({ op: "isolate", node: id, cluster: which });
}

// Remove a node or hand it the leadership: the operator asks the leader, which answers
// once the change is complete (the configuration line shows it in flight until then).
function membership(op, cluster, id) {
  send({ op, node: id, cluster: target() === "both" ? "both" : cluster });
}

function speedFromSlider(v) { return 0.01 * Math.pow(10, v / 25); }
function sliderFromSpeed(s) { return Math.round(25 * Math.log10(s / 0.01)); }
function setSpeedSlider(speed) {
  $("speed").value = sliderFromSpeed(speed);
  showSpeed(speed);
}
function showSpeed(speed) {
  const slow = speed < 1 ? ` (${(1 / speed).toFixed(speed < 0.1 ? 0 : 1)}× slower)` : "";
  $("speed-out").textContent = `${speed < 0.1 ? speed.toFixed(3) : speed.toFixed(2)}×${slow}`;
  $("speed-out").title = `${speed} simulated ms per wall ms`;
}

function legend() {
  const box = $("legend");
  const item = (color, text, ring) => `<span><i style="background:${color}${ring ? ";box-shadow:0 0 0 2px #ef4444" : ""}"></i>${text}</span>`;
  box.innerHTML = "<h3>node roles</h3>" +
    item(ROLE_COLORS.follower, "follower / acceptor") + item(ROLE_COLORS.precandidate, "pre-candidate (pre-vote)") +
    item(ROLE_COLORS.candidate, "candidate / proposer") + item(ROLE_COLORS.leader, "leader") +
    item(ROLE_COLORS.crashed + ";border:1px dashed #64748b", "crashed") +
    `<span><i style="background:none;border:3px solid #7dd3fc;width:12px;height:12px"></i>election timer</span>` +
    CLUSTERS.filter((name) => state.meta[name].messages.length).map((name) => `<h3>${escapeHtml(state.meta[name].title)} messages</h3>` +
      state.meta[name].messages.map((m) => item(colorOf[m.kind], escapeHtml(m.label))).join("")).join("") +
    "<h3>other</h3>" +
    item(MSG_COLORS.ClientRequest, "client request / reply") + item("#64748b", "refusal", true) +
    item(MSG_COLORS.ConfigChange, "membership change (operator)") +
    item(MSG_COLORS.TimeoutNow, "TimeoutNow") +
    `<span><i style="background:none;border:2px dashed #38bdf8;width:12px;height:12px"></i>learner</span>` +
    `<span><i style="background:#475569;opacity:.35;width:12px;height:12px"></i>removed</span>` +
    `<span><b style="color:#ef4444;width:10px;text-align:center">×</b>dropped</span>` +
    `<span><i style="background:none;border-top:2px dashed #ef4444;border-radius:0;height:0"></i>cut link</span>`;
}

function wire() {
  $("pause").onclick = () => send({ op: "pause" });
  $("resume").onclick = () => send({ op: "resume" });
  $("step").onclick = () => send({ op: "step", ms: 10 });
  $("speed").oninput = (e) => showSpeed(speedFromSlider(Number(e.target.value)));
  $("speed").onchange = (e) => send({ op: "speed", value: speedFromSlider(Number(e.target.value)) });
  $("request").onclick = () => {
    const text = $("req-text").value.trim();
    send({ op: "request", cluster: target(), ...(text ? { text } : {}) });
  };
  $("req-text").addEventListener("keydown", (e) => { if (e.key === "Enter") $("request").click(); });
  $("drop").onclick = () => send({ op: "drop_next", cluster: target() });
  $("add-node").onclick = () => send({ op: "add_node", cluster: target() });
  $("heal").onclick = () => send({ op: "heal", cluster: target() });
  $("partition").onclick = () => {
    const groups = [[], [], []];
    for (const [id, g] of Object.entries(state.groups)) groups[g].push(id);
    const nonEmpty = groups.filter((g) => g.length);
    if (nonEmpty.length < 2) { flash("put the nodes in two or more groups first (click the chips)"); return; }
    send({ op: "partition", groups: nonEmpty, cluster: target() });
  };
  $("reset").onclick = () => send({ op: "reset", seed: Number($("seed").value) || 0, nodes: Number($("nodes").value) || 5 });
  for (const b of document.querySelectorAll("#click-mode button")) {
    b.onclick = () => {
      state.clickMode = b.dataset.mode;
      for (const o of document.querySelectorAll("#click-mode button")) o.classList.toggle("on", o === b);
    };
  }
  $("show-rejects").onchange = (e) => $("events").classList.toggle("hide-reject", !e.target.checked);
  $("show-client").onchange = (e) => $("events").classList.toggle("hide-client", !e.target.checked);
}

wire();
connect();
requestAnimationFrame(frame);
