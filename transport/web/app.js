// Berth's web page: sign in, the session list with live statuses, and a chat
// view that streams tokens and asks for approvals and answers with buttons.
import { Api, Live, Unauthorised } from "./live.js";
import { FINAL, Store } from "./store.js";

const TOKEN_KEY = "berth.apiToken";
const $ = (id) => document.getElementById(id);
const store = new Store();
let api = null;
let live = null;
let current = null;     // the open session id
let drawQueued = false;
let answers = {};       // question text -> chosen label, for the pending question

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function toast(text) {
  const el = $("toast");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 5000);
}

// ------------------------------------------------------------------ sign in

function showLogin(message) {
  live?.stop();
  live = null;
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").hidden = !message;
  $("login-error").textContent = message ?? "";
}

async function signIn(token) {
  api = new Api(token);
  try {
    await refreshList();
  } catch (err) {
    if (err instanceof Unauthorised) {
      localStorage.removeItem(TOKEN_KEY);
      showLogin("The server refused that token. Copy it again from the `berth serve` output or its api-token file.");
      return;
    }
    showLogin(`Cannot reach the server: ${err.message}`);
    return;
  }
  localStorage.setItem(TOKEN_KEY, token);
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  live = new Live(token, onEvent, onLinkState);
  for (const s of store.sessions.values()) followSession(s.info.id);
  live.start();
  route();
}

function onLinkState(state) {
  const el = $("link-state");
  el.hidden = state === "open";
  el.textContent = state === "open" ? "" : "reconnecting…";
  if (state === "open") refreshList().catch(() => {});
}

// ------------------------------------------------------------------ data

async function refreshList() {
  const { sessions } = await api.call("GET", "/api/sessions");
  const seen = new Set();
  for (const info of sessions) {
    seen.add(info.id);
    store.upsert(info);
    followSession(info.id);
  }
  for (const id of [...store.sessions.keys()]) {
    if (!seen.has(id)) { store.forget(id); live?.unfollow(id); }
  }
  draw();
}

function followSession(id) {
  live?.follow(id, () => store.sessions.get(id)?.seq ?? null);
}

function onEvent(frame) {
  if (frame.type === "protocol_error") { toast(`The server refused: ${frame.message}`); return; }
  if (!frame.sessionId) return;
  const session = store.sessions.get(frame.sessionId) ?? (frame.session ? store.upsert(frame.session) : null);
  if (session && session.apply(frame)) draw();
}

// ------------------------------------------------------------------ drawing

function draw() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => { drawQueued = false; drawList(); drawChat(); });
}

function statusBadge(status) {
  return `<span class="status s-${escapeHtml(status)}">${escapeHtml(status.replace("_", " "))}</span>`;
}

function drawList() {
  const showEnded = $("show-ended").checked;
  const rows = [...store.sessions.values()]
    .filter((s) => showEnded || !FINAL.has(s.info.status) || s.info.id === current)
    .sort((a, b) => b.info.createdAt - a.info.createdAt);
  $("sessions").innerHTML = rows.map((s) => `
    <li class="session ${s.info.id === current ? "active" : ""}" data-id="${escapeHtml(s.info.id)}">
      <a href="#/s/${encodeURIComponent(s.info.id)}">
        <span class="name">${escapeHtml(s.info.name)}</span>
        ${statusBadge(s.info.status)}
        <span class="preview">${escapeHtml(s.info.lastMessagePreview ?? "")}</span>
      </a>
    </li>`).join("");
  $("empty").hidden = rows.length > 0;
}

function messageHtml(m) {
  const kind = escapeHtml(m.kind);
  if (m.kind === "tool_call") {
    const input = escapeHtml(JSON.stringify(m.toolInput ?? {}));
    return `<li class="msg tool_call"><span class="label">tool</span> <b>${escapeHtml(m.toolName ?? "")}</b> <code>${input}</code></li>`;
  }
  const error = m.isError ? " is-error" : "";
  return `<li class="msg ${kind}${error}" data-id="${escapeHtml(m.id)}">${escapeHtml(m.content)}</li>`;
}

function drawChat() {
  const session = current ? store.sessions.get(current) : null;
  $("no-chat").hidden = Boolean(session);
  $("chat").hidden = !session;
  document.body.classList.toggle("in-chat", Boolean(session));
  if (!session) return;
  const { info } = session;
  $("chat-name").textContent = info.name;
  $("chat-status").outerHTML = statusBadge(info.status).replace("<span ", '<span id="chat-status" ');
  const ended = FINAL.has(info.status);
  $("interrupt").disabled = !["running", "awaiting_approval", "awaiting_answer"].includes(info.status);
  $("stop").disabled = ended;
  $("prompt").disabled = ended;
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 60;
  const streamed = [...session.streaming].map(([id, text]) =>
    `<li class="msg assistant streaming" data-id="${escapeHtml(id)}">${escapeHtml(text)}</li>`);
  const reason = ended && info.statusReason ? [`<li class="msg system">${escapeHtml(info.statusReason)}</li>`] : [];
  list.innerHTML = [...session.messages.map(messageHtml), ...streamed, ...reason].join("");
  if (atBottom) list.scrollTop = list.scrollHeight;
  drawPending(session);
}

