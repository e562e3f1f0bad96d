// The server: REST calls with the API token, and one client WebSocket that
// reconnects with backoff and resubscribes every session "since" its last seq.

export class Unauthorised extends Error {}

export class Api {
  constructor(token) {
    this.token = token;
  }

  async call(method, path, body) {
    const response = await fetch(path, {
      method,
      headers: { Authorization: `Bearer ${this.token}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) throw new Unauthorised("the server refused this token");
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) throw new Error(data?.error ?? `HTTP ${response.status}`);
    return data;
  }
}

export class Live {
  // onEvent(frame), onState("open" | "down")
  constructor(token, onEvent, onState) {
    this.token = token;
    this.onEvent = onEvent;
    this.onState = onState;
    this.wanted = new Map(); // sessionId -> () => since
    this.ws = null;
    this.delay = 250;
    this.closed = false;
    this.ids = 0;
  }

  start() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws?token=${encodeURIComponent(this.token)}`);
    this.ws = ws;
    ws.onopen = () => {
      this.delay = 250;
      this.onState("open");
      for (const [sid, since] of this.wanted) this.subscribeNow(sid, since());
    };
    ws.onmessage = (message) => this.onEvent(JSON.parse(message.data));
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.closed) return;
      this.onState("down");
      setTimeout(() => this.start(), this.delay);
      this.delay = Math.min(this.delay * 2, 5000);
    };
  }

  stop() {
    this.closed = true;
    this.ws?.close();
  }

  // since: a function giving the last seq seen (null: never subscribed -> replay from 0)
  follow(sid, since) {
    if (this.wanted.has(sid)) return;
    this.wanted.set(sid, since);
    if (this.ws?.readyState === WebSocket.OPEN) this.subscribeNow(sid, since());
  }

  unfollow(sid) {
    this.wanted.delete(sid);
  }

  subscribeNow(sid, since) {
    this.send({ type: "subscribe", sessionId: sid, since: since ?? 0 });
  }

  send(frame) {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify({ ...frame, requestId: `web-${++this.ids}` }));
    return true;
  }
}
