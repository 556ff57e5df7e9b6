// The one global, `Corrigenda`: configuration from the <script> tag's data-* attributes,
// one durable queue per (server, publishable key), the network, and the host-facing API.
// Nothing here may throw into the host page: every entry point runs through `safely`.

import { defineElement } from "./element.js";
import { guardListeners, uuid } from "./dom.js";
import { stringsFor, strings } from "./i18n.js";
import { pickStorage, Queue } from "./queue.js";
import { Sender } from "./sender.js";

const win = window;
const doc = document;
const script = doc.currentScript;
const data = script?.dataset || {};
const config = {
  key: data.key,
  server: data.server || (script?.src ? new URL(script.src).origin : location.origin),
  lang: data.lang,
  endUser: data.endUser,
  timeout: +data.timeout || 10000,
  maxQueue: +data.maxQueue || 1000,
  onError: null,
};
const BEACON_SLICE = 50;
const storage = pickStorage(win);
const cores = new Map();
const observed = new WeakSet();
// One id per page load: enough to tell one visit from the next.
const session = uuid();

/** Report an error to the host: the onError callbacks and a `corrigenda:error` DOM event. */
function report(error, el) {
  try {
    for (const fn of [config.onError, el?.onError]) fn?.(error);
  } catch {}
  emit(el, "error", error);
}

function safely(fn) {
  try {
    const result = fn();
    result?.catch?.((e) => report({ code: "internal", message: String(e) }));
    return result;
  } catch (e) {
    report({ code: "internal", message: String(e) });
  }
}

const guard = (fn) => (...args) => safely(() => fn(...args));

function emit(el, name, detail) {
  (el?.isConnected ? el : doc).dispatchEvent(
    new CustomEvent(`corrigenda:${name}`, { detail, bubbles: true, composed: true }),
  );
}

/** Group items by the widget element that made their event (or the document). */
function byOwner(core, items) {
  const groups = new Map();
  for (const item of items) {
    const el = core.owners.get(item.id);
    core.owners.delete(item.id);
    groups.set(el, [...(groups.get(el) || []), item]);
  }
  return groups;
}

