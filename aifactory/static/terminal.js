// The portal's terminal pane: xterm.js (vendored, no bundler) over /ws/terminal/{id}, speaking the framed
// protocol of docs/terminals.md. Binary frames carry bytes; text frames are JSON control messages. It
// reattaches by itself after a disconnect, resuming the output at its byte offset and resending only the
// input the shell has not acknowledged, so nothing is lost or doubled.
"use strict";

window.AIFTerminalPane = (() => {
  const RETRY_MAX_MS = 5000;
  const UNACKED_MAX = 64 * 1024;
  // Close codes after which reconnecting cannot help (aifactory/constants.py).
  const FINAL = {
    1000: "shell exited",
    1007: "protocol error",
    1008: "refused",
    4409: "taken over by another tab",
    4410: "terminal host restarted: the shell is lost; press Open for a new one",
  };

  class Pane {
    constructor(container, pill, urlFor) {
      this.container = container;
      this.pill = pill;
      this.urlFor = urlFor; // (id, offset|null) → ws URL with a fresh token
      this.term = new window.Terminal({
        cursorBlink: true,
        convertEol: false,
        fontFamily: "ui-monospace, monospace",
        fontSize: 13,
        scrollback: 5000,
        theme: { background: "#10131a", foreground: "#d6dde8" },
      });
      this.fit = new window.FitAddon.FitAddon();
      this.term.loadAddon(this.fit);
      this.term.open(container);
      this.ws = null;
      this.id = null;
      this.offset = 0; // output bytes received since the shell started
      this.sent = 0; // input bytes sent since the shell started
      this.unacked = []; // [{start, bytes}] input not yet confirmed by a ready.input_offset
      this.retry = 0;
      this.ready = null;
      this.encoder = new TextEncoder();
      this.term.onData((data) => this.input(this.encoder.encode(data)));
      this.term.onBinary((data) => this.input(Uint8Array.from(data, (c) => c.charCodeAt(0))));
      this.term.onResize(({ rows, cols }) => this.control({ type: "resize", rows, cols }));
      new ResizeObserver(() => this.refit()).observe(container);
      window.addEventListener("resize", () => this.refit());
    }

    setState(text, cls, extra) {
      this.pill.textContent = extra ? `${text}: ${extra}` : text;
      this.pill.dataset.state = text;
      this.pill.className = `pill ${cls}`;
    }

    refit() {
      if (this.container.offsetWidth > 0 && this.container.offsetHeight > 0) this.fit.fit();
    }

    open(id) {
      this.close();
      this.id = id;
      this.offset = 0;
      this.sent = 0;
      this.unacked = [];
      this.ready = null;
      this.term.reset();
      this.connect();
    }

    close() {
      const ws = this.ws;
      this.ws = null;
      clearTimeout(this.timer);
      if (ws) ws.close();
    }

    connect() {
      this.setState("connecting", "off");
      const ws = new WebSocket(this.urlFor(this.id, this.ready ? this.offset : null));
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      ws.onmessage = (msg) => {
        if (this.ws !== ws) return;
        if (typeof msg.data === "string") {
          this.onControl(JSON.parse(msg.data));
          return;
        }
        const bytes = new Uint8Array(msg.data);
        this.offset += bytes.length;
        this.term.write(bytes);
      };
      ws.onclose = (ev) => {
        if (this.ws !== ws) return;
        this.ws = null;
        if (ev.code in FINAL) {
          this.setState(`closed (${ev.code})`, "bad", FINAL[ev.code]);
          this.container.dataset.closeCode = String(ev.code);
          return;
        }
        // a web replica went away (1006, 1001, 1013 …): reattach through whichever replica answers
        const delay = Math.min(RETRY_MAX_MS, 200 * 2 ** this.retry++);
        this.setState("reconnecting", "off", `code ${ev.code}`);
        this.timer = setTimeout(() => this.connect(), delay);
      };
    }

    onControl(msg) {
      if (msg.type !== "ready") return;
      if (msg.new || !this.ready || this.ready.pid !== msg.pid) {
        if (this.ready) this.term.reset(); // a different shell: the old screen means nothing
        this.offset = msg.offset;
        this.sent = 0;
        this.unacked = [];
      } else if (msg.offset > this.offset) {
        this.term.write("\r\n\x1b[33m[some output was lost while disconnected]\x1b[0m\r\n");
        this.offset = msg.offset;
      }
      this.ready = msg;
      this.retry = 0;
      this.container.dataset.pid = String(msg.pid);
      this.container.dataset.replica = msg.replica;
      this.container.dataset.attaches = String(Number(this.container.dataset.attaches || 0) + 1);
      this.setState("open", "on");
      // resend exactly the input the shell has not seen
      for (const chunk of this.unacked) {
        const skip = Math.max(0, msg.input_offset - chunk.start);
        if (skip < chunk.bytes.length) this.ws.send(chunk.bytes.slice(skip));
      }
      this.unacked = this.unacked.filter((c) => c.start + c.bytes.length > msg.input_offset);
      this.refit();
      this.control({ type: "resize", rows: this.term.rows, cols: this.term.cols });
      this.term.focus();
    }

    input(bytes) {
      if (!this.id) return;
      this.unacked.push({ start: this.sent, bytes });
      this.sent += bytes.length;
      let held = this.unacked.reduce((n, c) => n + c.bytes.length, 0);
      while (held > UNACKED_MAX && this.unacked.length > 1) held -= this.unacked.shift().bytes.length;
      if (this.ws && this.ws.readyState === WebSocket.OPEN && this.ready) this.ws.send(bytes);
    }

    control(msg) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN && this.ready) this.ws.send(JSON.stringify(msg));
    }

    // For tests and debugging: the visible screen as text.
    screenText() {
      const buf = this.term.buffer.active;
      const lines = [];
      for (let i = 0; i < buf.length; i++) lines.push(buf.getLine(i).translateToString(true));
      return lines.join("\n");
    }
  }

  return Pane;
})();
