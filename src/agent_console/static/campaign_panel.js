// The supervisor's live campaign panel: each campaign's figures from /api/dialer/campaigns/{id}/panel
// (attempts, contacts, abandonment over 24 h and 30 days against the cap, talk time in the last hour),
// its pace and the reason when the dialler publishes one (/live), and start/stop buttons.
// Uses console.js's helpers; text from the network goes in with textContent.
"use strict";

(() => {
  if (document.body.dataset.page !== "supervisor") return;
  const minutes = (s) => `${Math.floor(s / 60)}:${String(Math.round(s % 60)).padStart(2, "0")}`;
  const pct = (x) => (x === null || x === undefined ? "" : `${(100 * x).toFixed(1)}%`);

  const pace = async (id) => {
    try {
      const live = await api("GET", `/api/dialer/campaigns/${encodeURIComponent(id)}/live`);
      return live && live.reason ? `${live.dial !== undefined ? `dial ${live.dial}: ` : ""}${live.reason}` : "";
    } catch (_) { return ""; } // no live pace published (preview, stopped, or not available)
  };

  const refresh = async () => {
    let campaigns;
    try { campaigns = await api("GET", "/api/dialer/campaigns"); } catch (_) { return; }
    const body = $("campaigns").querySelector("tbody");
    const rows = [];
    for (const c of campaigns) {
      let p;
      try { p = await api("GET", `/api/dialer/campaigns/${encodeURIComponent(c.id)}/panel`); } catch (_) { continue; }
      const row = document.createElement("tr");
      cell(row, `${p.name} (${p.id})`);
      cell(row, p.mode);
      cell(row, p.active ? "running" : "stopped");
      cell(row, await pace(c.id));
      cell(row, p.attempts_24h);
      cell(row, p.contacts_24h);
      cell(row, `${p.abandoned_24h} (${pct(p.abandonment_24h)})`);
      cell(row, pct(p.abandonment_30d));
      const cap = cell(row, `${pct(p.cap)} ${p.abandonment_rule}`);
      const over = (p.abandonment_rule === "uk_24_hours" ? p.abandonment_24h : p.abandonment_30d) > p.cap;
      if (over) cap.className = "alert";
      cell(row, Object.entries(p.talk_seconds_last_hour).map(([a, s]) => `${a}: ${minutes(s)}`).join(", "));
      const actions = cell(row, "");
      const button = document.createElement("button");
      button.type = "button";
      text(button, p.active ? "Stop" : "Start");
      button.addEventListener("click", () => guarded(async () => {
        await api("POST", `/api/dialer/campaigns/${encodeURIComponent(p.id)}/${p.active ? "stop" : "start"}`);
        await refresh();
      }));
      actions.appendChild(button);
      rows.push(row);
    }
    body.replaceChildren(...rows);
  };

  refresh();
  setInterval(refresh, 5000);
})();
