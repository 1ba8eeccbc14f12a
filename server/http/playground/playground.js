// The playground: chat with a model of this server over its OpenAI-compatible API, tokens
// streaming in as server-sent events. Plain JavaScript, no build step, nothing from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { messages: [], sessionId: "", controller: null };

function headers() {
  const h = { "Content-Type": "application/json" };
  const token = $("token").value.trim();
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

async function api(method, path, body) {
  const res = await fetch(path, { method, headers: headers(), body: body === undefined ? undefined : JSON.stringify(body) });
  const json = await res.json();
  if (!res.ok) throw new Error(json.error ? json.error.message : res.statusText);
  return json;
}

function bubble(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text;
  $("chat").appendChild(div);
  $("chat").scrollTop = $("chat").scrollHeight;
  return div;
}

function setStatus(text) { $("status").textContent = text; }

function showSession() {
  $("session-id").textContent = state.sessionId ? "session " + state.sessionId
    : $("use-session").checked ? "a session is made at the first message" : "stateless: the whole chat is sent each turn";
  $("fork-session").disabled = !state.sessionId;
}

async function loadModels() {
  try {
    const list = await api("GET", "/v1/models");
    const select = $("model");
    select.textContent = "";
    for (const m of list.data) {
      const opt = document.createElement("option");
      opt.value = m.id;
      opt.textContent = m.id + (m.retain && m.retain.architecture ? " (" + m.retain.architecture + ")" : "");
      if (m.retain && m.retain.is_default) opt.selected = true;
      select.appendChild(opt);
    }
  } catch (e) {
    setStatus("models: " + e.message);
  }
}

async function checkHealth() {
  const pill = $("health");
  try {
    const res = await fetch("/health");
    pill.textContent = res.ok ? "serving" : "draining";
    pill.className = "pill " + (res.ok ? "ok" : "bad");
  } catch (e) {
    pill.textContent = "unreachable";
    pill.className = "pill bad";
  }
}

async function newSession() {
  const s = await api("POST", "/v1/sessions", { model: $("model").value });
  state.sessionId = s.id;
  state.messages = [];
  $("use-session").checked = true;
  showSession();
  return s.id;
}

async function forkSession() {
  const s = await api("POST", "/v1/sessions/" + encodeURIComponent(state.sessionId) + "/fork");
  state.sessionId = s.id;
  bubble("assistant", "(forked: this chat goes on in session " + s.id + "; the original is untouched)");
  showSession();
}

// Reads `data: ...` events from a fetch response body, calling onEvent with each parsed JSON.
async function readEvents(res, onEvent) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data: ")) continue;  // ": keep-alive" comments
        const data = line.slice(6);
        if (data === "[DONE]") return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

async function send(text) {
  if ($("use-session").checked && !state.sessionId) await newSession();
  const turn = { role: "user", content: text };
  bubble("user", text);
  const answer = bubble("assistant", "");
  const body = {
    model: $("model").value,
    messages: state.sessionId ? [turn] : [...state.messages, turn],
    max_tokens: Number($("max-tokens").value),
    temperature: Number($("temperature").value),
    stream: true,
    stream_options: { include_usage: true },
  };
  const stop = $("stop").value.replace(/\\n/g, "\n");
  if (stop) body.stop = stop;
  if (state.sessionId) body.session_id = state.sessionId;
  const started = performance.now();
  let first = 0, tokens = 0, finish = "";
  state.controller = new AbortController();
  $("send").disabled = true;
  $("stop-button").disabled = false;
  setStatus("generating");
  try {
    const res = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body), signal: state.controller.signal });
    if (!res.ok) {
      const err = await res.json();
      throw new Error(err.error ? err.error.message : res.statusText);
    }
    await readEvents(res, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
      for (const choice of chunk.choices) {
        const piece = choice.delta && choice.delta.content;
        if (piece) {
          if (!first) first = performance.now();
          answer.textContent += piece;
          if (!chunk.usage) tokens += 1;
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
      const seconds = (performance.now() - (first || started)) / 1000;
      $("ttft").textContent = first ? ((first - started) / 1000).toFixed(3) + " s" : "–";
      $("tps").textContent = first && seconds > 0 ? (tokens / seconds).toFixed(1) : "–";
      $("tokens").textContent = String(tokens);
      $("chat").scrollTop = $("chat").scrollHeight;
    });
    $("finish").textContent = finish || "–";
    state.messages.push(turn, { role: "assistant", content: answer.textContent });
    setStatus("done");
  } catch (e) {
    answer.classList.add("error");
    answer.textContent += (answer.textContent ? "\n" : "") + "[" + (e.name === "AbortError" ? "stopped" : e.message) + "]";
    setStatus(e.name === "AbortError" ? "stopped" : "error: " + e.message);
  } finally {
    state.controller = null;
    $("send").disabled = false;
    $("stop-button").disabled = true;
  }
}

$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("prompt").value;
  if (!text.trim() || state.controller) return;
  $("prompt").value = "";
  send(text);
});
$("prompt").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) {
    ev.preventDefault();
    $("composer").requestSubmit();
  }
});
$("stop-button").addEventListener("click", () => state.controller && state.controller.abort());
$("clear").addEventListener("click", () => {
  state.messages = [];
  state.sessionId = "";
  $("chat").textContent = "";
  showSession();
});
$("new-session").addEventListener("click", () => newSession().catch((e) => setStatus("session: " + e.message)));
$("fork-session").addEventListener("click", () => forkSession().catch((e) => setStatus("fork: " + e.message)));
$("use-session").addEventListener("change", () => {
  if (!$("use-session").checked) state.sessionId = "";
  showSession();
});
$("token").addEventListener("change", loadModels);

loadModels();
checkHealth();
setInterval(checkHealth, 5000);
showSession();
