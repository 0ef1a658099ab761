// The agent console and the supervisor's page. Every piece of text from the network is put in the
// page with textContent (never innerHTML), so caller names and notes can never become markup.
"use strict";

const $ = (id) => document.getElementById(id);
const meta = (name) => { const m = document.querySelector(`meta[name="${name}"]`); return m ? m.content : ""; };

function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = !text;
}

// Calls to the platform: the session cookie goes along, with the anti-forgery token in a header.
async function api(method, path, body) {
  const headers = { [meta("csrf-header") || "X-CSRF-Token"]: meta("csrf-token") };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (!response.ok) {
    let detail = data && data.detail !== undefined ? data.detail : response.statusText;
    if (typeof detail !== "string") detail = JSON.stringify(detail);
    if (response.status === 404 && path.includes("/call/")) detail = "not available on this platform yet";
    const error = new Error(`${method} ${path}: ${response.status} ${detail}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

async function guarded(action) {
  try { showError(""); return await action(); } catch (e) { showError(e.message); return null; }
}

function text(node, value) { node.textContent = value === null || value === undefined ? "" : String(value); }

function cell(row, value) { const td = document.createElement("td"); text(td, value); row.appendChild(td); return td; }

// ------------------------------------------------------------------ the websocket

function connect(onMessage) {
  let delay = 500;
  const open = async () => {
    let ticket;
    try { ticket = await api("POST", "/api/ws-ticket"); } catch (e) {
      showError(e.message); setTimeout(open, delay); delay = Math.min(delay * 2, 10000); return;
    }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}${ticket.url}`);
    socket.onopen = () => { delay = 500; $("link").className = "link up"; text($("link"), "live"); };
    socket.onmessage = (event) => { try { onMessage(JSON.parse(event.data)); } catch (e) { console.error(e); } };
    socket.onclose = () => {
      $("link").className = "link down"; text($("link"), "offline");
      setTimeout(open, delay); delay = Math.min(delay * 2, 10000);
    };
    setInterval(() => { if (socket.readyState === 1) socket.send('{"type":"ping"}'); }, 25000);
  };
  open();
}

// ------------------------------------------------------------------ sign in

function loginPage() {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = await guarded(() => api("POST", "/console/session", {
      username: $("username").value, password: $("password").value,
    }));
    if (result) location.assign(result.next);
  });
}

function signOut() {
  const button = $("sign-out");
  if (button) button.addEventListener("click", async () => {
    await guarded(() => api("POST", "/console/logout"));
    location.assign("/console/login");
  });
}

// ------------------------------------------------------------------ agent console

