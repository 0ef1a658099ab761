// Campaign calls at the agent's desk: the lead's record when a campaign call pops, preview dialling,
// and the campaign's dispositions through the existing wrap-up form. Uses console.js's helpers
// ($, api, guarded, text, cell); every piece of text from the network goes in with textContent.
"use strict";

(() => {
  if (document.body.dataset.page !== "agent") return;
  const agent = document.body.dataset.agent;
  let campaignCall = null; // {pbx, linkedid} of the campaign call on screen
  let held = null; // the previewed lead's id
  let replaced = false; // the wrap-up form shows a campaign's codes
  // The platform's own codes, offered again once the call on screen is not a campaign call.
  const ownCodes = Array.from($("disposition").options).map((o) => o.cloneNode(true));

  const clear = (node) => node.replaceChildren();

  const showLead = (record) => {
    $("campaign-lead").hidden = !record;
    if (!record) return;
    const lead = record.lead;
    text($("lead-campaign"), `${record.campaign.name} (${record.campaign.id}, ${record.campaign.mode})`);
    text($("lead-name"), lead.name);
    text($("lead-phone"), lead.phone);
    text($("lead-status"), lead.status);
    const fields = $("lead-fields").querySelector("tbody");
    clear(fields);
    for (const [k, v] of Object.entries(lead.fields || {})) {
      const row = document.createElement("tr");
      cell(row, k); cell(row, v);
      fields.appendChild(row);
    }
    const card = record.customer;
    text($("lead-customer"), card ? `Customer ${card.name || ""} (${card.tier || ""}) #${card.id}` : "");
    text($("lead-callback"), record.callback
      ? `Callback ${new Date(record.callback.at).toLocaleString()} ${record.callback.agent_id ? `for ${record.callback.agent_id}` : "for anyone"}`
      : "");
    const attempts = $("lead-attempts").querySelector("tbody");
    clear(attempts);
    for (const a of record.attempts || []) {
      const row = document.createElement("tr");
      const d = a.disposition || {};
      cell(row, a.number); cell(row, new Date(a.dialled_at).toLocaleString()); cell(row, a.outcome);
      cell(row, d.code); cell(row, d.agent_id); cell(row, d.notes);
      attempts.appendChild(row);
    }
    const events = $("lead-events");
    clear(events);
    for (const e of record.events || []) {
      const li = document.createElement("li");
      text(li, `${new Date(e.at).toLocaleString()} ${e.kind} ${e.actor || ""}: ${e.detail}`);
      events.appendChild(li);
    }
    // The wrap-up form offers the campaign's own codes while a campaign call is on screen.
    if (campaignCall) {
      replaced = true;
      const select = $("disposition");
      clear(select);
      for (const c of record.dispositions || []) {
        const option = document.createElement("option");
        option.value = c.code; text(option, c.label);
        option.dataset.action = c.action;
        select.appendChild(option);
      }
      $("campaign-disposition").hidden = false;
    }
  };

  const leadOfCall = async (call) => {
    if (!call || !call.linkedid) return;
    if (campaignCall && campaignCall.linkedid === call.linkedid) return;
    try {
      const record = await api("GET", `/api/dialer/calls/${encodeURIComponent(call.pbx)}/${encodeURIComponent(call.linkedid)}/lead`);
      campaignCall = { pbx: call.pbx, linkedid: call.linkedid };
      // The caller id on a campaign call is the campaign's own number: the lead is who answered.
      $("unknown-caller").hidden = true;
      showLead(record);
    } catch (e) {
      if (e.status !== 404) { showError(e.message); return; }
      // Not a campaign call: the wrap-up form is the platform's own again (left alone when it
      // already is, so a choice the agent made is kept).
      if (campaignCall || replaced) {
        $("disposition").replaceChildren(...ownCodes.map((o) => o.cloneNode(true)));
        replaced = false;
      }
      campaignCall = null;
      $("campaign-disposition").hidden = true;
      $("campaign-lead").hidden = true;
    }
  };

  document.addEventListener("cti:message", (event) => {
    const m = event.detail;
    if (m.type === "screenpop") leadOfCall(m.call);
    else if (m.type === "state" && m.pop) leadOfCall(m.pop.call);
  });

  // The existing Save button: for a campaign call, the dialer's disposition route (next step of the
  // lead), listened to before console.js's own handler, which then does not run.
  document.addEventListener("click", (event) => {
    if (event.target.id !== "save-disposition" || !campaignCall) return;
    event.stopPropagation();
    guarded(async () => {
      const body = { disposition: $("disposition").value, notes: $("notes").value };
      const at = $("callback-at").value;
      if (at) body.at = new Date(at).toISOString();
      body.callback_for = $("callback-me").checked ? "me" : "anyone";
      const path = `/api/dialer/calls/${encodeURIComponent(campaignCall.pbx)}/${encodeURIComponent(campaignCall.linkedid)}`;
      let result;
      try { result = await api("POST", `${path}/disposition`, body); } catch (e) {
        if (e.status !== 409 || !/not written yet/.test(e.message)) throw e;
        await new Promise((r) => setTimeout(r, 1500)); // the call's outcome is being written
        result = await api("POST", `${path}/disposition`, body);
      }
      text($("saved"), `saved: ${result.next_step}${result.at ? ` ${new Date(result.at).toLocaleString()}` : ""}`);
      text($("campaign-note"), result.note);
      showLead(await api("GET", `${path}/lead`));
    });
  }, true);

  // ------------------------------------------------------------------ preview
  const loadCampaigns = () => guarded(async () => {
    if (!agent) return;
    const select = $("preview-campaign");
    clear(select);
    for (const c of await api("GET", `/api/dialer/preview/${agent}/campaigns`)) {
      const option = document.createElement("option");
      option.value = c.id; text(option, c.name);
      select.appendChild(option);
    }
    $("preview-panel").hidden = !select.options.length;
  });

  $("preview-next").addEventListener("click", () => guarded(async () => {
    const record = await api("POST", `/api/dialer/preview/${agent}/next`, { campaign_id: $("preview-campaign").value });
    held = record.lead ? record.lead.id : null;
    $("preview-empty").hidden = Boolean(held);
    $("preview-lead").hidden = !held;
    text($("preview-result"), "");
    campaignCall = null;
    showLead(held ? record : null);
  }));
  $("preview-dial").addEventListener("click", () => guarded(async () => {
    if (!held) return;
    $("preview-dial").disabled = true; // one click, one call: the platform refuses a second anyway
    try {
      const result = await api("POST", `/api/dialer/preview/${agent}/dial`, { lead_id: held });
      text($("preview-result"), result.placed);
      held = null;
    } finally { $("preview-dial").disabled = false; }
  }));
  $("preview-skip").addEventListener("click", () => guarded(async () => {
    if (!held) return;
    await api("POST", `/api/dialer/preview/${agent}/skip`, { lead_id: held, reason: $("preview-skip-reason").value });
    held = null;
    $("preview-next").click();
  }));

  loadCampaigns();
})();
