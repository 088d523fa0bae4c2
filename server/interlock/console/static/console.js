// Interlock console: the live layer over server-rendered pages. Without it the
// pages still work (reload to refresh). No dependencies; served by Interlock.
"use strict";
(function () {
  const body = document.body;
  const page = body.dataset.page;
  if (page === "signin" || page === "error") return;

  const banner = document.getElementById("connection");
  const count = document.getElementById("pending-count");
  let lastSeq = Number(body.dataset.after || 0);
  let source = null;
  let lostAt = 0;
  let retryTimer = null;

  function say(text, ok) {
    if (!banner) return;
    banner.textContent = text;
    banner.classList.toggle("ok", !!ok);
    banner.hidden = false;
  }

  async function getJSON(url) {
    const r = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (r.status === 401) {
      const doc = await r.json().catch(() => ({}));
      sessionOver(doc.error || "your session ended");
      throw new Error("unauthenticated");
    }
    if (!r.ok) throw new Error("HTTP " + r.status);
    return r.json();
  }

  function sessionOver(why) {
    if (source) source.close();
    if (!banner) return;
    banner.textContent = "";
    const a = document.createElement("a");
    a.href = "/signin?why=" + encodeURIComponent(why) + "&next=" + encodeURIComponent(location.pathname + location.search);
    a.textContent = "Sign in again";
    banner.append(why.charAt(0).toUpperCase() + why.slice(1) + ". ", a);
    banner.classList.remove("ok");
    banner.hidden = false;
  }

  function setCount(n) {
    if (!count) return;
    count.textContent = String(n);
    count.dataset.count = String(n);
    count.setAttribute("aria-label", n + " pending approvals");
    count.classList.toggle("has", n > 0);
  }

  async function refreshCount() {
    if (!count) return;
    try {
      const doc = await getJSON("/live/pending");
      setCount(doc.pending);
    } catch (e) { /* the stream's state says what is wrong */ }
  }

  // Replace a server-rendered fragment (the inbox, the plan graph) with a fresh one,
  // keeping what the person is typing and where the focus is.
  // An event that arrives while a refresh is under way asks for one more after it:
  // dropping it would leave the page showing the state before that event.
  const refreshing = new Map();
  const again = new Map();
  async function refreshFragment(id) {
    const holder = document.getElementById(id);
    if (!holder) return;
    if (refreshing.get(id)) { again.set(id, true); return; }
    refreshing.set(id, true);
    again.set(id, false);
    try {
      const r = await fetch(holder.dataset.fragment, { headers: { Accept: "text/html" }, credentials: "same-origin" });
      if (r.redirected && r.url.includes("/signin")) { sessionOver("your session ended"); return; }
      if (!r.ok) return;
      const html = await r.text();
      const typed = {};
      holder.querySelectorAll("textarea").forEach((t) => { if (t.value) typed[t.id] = t.value; });
      const focused = document.activeElement && holder.contains(document.activeElement) ? document.activeElement.id : "";
      holder.innerHTML = html;
      // The inbox says how many it lists: the header counts the same list.
      const listed = holder.querySelector("[data-pending]");
      if (listed) setCount(Number(listed.dataset.pending));
      Object.entries(typed).forEach(([k, v]) => { const t = document.getElementById(k); if (t) t.value = v; });
      if (focused) { const f = document.getElementById(focused); if (f) f.focus(); }
      tickAges();
    } finally {
      refreshing.set(id, false);
      if (again.get(id)) refreshFragment(id);
    }
  }

  function fmtAge(s) {
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
    return Math.floor(s / 3600) + "h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  }

  // Waiting ages count up; the colour moves to warn at half the time to live, urgent at 80%.
  function tickAges() {
    const now = Date.now() / 1000;
    document.querySelectorAll(".approval[data-created]").forEach((li) => {
      const created = Number(li.dataset.created), expires = Number(li.dataset.expires);
      const used = (now - created) / Math.max(expires - created, 1e-9);
      const level = used >= 0.8 ? "urgent" : used >= 0.5 ? "warn" : "ok";
      const waited = li.querySelector(".waited");
      if (waited) waited.textContent = fmtAge(now - created);
      const age = li.querySelector(".age");
      ["ok", "warn", "urgent"].forEach((c) => { li.classList.toggle(c, c === level); if (age) age.classList.toggle(c, c === level); });
    });
  }

  function addEventRow(e) {
    const rows = document.getElementById("event-rows");
    if (!rows || rows.querySelector('tr[data-seq="' + e.seq + '"]')) return;
    const tr = document.createElement("tr");
    tr.dataset.seq = String(e.seq);
    tr.className = "new";
    const cells = [
      String(e.seq),
      new Date(e.time * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC",
    ];
    cells.forEach((text) => { const td = document.createElement("td"); td.textContent = text; tr.append(td); });
    const kind = document.createElement("td");
    const span = document.createElement("span");
    span.className = "kind kind-" + e.kind.toLowerCase();
    span.textContent = e.kind;
    kind.append(span);
    tr.append(kind);
    const plan = document.createElement("td");
    if (e.plan_id) {
      const a = document.createElement("a");
      a.href = "/plans/" + encodeURIComponent(e.plan_id);
      a.textContent = e.plan_id;
      plan.append(a, e.step_id ? " / " + e.step_id : "");
    }
    tr.append(plan);
    const agent = document.createElement("td");
    agent.textContent = e.agent_id;
    tr.append(agent);
    const msg = document.createElement("td");
    if (e.decision_id) {
      const a = document.createElement("a");
      a.href = "/decisions/" + encodeURIComponent(e.decision_id);
      a.textContent = e.message;
      msg.append(a);
    } else {
      msg.textContent = e.message;
    }
    tr.append(msg);
    rows.prepend(tr);
    while (rows.children.length > 500) rows.lastElementChild.remove();
  }

  function onEvent(e) {
    if (e.seq > lastSeq) lastSeq = e.seq;
    if (page === "events") addEventRow(e);
    if (e.kind === "APPROVAL" || e.kind === "DECISION" || e.kind === "PLAN_FINISHED") refreshCount();
    if (page === "approvals" && (e.kind === "APPROVAL" || e.kind === "DECISION")) refreshFragment("inbox");
    if (page === "plan" && e.plan_id === body.dataset.plan) refreshFragment("plan");
  }

  const KINDS = ["DECISION", "STATE_TRANSITION", "CONFLICT", "DISPATCH", "RESULT", "ROLLBACK",
    "PLAN_FINISHED", "APPROVAL", "POLICY", "SIGNAL", "HEALTH", "ACCESS_DENIED"];

  function streamUrl() {
    const q = new URLSearchParams({ after: String(lastSeq) });
    if (page === "events") {
      if (body.dataset.kinds) q.set("kinds", body.dataset.kinds);
      if (body.dataset.plan) q.set("plan_id", body.dataset.plan);
      if (body.dataset.agent) q.set("agent_id", body.dataset.agent);
    }
    return "/live/events?" + q.toString();
  }

  function connect() {
    clearTimeout(retryTimer);
    if (source) source.close();
    source = new EventSource(streamUrl());
    source.onopen = () => {
      if (lostAt) {
        say("Reconnected to Interlock; caught up from event " + lastSeq + ".", true);
        lostAt = 0;
        refreshCount();
        if (page === "approvals") refreshFragment("inbox");
        if (page === "plan") refreshFragment("plan");
        setTimeout(() => { if (!lostAt && banner) banner.hidden = true; }, 4000);
      }
      body.dataset.live = "on";
    };
    KINDS.forEach((k) => source.addEventListener(k, (m) => onEvent(JSON.parse(m.data))));
    source.addEventListener("bye", () => {
      lostAt = Date.now();
      say("Interlock is restarting or stopping; reconnecting…");
    });
    source.onerror = () => {
      body.dataset.live = "off";
      if (!lostAt) lostAt = Date.now();
      say("Lost the connection to Interlock; reconnecting…");
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (the server answered with an error): check the session, then retry.
        fetch("/live/pending", { headers: { Accept: "application/json" } })
          .then((r) => { if (r.status === 401) return r.json().then((d) => sessionOver(d.error || "your session ended")); retryTimer = setTimeout(connect, 1500); })
          .catch(() => { retryTimer = setTimeout(connect, 1500); });
      }
    };
  }

  connect();
  tickAges();
  setInterval(tickAges, 1000);
  setInterval(refreshCount, 15000);
})();
