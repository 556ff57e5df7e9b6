// The durable outbox. Every event stays in storage until the server has confirmed it
// (accepted or duplicate) or refused it for good (rejected); the server dedupes on the
// event id, so sending an event twice is harmless while dropping one is not.

export const MAX_BATCH = 500;

/** A Storage-like object kept in memory, for pages where localStorage is unavailable. */
export function memoryStorage() {
  const items = new Map();
  return {
    getItem: (k) => (items.has(k) ? items.get(k) : null),
    setItem: (k, v) => items.set(k, String(v)),
    removeItem: (k) => items.delete(k),
  };
}

/** localStorage when it can be used (reading it throws in sandboxed frames). */
export function pickStorage(win) {
  try {
    win.localStorage.getItem("");
    return win.localStorage;
  } catch {
    return memoryStorage();
  }
}

export class Queue {
  /**
   * @param {Storage} storage where the events live between page loads
   * @param {string} key the storage key (one queue per server and publishable key)
   * @param {number} max bound on queued events; the oldest are evicted first
   * @param {(events: object[]) => void} onEvict told about every evicted event
   */
  constructor(storage, key, max, onEvict) {
    this.storage = storage;
    this.key = key;
    this.max = max;
    this.onEvict = onEvict;
  }

  all() {
    try {
      const list = JSON.parse(this.storage.getItem(this.key));
      return Array.isArray(list) ? list : [];
    } catch {
      return [];
    }
  }

  add(event) {
    const list = this.all();
    list.push(event);
    if (list.length > this.max) this.onEvict(list.splice(0, list.length - this.max));
    this.save(list);
  }

  /** The oldest `size` events, still queued until `remove` is called with their ids. */
  batch(size = MAX_BATCH) {
    return this.all().slice(0, size);
  }

  remove(ids) {
    const gone = new Set(ids);
    this.save(this.all().filter((e) => !gone.has(e.id)));
  }

  // Storage can be full (quota shared with the host page): evict the oldest tenth and retry.
  save(list) {
    for (;;) {
      try {
        if (list.length) this.storage.setItem(this.key, JSON.stringify(list));
        else this.storage.removeItem(this.key);
        return;
      } catch {
        this.onEvict(list.splice(0, Math.ceil(list.length / 10)));
      }
    }
  }
}

/** Exponential backoff with "equal jitter": half fixed, half random, capped. */
export function backoff(attempt, random = Math.random, base = 1000, cap = 60000) {
  const ceiling = Math.min(cap, base * 2 ** attempt);
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** Milliseconds to wait from a Retry-After header in seconds (what our server sends); else 0. */
export function retryAfterMs(header) {
  return Math.max(0, Number(header) * 1000 || 0);
}
