// Tundra web page: terminal list, xterm.js attach with exact resume, task board.
// Loaded as a same-origin module (the page's CSP allows no other script).
import { Terminal } from "/vendor/xterm.mjs";
import { FitAddon } from "/vendor/addon-fit.mjs";

const $ = (sel) => document.querySelector(sel);
const wsBase = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
const encoder = new TextEncoder();

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function notice(html) {
  const n = $("#notice");
  n.replaceChildren();
  if (!html) { n.hidden = true; return; }
  n.append(...html);
  n.hidden = false;
}

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    opts.headers["content-type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(path, opts);
  const data = await resp.json().catch(() => ({}));
  if (resp.status === 401) {
    notice(["Not logged in: run ", el("code", {}, "tundra bridge url"), " and open the link it prints."]);
  }
  if (!resp.ok) {
    const err = new Error(data?.error?.message || `HTTP ${resp.status}`);
    err.status = resp.status;
    err.code = data?.error?.code;
    throw err;
  }
  return data;
}

// ------------------------------------------------------------------ terminal view

class TerminalView {
  constructor(info, container) {
    this.id = info.id;
    this.info = info;
    this.nextOffset = null; // absolute offset of the next byte we need
    this.exited = false;
    this.closed = false;
    this.attempt = 0;
    this.connects = 0; // successful (re)connections, for tests and the curious
    this.term = new Terminal({ cursorBlink: true, scrollback: 5000, convertEol: false,
                               fontFamily: "ui-monospace, Menlo, monospace", fontSize: 14 });
    this.fit = new FitAddon();
    this.term.loadAddon(this.fit);
    container.replaceChildren();
    this.term.open(container);
    this.fitNow();
    this.term.onData((d) => this.send(encoder.encode(d)));
    this.term.onBinary((d) => this.send(Uint8Array.from(d, (c) => c.charCodeAt(0))));
    this.term.onResize(({ rows, cols }) => this.control({ type: "resize", rows, cols }));
    this.resizeObserver = new ResizeObserver(() => this.fitNow());
    this.resizeObserver.observe(container);
    this.keepAlive = setInterval(() => this.control({ type: "ping" }), 240000);
    this.connect();
    this.term.focus();
  }

  fitNow() {
    try { this.fit.fit(); } catch (e) { /* not visible yet */ }
  }

  setStatus(text, cls) {
    const s = $("#terminal-status");
    s.textContent = text;
    s.className = `pill ${cls || text}`;
  }

  connect() {
    if (this.closed) return;
    const q = this.nextOffset === null ? "" : `?since=${this.nextOffset}`;
    const ws = new WebSocket(`${wsBase}/ws/terminal/${encodeURIComponent(this.id)}${q}`);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.connects += 1;
      // Without ?since the bridge waits briefly for an attach message: say "replay all" now.
      if (this.nextOffset === null) this.control({ type: "attach", since: null });
      this.setStatus("active");
      this.control({ type: "resize", rows: this.term.rows, cols: this.term.cols });
    };
    ws.onmessage = (ev) => {
      if (ev.data instanceof ArrayBuffer) {
        const bytes = new Uint8Array(ev.data);
        this.term.write(bytes);
        if (this.nextOffset !== null) this.nextOffset += bytes.byteLength;
        return;
      }
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.type === "offset") this.nextOffset = msg.offset;
      else if (msg.type === "gap") this.term.write(`\r\n\x1b[33m[${msg.lost_bytes} bytes of output were lost]\x1b[0m\r\n`);
      else if (msg.type === "status") this.setStatus(msg.status);
      else if (msg.type === "exit") this.onExit(msg);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws || this.closed || this.exited) return;
      this.setStatus("reconnecting");
      this.scheduleReconnect(ev);
    };
  }

  async scheduleReconnect(ev) {
    this.attempt += 1;
    // A refused handshake (dead or deleted terminal) shows up as 1006: ask the API.
    if (ev.code === 1006 || this.attempt > 3) {
      try {
        const info = await api("GET", `/api/terminals/${this.id}`);
        if (info.status === "dead") { this.onExit(info); return; }
      } catch (e) {
        if (e.status === 404) { this.setStatus("dead"); this.exited = true; refreshTerminals(); return; }
      }
    }
    const delay = Math.min(10000, 250 * 2 ** Math.min(this.attempt, 6)) * (0.5 + Math.random() / 2);
    setTimeout(() => this.connect(), delay);
  }

  onExit(msg) {
    this.exited = true;
    const detail = msg.exit_code != null ? `exit code ${msg.exit_code}`
      : msg.exit_signal != null ? `signal ${msg.exit_signal}` : "";
    this.setStatus(detail ? `dead (${detail})` : "dead", "dead");
    this.term.write(`\r\n\x1b[90m[terminal exited${detail ? `: ${detail}` : ""}]\x1b[0m\r\n`);
    refreshTerminals();
  }

  send(bytes) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes);
  }

  control(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  dispose() {
    this.closed = true;
    clearInterval(this.keepAlive);
    this.resizeObserver.disconnect();
    if (this.ws) this.ws.close(1000, "detached");
    this.term.dispose();
  }
}

let current = null;
window.tundra = {
  get terminal() { return current && current.term; },
  get connects() { return current ? current.connects : 0; },
};

function attach(info) {
  if (current && current.id === info.id && !current.exited) return;
  if (current) current.dispose();
  showTab("terminals");
  $("#terminal-title").textContent = `${info.name || info.id.slice(0, 8)} — ${(info.argv || []).join(" ")}`;
  $("#kill-terminal").hidden = false;
  current = new TerminalView(info, $("#terminal"));
  renderTerminals(lastTerminals);
}

