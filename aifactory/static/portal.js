// AIFactory portal: sign in with a token, live events over /ws/events, task progress bars,
// and an xterm.js terminal pane over /ws/terminal/{id} (terminal.js). Plain browser JS, no build step.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const MAX_EVENTS = 200;
  // offset: the last event's "_offset"; a reconnect sends it as ?since= and the server replays what we
  // missed (docs/recovery.md), or says {"type":"resync"} and we refetch GET /api/tasks.
  const state = { token: null, events: null, eventsRetry: 0, terminal: null, count: 0, offset: null };

  const wsUrl = (path, since) => {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const resume = since ? `&since=${encodeURIComponent(since)}` : "";
    return `${proto}//${location.host}${path}?token=${encodeURIComponent(state.token)}${resume}`;
  };

  // Frames are JSON; a frame is either the event itself or an envelope-ish {event: {...}}.
  const unwrap = (msg) => (msg && typeof msg.event === "object" && msg.event !== null ? msg.event : msg);
  const eventType = (ev) => ev.type || ev.kind || ev.name || "event";

  function setPill(el, text, cls) {
    el.textContent = text;
    el.dataset.state = text;
    el.className = `pill ${cls}`;
  }

  function claims(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part));
    } catch (_err) {
      return null;
    }
  }

  // ---- sign-in ---------------------------------------------------------------------------
  function signIn(token) {
    const c = claims(token);
    if (!c || !c.sub) {
      $("signin-error").textContent = "That is not a valid token (expected a JWT with a 'sub' claim).";
      return;
    }
    state.token = token;
    sessionStorage.setItem("aifactory-token", token);
    $("signin-error").textContent = "";
    $("whoami").textContent = `${c.sub}${c.org ? " @ " + c.org : ""}${c.role ? " (" + c.role + ")" : ""}`;
    $("portal").hidden = false;
    $("signin").hidden = true;
    $("signout-button").hidden = false;
    connectEvents();
  }

  function signOut() {
    state.token = null;
    sessionStorage.removeItem("aifactory-token");
    if (state.events) state.events.close();
    if (state.terminal) state.terminal.close();
    location.reload();
  }

  // ---- live events -------------------------------------------------------------------------
  function connectEvents() {
    setPill($("conn"), "connecting", "off");
    const ws = new WebSocket(wsUrl("/ws/events", state.offset));
    state.events = ws;
    ws.onopen = () => {
      state.eventsRetry = 0;
      setPill($("conn"), "connected", "on");
    };
    ws.onmessage = (msg) => {
      let data;
      try {
        data = JSON.parse(msg.data);
      } catch (_err) {
        return;
      }
      if (data && typeof data._offset === "string") state.offset = data._offset;
      if (data && data.type === "resync") refetchTasks();
      if (data && data.type === "hello" && data.recovered === false) state.offset = null;
      onEvent(unwrap(data));
    };
    ws.onclose = (ev) => {
      if (state.events !== ws || !state.token) return;
      if (ev.code === 1008) {  // policy violation: token refused, do not hammer the server
        setPill($("conn"), "refused", "bad");
        $("signin-error").textContent = "The server refused this token (expired or wrong secret). Sign in again.";
        return;
      }
      setPill($("conn"), "reconnecting", "bad");
      // 1012: the replica is restarting and has flushed us; resume elsewhere at once
      const delay = ev.code === 1012 ? 100 : Math.min(30000, 1000 * 2 ** state.eventsRetry++);
      setTimeout(() => state.token && connectEvents(), delay);
    };
  }

  function onEvent(ev) {
    const type = eventType(ev);
    if (type === "hello" && ev.replica) {
      $("replica").textContent = `replica ${String(ev.replica).slice(0, 8)}`;
      $("replica").dataset.replica = ev.replica;
    }
    if (type.startsWith("task.")) onTaskEvent(type, ev);
    const li = document.createElement("li");
    li.dataset.type = type;
    const t = document.createElement("span");
    t.className = "etype";
    t.textContent = type;
    li.append(t, document.createTextNode(JSON.stringify(ev)));
    const list = $("events");
    list.prepend(li);
    while (list.children.length > MAX_EVENTS) list.lastChild.remove();
    state.count += 1;
    $("event-count").textContent = String(state.count);
  }

  // ---- tasks ---------------------------------------------------------------------------------
  const taskId = (ev) => ev.task_id || ev.taskId || ev.id || (ev.task && ev.task.id);

  function taskRow(id, name) {
    let row = document.querySelector(`#tasks li[data-task="${CSS.escape(String(id))}"]`);
    if (row) return row;
    row = document.createElement("li");
    row.dataset.task = id;
    const label = document.createElement("span");
    label.className = "tname";
    label.textContent = name || `task ${String(id).slice(0, 8)}`;
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    const status = document.createElement("span");
    status.className = "tstatus";
    status.textContent = "0%";
    row.append(label, bar, status);
    $("tasks").append(row);
    return row;
  }

  function percent(ev) {
    let p = ev.percent ?? ev.progress ?? ev.pct;
    if (typeof p !== "number") return null;
    if (p > 0 && p <= 1 && ev.percent === undefined && !Number.isInteger(p)) p *= 100;
    return Math.max(0, Math.min(100, Math.round(p)));
  }

  function onTaskEvent(type, ev) {
    const id = taskId(ev);
    if (id === undefined) return;
    const row = taskRow(id, ev.name);
    if (ev.replica && !row.dataset.replica) {
      row.dataset.replica = ev.replica;
      row.querySelector(".tname").title = `running on replica ${ev.replica}`;
      row.querySelector(".tname").textContent += ` · ${String(ev.replica).slice(0, 8)}`;
    }
    const bar = row.querySelector("progress");
    const status = row.querySelector(".tstatus");
    if (type === "task.progress") {
      const p = percent(ev);
      if (p !== null) {
        bar.value = p;
        status.textContent = `${p}%`;
        row.dataset.percent = String(p);
      }
    } else if (type === "task.status" && ev.status) {
      row.dataset.status = ev.status;
      if (ev.status === "completed" || ev.status === "done" || ev.status === "succeeded") {
        bar.value = 100;
        status.textContent = "100%";
        row.dataset.percent = "100";
      }
    }
  }

  // After a resync: the server could not replay what we missed; rebuild the task list from the API.
  async function refetchTasks() {
    try {
      const resp = await fetch("/api/tasks", { headers: { Authorization: `Bearer ${state.token}` } });
      if (!resp.ok) return;
      const body = await resp.json();
      for (const t of body.tasks || []) {
        if (t.percent !== undefined) onTaskEvent("task.progress", t);
        if (t.status !== undefined) onTaskEvent("task.status", t);
      }
    } catch (_err) {
      // offline: the next resync or event will try again
    }
  }

  async function startTask(name) {
    const resp = await fetch("/api/tasks", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${state.token}` },
      body: JSON.stringify({ name }),
    });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      $("signin-error").textContent = `Could not start the task: ${body.error || resp.status}`;
      return;
    }
    const id = taskId(body);
    if (id !== undefined) taskRow(id, name);
  }

  // ---- terminal (aifactory/static/terminal.js) ---------------------------------------------------
  function openTerminal(id) {
    if (!state.terminal) {
      state.terminal = new window.AIFTerminalPane($("terminal"), $("terminal-state"), (tid, offset) => {
        const url = wsUrl(`/ws/terminal/${encodeURIComponent(tid)}`);
        return offset === null ? url : `${url}&offset=${offset}`;
      });
      window.aifTerminal = state.terminal;
    }
    state.terminal.open(id);
  }

  // ---- wiring ---------------------------------------------------------------------------------
  $("signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn($("token").value.trim());
  });
  $("signout-button").addEventListener("click", signOut);
  $("task-form").addEventListener("submit", (e) => {
    e.preventDefault();
    startTask($("task-name").value.trim() || "task");
  });
  $("terminal-form").addEventListener("submit", (e) => {
    e.preventDefault();
    openTerminal($("terminal-id").value.trim() || "main");
  });
  const saved = sessionStorage.getItem("aifactory-token");
  if (saved) signIn(saved);
})();
