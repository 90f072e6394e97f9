// The debug page: talks only to this server's /api. Every text from the catalog or a backend goes into the
// page with textContent (never innerHTML), so a title like "<img onerror=...>" is shown as text.
"use strict";

(() => {
  const STATUS_REFRESH_MS = 4000;
  // A like travels collector -> queue -> pipeline -> Redis: polled fast at first, then every few seconds for as
  // long as the page shows this user (a paused or restarting pipeline delivers it later, never drops it).
  const HISTORY_POLL_MS = 300;
  const HISTORY_POLL_MAX_MS = 3000;
  const METRIC_LABELS = [
    ["offline_precision_at_10", "P@10", 3],
    ["offline_ndcg_at_10", "NDCG@10", 3],
    ["users", "users", 0],
    ["items", "items", 0],
    ["likes", "likes", 0],
    ["training_seconds", "fit s", 2],
  ];

  const state = {
    userId: "",
    busy: false,
    statusInFlight: false,
    errors: new Map(), // topic -> message; the banner shows them all
    pending: new Map(), // item_id -> feedback sent but not yet in the stored history
    lastHistory: null,
    statusAsOf: null, // when the status figures on the page were last fetched (they stay when a refresh fails)
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // ---- errors -------------------------------------------------------------------------------------------

  function renderErrors() {
    const banner = $("error");
    banner.replaceChildren(...[...state.errors.values()].map((message) => el("div", "", message)));
    banner.hidden = state.errors.size === 0;
  }

  function showError(topic, message) {
    state.errors.set(topic, message);
    renderErrors();
  }

  function clearError(topic) {
    if (state.errors.delete(topic)) renderErrors();
  }

  async function api(path, options = {}) {
    const headers = { Accept: "application/json" };
    if (options.body) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, { ...options, headers });
    } catch (error) {
      throw new Error(`cannot reach the web UI server (${error.message})`);
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail : response.statusText;
      throw new Error(`HTTP ${response.status}: ${detail || "request failed"}`);
    }
    return body;
  }

  // ---- formatting ---------------------------------------------------------------------------------------

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 2) return "just now";
    if (seconds < 90) return `${Math.round(seconds)} s ago`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 129600) return `${Math.round(seconds / 3600)} h ago`;
    return `${Math.round(seconds / 86400)} days ago`;
  }

  const count = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : "–");

  function uuid4() {
    if (window.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
    // randomUUID needs a secure context; getRandomValues works everywhere.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  // ---- busy state: one feedback or load at a time, so the list never races itself ----------------------

  function setBusy(busy) {
    state.busy = busy;
    document.body.classList.toggle("busy", busy);
    for (const button of document.querySelectorAll("#recs button")) button.disabled = busy;
    $("more").disabled = busy || !state.userId;
  }

  // ---- recommendations ----------------------------------------------------------------------------------

  function card(item, position) {
    const node = el("article", "card");
    node.dataset.itemId = item.item_id;
    node.dataset.source = item.source;

    const top = el("div", "card-top");
    top.append(el("span", "rank", `#${position + 1}`));
    const badge = el("span", `badge source source-${item.source.replace(/[^a-z0-9_-]/gi, "")}`, item.source);
    top.append(badge);
    node.append(top);

    node.append(el("h3", item.title ? "title" : "title no-title", item.title || item.item_id));
    if (item.title) node.append(el("p", "item-id", item.item_id));

    const genres = el("ul", "genres");
    for (const genre of item.genres) genres.append(el("li", "chip", genre));
    if (!item.genres.length) genres.append(el("li", "chip empty", "no genres"));
    node.append(genres);

    const why = el("p", "why");
    why.append(el("span", "why-label", "why: "), el("span", "why-text", item.why));
    node.append(why);

    const actions = el("div", "actions");
    const like = el("button", "like", "Like");
    const dislike = el("button", "dislike", "Dislike");
    like.type = dislike.type = "button";
    const name = item.title || item.item_id;
    like.setAttribute("aria-label", `Like ${name}`);
    dislike.setAttribute("aria-label", `Dislike ${name}`);
    like.addEventListener("click", () => sendFeedback(item, "like"));
    dislike.addEventListener("click", () => sendFeedback(item, "dislike"));
    actions.append(like, dislike);
    node.append(actions);
    return node;
  }

  function renderRecs(page) {
    $("group").textContent = page.group || "–";
    $("recs").replaceChildren(...page.items.map(card));
    if (page.items.length) $("more").textContent = `Show ${page.items.length} more`;
    const notes = [];
    if (!page.items.length) notes.push("No recommendations: the catalog is empty, or this user has seen every item.");
    else notes.push(`${page.items.length} items from a fresh /recs call (shown items are never shown again).`);
    if (page.fallback) notes.push("Served by the fallback: Redis is unavailable.");
    for (const warning of page.warnings) notes.push(`Warning: ${warning}`);
    const note = $("recs-note");
    note.textContent = notes.join(" ");
    note.classList.toggle("warn", page.fallback || page.warnings.length > 0);
  }

  // focusList: after a like/dislike from the keyboard, focus moves to the new list instead of the page's top.
  async function loadRecs(focusList = false) {
    const userId = state.userId;
    if (!userId) return;
    setBusy(true);
    try {
      const page = await api(`/api/recs/${encodeURIComponent(userId)}`);
      if (userId !== state.userId) return;
      renderRecs(page);
      if (focusList) $("recs").focus();
      clearError("recs");
    } catch (error) {
      if (userId !== state.userId) return;
      $("recs").replaceChildren();
      $("recs-note").textContent = "No recommendations to show (see the error above).";
      showError("recs", `Could not load recommendations: ${error.message}`);
    } finally {
      // A request for a user no longer selected must not re-enable the buttons of the new user's pending load.
      if (userId === state.userId) setBusy(false);
    }
  }

  async function sendFeedback(item, action) {
    if (state.busy) return;
    const userId = state.userId;
    // Read before the buttons are disabled (a disabled button loses the focus).
    const focused = document.activeElement;
    const fromList = focused instanceof HTMLElement && focused.closest("#recs") !== null;
    setBusy(true);
    try {
      await api("/api/feedback", {
        method: "POST",
        body: JSON.stringify({ user_id: userId, item_id: item.item_id, action }),
      });
      clearError("feedback");
    } catch (error) {
      if (userId !== state.userId) return;
      showError("feedback", `Could not send the ${action}: ${error.message}`);
      setBusy(false);
      return;
    }
    // Another user was selected meanwhile: this answer belongs to none of what the page shows now.
    if (userId !== state.userId) return;
    state.pending.set(item.item_id, { item_id: item.item_id, title: item.title, action, ts: Date.now() / 1000 });
    renderHistory(state.lastHistory);
    // A new /recs call: the list moves on after every like/dislike. Still busy until it answers, so a second
    // click cannot send feedback about a list that is being replaced.
    await loadRecs(fromList);
    refreshStatus();
    await pollHistory(userId, item.item_id);
  }

  // ---- history ------------------------------------------------------------------------------------------

  function historyEntry(entry, pending) {
    const node = el("li", `entry ${entry.action === "like" ? "like" : "dislike"}${pending ? " pending" : ""}`);
    node.dataset.itemId = entry.item_id;
    node.append(el("span", "action", entry.action === "like" ? "Like" : "Dislike"));
    node.append(el("span", "entry-title", entry.title || entry.item_id));
    // Pending: the collector accepted it (RabbitMQ confirmed); the pipeline has not stored it yet.
    const when = pending ? "accepted · waiting for the pipeline…" : entry.ts ? ago(Date.now() / 1000 - entry.ts) : "";
    node.append(el("span", "entry-time", when));
    return node;
  }

  function renderHistory(page) {
    const stored = page ? page.history : [];
    const pending = [...state.pending.values()].reverse();
    $("history").replaceChildren(
      ...pending.map((entry) => historyEntry(entry, true)),
      ...stored.map((entry) => historyEntry(entry, false)),
    );
    $("history-note").hidden = stored.length + pending.length > 0;
    $("shown-count").textContent = page ? `${count(page.shown_count)} items shown` : "";
    if (page && page.group) $("group").textContent = page.group;
    // The pipeline's twin link: the earlier user whose answers this user's matching also uses.
    const twin = page ? page.twin : null;
    $("twin").hidden = !twin;
    $("twin-user").textContent = twin || "";
    $("twin-user").title = twin ? "open this user" : "";
  }

  async function loadHistory() {
    const userId = state.userId;
    if (!userId) return null;
    try {
      const page = await api(`/api/users/${encodeURIComponent(userId)}`);
      if (userId !== state.userId) return null;
      for (const entry of page.history) state.pending.delete(entry.item_id);
      state.lastHistory = page;
      renderHistory(page);
      clearError("history");
      return page;
    } catch (error) {
      if (userId !== state.userId) return null;
      showError("history", `Could not load the history: ${error.message}`);
      return null;
    }
  }

  // Until the stored history has the item (or another user is selected); one poller per item.
  async function pollHistory(userId, itemId) {
    let wait = HISTORY_POLL_MS;
    while (userId === state.userId && state.pending.has(itemId)) {
      await loadHistory();
      if (!state.pending.has(itemId)) return;
      await new Promise((resolve) => setTimeout(resolve, wait));
      wait = Math.min(wait * 1.5, HISTORY_POLL_MAX_MS);
    }
  }

  // ---- status -------------------------------------------------------------------------------------------

  function setText(id, text) {
    $(id).textContent = text;
  }

  function metricChips(metrics) {
    const chips = [];
    for (const [key, label, digits] of METRIC_LABELS) {
      if (typeof metrics[key] !== "number") continue;
      const value = digits === 0 ? count(metrics[key]) : metrics[key].toFixed(digits);
      chips.push(el("span", "chip metric", `${label} ${value}`));
    }
    return chips;
  }

  function link(url, text) {
    // The server only passes http(s) URLs; checked again here because this goes into an href.
    if (!/^https?:\/\//i.test(url)) return el("span", "", text);
    const a = el("a", "", text);
    a.href = url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    return a;
  }

  function renderStatus(s) {
    setText("status-catalog-size", count(s.catalog_size));
    setText("status-events", count(s.events_stored));
    setText("status-bandit", `${count(s.bandit_arms)} arms · version ${s.bandit_version ?? "–"}`);
    setText(
      "status-model",
      s.model ? `v${s.model.version} · published ${ago(s.model.age_seconds)}` : "no model yet (bandit only)",
    );
    const training = s.training;
    setText(
      "status-training",
      training
        ? `${ago(training.seconds_ago)}${training.retrain_seconds !== null ? ` · took ${training.retrain_seconds.toFixed(2)} s` : ""}`
        : "not trained yet",
    );
    const present = (m) => (m && Object.keys(m).length ? m : null);
    const metrics = present(training && training.metrics) || present(s.model && s.model.metrics) || {};
    const chips = metricChips(metrics);
    $("status-metrics").replaceChildren(...(chips.length ? chips : [el("span", "muted", "–")]));

    const mlflow = $("status-mlflow");
    if (training && training.mlflow_run_url) {
      mlflow.replaceChildren(link(training.mlflow_run_url, `run ${(training.mlflow_run_id || "").slice(0, 8)}`));
    } else if (s.mlflow_url) {
      mlflow.replaceChildren(el("span", "muted", "no run yet · "), link(s.mlflow_url, "MLflow"));
    } else {
      mlflow.replaceChildren(el("span", "muted", "–"));
    }

    const pipeline = s.pipeline;
    const parts = [el("span", `badge ${pipeline.alive ? "ok" : "bad"}`, pipeline.alive ? "alive" : "down")];
    if (pipeline.reachable && pipeline.role === "standby") {
      // PIPELINE_URL points at a standby process: the run's figures are the leader's.
      parts.push(el("span", "", " standby (another pipeline process leads)"));
    } else if (pipeline.reachable) {
      const details = [`${count(pipeline.events_applied)} events applied`];
      const window = pipeline.events_in_training_window;
      if (window != null && pipeline.events_applied != null && window < pipeline.events_applied) {
        details.push(`training on the latest ${count(window)}`);
      }
      if (pipeline.twins_users != null) {
        const linked = pipeline.twins_linked ? ` (${count(pipeline.twins_linked)} linked)` : "";
        details.push(
          `twins: ${count(pipeline.twins_users)} users${linked}, ${count(pipeline.twins_published)} matches published`,
        );
      }
      if (pipeline.training_in_progress) details.push("training now");
      if (pipeline.consumer_connected === false) details.push("not consuming");
      parts.push(el("span", "", ` ${details.join(" · ")}`));
    } else {
      parts.push(el("span", "muted", " status endpoint unreachable"));
    }
    $("status-pipeline").replaceChildren(...parts);

    const experiment = s.experiment;
    const pct = (x) => `${(100 * x).toFixed(2)}%`;
    const points = (x) => `${x < 0 ? "−" : "+"}${Math.abs(100 * x).toFixed(2)}`;
    const lines = [el("div", "", experiment.name || "–")];
    for (const g of experiment.groups) {
      // Live in this run: likes per impression with its 95% interval, and the difference from the control group.
      let text = `${g.name}: ${g.strategy} ${Math.round(g.share * 100)}%`;
      if (g.like_rate != null) {
        text += ` · like rate ${pct(g.like_rate)}`;
        if (g.like_rate_95) text += ` [${pct(g.like_rate_95[0])}–${pct(g.like_rate_95[1])}]`;
        text += ` of ${count(g.impressions)} shown to ${count(g.users)} users`;
      }
      if (g.vs_control) {
        const { difference, low, high } = g.vs_control;
        text += ` · vs control ${points(difference)} pt [${points(low)}, ${points(high)}]`;
      }
      lines.push(el("div", "exp-group", text));
    }
    $("status-experiment").replaceChildren(...lines);
    $("status-experiment").title = "95% intervals with users as the unit (the delta method over per-user sums)";

    const warning = $("status-error");
    warning.textContent = s.warnings.join(" ");
    warning.hidden = s.warnings.length === 0;
    warning.classList.toggle("warn", s.warnings.length > 0);
    state.statusAsOf = new Date().toLocaleTimeString();
    setText("status-updated", `updated ${state.statusAsOf}`);
    $("status-panel").classList.remove("stale");
  }

  async function refreshStatus() {
    if (state.statusInFlight) return;
    state.statusInFlight = true;
    try {
      renderStatus(await api("/api/status"));
    } catch (error) {
      const box = $("status-error");
      box.classList.remove("warn");
      box.textContent = `Status unavailable: ${error.message}`;
      box.hidden = false;
      // The figures below stay for reference, greyed, and say when they were last true.
      $("status-panel").classList.add("stale");
      const asOf = state.statusAsOf ? ` · figures as of ${state.statusAsOf}` : "";
      setText("status-updated", `failed ${new Date().toLocaleTimeString()}${asOf}`);
    } finally {
      state.statusInFlight = false;
    }
  }

  // ---- wiring -------------------------------------------------------------------------------------------

  async function selectUser(userId) {
    // Load clicked again for the user whose list is still loading (a double click): one /recs call, not two,
    // or ten items would be marked shown without ever being seen.
    if (userId === state.userId && state.busy) return;
    state.userId = userId;
    state.pending.clear();
    state.lastHistory = null;
    $("user-id").value = userId;
    history.replaceState(null, "", `?user_id=${encodeURIComponent(userId)}`);
    $("group").textContent = "–";
    renderHistory(null);
    await loadRecsThenHistory();
  }

  // The history after the list: its shown count then includes the items on screen.
  async function loadRecsThenHistory() {
    await loadRecs();
    await loadHistory();
  }

  function init() {
    const banner = $("error");
    if (!banner.hidden && banner.textContent.trim()) state.errors.set("page", banner.textContent.trim());
    const input = $("user-id");
    $("user-form").addEventListener("submit", (event) => {
      event.preventDefault();
      // Pasted ids often carry spaces, which the pattern refuses: trimmed first (the form is novalidate so that
      // the browser does not refuse it before this runs), then checked with the browser's own message.
      input.value = input.value.trim();
      if (!input.reportValidity()) return;
      clearError("page");
      selectUser(input.value);
    });
    $("twin-user").addEventListener("click", () => {
      const twin = $("twin-user").textContent;
      if (twin) selectUser(twin);
    });
    $("new-user").addEventListener("click", () => {
      clearError("page");
      selectUser(uuid4());
    });
    $("more").addEventListener("click", loadRecsThenHistory);
    if (input.value.trim() && input.checkValidity()) selectUser(input.value.trim());
    refreshStatus();
    setInterval(refreshStatus, STATUS_REFRESH_MS);
  }

  init();
})();
