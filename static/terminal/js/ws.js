// One WebSocket to /api/v1/ws for the whole page: subscriptions survive drops
// (re-subscribed on reconnect, with fresh snapshots), reconnects with
// exponential back-off, and heals a sequence gap on an account channel by
// subscribing again (the server answers a fresh snapshot).
import { toLogin } from "./api.js";

const GAP_FREE = /^(orders|positions|funds):/;

export class Stream {
  constructor(path, onState) {
    this.url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
    this.onState = onState;
    this.handlers = new Map(); // channel -> Set(handler)
    this.seqs = new Map(); // channel -> last seq seen
    this.socket = null;
    this.attempt = 0;
    this.state = "connecting";
    this.stats = { connects: 0, gaps: 0, snapshots: 0 };
  }

  start() {
    this.connect();
    window.addEventListener("online", () => this.reconnectNow());
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.onState(state);
  }

  connect() {
    clearTimeout(this.retryTimer);
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.onopen = () => {
      this.attempt = 0;
    };
    socket.onmessage = (event) => this.receive(JSON.parse(event.data));
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (event.code === 4001) {
        toLogin(); // the session expired or was revoked
        return;
      }
      this.scheduleReconnect();
    };
    socket.onerror = () => socket.close();
  }

  scheduleReconnect() {
    this.setState("reconnecting");
    const delay = Math.min(10000, 500 * 2 ** this.attempt) * (0.75 + Math.random() * 0.5);
    this.attempt += 1;
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.socket) return;
    this.attempt = 0;
    this.connect();
  }

  send(frame) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(frame));
  }

  receive(frame) {
    switch (frame.type) {
      case "hello":
        this.stats.connects += 1;
        this.setState("live");
        for (const channel of this.handlers.keys()) this.send({ op: "subscribe", channel, request_id: channel });
        return;
      case "ping":
        this.send({ op: "pong", data: frame.data });
        return;
      case "snapshot":
        this.stats.snapshots += 1;
        this.seqs.set(frame.channel, frame.seq);
        this.dispatch(frame.channel, "snapshot", frame.data);
        return;
      case "update": {
        const last = this.seqs.get(frame.channel);
        if (GAP_FREE.test(frame.channel) && last !== undefined && frame.seq !== last + 1) {
          if (frame.seq <= last) return; // already seen
          this.stats.gaps += 1;
          this.seqs.delete(frame.channel);
          this.send({ op: "subscribe", channel: frame.channel, request_id: frame.channel });
          return;
        }
        if (last === undefined && GAP_FREE.test(frame.channel)) return; // waiting for the snapshot
        this.seqs.set(frame.channel, frame.seq);
        this.dispatch(frame.channel, "update", frame.data);
        return;
      }
      case "error":
        if (frame.data && frame.data.error && frame.data.error.code === "stream_unavailable") this.setState("reconnecting");
        if (typeof frame.request_id === "string" && this.handlers.has(frame.request_id)) {
          this.dispatch(frame.request_id, "error", frame.data && frame.data.error);
        }
        return;
      default:
        if (frame.type === "subscribed" && this.state !== "live") this.setState("live");
    }
  }

  dispatch(channel, kind, data) {
    for (const handler of this.handlers.get(channel) || []) {
      try {
        handler(kind, data);
      } catch (error) {
        console.error(error);
      }
    }
  }

  subscribe(channel, handler) {
    if (!this.handlers.has(channel)) {
      this.handlers.set(channel, new Set());
      this.send({ op: "subscribe", channel, request_id: channel });
    }
    this.handlers.get(channel).add(handler);
    return () => this.unsubscribe(channel, handler);
  }

  unsubscribe(channel, handler) {
    const set = this.handlers.get(channel);
    if (!set) return;
    set.delete(handler);
    if (set.size === 0) {
      this.handlers.delete(channel);
      this.seqs.delete(channel);
      this.send({ op: "unsubscribe", channel, request_id: channel });
    }
  }
}
