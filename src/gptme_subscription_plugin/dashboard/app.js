// The dashboard page: polls /api/snapshot every second and redraws. Every value goes in with
// textContent or setAttribute, never as HTML, so nothing from the server can become markup.
"use strict";

const POLL_MS = 1000;
const COLORS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#9a6700", "#bf3989", "#57606a"];
let skew = 0; // server clock minus this browser's, in seconds

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function serverNow() { return Date.now() / 1000 + skew; }

function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "?";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, "0")}h`;
}

function clock(ts) {
  const when = new Date(ts * 1000);
  const time = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const sameDay = when.toDateString() === new Date(serverNow() * 1000).toDateString();
  return sameDay ? time : `${when.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

function pct(x) { return `${Math.round(x * 100)}%`; }

function tokens(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}

function countdown(resetsAt) {
  return el("span", { class: "countdown small", "data-resets-at": resetsAt },
    resetsAt ? `resets in ${duration(resetsAt - serverNow())}` : "reset unknown");
}

function bar(window) {
  if (!window) return el("span", { class: "muted" }, "–");
  const fill = el("div", { class: "fill" + (window.utilization >= 1 ? " spent" : window.utilization >= 0.8 ? " hot" : "") });
  fill.style.width = pct(Math.min(1, window.utilization));
  const box = el("div", { class: "bar", title: `${pct(window.utilization)} used` }, fill);
  if (window.pace !== null) {
    const pace = el("div", { class: "pace", title: `even pace: ${pct(window.pace)}` });
    pace.style.left = pct(Math.min(1, window.pace));
    box.append(pace);
  }
  const burn = window.burn_per_hour !== null ? ` · ${pct(window.burn_per_hour)}/h` : "";
  const idle = window.resets_at === null && window.utilization === 0;
  const when = idle ? el("span", { class: "small" }, "window not started") : countdown(window.resets_at);
  return el("div", {}, box, el("span", { class: "small" }, `${pct(window.utilization)}${burn} `), when);
}

function totals(t) {
  const cost = `$${t.cost_usd.toFixed(2)}${t.unpriced_requests ? "+" : ""}`;
  return el("div", { class: "totals" }, el("div", {}, cost),
    el("div", { class: "small" }, `${t.requests} req · ${tokens(t.input_tokens + t.output_tokens + t.cache_write_tokens + t.cache_read_tokens)} tok`));
}

function accountRow(a, actions) {
  const windows = Object.fromEntries(a.windows.map((w) => [w.name, w]));
  const models = a.windows.filter((w) => w.name.startsWith("model:"));
  const health = el("td", { class: `health health-${a.health.replace(/ /g, "-")}` }, a.health);
  if (a.fix) health.append(el("div", { class: "small" }, a.fix));
  if (a.limited_until) health.append(el("div", { class: "small" }, `limited, back in ${duration(a.limited_until - serverNow())}`));
  const written = a.written_at ? `written ${duration(serverNow() - a.written_at)} ago by ${a.written_by}` : "";
  const lastUsed = a.week.last_at ? `last used ${duration(serverNow() - a.week.last_at)} ago` : "not used this week";
  const action = el("td", {});
  if (actions && !a.live && a.home === "link") {
    action.append(el("button", { type: "button", class: "switch", "data-slot": a.name }, "switch here"));
  }
  return el("tr", { "data-slot": a.name, class: a.live ? "live" : null },
    el("td", { class: "name" }, a.name, a.live ? el("div", { class: "small" }, "live") : null),
    el("td", {}, a.plan || "plan unknown", el("div", { class: "small" }, a.home)),
    el("td", {}, bar(windows.five_hour)),
    el("td", {}, bar(windows.seven_day)),
    el("td", {}, ...models.map((w) => el("div", {}, el("span", { class: "small" }, w.name.slice(6)), bar(w)))),
    health,
    el("td", { class: "fingerprint" }, a.fingerprint || "–", el("div", { class: "small" }, written)),
    el("td", { class: "today" }, totals(a.today)),
    el("td", { class: "week" }, totals(a.week), el("div", { class: "small" }, lastUsed)),
    el("td", { class: "sessions" }, String(a.sessions)),
    action);
}

function sessionRow(s) {
  const last = s.last_turns.map((t) => tokens(t.input_tokens + t.output_tokens + t.cache_write_tokens + t.cache_read_tokens)).join(" · ");
  return el("tr", { "data-session": s.session_id, class: s.state === "mid-turn" ? "busy" : null },
    el("td", { class: "sid", title: s.session_id }, s.session_id.length > 12 ? s.session_id.slice(0, 8) + "…" : s.session_id),
    el("td", {}, s.slot || "–", el("div", { class: "small" }, s.home)),
    el("td", { class: "state" }, s.state),
    el("td", {}, s.project || "–"),
    el("td", {}, s.model || "–"),
    el("td", { class: "small" }, last || "–", el("div", { class: "small" }, `since ${duration(serverNow() - s.since)}`)));
}

function chart(accounts, now) {
  const w = 720, h = 160, pad = 28, span = 7 * 86400;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", w); svg.setAttribute("height", h);
  svg.setAttribute("role", "img"); svg.setAttribute("aria-label", "weekly utilization per account");
  const x = (t) => pad + ((t - (now - span)) / span) * (w - pad - 8);
  const y = (u) => h - pad + 4 - u * (h - pad - 8);
  for (const u of [0, 0.5, 1]) {
    const line = document.createElementNS(ns, "line");
    line.setAttribute("x1", pad); line.setAttribute("x2", w - 8);
    line.setAttribute("y1", y(u)); line.setAttribute("y2", y(u));
    line.setAttribute("stroke", "#d0d7de");
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 2); label.setAttribute("y", y(u) + 4); label.setAttribute("font-size", "10");
    label.textContent = pct(u);
    svg.append(line, label);
  }
  for (let d = 0; d <= 7; d++) {
    const t = now - span + d * 86400;
    const tick = document.createElementNS(ns, "text");
    tick.setAttribute("x", x(t) - 12); tick.setAttribute("y", h - 6); tick.setAttribute("font-size", "10");
    tick.textContent = d === 7 ? "now" : new Date(t * 1000).toLocaleDateString([], { weekday: "short" });
    svg.append(tick);
  }
  const legend = el("div", { class: "legend small" });
  accounts.forEach((a, i) => {
    const color = COLORS[i % COLORS.length];
    const points = a.history.filter((p) => p[2] !== null).map((p) => `${x(p[0]).toFixed(1)},${y(p[2]).toFixed(1)}`);
    if (points.length) {
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("points", points.join(" "));
      line.setAttribute("fill", "none"); line.setAttribute("stroke", color); line.setAttribute("stroke-width", "2");
      line.setAttribute("data-slot", a.name);
      svg.append(line);
    }
    const swatch = el("span", {}, `■ ${a.name}${points.length ? "" : " (no samples yet)"}`);
    swatch.style.color = color;
    legend.append(swatch);
  });
  return [svg, legend];
}