// ------------------------------------------------------------------ terminal list

let lastTerminals = [];

function renderTerminals(list) {
  lastTerminals = list;
  const ul = $("#terminal-list");
  ul.replaceChildren();
  for (const t of list) {
    const status = t.status === "dead" && t.exit_code != null ? `dead (${t.exit_code})` : t.status;
    const li = el("li", { class: current && current.id === t.id ? "selected" : "", "data-id": t.id },
      el("span", { class: "name", title: t.id, onclick: () => attach(t) }, t.name || t.id.slice(0, 8)),
      el("span", { class: `pill ${t.status}` }, status),
      el("button", { type: "button", class: "attach", onclick: () => attach(t) }, "Attach"),
      el("button", { type: "button", class: "delete", onclick: () => removeTerminal(t.id) }, "✕"));
    ul.append(li);
  }
}

async function refreshTerminals() {
  try {
    const data = await api("GET", "/api/terminals");
    renderTerminals(data.terminals || []);
  } catch (e) { /* notice already shown for 401; daemon state shown in header */ }
}

async function removeTerminal(id) {
  try { await api("DELETE", `/api/terminals/${id}`); } catch (e) { alert(e.message); }
  if (current && current.id === id) {
    current.dispose();
    current = null;
    $("#terminal-title").textContent = "no terminal attached";
    $("#terminal-status").textContent = "";
    $("#kill-terminal").hidden = true;
  }
  refreshTerminals();
}

$("#new-terminal-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const cmd = $("#new-command").value.trim();
  const body = { persistent: $("#new-persistent").checked };
  if (cmd) body.command = ["/bin/sh", "-c", cmd];
  try {
    const info = await api("POST", "/api/terminals", body);
    await refreshTerminals();
    attach(info);
  } catch (e) {
    notice([`Could not create a terminal: ${e.message}`]);
  }
});

$("#kill-terminal").addEventListener("click", () => { if (current) removeTerminal(current.id); });

// ---------------------------------------------------------------------- task board

const TASK_COLUMNS = ["queued", "running", "waiting", "review", "failed", "interrupted", "done", "cancelled"];
const TASK_ACTIONS = {
  review: ["approve", "reject"], queued: ["cancel"], running: ["cancel"], waiting: ["cancel"],
  failed: ["retry", "cancel"], interrupted: ["retry", "cancel"],
};

function renderTasks(tasks) {
  const board = $("#task-board");
  board.replaceChildren();
  for (const state of TASK_COLUMNS) {
    const col = el("div", { class: "column", "data-state": state }, el("h2", {}, state));
    for (const t of tasks.filter((x) => x.state === state)) {
      const actions = el("div", { class: "actions" });
      for (const a of TASK_ACTIONS[state] || []) {
        actions.append(el("button", { type: "button", onclick: () => taskAction(t.id, a) }, a));
      }
      if (t.terminal_id) {
        actions.append(el("button", { type: "button", onclick: () => attachById(t.terminal_id) }, "attach"));
      }
      col.append(el("div", { class: "card" },
        el("div", { class: "title" }, t.title || t.id),
        el("div", { class: "meta" }, `${t.id} · ${t.preset || ""} · ${t.lane || ""}`), actions));
    }
    board.append(col);
  }
}

async function refreshTasks() {
  try {
    const data = await api("GET", "/api/tasks");
    renderTasks(data.tasks || []);
  } catch (e) { if (e.status !== 401) renderTasks([]); }
}

async function taskAction(id, action) {
  try { await api("POST", `/api/tasks/${id}/${action}`, {}); } catch (e) { alert(e.message); }
  refreshTasks();
}

async function attachById(id) {
  try { attach(await api("GET", `/api/terminals/${id}`)); } catch (e) { alert(e.message); }
}

function showTab(name) {
  $("#terminals-view").hidden = name !== "terminals";
  $("#tasks-view").hidden = name !== "tasks";
  $("#tab-terminals").classList.toggle("active", name === "terminals");
  $("#tab-tasks").classList.toggle("active", name === "tasks");
  if (name === "tasks") refreshTasks();
  if (name === "terminals" && current) current.fitNow();
}
$("#tab-terminals").addEventListener("click", () => showTab("terminals"));
$("#tab-tasks").addEventListener("click", () => showTab("tasks"));

// ------------------------------------------------------------------- events + health

function setDaemonState(state) {
  const s = $("#daemon-state");
  s.textContent = `daemon ${state}`;
  s.className = `pill ${state}`;
}

let eventsAttempt = 0;
function connectEvents() {
  const ws = new WebSocket(`${wsBase}/ws/events`);
  ws.onopen = () => { eventsAttempt = 0; setDaemonState("up"); refreshTerminals(); refreshTasks(); };
  ws.onmessage = (ev) => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch (e) { return; }
    if (msg.type !== "event") return;
    if (msg.topic.startsWith("terminal.")) refreshTerminals();
    if (msg.topic.startsWith("task.")) refreshTasks();
  };
  ws.onclose = async () => {
    eventsAttempt += 1;
    try {
      const h = await (await fetch("/api/health")).json();
      setDaemonState(h.daemon.state);
    } catch (e) { setDaemonState("down"); }
    const delay = Math.min(10000, 250 * 2 ** Math.min(eventsAttempt, 6)) * (0.5 + Math.random() / 2);
    setTimeout(connectEvents, delay);
  };
}

refreshTerminals();
connectEvents();
