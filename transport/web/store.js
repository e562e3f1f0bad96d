// What the page knows of each session, built from the server's events.
// Every event carries its session's seq; the store remembers the last one so a
// reconnect resubscribes "since" it and gets exactly what it missed.

export const FINAL = new Set(["error", "terminated"]);

export class Session {
  constructor(info) {
    this.info = info;
    this.messages = [];          // ChatMessage records in order
    this.streaming = new Map();  // messageId -> text streamed so far
    this.pendingApproval = null;
    this.pendingQuestion = null;
    this.seq = null;             // null: never subscribed
  }

  apply(event) {
    if (event.type !== "snapshot" && this.seq !== null && event.seq <= this.seq) return false;
    switch (event.type) {
      case "snapshot":
        this.info = event.session;
        this.messages = [...event.history];
        this.streaming.clear();
        this.pendingApproval = event.pendingApproval ?? null;
        this.pendingQuestion = event.pendingQuestion ?? null;
        break;
      case "session_update": {
        const before = this.info.status;
        this.info = event.session;
        if (before === "awaiting_approval" && event.session.status !== before) this.pendingApproval = null;
        if (before === "awaiting_answer" && event.session.status !== before) this.pendingQuestion = null;
        if (FINAL.has(event.session.status)) { this.pendingApproval = null; this.pendingQuestion = null; }
        break;
      }
      case "message": {
        const at = this.messages.findIndex((m) => m.id === event.message.id);
        if (at >= 0) this.messages[at] = event.message; else this.messages.push(event.message);
        this.streaming.delete(event.message.id);
        break;
      }
      case "stream":
        this.streaming.set(event.messageId, (this.streaming.get(event.messageId) ?? "") + event.tokens.join(""));
        break;
      case "approval_request":
        this.pendingApproval = event.approval;
        break;
      case "question":
        this.pendingQuestion = event.question;
        break;
      case "result":
        this.pendingApproval = null;
        this.pendingQuestion = null;
        this.streaming.clear();
        break;
      default:
        break;
    }
    if (typeof event.seq === "number") this.seq = event.seq;
    return true;
  }
}

export class Store {
  constructor() {
    this.sessions = new Map();
  }

  upsert(info) {
    let s = this.sessions.get(info.id);
    if (s) s.info = info; else this.sessions.set(info.id, (s = new Session(info)));
    return s;
  }

  forget(id) {
    this.sessions.delete(id);
  }
}
