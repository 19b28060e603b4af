/* Boeket — the local web chat.
 *
 * Plain browser JavaScript, no build step, no dependencies. The server (adapters/local/adapter.py)
 * owns the chat; this page shows it and sends what a person types or clicks.
 *
 * Safety rule: only a message's server-rendered `html` goes into innerHTML (the server escapes
 * everything a person typed). Every other text — names, labels, form texts, errors — is set with
 * textContent.
 */
(function () {
  "use strict";

  // --- texts --------------------------------------------------------------------------------

  // Used only when the server's `ui` lacks a key.
  const FALLBACK = {
    nl: {
      title: "Boeket — lokale chat",
      pick_person: "Wie ben jij?",
      channels: "Kanalen",
      cross_department: "gezamenlijk kanaal",
      placeholder: "Schrijf een bericht, of /deel om een succes te delen",
      thread_placeholder: "Antwoord in de draad…",
      replies: "{count} antwoorden",
      open_thread: "Draad openen",
      close: "Sluiten",
      cancel: "Annuleren",
      bot_name: "Boeket",
      only_you: "Alleen jij ziet dit",
      clock: "Klok",
      disconnected: "Verbinding verbroken — opnieuw verbinden…",
      empty_channel: "Nog geen berichten.",
      speed: "x{speed}",
      send: "Versturen",
      thread: "Draad",
      switch_person: "Wissel van persoon",
      no_department: "Overig",
      no_people: "Er staan nog geen personen in de configuratie (local.people).",
      menu: "Kanalen tonen",
      loading: "Laden…",
      load_failed: "Boeket is niet bereikbaar. Opnieuw proberen…",
      error: "Er ging iets mis. Probeer het opnieuw.",
      network_error: "Geen verbinding met Boeket. Probeer het opnieuw.",
      today: "Vandaag",
      yesterday: "Gisteren",
      unread: "{count} nieuw",
      required: "verplicht",
    },
    en: {
      title: "Boeket — local chat",
      pick_person: "Who are you?",
      channels: "Channels",
      cross_department: "shared channel",
      placeholder: "Write a message, or /deel to share a success",
      thread_placeholder: "Reply in the thread…",
      replies: "{count} replies",
      open_thread: "Open thread",
      close: "Close",
      cancel: "Cancel",
      bot_name: "Boeket",
      only_you: "Only you can see this",
      clock: "Clock",
      disconnected: "Connection lost — reconnecting…",
      empty_channel: "No messages yet.",
      speed: "x{speed}",
      send: "Send",
      thread: "Thread",
      switch_person: "Switch person",
      no_department: "Other",
      no_people: "No people are configured yet (local.people).",
      menu: "Show channels",
      loading: "Loading…",
      load_failed: "Boeket cannot be reached. Retrying…",
      error: "Something went wrong. Please try again.",
      network_error: "No connection to Boeket. Please try again.",
      today: "Today",
      yesterday: "Yesterday",
      unread: "{count} new",
      required: "required",
    },
  };

  function t(key, vars) {
    let text = S.ui[key];
    if (typeof text !== "string") text = S.ui["local." + key];
    if (typeof text !== "string") {
      const lang = FALLBACK[S.lang] ? S.lang : "nl";
      text = FALLBACK[lang][key];
      if (typeof text !== "string") text = FALLBACK.nl[key];
      if (typeof text !== "string") text = key;
    }
    if (vars) {
      text = text.replace(/\{(\w+)\}/g, (whole, name) =>
        Object.prototype.hasOwnProperty.call(vars, name) ? String(vars[name]) : whole
      );
    }
    return text;
  }

  function repliesText(count) {
    if (count === 1 && typeof S.ui.replies_one === "string") return t("replies_one", { count });
    return t("replies", { count });
  }

  // --- state --------------------------------------------------------------------------------

  const BOT = "boeket";
  const PERSON_KEY = "boeket.local.person";
  const CHANNEL_KEY = "boeket.local.channel.";

  const S = {
    ui: {},
    lang: "nl",
    channels: [],
    people: [],
    msgs: {}, // channel id -> [LocalMessage] in server order
    byId: new Map(),
    person: null,
    channel: null,
    thread: null, // {channel, id}
    unread: {},
    // websocket
    ws: null,
    wsWanted: false,
    wsAttempts: 0,
    reconnectTimer: 0,
    pingTimers: [],
    // state loading
    loadSeq: 0,
    pending: null, // websocket events that arrived while a state fetch was in flight
    // virtual clock: anchor reading plus an estimated speed
    clock: { anchorV: null, anchorR: 0, sampleV: null, sampleR: 0, rate: 1, lastEstimate: null, day: "" },
    // the open form
    form: null, // {form, channel, submissionId, busy, opener}
    sending: { main: false, thread: false },
    clientIds: { main: null, thread: null },
  };

  const $ = (id) => document.getElementById(id);
  const el = (tag, props, ...children) => {
    const node = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === "class") node.className = v;
        else if (k === "text") node.textContent = v;
        else if (k === "dataset") Object.assign(node.dataset, v);
        else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
        else if (v === true) node.setAttribute(k, "");
        else node.setAttribute(k, String(v));
      }
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  };

  function randomId() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      try {
        return window.crypto.randomUUID();
      } catch (e) {
        /* insecure context: fall through */
      }
    }
    const bytes = new Uint8Array(16);
    if (window.crypto && window.crypto.getRandomValues) window.crypto.getRandomValues(bytes);
    else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function storageGet(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (e) {
      return null;
    }
  }
  function storageSet(key, value) {
    try {
      if (value === null) window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, value);
    } catch (e) {
      /* private mode: the choice is simply not remembered */
    }
  }

  // --- time ---------------------------------------------------------------------------------

  function parseTs(ts) {
    const ms = Date.parse(ts || "");
    return Number.isFinite(ms) ? new Date(ms) : null;
  }
  const pad2 = (n) => String(n).padStart(2, "0");
  const hhmm = (d) => pad2(d.getHours()) + ":" + pad2(d.getMinutes());
  const dayKey = (d) => d.getFullYear() + "-" + pad2(d.getMonth() + 1) + "-" + pad2(d.getDate());

  function fmt(date, options) {
    try {
      return new Intl.DateTimeFormat(S.lang, options).format(date);
    } catch (e) {
      return date.toDateString();
    }
  }

  function virtualNow() {
    const c = S.clock;
    if (c.anchorV === null) return new Date();
    // Never run on for long without a reading (a ping is due every 20 s).
    const elapsed = Math.min(performance.now() - c.anchorR, 30000);
    return new Date(c.anchorV + elapsed * c.rate);
  }

  function dayLabel(date) {
    const now = virtualNow();
    const today = dayKey(now);
    const yesterday = dayKey(new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1));
    const key = dayKey(date);
    if (key === today) return t("today");
    if (key === yesterday) return t("yesterday");
    const opts = { weekday: "long", day: "numeric", month: "long" };
    if (date.getFullYear() !== now.getFullYear()) opts.year = "numeric";
    return fmt(date, opts);
  }

  /**
   * A reading of the server's clock, which may run fast (--speed) or stand still (a manual clock).
   * Between readings the page extrapolates with the estimated speed, but only while consecutive
   * estimates agree: after a jump of a manual clock it shows the last reading instead of racing.
   */
  function setClock(iso) {
    const date = parseTs(iso);
    if (!date) return;
    const v = date.getTime();
    const r = performance.now();
    const c = S.clock;
    if (c.sampleV === null || v < c.sampleV) {
      c.sampleV = v;
      c.sampleR = r;
      c.lastEstimate = null;
    } else if (r - c.sampleR >= 4000) {
      let estimate = (v - c.sampleV) / (r - c.sampleR);
      if (Math.abs(estimate - 1) < 0.1) estimate = 1;
      const previous = c.lastEstimate;
      const agrees =
        previous === null ||
        previous === undefined ||
        (previous === 0 ? estimate === 0 : Math.abs(estimate - previous) / previous < 0.15);
      if (Number.isFinite(estimate) && estimate >= 0) {
        c.rate = agrees ? estimate : 0;
        c.lastEstimate = estimate;
      }
      c.sampleV = v;
      c.sampleR = r;
    }
    c.anchorV = v;
    c.anchorR = r;
    renderClock();
  }

  function renderClock() {
    if (S.clock.anchorV === null) return;
    const now = virtualNow();
    $("clock-time").textContent =
      fmt(now, { weekday: "short", day: "numeric", month: "short" }) + " " + hhmm(now);
    $("clock-time").setAttribute("datetime", now.toISOString());
    const speed = $("clock-speed");
    const rate = S.clock.rate;
    if (rate >= 1.5) {
      const shown = rate >= 10 ? Math.round(rate) : Math.round(rate * 10) / 10;
      speed.textContent = t("speed", { speed: shown });
      speed.hidden = false;
    } else {
      speed.hidden = true;
    }
    const day = dayKey(now);
    if (S.clock.day && S.clock.day !== day && S.person) {
      S.clock.day = day;
      renderMain(); // "today"/"yesterday" separators move on
      renderThread();
    }
    S.clock.day = day;
  }

  // --- HTTP ---------------------------------------------------------------------------------

  class ApiError extends Error {}

  async function getState(person) {
    const query = person ? "?person=" + encodeURIComponent(person) : "";
    const res = await fetch("/local/api/state" + query, { cache: "no-store" });
    if (!res.ok) throw new ApiError("HTTP " + res.status);
    return res.json();
  }

  async function post(path, body) {
    let res;
    try {
      res = await fetch(path, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(t("network_error"));
    }
    let data = null;
    try {
      data = await res.json();
    } catch (e) {
      data = null;
    }
    if (!res.ok) {
      const reason = data && typeof data.error === "string" ? data.error : "";
      throw new ApiError(reason ? t("error") + " (" + reason + ")" : t("error") + " (HTTP " + res.status + ")");
    }
    return data && data.response !== undefined ? data.response : null;
  }

  function toast(text) {
    const box = $("toasts");
    const item = el("div", { class: "toast" }, text);
    box.append(item);
    while (box.children.length > 3) box.firstChild.remove();
    setTimeout(() => item.classList.add("toast-out"), 6000);
    setTimeout(() => item.remove(), 6600);
  }

  // --- boot, picking a person -----------------------------------------------------------------

  async function boot() {
    wireStaticHandlers();
    $("loading-text").textContent = t("loading");
    const params = new URLSearchParams(window.location.search);
    const wanted = params.get("person") || storageGet(PERSON_KEY);
    let data = null;
    for (let attempt = 0; !data; attempt++) {
      try {
        data = await getState(wanted);
      } catch (e) {
        $("loading-text").textContent = t("load_failed");
        await new Promise((resolve) => setTimeout(resolve, Math.min(10000, 1000 * 2 ** attempt)));
      }
    }
    applyMeta(data);
    $("loading").hidden = true;
    if (wanted && S.people.some((p) => p.id === wanted)) {
      enterChat(wanted, { data, remembered: true });
    } else {
      showPicker();
    }
  }

  function applyMeta(data) {
    S.ui = data.ui && typeof data.ui === "object" ? data.ui : {};
    S.lang = typeof data.language === "string" && data.language ? data.language : "nl";
    S.channels = Array.isArray(data.channels) ? data.channels : [];
    S.people = Array.isArray(data.people) ? data.people : [];
    document.documentElement.lang = S.lang;
    if (data.now) setClock(data.now);
    applyStaticTexts();
  }

  function applyStaticTexts() {
    document.title = S.channel ? "#" + channelName(S.channel) + " · " + t("title") : t("title");
    $("picker-title").textContent = t("pick_person");
    $("brand-name").textContent = t("bot_name");
    $("menu-label").textContent = t("menu");
    $("channels-heading").textContent = t("channels");
    $("clock-label").textContent = t("clock");
    $("switch-person").textContent = t("switch_person");
    $("composer-label").textContent = t("placeholder");
    $("composer").placeholder = t("placeholder");
    $("send").textContent = t("send");
    $("thread-title").textContent = t("thread");
    $("thread-close-label").textContent = t("close");
    $("thread-composer-label").textContent = t("thread_placeholder");
    $("thread-composer").placeholder = t("thread_placeholder");
    $("thread-send").textContent = t("send");
    $("dialog-cancel").textContent = t("cancel");
    $("dialog-x-label").textContent = t("close");
    $("conn").textContent = t("disconnected");
  }

  function departmentChannel(departmentId) {
    return S.channels.find((c) => c.department !== null && c.department === departmentId) || null;
  }

  function channelName(id) {
    const c = S.channels.find((ch) => ch.id === id);
    return c ? c.name : id;
  }

  function initials(name) {
    const letters = String(name || "")
      .trim()
      .split(/\s+/)
      .map((word) => (word.match(/[\p{L}\p{N}]/u) || [""])[0])
      .filter(Boolean);
    if (!letters.length) return "?";
    return (letters[0] + (letters.length > 1 ? letters[letters.length - 1] : "")).toUpperCase();
  }

  function hue(id) {
    let h = 0;
    for (const ch of String(id)) h = (h * 31 + ch.codePointAt(0)) % 360;
    return h;
  }

  function avatar(id, name, small) {
    const isBot = id === BOT;
    const node = el(
      "span",
      { class: "avatar" + (small ? " avatar-sm" : "") + (isBot ? " avatar-bot" : ""), "aria-hidden": "true" },
      isBot ? "✿" : initials(name)
    );
    if (!isBot) node.style.setProperty("--h", String(hue(id)));
    return node;
  }

  function showPicker() {
    $("chat").hidden = true;
    $("picker").hidden = false;
    document.title = t("title");
    const box = $("picker-groups");
    box.textContent = "";
    if (!S.people.length) {
      box.append(el("p", { class: "empty" }, t("no_people")));
      return;
    }
    // Departments in channel order, then departments without a channel, then people without one.
    const groups = new Map();
    for (const c of S.channels) if (c.department !== null) groups.set(c.department, { title: c.name, people: [] });
    const rest = [];
    for (const p of S.people) {
      const dept = p.department || null;
      if (dept === null) {
        rest.push(p);
        continue;
      }
      if (!groups.has(dept)) groups.set(dept, { title: dept, people: [] });
      groups.get(dept).people.push(p);
    }
    if (rest.length) groups.set("\u0000", { title: t("no_department"), people: rest });
    for (const group of groups.values()) {
      if (!group.people.length) continue;
      const headingId = "pg-" + Math.random().toString(36).slice(2, 8);
      const list = el("ul", { class: "person-list", "aria-labelledby": headingId });
      for (const p of group.people) {
        const button = el(
          "button",
          {
            type: "button",
            class: "person-btn",
            "data-testid": "person-" + p.id,
            onclick: () => enterChat(p.id, { remembered: false }),
          },
          avatar(p.id, p.name),
          el("span", { class: "person-name" }, p.name)
        );
        list.append(el("li", null, button));
      }
      box.append(el("section", { class: "person-group" }, el("h2", { id: headingId }, group.title), list));
    }
  }

  function enterChat(personId, { data, remembered }) {
    S.person = personId;
    storageSet(PERSON_KEY, personId);
    const me = S.people.find((p) => p.id === personId) || { id: personId, name: personId };
    // The department channel by default; after a reload the channel last looked at.
    const saved = remembered ? storageGet(CHANNEL_KEY + personId) : null;
    const own = departmentChannel(me.department);
    const start =
      (saved && S.channels.some((c) => c.id === saved) && saved) ||
      (own && own.id) ||
      (S.channels[0] && S.channels[0].id) ||
      null;
    S.channel = start;
    S.thread = null;
    S.unread = {};
    $("picker").hidden = true;
    $("chat").hidden = false;
    $("thread").hidden = true;
    $("chat").classList.remove("thread-open");
    const meAvatar = $("me-avatar");
    meAvatar.textContent = initials(me.name);
    meAvatar.style.setProperty("--h", String(hue(me.id)));
    $("me-name").textContent = me.name;
    if (data) applyState(data);
    else {
      resetMessages();
      loadState(); // also when the websocket cannot connect
      renderAll();
    }
    focusComposer();
    S.wsWanted = true;
    S.wsAttempts = 0;
    connect();
  }

  function switchPerson() {
    S.wsWanted = false;
    clearTimeout(S.reconnectTimer);
    stopPings();
    if (S.ws) {
      const ws = S.ws;
      S.ws = null;
      try {
        ws.close();
      } catch (e) {
        /* already closed */
      }
    }
    setConnected(true);
    closeDialog();
    S.loadSeq += 1; // a state fetch still in flight is for the previous person
    S.pending = null;
    S.person = null;
    S.channel = null;
    S.thread = null;
    storageSet(PERSON_KEY, null);
    resetMessages();
    showPicker();
  }

  // --- chat state ---------------------------------------------------------------------------

  function resetMessages() {
    S.msgs = {};
    S.byId = new Map();
    for (const c of S.channels) S.msgs[c.id] = [];
    for (const box of [$("messages"), $("thread-messages")]) {
      box.textContent = "";
      box._cache = new Map();
    }
  }

  function visible(m) {
    return !m.for_person || m.for_person === S.person;
  }

  function applyState(data) {
    applyMeta(data);
    const known = new Set(S.people.map((p) => p.id));
    if (S.person && !known.has(S.person)) {
      switchPerson();
      return;
    }
    S.msgs = {};
    S.byId = new Map();
    for (const c of S.channels) S.msgs[c.id] = [];
    const messages = data.messages && typeof data.messages === "object" ? data.messages : {};
    for (const [cid, list] of Object.entries(messages)) {
      if (!S.msgs[cid]) continue;
      for (const m of Array.isArray(list) ? list : []) {
        if (!visible(m)) continue;
        S.msgs[cid].push(m);
        S.byId.set(m.id, m);
      }
    }
    if (!S.channels.some((c) => c.id === S.channel)) S.channel = S.channels[0] ? S.channels[0].id : null;
    if (S.thread && !S.byId.has(S.thread.id)) closeThread();
    renderAll();
  }

  async function loadState() {
    const seq = ++S.loadSeq;
    if (S.pending === null) S.pending = [];
    let data = null;
    try {
      data = await getState(S.person);
    } catch (e) {
      data = null;
    }
    if (seq !== S.loadSeq) return;
    if (!S.person) {
      S.pending = null;
      return;
    }
    const pending = S.pending || [];
    S.pending = null;
    if (data) applyState(data);
    else toast(t("network_error"));
    for (const event of pending) handleEvent(event);
  }

  function handleEvent(event) {
    if (!event || typeof event !== "object") return;
    if (event.type === "clock") {
      setClock(event.now);
      return;
    }
    if (S.pending !== null) {
      S.pending.push(event);
      return;
    }
    if (event.type === "message" && event.message) addMessage(event.message);
    else if (event.type === "update" && event.message) updateMessage(event.message);
  }

  function addMessage(m) {
    if (!visible(m) || !S.msgs[m.channel]) return;
    if (S.byId.has(m.id)) {
      updateMessage(m);
      return;
    }
    S.msgs[m.channel].push(m);
    S.byId.set(m.id, m);
    const parent = m.thread_id ? S.byId.get(m.thread_id) : null;
    if (parent && !m.for_person) parent.reply_count = (parent.reply_count || 0) + 1;
    if (m.channel !== S.channel && m.author_id !== S.person && !m.thread_id) {
      S.unread[m.channel] = (S.unread[m.channel] || 0) + 1;
      renderSidebar();
    }
    if (m.channel === S.channel) renderMain({ stick: m.author_id === S.person });
    if (S.thread && (m.thread_id === S.thread.id || m.id === S.thread.id)) {
      renderThread({ stick: m.author_id === S.person });
    }
  }

  function updateMessage(m) {
    if (!visible(m)) return;
    const list = S.msgs[m.channel];
    if (!list) return;
    const index = list.findIndex((x) => x.id === m.id);
    if (index < 0) return; // not ours to show (yet); the next state fetch has it
    list[index] = m;
    S.byId.set(m.id, m);
    if (m.channel === S.channel) renderMain();
    if (S.thread && (m.id === S.thread.id || m.thread_id === S.thread.id)) renderThread();
  }

  // --- websocket ----------------------------------------------------------------------------

  function connect() {
    clearTimeout(S.reconnectTimer);
    if (!S.wsWanted || !S.person) return;
    const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try {
      ws = new WebSocket(proto + "//" + window.location.host + "/local/ws?person=" + encodeURIComponent(S.person));
    } catch (e) {
      scheduleReconnect();
      return;
    }
    S.ws = ws;
    ws.addEventListener("open", () => {
      if (S.ws !== ws) return;
      S.wsAttempts = 0;
      setConnected(true);
      startPings(ws);
      loadState(); // whatever happened while we were away
    });
    ws.addEventListener("message", (e) => {
      if (S.ws !== ws || typeof e.data !== "string") return;
      let data;
      try {
        data = JSON.parse(e.data);
      } catch (err) {
        return;
      }
      handleEvent(data);
    });
    ws.addEventListener("close", () => {
      if (S.ws !== ws) return;
      S.ws = null;
      stopPings();
      if (!S.wsWanted) return;
      setConnected(false);
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    if (!S.wsWanted) return;
    const base = Math.min(15000, 500 * 2 ** S.wsAttempts);
    S.wsAttempts += 1;
    S.reconnectTimer = setTimeout(connect, base * (0.8 + Math.random() * 0.4));
    // A new server may run its clock from another start: estimate the speed afresh.
    S.clock.sampleV = null;
  }

  function startPings(ws) {
    stopPings();
    const ping = () => {
      if (ws.readyState === WebSocket.OPEN) ws.send("ping");
    };
    ping();
    S.pingTimers.push(setTimeout(ping, 5000)); // an early second reading gives the clock's speed
    S.pingTimers.push(setInterval(ping, 20000));
  }

  function stopPings() {
    for (const id of S.pingTimers) {
      clearTimeout(id);
      clearInterval(id);
    }
    S.pingTimers = [];
  }

  function setConnected(ok) {
    $("conn").hidden = ok;
    $("chat").classList.toggle("is-offline", !ok);
  }

  // --- rendering ----------------------------------------------------------------------------

  function renderAll() {
    applyStaticTexts();
    renderSidebar();
    renderMain({ stick: true });
    renderThread({ stick: true });
  }

  function renderSidebar() {
    const list = $("channel-list");
    list.textContent = "";
    const ordered = [
      ...S.channels.filter((c) => c.department !== null),
      ...S.channels.filter((c) => c.department === null),
    ];
    for (const c of ordered) {
      const current = c.id === S.channel;
      const unread = S.unread[c.id] || 0;
      const link = el(
        "a",
        {
          href: "#" + encodeURIComponent(c.id),
          class: "channel-link" + (current ? " is-current" : "") + (unread ? " has-unread" : ""),
          "data-testid": "channel-" + c.id,
          "aria-current": current ? "page" : null,
          onclick: (e) => {
            e.preventDefault();
            selectChannel(c.id);
          },
        },
        el("span", { class: "channel-hash", "aria-hidden": "true" }, "#"),
        el("span", { class: "channel-name" }, c.name)
      );
      if (c.department === null) link.append(el("span", { class: "channel-tag" }, t("cross_department")));
      if (unread && !current) {
        link.append(el("span", { class: "badge" }, el("span", { "aria-hidden": "true" }, String(unread)),
          el("span", { class: "sr-only" }, t("unread", { count: unread }))));
      }
      list.append(el("li", { class: c.department === null ? "channel-cross" : null }, link));
    }
  }

  function selectChannel(id) {
    if (!S.msgs[id]) return;
    const changed = id !== S.channel;
    S.channel = id;
    S.unread[id] = 0;
    storageSet(CHANNEL_KEY + S.person, id);
    if (changed && S.thread && S.thread.channel !== id) closeThread();
    setNav(false);
    applyStaticTexts();
    renderSidebar();
    renderMain({ stick: true });
    focusComposer();
  }

  function focusComposer() {
    if (window.matchMedia("(pointer: fine)").matches) $("composer").focus({ preventScroll: true });
  }

  function nearBottom(box) {
    return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  }

  /** Keyed reconciliation: unchanged message elements stay (focus, live region, scroll). */
  function reconcile(container, items) {
    const cache = container._cache || new Map();
    const next = new Map();
    const active = document.activeElement;
    let ref = container.firstChild;
    let refocus = null;
    for (const item of items) {
      let entry = cache.get(item.key);
      if (!entry || entry.sig !== item.sig) {
        const node = item.build();
        if (entry && active && entry.el.contains(active)) refocus = node;
        entry = { el: node, sig: item.sig };
      }
      next.set(item.key, entry);
      if (entry.el === ref) ref = ref.nextSibling;
      else container.insertBefore(entry.el, ref);
    }
    while (ref) {
      const after = ref.nextSibling;
      ref.remove();
      ref = after;
    }
    container._cache = next;
    if (refocus) {
      refocus.setAttribute("tabindex", "-1");
      refocus.focus({ preventScroll: true });
    }
  }

  function messageItems(list, ctx) {
    const items = [];
    let lastDay = "";
    for (const m of list) {
      const date = parseTs(m.ts);
      const day = date ? dayKey(date) : "";
      if (day && day !== lastDay) {
        const label = dayLabel(date);
        items.push({
          key: "day:" + day,
          sig: label,
          build: () =>
            el("div", { class: "day-sep", role: "separator", "aria-label": label }, el("span", null, label)),
        });
        lastDay = day;
      }
      const sig = [m.html, m.reply_count || 0, m.for_person || "", m.author_name, m.ts, S.lang, ctx].join("\u0001");
      items.push({ key: "m:" + m.id, sig, build: () => buildMessage(m, ctx) });
    }
    return items;
  }

  function buildMessage(m, ctx) {
    const isBot = m.author_id === BOT;
    const date = parseTs(m.ts);
    const classes = ["msg"];
    if (isBot) classes.push("msg-bot");
    if (m.author_id === S.person) classes.push("msg-mine");
    if (m.for_person) classes.push("msg-ephemeral");
    if (ctx === "parent") classes.push("msg-parent");

    const head = el(
      "div",
      { class: "msg-head" },
      el("span", { class: "msg-author" }, m.author_name || (isBot ? t("bot_name") : m.author_id)),
      date
        ? el("time", { class: "msg-time", datetime: m.ts, title: fmt(date, { dateStyle: "full", timeStyle: "short" }) }, hhmm(date))
        : null,
      m.for_person ? el("span", { class: "msg-only-you" }, t("only_you")) : null
    );

    const body = el("div", { class: "msg-body" });
    body.innerHTML = typeof m.html === "string" && m.html ? m.html : "";
    if (!body.firstChild) body.textContent = m.text || "";
    for (const button of body.querySelectorAll("button[data-action]")) button.type = "button";

    const main = el("div", { class: "msg-main" }, head, body);

    if (ctx === "main" && !m.thread_id && !m.for_person) {
      const foot = el("div", { class: "msg-foot" });
      const count = m.reply_count || 0;
      if (count > 0) {
        foot.append(
          el("a", { href: "#thread-" + m.id, class: "msg-replies", "data-testid": "replies", dataset: { thread: m.id } },
            repliesText(count))
        );
      }
      if (isBot) {
        foot.append(
          el("a", { href: "#thread-" + m.id, class: "msg-open-thread", "data-testid": "open-thread", dataset: { thread: m.id } },
            t("open_thread"))
        );
      }
      if (foot.firstChild) main.append(foot);
    }

    return el(
      "article",
      { class: classes.join(" "), "data-testid": "message", dataset: { id: m.id, channel: m.channel } },
      avatar(m.author_id, m.author_name),
      main
    );
  }

  function renderMain(opts) {
    if (!S.person) return;
    const box = $("messages");
    const stick = (opts && opts.stick) || nearBottom(box);
    const channel = S.channels.find((c) => c.id === S.channel);
    $("channel-title").textContent = channel ? channel.name : "";
    const sub = $("channel-sub");
    sub.hidden = !channel || channel.department !== null;
    sub.textContent = t("cross_department");
    $("composer-form").hidden = !channel;

    const list = (S.msgs[S.channel] || []).filter((m) => !m.thread_id);
    const items = messageItems(list, "main");
    if (!items.length) {
      const text = channel && S.pending !== null ? t("loading") : t("empty_channel");
      items.push({ key: "empty", sig: text, build: () => el("p", { class: "empty" }, text) });
    }
    reconcile(box, items);
    if (stick) box.scrollTop = box.scrollHeight;
  }

  // --- thread pane --------------------------------------------------------------------------

  function openThread(id) {
    const parent = S.byId.get(id);
    if (!parent) return;
    const changed = !S.thread || S.thread.id !== id;
    S.thread = { channel: parent.channel, id };
    $("thread").hidden = false;
    $("chat").classList.add("thread-open");
    if (changed) {
      $("thread-composer").value = "";
      autoGrow($("thread-composer"));
      S.clientIds.thread = null;
    }
    renderThread({ stick: true });
    if (window.matchMedia("(pointer: fine)").matches) $("thread-composer").focus({ preventScroll: true });
    else $("thread-messages").focus({ preventScroll: true });
  }

  function closeThread() {
    const wasOpen = S.thread !== null;
    S.thread = null;
    $("thread").hidden = true;
    $("chat").classList.remove("thread-open");
    const box = $("thread-messages");
    box.textContent = "";
    box._cache = new Map();
    return wasOpen;
  }

  function renderThread(opts) {
    if (!S.thread || !S.person) return;
    const parent = S.byId.get(S.thread.id);
    if (!parent) {
      closeThread();
      return;
    }
    const box = $("thread-messages");
    const stick = (opts && opts.stick) || nearBottom(box);
    $("thread-sub").textContent = "#" + channelName(parent.channel);
    const replies = (S.msgs[parent.channel] || []).filter((m) => m.thread_id === parent.id);
    const count = parent.reply_count || replies.filter((m) => !m.for_person).length;
    const items = [
      { key: "m:" + parent.id, sig: [parent.html, parent.ts, parent.author_name, S.lang].join("\u0001"), build: () => buildMessage(parent, "parent") },
      {
        key: "count",
        sig: String(count),
        build: () => el("div", { class: "thread-count" }, el("span", null, count ? repliesText(count) : "")),
      },
    ];
    for (const reply of replies) {
      const sig = [reply.html, reply.for_person || "", reply.author_name, reply.ts, S.lang].join("\u0001");
      items.push({ key: "m:" + reply.id, sig, build: () => buildMessage(reply, "thread") });
    }
    reconcile(box, items);
    if (stick) box.scrollTop = box.scrollHeight;
  }

  // --- sending ------------------------------------------------------------------------------

  function autoGrow(area) {
    area.style.height = "auto";
    area.style.height = Math.min(area.scrollHeight + 2, 200) + "px";
  }

  async function send(which) {
    const area = which === "main" ? $("composer") : $("thread-composer");
    const button = which === "main" ? $("send") : $("thread-send");
    const text = area.value;
    if (!text.trim() || S.sending[which] || !S.person) return;
    const channel = which === "main" ? S.channel : S.thread && S.thread.channel;
    if (!channel) return;
    // The same client_id when the same text is retried after an error: the server stores it once.
    if (!S.clientIds[which]) S.clientIds[which] = randomId();
    const body = { person: S.person, channel, text, client_id: S.clientIds[which] };
    if (which === "thread") body.thread_id = S.thread.id;
    S.sending[which] = true;
    button.disabled = true;
    area.setAttribute("aria-busy", "true");
    try {
      const response = await post("/local/api/send", body);
      if (area.value === text) area.value = "";
      S.clientIds[which] = null;
      autoGrow(area);
      handleResponse(response, { channel, origin: "send", opener: area });
    } catch (e) {
      toast(e.message || t("error"));
    } finally {
      S.sending[which] = false;
      button.disabled = false;
      area.removeAttribute("aria-busy");
    }
  }

  async function clickBotButton(button) {
    const msgEl = button.closest("[data-testid='message']");
    if (!msgEl || !S.person || button.classList.contains("is-busy")) return;
    button.classList.add("is-busy");
    button.setAttribute("aria-busy", "true");
    try {
      const response = await post("/local/api/click", {
        person: S.person,
        channel: msgEl.dataset.channel,
        action_id: button.dataset.action,
        value: button.dataset.value || "",
        message_id: msgEl.dataset.id,
      });
      handleResponse(response, { channel: msgEl.dataset.channel, origin: "click", opener: button });
    } catch (e) {
      toast(e.message || t("error"));
    } finally {
      button.classList.remove("is-busy");
      button.removeAttribute("aria-busy");
    }
  }

  function handleResponse(response, ctx) {
    if (!response || typeof response !== "object") {
      if (ctx.origin === "submit") closeDialog();
      return;
    }
    switch (response.type) {
      case "form":
        openForm(response.form, ctx.channel, ctx.opener);
        break;
      case "errors":
        if (S.form) showErrors(response.errors || {});
        else toast(Object.values(response.errors || {}).join(" ") || t("error"));
        break;
      case "done":
        closeDialog(); // the confirmation arrives over the websocket as an ephemeral message
        break;
      case "ephemeral":
        if (ctx.origin === "submit") closeDialog(); // the text itself arrives over the websocket
        break;
      default:
        if (ctx.origin === "submit") closeDialog();
    }
  }

  // --- forms --------------------------------------------------------------------------------

  function openForm(form, channel, opener) {
    if (!form || typeof form !== "object") return;
    const dialog = $("form-dialog");
    const previousOpener = S.form ? S.form.opener : null;
    S.form = {
      form,
      channel,
      submissionId: randomId(), // one per opened form: a second submit is stored once
      busy: false,
      opener: previousOpener || opener || document.activeElement,
      controls: new Map(),
    };
    $("dialog-title").textContent = form.title || "";
    const intro = $("dialog-intro");
    intro.textContent = form.intro || "";
    intro.hidden = !form.intro;
    $("dialog-error").hidden = true;
    $("dialog-error").textContent = "";
    $("dialog-submit").textContent = form.submit_label || t("send");
    $("dialog-submit").disabled = false;

    const box = $("dialog-fields");
    box.textContent = "";
    const fields = Array.isArray(form.fields) ? form.fields : [];
    fields.forEach((field, index) => box.append(buildField(field, index)));

    if (!dialog.open) {
      if (typeof dialog.showModal === "function") dialog.showModal();
      else dialog.setAttribute("open", "");
    }
    const first = box.querySelector("input, textarea, select");
    if (first) first.focus();
  }

  function buildField(field, index) {
    const id = "field-" + index;
    const name = String(field.name || "field" + index);
    const kind = field.kind || "text";
    const initial = typeof field.initial === "string" ? field.initial : "";
    const describedBy = [];
    let control;

    if (kind === "textarea") {
      control = el("textarea", { id, name, rows: 5 });
      control.value = initial;
    } else if (kind === "select") {
      control = el("select", { id, name });
      control.append(el("option", { value: "" }, ""));
      for (const option of Array.isArray(field.options) ? field.options : []) {
        control.append(el("option", { value: option.value }, option.label));
      }
      control.value = initial;
      if (control.value !== initial) control.value = "";
    } else if (kind === "checkbox") {
      control = el("input", { id, name, type: "checkbox" });
      control.checked = ["true", "1", "yes", "on", "ja"].includes(initial.toLowerCase());
    } else {
      control = el("input", { id, name, type: "text" });
      control.value = initial;
    }
    control.setAttribute("data-testid", "field-" + name);
    if (field.required) {
      control.required = true;
      control.setAttribute("aria-required", "true");
    }
    if ((kind === "text" || kind === "textarea") && Number(field.max_length) > 0) {
      control.maxLength = Number(field.max_length);
    }

    const label = el("label", { for: id, class: "field-label" }, field.label || name);
    if (field.required) {
      label.append(" ", el("span", { class: "req", "aria-hidden": "true" }, "*"),
        el("span", { class: "sr-only" }, "(" + t("required") + ")"));
    }

    let hint = null;
    if (field.hint) {
      hint = el("small", { id: id + "-hint", class: "hint" }, field.hint);
      describedBy.push(hint.id);
    }
    let counter = null;
    if (kind === "textarea" && control.maxLength > 0) {
      counter = el("small", { class: "counter", "aria-hidden": "true" });
      const update = () => {
        counter.textContent = control.value.length + " / " + control.maxLength;
        counter.classList.toggle("counter-near", control.value.length > control.maxLength * 0.9);
      };
      control.addEventListener("input", update);
      update();
    }
    if (describedBy.length) control.setAttribute("aria-describedby", describedBy.join(" "));
    control.addEventListener("input", () => clearFieldError(name));
    control.addEventListener("change", () => clearFieldError(name));

    const wrapper = el("div", { class: "field field-" + kind, dataset: { name } });
    if (kind === "checkbox") {
      wrapper.append(el("div", { class: "check-row" }, control, label));
    } else {
      wrapper.append(label, control);
    }
    if (hint || counter) wrapper.append(el("div", { class: "field-meta" }, hint, counter));
    S.form.controls.set(name, { control, wrapper, kind, id, describedBy });
    return wrapper;
  }

  function clearFieldError(name) {
    if (!S.form) return;
    const entry = S.form.controls.get(name);
    if (!entry) return;
    const error = entry.wrapper.querySelector(".field-error");
    if (error) error.remove();
    entry.control.removeAttribute("aria-invalid");
    if (entry.describedBy.length) entry.control.setAttribute("aria-describedby", entry.describedBy.join(" "));
    else entry.control.removeAttribute("aria-describedby");
  }

  function clearErrors() {
    if (!S.form) return;
    for (const name of S.form.controls.keys()) clearFieldError(name);
    $("dialog-error").hidden = true;
    $("dialog-error").textContent = "";
  }

  function showErrors(errors) {
    clearErrors();
    let first = null;
    const general = [];
    for (const [name, message] of Object.entries(errors)) {
      const entry = S.form.controls.get(name);
      if (!entry) {
        general.push(String(message));
        continue;
      }
      const errorId = entry.id + "-error";
      const error = el("p", { id: errorId, class: "field-error", "data-testid": "field-error-" + name }, String(message));
      entry.wrapper.append(error);
      entry.control.setAttribute("aria-invalid", "true");
      entry.control.setAttribute("aria-describedby", [...entry.describedBy, errorId].join(" "));
    }
    // Focus the first invalid field in form order.
    for (const entry of S.form.controls.values()) {
      if (entry.control.getAttribute("aria-invalid") === "true") {
        first = entry.control;
        break;
      }
    }
    if (general.length) {
      $("dialog-error").textContent = general.join(" ");
      $("dialog-error").hidden = false;
    }
    if (first) first.focus();
  }

  function formValues() {
    const values = {};
    for (const [name, entry] of S.form.controls) {
      values[name] = entry.kind === "checkbox" ? (entry.control.checked ? "true" : "false") : entry.control.value;
    }
    return values;
  }

  async function submitForm() {
    const current = S.form;
    if (!current || current.busy || !S.person) return;
    current.busy = true;
    const button = $("dialog-submit");
    button.disabled = true;
    $("dialog-form").setAttribute("aria-busy", "true");
    try {
      const meta = {};
      for (const [k, v] of Object.entries(current.form.meta || {})) meta[k] = String(v);
      const response = await post("/local/api/submit", {
        person: S.person,
        channel: current.channel,
        form_id: current.form.form_id,
        submission_id: current.submissionId,
        meta,
        values: formValues(),
      });
      if (S.form === current) handleResponse(response, { channel: current.channel, origin: "submit", opener: current.opener });
    } catch (e) {
      if (S.form === current) {
        $("dialog-error").textContent = e.message || t("error");
        $("dialog-error").hidden = false;
      } else {
        toast(e.message || t("error"));
      }
    } finally {
      current.busy = false;
      $("dialog-form").removeAttribute("aria-busy");
      if (S.form === current || (S.form && !S.form.busy)) button.disabled = false;
    }
  }

  function closeDialog() {
    const dialog = $("form-dialog");
    if (dialog.open) {
      if (typeof dialog.close === "function") dialog.close();
      else dialog.removeAttribute("open");
    }
    formClosed();
  }

  function formClosed() {
    const current = S.form;
    S.form = null;
    $("dialog-fields").textContent = "";
    if (current && current.opener && document.contains(current.opener) && typeof current.opener.focus === "function") {
      current.opener.focus({ preventScroll: true });
    }
  }

  // --- wiring -------------------------------------------------------------------------------

  function setNav(open) {
    $("chat").classList.toggle("nav-open", open);
    $("menu-toggle").setAttribute("aria-expanded", String(open));
    $("backdrop").hidden = !open;
  }

  function wireComposer(formId, areaId, which) {
    const area = $(areaId);
    $(formId).addEventListener("submit", (e) => {
      e.preventDefault();
      send(which);
    });
    area.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        send(which);
      }
    });
    area.addEventListener("input", () => {
      autoGrow(area);
      S.clientIds[which] = null; // different text: a different message
    });
  }

  function wireStaticHandlers() {
    wireComposer("composer-form", "composer", "main");
    wireComposer("thread-form", "thread-composer", "thread");

    $("switch-person").addEventListener("click", switchPerson);
    $("thread-close").addEventListener("click", () => {
      closeThread();
      focusComposer();
    });
    $("menu-toggle").addEventListener("click", () => setNav(!$("chat").classList.contains("nav-open")));
    $("backdrop").addEventListener("click", () => setNav(false));

    // Bot buttons and thread links, wherever a message is shown.
    document.addEventListener("click", (e) => {
      const target = e.target instanceof Element ? e.target : null;
      if (!target) return;
      const action = target.closest(".msg-body button[data-action]");
      if (action) {
        e.preventDefault();
        clickBotButton(action);
        return;
      }
      const link = target.closest("a[data-thread]");
      if (link) {
        e.preventDefault();
        openThread(link.dataset.thread);
      }
    });

    const dialog = $("form-dialog");
    $("dialog-form").addEventListener("submit", (e) => {
      e.preventDefault();
      submitForm();
    });
    $("dialog-cancel").addEventListener("click", closeDialog);
    $("dialog-x").addEventListener("click", closeDialog);
    dialog.addEventListener("close", () => {
      if (S.form) formClosed();
    });

    document.addEventListener("keydown", (e) => {
      if (e.key !== "Escape" || $("form-dialog").open) return;
      if ($("chat").classList.contains("nav-open")) {
        setNav(false);
        $("menu-toggle").focus();
      } else if (S.thread) {
        closeThread();
        focusComposer();
      }
    });

    setInterval(renderClock, 1000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
