// Fabric operator console: talks to the API's JSON-RPC methods (POST /rpc) with the session
// cookie, follows /console/events for live changes. No framework, no build step. Every piece
// of data goes into the page through textContent, never as HTML.
(function () {
  "use strict";

  const PAGE_SIZE = 50;
  const FAILURE_PAGES = 20; // the failures panel reads at most this many pages of 500 degraded accounts
  const $ = (id) => document.getElementById(id);

  const state = {
    who: null,
    plans: [],
    clusters: [], // cluster.list items
    views: new Map(), // slug -> account view shown in the table
    order: [], // slugs in table order
    cursors: [null], // cursors[i] reads page i
    page: 0,
    nextCursor: null,
    status: "",
    search: "",
    failures: new Map(), // slug -> view with at least one failed cluster
    confirming: null, // slug whose delete awaits confirmation
    planChoice: new Map(), // slug -> plan picked in its row, not applied yet
    loadToken: 0,
    failuresToken: 0,
    source: null,
  };

  class RpcFailure extends Error {
    constructor(code, message, data) {
      super(message);
      this.code = code;
      this.data = data;
    }
  }

  let rpcId = 0;
  async function rpc(method, params) {
    const response = await fetch("/rpc", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: ++rpcId, method: method, params: params || {} }),
    });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      throw new RpcFailure(response.status, "The API answered HTTP " + response.status);
    }
    if (body && body.error) {
      const error = body.error;
      const reason = error.data && error.data.reason;
      if (error.code === -32001 && reason !== "scope") {
        loggedOut("Your session has ended; log in again.");
      }
      throw new RpcFailure(error.code, describe(error), error.data);
    }
    return body.result;
  }

  function describe(error) {
    const data = error.data || {};
    if (data.fields) {
      return Object.keys(data.fields).map((f) => f + ": " + data.fields[f]).join("; ");
    }
    if (error.code === -32010) return "The slug " + (data.slug || "") + " is taken.";
    if (error.code === -32011) return "Not found.";
    if (error.code === -32021) return "Not allowed while the account is " + (data.status || "in this state") + ".";
    if (error.code === -32020) return "Unavailable: " + (data.dependency || "a dependency") + ". Nothing was written.";
    if (error.code === -32001 && data.reason === "scope") return "Your key's scope (" + data.scope + ") does not allow this.";
    if (error.code === -32029) return "Too many requests; try again in a moment.";
    return error.message + (data.reason ? ": " + data.reason : "");
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name === "className") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children || []) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function canWrite() {
    return state.who !== null && (state.who.scope === "write" || state.who.scope === "admin");
  }

  function notify(text, kind) {
    const notice = $("notice");
    notice.textContent = text;
    notice.dataset.kind = kind || "info";
  }

  function when(text) {
    if (!text) return "never";
    const date = new Date(text);
    return isNaN(date.getTime()) ? text : date.toLocaleString();
  }

  // ---- login ----------------------------------------------------------------------------------

  function showLogin(message) {
    $("app").hidden = true;
    $("who").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("login-key").focus();
  }

  function loggedOut(message) {
    if (state.source) {
      state.source.close();
      state.source = null;
    }
    if (state.who === null) return;
    state.who = null;
    // A fresh page: nothing of the old session (its rows, its scope's controls) stays behind.
    sessionStorage.setItem("fabric-console-message", message || "");
    location.replace("/");
  }

  async function login(event) {
    event.preventDefault();
    const input = $("login-key");
    const error = $("login-error");
    error.textContent = "";
    let response;
    try {
      response = await fetch("/console/login", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ key: input.value }),
      });
    } catch (_) {
      error.textContent = "The API cannot be reached.";
      return;
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      error.textContent = body.error && typeof body.error === "string" ? body.error
        : (body.error && body.error.data && body.error.data.reason) || "Login failed (HTTP " + response.status + ").";
      input.select();
      return;
    }
    input.value = "";
    enter(body);
  }

  async function logout() {
    await fetch("/console/logout", { method: "POST", credentials: "same-origin" }).catch(() => null);
    loggedOut("You are logged out.");
  }

  // ---- the app --------------------------------------------------------------------------------

  async function enter(who) {
    state.who = who;
    $("login").hidden = true;
    $("who").hidden = false;
    $("who-name").textContent = who.key_name;
    $("who-scope").textContent = who.scope;
    if (!canWrite()) {
      // A read key gets no write controls at all (the server refuses the methods anyway).
      document.querySelectorAll('[data-requires="write"]').forEach((node) => node.remove());
    }
    $("app").hidden = false;
    $("main").focus();
    connect();
    await Promise.all([loadPlans(), loadClusters(), loadPage(), loadFailures()]);
  }

  async function resync() {
    await Promise.all([loadClusters(), loadPage(), loadFailures()]);
  }

  async function loadPlans() {
    try {
      state.plans = (await rpc("plan.list", {})).map((p) => p.name);
    } catch (error) {
      notify("Plans could not be read: " + error.message, "error");
      return;
    }
    const select = $("create-plan");
    if (select) {
      select.replaceChildren(...state.plans.map((name) => el("option", { value: name, text: name, selected: name === "standard" })));
    }
    renderRows();
  }

  async function loadClusters() {
    try {
      applyClusters(await rpc("cluster.list", {}));
    } catch (error) {
      if (error.code !== -32020) notify("Clusters could not be read: " + error.message, "error");
    }
  }

  async function loadPage() {
    const token = ++state.loadToken;
    let items = [];
    let next = null;
    try {
      if (state.search) {
        try {
          items = [await rpc("account.get", { slug: state.search })];
        } catch (error) {
          if (error.code !== -32011) throw error;
        }
      } else {
        const params = { limit: PAGE_SIZE };
        if (state.cursors[state.page]) params.cursor = state.cursors[state.page];
        if (state.status) params.status = state.status;
        const page = await rpc("account.list", params);
        items = page.items;
        next = page.next_cursor;
      }
    } catch (error) {
      if (token === state.loadToken) notify("Accounts could not be read: " + error.message, "error");
      return;
    }
    if (token !== state.loadToken) return; // a newer load started meanwhile
    state.nextCursor = next;
    state.views = new Map(items.map((v) => [v.slug, v]));
    state.order = items.map((v) => v.slug);
    items.forEach(trackFailures);
    renderTable();
  }

  async function loadFailures() {
    const token = ++state.failuresToken;
    const found = new Map();
    let cursor = null;
    try {
      for (let i = 0; i < FAILURE_PAGES; i++) {
        const params = { limit: 500, status: "degraded" };
        if (cursor) params.cursor = cursor;
        const page = await rpc("account.list", params);
        page.items.forEach((v) => { if (failedClusters(v).length) found.set(v.slug, v); });
        cursor = page.next_cursor;
        if (!cursor) break;
      }
    } catch (error) {
      notify("Failures could not be read: " + error.message, "error");
      return;
    }
    if (token !== state.failuresToken) return;
    // Failures seen live on accounts that are not degraded (an offline cluster's) stay listed.
    for (const [slug, view] of state.failures) {
      if (!found.has(slug) && view.status !== "degraded") found.set(slug, view);
    }
    state.failures = found;
    renderFailures();
  }

  // ---- live updates ---------------------------------------------------------------------------

  function setLive(live) {
    const badge = $("live");
    badge.dataset.live = live ? "true" : "false";
    badge.textContent = live ? "Live" : "Reconnecting…";
  }

  function connect() {
    if (state.source) state.source.close();
    const source = new EventSource("/console/events");
    state.source = source;
    source.addEventListener("hello", () => {
      setLive(true);
      // Changes made before this stream's subscription (or while it was away) were not sent:
      // read what is visible again (EventSource reconnects by itself; each connection says hello).
      if (source === state.source) resync();
    });
    source.addEventListener("account", (event) => applyView(JSON.parse(event.data)));
    source.addEventListener("clusters", (event) => applyClusters(JSON.parse(event.data)));
    source.addEventListener("ended", (event) => {
      const reason = JSON.parse(event.data).reason;
      if (reason === "session") loggedOut("Your session has ended; log in again.");
    });
    source.onerror = async () => {
      setLive(false);
      if (source.readyState !== EventSource.CLOSED || source !== state.source) return;
      // The server refused the stream (EventSource gives up on that): still logged in?
      const response = await fetch("/console/session", { credentials: "same-origin" }).catch(() => null);
      if (response && response.status === 401) {
        loggedOut("Your session has ended; log in again.");
      } else if (source === state.source) {
        setTimeout(() => { if (source === state.source) connect(); }, 2000);
      }
    };
  }

  // Views come from answers and from the live stream, in any order (a create's answer can
  // arrive after the stream has shown its clusters created): an older view never replaces a
  // newer one. Newer: a later generation, then more clusters that observed it, then a later
  // change time.
  function freshness(view) {
    const cells = Object.values(view.clusters || {});
    const settled = cells.filter((c) => c.state !== "pending" && c.observed_generation >= view.generation).length;
    const times = [view.updated_at || "", ...cells.map((c) => c.updated_at || "")].sort();
    return [view.generation, settled, times[times.length - 1]];
  }

  function olderThan(a, b) {
    const x = freshness(a);
    const y = freshness(b);
    for (let i = 0; i < x.length; i += 1) {
      if (x[i] !== y[i]) return x[i] < y[i];
    }
    return false;
  }

  function applyView(view) {
    const held = state.views.get(view.slug);
    if (held && olderThan(view, held)) return;
    trackFailures(view);
    renderFailures();
    if (held) {
      state.views.set(view.slug, view);
      replaceRow(view.slug);
      return;
    }
    if (fitsPage(view)) {
      state.views.set(view.slug, view);
      state.order.push(view.slug);
      renderTable();
    }
  }

  function fitsPage(view) {
    if (state.search) return view.slug === state.search;
    // Accounts are listed in creation order: a new one belongs on the last page.
    return state.nextCursor === null && (!state.status || state.status === view.status);
  }

  function applyClusters(list) {
    const before = JSON.stringify(state.clusters.map((c) => [c.name, c.status]));
    state.clusters = list;
    renderClusters();
    if (JSON.stringify(list.map((c) => [c.name, c.status])) !== before) renderTable();
  }

  // ---- accounts table -------------------------------------------------------------------------

  function clusterNames() {
    const names = new Set(state.clusters.map((c) => c.name));
    for (const view of state.views.values()) Object.keys(view.clusters || {}).forEach((n) => names.add(n));
    return Array.from(names).sort();
  }

  function clusterOnline(name, cell) {
    const known = state.clusters.find((c) => c.name === name);
    return known ? known.status === "online" : Boolean(cell && cell.online);
  }

  function renderTable() {
    const names = clusterNames();
    const head = [el("th", { scope: "col", text: "Account" }), el("th", { scope: "col", text: "Plan" }),
      el("th", { scope: "col", text: "Status" }), el("th", { scope: "col", text: "Generation" })];
    names.forEach((name) => head.push(el("th", { scope: "col", text: "Cluster " + name })));
    if (canWrite()) head.push(el("th", { scope: "col", text: "Actions" }));
    $("accounts-head").replaceChildren(...head);
    $("accounts-body").replaceChildren(...state.order.map((slug) => row(state.views.get(slug), names)));
    $("accounts-empty").hidden = state.order.length > 0;
    $("prev").disabled = state.search !== "" || state.page === 0;
    $("next").disabled = state.search !== "" || state.nextCursor === null;
    $("page-label").textContent = state.search ? "Slug " + state.search : "Page " + (state.page + 1);
  }

  function renderRows() {
    if (state.order.length) renderTable();
  }

  function replaceRow(slug) {
    const old = document.querySelector('tr[data-account="' + CSS.escape(slug) + '"]');
    if (!old) return;
    const focused = old.contains(document.activeElement) ? document.activeElement.dataset.action : null;
    const fresh = row(state.views.get(slug), clusterNames());
    old.replaceWith(fresh);
    if (focused) {
      const again = fresh.querySelector('[data-action="' + focused + '"]');
      if (again) again.focus();
    }
  }

  function row(view, names) {
    const tr = el("tr", { "data-account": view.slug, "data-status": view.status, "data-id": view.id });
    tr.append(
      el("td", {}, [el("strong", { text: view.slug }), el("span", { className: "sub", text: view.name }),
        el("span", { className: "sub", text: view.owner_email })]),
      el("td", { text: view.plan }),
      el("td", {}, [el("span", { className: "state status-" + view.status, text: view.status })]),
      el("td", { text: String(view.generation) }),
    );
    for (const name of names) {
      const cell = (view.clusters || {})[name];
      if (!cell) {
        tr.append(el("td", { text: "—" }));
        continue;
      }
      const online = clusterOnline(name, cell);
      const td = el("td", { "data-cluster": name, "data-state": cell.state, "data-cluster-online": String(online) }, [
        el("span", { className: "state", text: cell.state }),
        online ? null : el("span", { className: "offline", text: "offline" }),
        el("span", { className: "sub", text: "observed gen. " + cell.observed_generation }),
        cell.attempts ? el("span", { className: "sub", text: "attempts " + cell.attempts }) : null,
        cell.error ? el("span", { className: "cell-error", text: cell.error }) : null,
      ]);
      tr.append(td);
    }
    if (canWrite()) tr.append(actions(view));
    return tr;
  }

  function actions(view) {
    const td = el("td", { className: "actions" });
    if (view.status === "deleted" || view.status === "deleting") return td;
    const label = view.slug;
    if (state.confirming === view.slug) {
      td.append(
        el("span", { className: "confirm", text: "Delete " + label + "? Its namespaces are removed from every cluster." }),
        button("Confirm delete", "confirm-delete", "danger", () => act(view, "account.delete", { id: view.id }, "deletion requested")),
        button("Cancel", "cancel-delete", "secondary", () => { state.confirming = null; replaceRow(view.slug); focusAction(view.slug, "delete"); }),
      );
      return td;
    }
    const choice = state.planChoice.get(view.slug) || view.plan;
    const select = el("select", { "data-action": "plan", "aria-label": "Plan of " + label },
      state.plans.map((name) => el("option", { value: name, text: name, selected: name === choice })));
    select.addEventListener("change", () => state.planChoice.set(view.slug, select.value));
    td.append(select, button("Change plan", "update-plan", "secondary", () => {
      state.planChoice.delete(view.slug);
      act(view, "account.update", { id: view.id, plan: select.value }, "plan set to " + select.value);
    }, "Change the plan of " + label));
    if (view.status === "suspended") {
      td.append(button("Resume", "resume", "secondary", () => act(view, "account.resume", { id: view.id }, "resumed"), "Resume " + label));
    } else {
      td.append(button("Suspend", "suspend", "secondary", () => act(view, "account.suspend", { id: view.id }, "suspended"), "Suspend " + label));
    }
    if (failedClusters(view).length) {
      td.append(button("Retry", "retry", "secondary", () => act(view, "account.retry", { id: view.id }, "retrying"), "Retry the failed clusters of " + label));
    }
    td.append(button("Delete", "delete", "danger", () => {
      state.confirming = view.slug;
      replaceRow(view.slug);
      focusAction(view.slug, "cancel-delete");
    }, "Delete " + label));
    return td;
  }

  function focusAction(slug, action) {
    const node = document.querySelector('tr[data-account="' + CSS.escape(slug) + '"] [data-action="' + action + '"]');
    if (node) node.focus();
  }

  function button(text, action, kind, onClick, label) {
    const node = el("button", { type: "button", className: kind, "data-action": action, "aria-label": label, text: text });
    node.addEventListener("click", onClick);
    return node;
  }

  async function act(view, method, params, done) {
    try {
      const result = await rpc(method, params);
      if (state.confirming === view.slug) state.confirming = null;
      applyView(result);
      notify("Account " + view.slug + ": " + done + ".");
    } catch (error) {
      notify("Account " + view.slug + ": " + error.message, "error");
    }
  }

  // ---- create ---------------------------------------------------------------------------------

  async function create(event) {
    event.preventDefault();
    const form = event.target;
    const error = $("create-error");
    error.textContent = "";
    const params = { name: form.elements.name.value.trim(), owner_email: form.elements.owner_email.value.trim() };
    const slug = form.elements.slug.value.trim();
    if (slug) params.slug = slug;
    if (form.elements.plan.value) params.plan = form.elements.plan.value;
    let view;
    try {
      view = await rpc("account.create", params);
    } catch (failure) {
      error.textContent = failure.message;
      return;
    }
    form.reset();
    const plan = form.elements.plan;
    if (state.plans.includes("standard")) plan.value = "standard";
    notify("Account " + view.slug + " created; provisioning follows below.");
    applyView(view);
    if (!state.views.has(view.slug)) {
      // Not on the page shown: show it alone, so its progress can be watched.
      $("search").value = view.slug;
      state.search = view.slug;
      await loadPage();
    }
  }

  // ---- clusters and failures ------------------------------------------------------------------

  function renderClusters() {
    const items = state.clusters.map((c) => {
      const online = c.status === "online";
      return el("li", { "data-cluster-name": c.name, "data-online": String(online) }, [
        el("span", { className: "name", text: c.name }),
        el("span", { className: "state", text: online ? "online" : "offline" }),
        el("span", { className: "sub", text: "last seen " + when(c.last_seen) }),
        el("span", { className: "sub", text: "lag " + c.lag }),
      ]);
    });
    $("clusters-list").replaceChildren(...items);
    $("clusters-empty").hidden = items.length > 0;
  }

  function failedClusters(view) {
    return Object.entries(view.clusters || {}).filter(([, cell]) => cell.state === "failed").map(([name]) => name);
  }

  function trackFailures(view) {
    if (failedClusters(view).length) state.failures.set(view.slug, view);
    else state.failures.delete(view.slug);
  }

  function renderFailures() {
    const items = [];
    for (const slug of Array.from(state.failures.keys()).sort()) {
      const view = state.failures.get(slug);
      for (const name of failedClusters(view)) {
        const cell = view.clusters[name];
        items.push(el("li", { "data-failure-account": slug, "data-failure-cluster": name }, [
          el("span", { className: "name", text: slug + " on " + name }),
          el("span", { className: "sub", text: "attempts " + (cell.attempts || 0) + ", generation " + cell.observed_generation }),
          el("span", { className: "reason", text: cell.error || "no reason reported" }),
          canWrite() ? button("Retry", "retry-failure", "secondary",
            () => act(view, "account.retry", { id: view.id, cluster: name }, "retrying on " + name),
            "Retry " + slug + " on cluster " + name) : null,
        ]));
      }
    }
    $("failures-list").replaceChildren(...items);
    $("failures-empty").hidden = items.length > 0;
  }

  // ---- paging, search, filter -----------------------------------------------------------------

  function wire() {
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", logout);
    const createForm = $("create-form");
    if (createForm) createForm.addEventListener("submit", create);
    $("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.search = $("search").value.trim();
      state.page = 0;
      state.cursors = [null];
      loadPage();
    });
    $("search-clear").addEventListener("click", () => {
      $("search").value = "";
      state.search = "";
      state.page = 0;
      state.cursors = [null];
      loadPage();
    });
    $("status-filter").addEventListener("change", (event) => {
      state.status = event.target.value;
      state.search = "";
      $("search").value = "";
      state.page = 0;
      state.cursors = [null];
      loadPage();
    });
    $("next").addEventListener("click", () => {
      if (state.nextCursor === null) return;
      state.cursors[state.page + 1] = state.nextCursor;
      state.page += 1;
      loadPage();
    });
    $("prev").addEventListener("click", () => {
      if (state.page === 0) return;
      state.page -= 1;
      loadPage();
    });
  }

  async function boot() {
    wire();
    const message = sessionStorage.getItem("fabric-console-message") || "";
    sessionStorage.removeItem("fabric-console-message");
    const response = await fetch("/console/session", { credentials: "same-origin" }).catch(() => null);
    if (response && response.ok) {
      enter(await response.json());
    } else {
      showLogin(message);
    }
  }

  boot();
})();