function agentPage() {
  const agent = document.body.dataset.agent;
  let pop = null;
  let wrapUpUntil = null;

  const state = (s) => {
    if (!s || s.agent_id !== agent) return;
    text($("state"), s.status);
    text($("state-reason"), s.reason ? `(${s.reason})` : "");
    text($("state-since"), s.since ? `since ${new Date(s.since).toLocaleTimeString()}` : "");
    wrapUpUntil = s.status === "wrap_up" && s.wrap_up_until ? new Date(s.wrap_up_until) : null;
    $("wrapup").hidden = !wrapUpUntil;
  };
  setInterval(() => {
    if (!wrapUpUntil) return;
    text($("wrapup-countdown"), Math.max(0, Math.ceil((wrapUpUntil - Date.now()) / 1000)));
  }, 250);

  const history = (customer) => {
    const body = $("history").querySelector("tbody");
    body.replaceChildren();
    $("voicemails").replaceChildren();
    if (!customer || !customer.interactions) return;
    for (const call of customer.interactions) {
      const row = document.createElement("tr");
      cell(row, new Date(call.started_at).toLocaleString());
      cell(row, call.agent);
      cell(row, call.wait_seconds === null ? "" : Math.round(call.wait_seconds));
      cell(row, call.talk_seconds === null ? "" : Math.round(call.talk_seconds));
      cell(row, call.disposition);
      cell(row, call.notes);
      const rec = cell(row, "");
      rec.dataset.call = `${call.pbx}/${call.linkedid}`;
      body.appendChild(row);
    }
    for (const vm of customer.voicemails || []) {
      const li = document.createElement("li");
      text(li, `${new Date(vm.created_at).toLocaleString()} · ${Math.round(vm.duration_seconds)} s `);
      li.appendChild(player(`/api/console/voicemails/${encodeURIComponent(vm.id)}/audio`));
      $("voicemails").appendChild(li);
    }
    // Recordings are kept by the recordings service; an older platform without it just has none.
    api("GET", `/api/recordings?customer_id=${encodeURIComponent(customer.id)}&limit=50`).then((recordings) => {
      for (const r of recordings || []) {
        const target = body.querySelector(`td[data-call="${CSS.escape(r.call)}"]`);
        if (target && r.audio) target.appendChild(player(r.audio));
      }
    }).catch(() => {});
  };

  // Audio needs the anti-forgery header like any API call: fetched by script, played from a blob.
  const player = (url) => {
    const button = document.createElement("button");
    button.type = "button"; text(button, "Play");
    button.addEventListener("click", () => guarded(async () => {
      const response = await fetch(url, { headers: { [meta("csrf-header")]: meta("csrf-token") } });
      if (!response.ok) throw new Error(`${url}: ${response.status}`);
      const audio = document.createElement("audio");
      audio.controls = true;
      audio.src = URL.createObjectURL(await response.blob());
      button.replaceWith(audio);
      await audio.play();
    }));
    return button;
  };

  const showCall = (call) => {
    if (!pop || !call || call.key !== pop.call.key) return;
    text($("pop-phase"), call.phase);
  };

  const showPop = (message) => {
    if (!message) return;
    pop = message;
    const call = message.call;
    const customer = message.customer;
    $("pop").hidden = false;
    text($("pop-name"), customer && customer.name ? customer.name : (call.caller_name || call.ani));
    text($("pop-tier"), customer ? customer.tier : "unknown caller");
    text($("pop-language"), (customer && customer.language) || call.ivr_language || "");
    text($("pop-ani"), call.ani);
    text($("pop-dnis"), call.dnis);
    text($("pop-service"), message.service);
    text($("pop-phase"), call.phase);
    text($("pop-wait"), message.waited_seconds);
    text($("pop-reason"), message.reason);
    text($("pop-ivr"), call.ivr_path.join(" › "));
    text($("pop-inputs"), Object.entries(call.ivr_inputs).map(([k, v]) => `${k}=${v}`).join(", "));
    text($("pop-notes"), customer && customer.notes ? customer.notes : "");
    $("unknown-caller").hidden = Boolean(customer);
    const crm = $("pop-crm");
    crm.hidden = !message.crm_url;
    if (message.crm_url) crm.href = message.crm_url;
    text($("saved"), "");
    history(customer && !customer.partial ? customer : null);
  };

  const onMessage = (m) => {
    // Other parts of the page (campaign.js) follow the same messages.
    document.dispatchEvent(new CustomEvent("cti:message", { detail: m }));
    if (m.type === "state") { state(m.agent); showPop(m.pop); if (m.call) showCall(m.call); }
    else if (m.type === "agent_state") state(m);
    else if (m.type === "screenpop") {
      const first = !pop || pop.call.key !== m.call.key;
      showPop(m);
      if (first && m.crm_url) window.open(m.crm_url, "crm", "noopener,noreferrer");
    }
    else if (m.type === "call") showCall(m.call);
    else if (m.type === "call_control" && pop && m.call === pop.call.key) text($("pop-phase"), m.state);
    else if (m.type === "recording" && pop && m.call === pop.call.key) {
      text($("recording-state"), m.state === "paused" ? "paused" : (m.state === "active" ? "recording" : m.state));
    }
  };

  const routing = (action, body) => guarded(async () => state({ ...(await api("POST",
    `/api/routing/agents/${agent}/${action}`, body)), agent_id: agent }));
  // Ready and not ready both sign the agent in to routing first when they are logged out.
  const loggedIn = async () => {
    const current = $("state").textContent;
    if (current === "logged_out" || current === "unknown") await routing("login");
  };
  $("go-ready").addEventListener("click", async () => { await loggedIn(); await routing("ready"); });
  $("go-not-ready").addEventListener("click", async () => {
    await loggedIn();
    await routing("not-ready", { reason: $("not-ready-reason").value });
  });
  $("go-logout").addEventListener("click", () => routing("logout"));
  $("wrapup-done").addEventListener("click", () => routing("wrap-up-done"));

  for (const button of document.querySelectorAll("#controls button[data-call]")) {
    button.addEventListener("click", () => guarded(async () => {
      const result = await api("POST", `/api/agents/${agent}/call/${button.dataset.call}`);
      if (button.dataset.call.startsWith("recording/")) text($("recording-state"), result.recording);
    }).then((r) => {
      if (r === null && button.dataset.call === "recording/pause") text($("recording-state"), "NOT paused");
    }));
  }
  $("transfer").addEventListener("click", () => guarded(async () => {
    const to = $("transfer-to").value.trim();
    const target = to.startsWith("+") ? { number: to } : (to.startsWith("8") ? { service: to } : { agent: to });
    await api("POST", `/api/agents/${agent}/call/transfer`, { mode: "blind", to: target });
  }));

  const callPath = () => `/api/console/calls/${encodeURIComponent(pop.call.pbx)}/${encodeURIComponent(pop.call.linkedid)}`;
  $("save-disposition").addEventListener("click", () => guarded(async () => {
    if (!pop) throw new Error("no call to save");
    await api("POST", `${callPath()}/disposition`, { disposition: $("disposition").value, notes: $("notes").value });
    text($("saved"), "saved");
    const customerId = pop.customer ? pop.customer.id : pop.call.customer_id;
    if (customerId) history(await api("GET", `/api/customers/${customerId}?limit=10`));
  }));
  const linked = async (record) => {
    const customer = await api("GET", `/api/customers/${record.customer_id}?limit=10`);
    pop.customer = customer;
    showPop(pop);
  };
  $("create-customer").addEventListener("click", () => guarded(async () => {
    await linked(await api("POST", `${callPath()}/customer`, { new: { name: $("new-name").value, tier: $("new-tier").value } }));
  }));
  $("link-customer").addEventListener("click", () => guarded(async () => {
    await linked(await api("POST", `${callPath()}/customer`, { customer_id: Number($("link-id").value) }));
  }));

  connect(onMessage);
}