function render(snap) {
  skew = snap.now - Date.now() / 1000;
  const verdict = document.getElementById("verdict");
  verdict.textContent = snap.verdict;
  verdict.className = `verdict ${snap.verdict}`;
  document.getElementById("verdict-reason").textContent = snap.verdict_reason;
  document.getElementById("live").textContent = snap.live || "none";
  const updated = document.getElementById("updated");
  updated.textContent = clock(snap.now);
  updated.dataset.now = String(snap.now);
  const pending = document.getElementById("pending");
  pending.hidden = !snap.pending;
  pending.textContent = snap.pending
    ? `pending switch to ${snap.pending.slot}: ${snap.pending.reason || ""}${snap.pending.since ? ` (waiting ${duration(snap.now - snap.pending.since)})` : ""}`
    : "";
  const drift = document.getElementById("drift");
  drift.hidden = !snap.drift;
  drift.textContent = snap.drift ? `drift: ${snap.drift} (heal repairs it)` : "";
  document.getElementById("notes").replaceChildren(...snap.notes.map((n) => el("li", {}, n)));
  document.getElementById("usage-note").textContent = snap.usage_note || "";
  document.querySelector("#accounts tbody").replaceChildren(...snap.accounts.map((a) => accountRow(a, snap.actions)));
  document.querySelector("#sessions tbody").replaceChildren(...snap.sessions.map(sessionRow));
  document.getElementById("no-sessions").hidden = snap.sessions.length > 0;
  document.getElementById("events").replaceChildren(...snap.events.map((e) =>
    el("li", { "data-kind": e.kind, "data-slot": e.slot }, el("time", {}, clock(e.ts)), e.text)));
  document.getElementById("chart").replaceChildren(...chart(snap.accounts, snap.now));
  document.getElementById("action-bar").hidden = !snap.actions;
}

async function poll() {
  try {
    const response = await fetch("/api/snapshot", { cache: "no-store", credentials: "same-origin" });
    if (response.ok) render(await response.json());
  } catch (err) {
    document.getElementById("verdict-reason").textContent = "dashboard server unreachable";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

async function act(path, body) {
  const token = document.getElementById("action-token").value.trim();
  const result = document.getElementById("action-result");
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Action-Token": token },
    body: JSON.stringify(body || {}),
  });
  const data = await response.json().catch(() => ({}));
  result.textContent = data.detail || `HTTP ${response.status}`;
}

document.addEventListener("click", (event) => {
  const target = event.target;
  if (!(target instanceof HTMLButtonElement)) return;
  if (target.classList.contains("switch")) act("/api/actions/switch", { slot: target.dataset.slot });
  if (target.id === "heal") act("/api/actions/heal", {});
});

document.addEventListener("DOMContentLoaded", () => {
  const match = /(?:^|[#&])action=([A-Za-z0-9_-]+)/.exec(location.hash);
  if (match) {
    document.getElementById("action-token").value = match[1];
    history.replaceState(null, "", location.pathname); // the token leaves the address bar
  }
  poll();
});