function drawPending(session) {
  const parts = [];
  const a = session.pendingApproval;
  if (a) {
    parts.push(`<div class="card approval" data-id="${escapeHtml(a.id)}">
      <div><b>${escapeHtml(a.toolName)}</b> wants to run <code>${escapeHtml(JSON.stringify(a.toolInput))}</code></div>
      ${a.reason ? `<div class="muted">${escapeHtml(a.reason)}</div>` : ""}
      <div class="buttons"><button data-allow="true">Allow</button><button data-allow="false" class="danger">Deny</button></div>
    </div>`);
  }
  const q = session.pendingQuestion;
  if (q) {
    for (const [index, item] of q.questions.entries()) {
      const buttons = item.options.map((o, n) => `<button data-question="${index}" data-option="${n}"
        class="${answers[item.question] === o.label ? "chosen" : ""}" title="${escapeHtml(o.description)}">${escapeHtml(o.label)}</button>`);
      parts.push(`<div class="card question"><div>${escapeHtml(item.question)}</div>
        <div class="buttons">${buttons.join("")}</div></div>`);
    }
  }
  $("pending").innerHTML = parts.join("");
}

// ------------------------------------------------------------------ actions

function route() {
  const match = location.hash.match(/^#\/s\/(.+)$/);
  const next = match ? decodeURIComponent(match[1]) : null;
  if (next !== current) answers = {};
  current = next;
  draw();
}

function command(frame) {
  if (!live?.send({ ...frame, sessionId: current })) toast("Not connected; try again in a moment.");
}

async function rest(method, path, body) {
  try {
    return await api.call(method, path, body);
  } catch (err) {
    if (err instanceof Unauthorised) showLogin("The server no longer accepts this token; sign in again.");
    else toast(err.message);
    return undefined;
  }
}

function wire() {
  $("login-form").addEventListener("submit", (e) => { e.preventDefault(); signIn($("token").value.trim()); });
  $("logout").addEventListener("click", () => { localStorage.removeItem(TOKEN_KEY); showLogin(); });
  $("show-ended").addEventListener("change", draw);
  $("new-toggle").addEventListener("click", () => { $("new-form").hidden = !$("new-form").hidden; });
  $("new-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = {};
    for (const [key, value] of new FormData(e.target)) if (value) body[key] = value;
    const created = await rest("POST", "/api/sessions", body);
    if (!created) return;
    const session = store.upsert(created.session);
    followSession(session.info.id);
    $("new-form").hidden = true;
    location.hash = `#/s/${encodeURIComponent(session.info.id)}`;
  });
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const content = $("prompt").value.trim();
    if (!content || !current) return;
    command({ type: "send_prompt", content });
    $("prompt").value = "";
  });
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
  });
  $("interrupt").addEventListener("click", () => command({ type: "interrupt" }));
  $("stop").addEventListener("click", () => rest("POST", `/api/sessions/${current}/terminate`, { reason: "stopped from the web page" }));
  $("delete").addEventListener("click", async () => {
    if (!confirm("Delete this session and its container?")) return;
    const id = current;
    if (await rest("DELETE", `/api/sessions/${id}`) !== undefined) {
      store.forget(id);
      live?.unfollow(id);
      location.hash = "#/";
    }
  });
  $("pending").addEventListener("click", (e) => {
    const button = e.target.closest("button");
    const session = current && store.sessions.get(current);
    if (!button || !session) return;
    if (button.dataset.allow && session.pendingApproval) {
      command({ type: "approve_tool", approvalId: session.pendingApproval.id, allow: button.dataset.allow === "true" });
      session.pendingApproval = null;
    } else if (button.dataset.question && session.pendingQuestion) {
      const q = session.pendingQuestion;
      const item = q.questions[Number(button.dataset.question)];
      answers[item.question] = item.options[Number(button.dataset.option)].label;
      if (q.questions.every((i) => i.question in answers)) {
        command({ type: "answer_question", questionId: q.id, answers });
        session.pendingQuestion = null;
        answers = {};
      }
    }
    draw();
  });
  window.addEventListener("hashchange", route);
  setInterval(() => { if (live) refreshList().catch(() => {}); }, 5000);
}

wire();
const saved = localStorage.getItem(TOKEN_KEY);
if (saved) signIn(saved); else showLogin();