// ------------------------------------------------------------------ supervisor

function barChart(title, rows, key, format) {
  const ns = "http://www.w3.org/2000/svg";
  const figure = document.createElement("figure");
  const caption = document.createElement("figcaption");
  text(caption, title);
  figure.appendChild(caption);
  const svg = document.createElementNS(ns, "svg");
  const width = 260, bar = 18;
  svg.setAttribute("width", width); svg.setAttribute("height", Math.max(1, rows.length) * (bar + 6));
  const max = Math.max(1e-9, ...rows.map((r) => r[key] || 0));
  rows.forEach((r, i) => {
    const value = r[key] || 0;
    const rect = document.createElementNS(ns, "rect");
    rect.setAttribute("x", 90); rect.setAttribute("y", i * (bar + 6));
    rect.setAttribute("width", Math.max(1, (value / max) * (width - 150))); rect.setAttribute("height", bar);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 0); label.setAttribute("y", i * (bar + 6) + 13);
    text(label, r.service);
    const figureText = document.createElementNS(ns, "text");
    figureText.setAttribute("x", 95 + (value / max) * (width - 150)); figureText.setAttribute("y", i * (bar + 6) + 13);
    text(figureText, r[key] === null || r[key] === undefined ? "–" : format(r[key]));
    svg.append(rect, label, figureText);
  });
  figure.appendChild(svg);
  return figure;
}