function post(core, body) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), config.timeout);
  return fetch(`${core.server}/api/v1/feedback`, {
    method: "POST",
    mode: "cors",
    credentials: "omit",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${core.pk}` },
    body,
    signal: abort.signal,
  }).finally(() => clearTimeout(timer));
}

function coreFor(server, key) {
  const name = `${server} ${key}`;
  if (cores.has(name)) return cores.get(name);
  const core = { server, pk: key, owners: new Map() };
  core.queue = new Queue(storage, `corrigenda:${name}`, config.maxQueue, (events) =>
    failed(core, { code: "evicted" }, events),
  );
  core.sender = new Sender(core.queue, {
    post: (body) => post(core, body),
    setTimer: (fn, ms) => setTimeout(guard(fn), ms),
    clearTimer: (timer) => clearTimeout(timer),
    sent: (results) => {
      for (const [el, items] of byOwner(core, results)) {
        el?.update(items.map((r) => r.id), "saved");
        emit(el, "sent", { results: items });
      }
    },
    retry: (ms, error) => {
      for (const el of new Set(core.owners.values())) el.update([], "retry");
      report({ ...error, retryInMs: ms });
    },
    error: (error) => (error.events ? failed(core, error, error.events) : report(error)),
  });
  cores.set(name, core);
  if (core.queue.all().length) core.sender.soon(); // resume what an earlier page left
  return core;
}

function failed(core, error, events) {
  for (const [el, items] of byOwner(core, events)) {
    el?.update(items.map((e) => e.id), "error");
    report({ ...error, events: items }, el);
  }
}

function coreOf(el) {
  return coreFor(el.getAttribute("server") || config.server, el.getAttribute("key") || config.key);
}

/** Make an event, queue it durably, tell the host; returns the event id. */
function record(el, kind, value, comment) {
  const core = coreOf(el);
  const decided = kind !== "view";
  const event = {
    id: uuid(),
    prediction: el.getAttribute("prediction"),
    token: el.getAttribute("token"),
    kind,
    value,
    comment,
    end_user: el.getAttribute("end-user") || config.endUser || undefined,
    session,
    client_time: new Date().toISOString(),
    time_to_decision_ms: decided ? Math.round(performance.now() - (el.seen ?? el.born)) : undefined,
  };
  core.owners.set(event.id, el);
  core.queue.add(event);
  emit(el, "feedback", event);
  try {
    el.onFeedback?.(event);
  } catch {}
  core.sender.soon();
  return event.id;
}

async function context(el) {
  const has = (n) => el.hasAttribute(n);
  if (has("task-type") && has("output") && (has("labels") || el.getAttribute("task-type") === "text"))
    return {};
  const core = coreOf(el);
  const query = new URLSearchParams({ token: el.getAttribute("token") || "", key: core.pk || "" });
  try {
    const res = await fetch(`${core.server}/api/v1/feedback/context?${query}`, { credentials: "omit" });
    if (res.ok) return await res.json();
    report({ code: "context", status: res.status }, el);
  } catch (e) {
    report({ code: "context", message: String(e) }, el);
  }
  return {};
}

// A prediction counts as seen when half of the widget is on screen.
const watcher =
  win.IntersectionObserver &&
  new IntersectionObserver(
    guard((entries) => {
      for (const entry of entries) {
        const el = entry.target;
        if (!entry.isIntersecting || el.viewed) continue;
        el.viewed = true;
        el.seen = performance.now();
        watcher.unobserve(el);
        if (el.getAttribute("token")) record(el, "view", null);
        el.details().catch(() => {});
      }
    }),
    { threshold: 0.5 },
  );

function flushAll() {
  return Promise.all([...cores.values()].map((c) => c.sender.flush()))
    .then((done) => done.every(Boolean))
    .catch(() => false);
}

// Leaving the page: hand the queued events to the browser, which delivers beacons after the
// page is gone (in slices: a beacon carries at most 64 KiB). They stay queued until a normal
// send confirms them; a slice the browser refuses waits for the next page load.
function beacon() {
  for (const core of cores.values()) {
    const url = `${core.server}/api/v1/feedback?key=${encodeURIComponent(core.pk)}`;
    const events = core.queue.all();
    for (let i = 0; i < events.length; i += BEACON_SLICE) {
      const body = JSON.stringify({ events: events.slice(i, i + BEACON_SLICE) });
      if (!navigator.sendBeacon?.(url, new Blob([body], { type: "text/plain" }))) break;
    }
  }
}

const runtime = {
  safely,
  record,
  context,
  strings: (el) => {
    const lang =
      el.getAttribute("lang") ||
      config.lang ||
      el.closest("[lang]")?.getAttribute("lang") ||
      navigator.language;
    return { ...stringsFor(lang), lang };
  },
  observe: (el) => watcher?.observe(el),
  unobserve: (el) => watcher?.unobserve(el),
};

const api = {
  version: "0.1.0",
  strings,
  /** Change settings: key, server, lang, endUser, timeout, onError. */
  configure: (options) => safely(() => Object.assign(config, options)),
  /** Set (or clear with null) the pseudonymous end-user id put on every later event. */
  setUser: (id) => safely(() => (config.endUser = id ?? undefined)),
  /** Send everything queued now; resolves true when the queue is empty, never rejects. */
  flush: flushAll,
  /** Put a widget into `target` (or configure `target` if it is one); returns the element. */
  attach: (target, options = {}) =>
    safely(() => {
      const el =
        target.localName === "corrigenda-feedback"
          ? target
          : target.appendChild(doc.createElement("corrigenda-feedback"));
      el.onError = options.onError;
      el.onFeedback = options.onFeedback;
      for (const [name, value] of Object.entries(options)) {
        const attr = name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
        if (typeof value === "string") el.setAttribute(attr, value);
        else if (Array.isArray(value)) el.setAttribute(attr, JSON.stringify(value));
      }
      return el;
    }),
};

if (!win.Corrigenda) {
  win.Corrigenda = api;
  safely(() => {
    guardListeners(guard);
    defineElement(runtime);
    win.addEventListener("pagehide", guard(beacon));
    doc.addEventListener("visibilitychange", guard(() => doc.visibilityState === "hidden" && beacon()));
    win.addEventListener("online", guard(flushAll));
    if (config.key) coreFor(config.server, config.key);
  });
}