function supervisorPage() {
  const agents = new Map();
  const pct = (v) => (v === null || v === undefined ? "" : `${Math.round(v * 100)}%`);
  const num = (v) => (v === null || v === undefined ? "" : Math.round(v));

  const renderAgents = () => {
    const body = $("agents").querySelector("tbody");
    body.replaceChildren();
    for (const a of [...agents.values()].sort((x, y) => (x.id < y.id ? -1 : 1))) {
      const row = document.createElement("tr");
      row.id = `agent-${a.id}`;
      cell(row, a.id);
      cell(row, a.name || "");
      cell(row, a.status).className = `status ${a.status}`;
      cell(row, a.since ? Math.max(0, Math.round((Date.now() - new Date(a.since)) / 1000)) : "");
      const call = a.current_call;
      cell(row, call ? `${call.caller_name || call.ani} (${call.phase})` : (a.call || ""));
      const actions = cell(row, "");
      const add = (label, handler) => {
        const b = document.createElement("button"); b.type = "button"; text(b, label);
        b.dataset.agent = a.id; b.dataset.action = label.toLowerCase().replace(/ /g, "-");
        b.addEventListener("click", () => guarded(handler)); actions.appendChild(b);
      };
      add("Not ready", () => api("POST", `/api/routing/agents/${a.id}/not-ready`, { reason: "supervisor" }));
      add("Log out", () => api("POST", `/api/routing/agents/${a.id}/logout`));
      for (const mode of ["listen", "whisper", "barge"]) {
        add(mode[0].toUpperCase() + mode.slice(1), () => api("POST", `/api/supervisor/agents/${a.id}/spy`,
          { mode, phone: $("spy-phone").value.trim() }));
      }
      body.appendChild(row);
    }
  };

  const wallboard = (w) => {
    if (!w) return;
    for (const a of w.agents) agents.set(a.id, { ...(agents.get(a.id) || {}), ...a });
    renderAgents();
    text($("by-state"), Object.entries(w.agents_by_state).map(([k, v]) => `${k}: ${v}`).join(" · "));
    const body = $("services").querySelector("tbody");
    body.replaceChildren();
    for (const s of w.services) {
      const row = document.createElement("tr");
      row.id = `service-${s.service}`;
      cell(row, s.service);
      cell(row, (s.waiting || []).length).className = "waiting";
      cell(row, num(s.longest_wait_seconds));
      cell(row, pct(s.service_level));
      cell(row, num(s.asa_seconds));
      cell(row, num(s.aht_seconds));
      cell(row, s.abandoned === undefined ? "" : s.abandoned);
      cell(row, pct(s.abandon_rate));
      body.appendChild(row);
    }
    const alerts = $("alerts");
    alerts.replaceChildren();
    for (const a of w.alerts) { const li = document.createElement("li"); li.className = "alert"; text(li, a.message); alerts.appendChild(li); }
    if (!w.alerts.length) { const li = document.createElement("li"); li.className = "none"; text(li, "none"); alerts.appendChild(li); }
    const charts = $("charts");
    charts.replaceChildren(
      barChart("Service level today", w.services, "service_level", pct),
      barChart("Average speed of answer (s)", w.services, "asa_seconds", num),
      barChart("Average handle time (s)", w.services, "aht_seconds", num),
      barChart("Abandon rate", w.services, "abandon_rate", pct),
    );
  };

  const onMessage = (m) => {
    if (m.type === "state") {
      for (const a of m.agents || []) agents.set(a.agent_id, { ...(agents.get(a.agent_id) || {}), id: a.agent_id, ...a });
      wallboard(m.wallboard);
      renderAgents();
    } else if (m.type === "wallboard") wallboard(m);
    else if (m.type === "agent_state") {
      agents.set(m.agent_id, { ...(agents.get(m.agent_id) || {}), id: m.agent_id, status: m.status, since: m.since, call: m.call });
      renderAgents();
    }
  };
  connect(onMessage);
}

document.addEventListener("DOMContentLoaded", () => {
  signOut();
  const page = document.body.dataset.page;
  if (page === "login") loginPage();
  else if (page === "agent") agentPage();
  else if (page === "supervisor") supervisorPage();
});
