// Delivers the queue to the server in batches. Network failures, timeouts, 429 and
// 5xx keep the events and retry with exponential backoff and jitter (at least Retry-After).
// Everything here is injected (post, timers, random) so node can test it without a browser.

import { backoff, MAX_BATCH, retryAfterMs } from "./queue.js";

const DELIVERED = { accepted: 1, duplicate: 1 };

export class Sender {
  /**
   * @param {import("./queue.js").Queue} queue
   * @param {{post: (body: string) => Promise<Response>, setTimer: Function, clearTimer: Function,
   *   random?: () => number, base?: number, cap?: number,
   *   sent: (results: object[]) => void, retry: (ms: number, error: object) => void,
   *   error: (error: object) => void}} o
   */
  constructor(queue, o) {
    this.queue = queue;
    this.o = o;
    this.attempt = 0;
    this.batchSize = MAX_BATCH;
    this.timer = 0;
    this.busy = null;
    this.halted = false;
  }

  /** Send after a short pause so that events made together travel together. */
  soon(ms = 200) {
    if (!this.timer && !this.busy && !this.halted) this.wait(ms);
  }

  /** Send now (also after a refusal or during a backoff); resolves true when the queue is empty. */
  flush() {
    this.o.clearTimer(this.timer);
    this.timer = 0;
    this.halted = false;
    this.busy ||= this.drain().finally(() => {
      this.busy = null;
    });
    return this.busy;
  }

  wait(ms) {
    this.timer = this.o.setTimer(() => {
      this.timer = 0;
      this.flush();
    }, ms);
  }

  async drain() {
    while (!this.halted) {
      const batch = this.queue.batch(this.batchSize);
      if (!batch.length) return true;
      if (!(await this.send(batch))) return false;
    }
    return false;
  }

  /** One request; true to go on with the next batch, false to stop (a retry is scheduled). */
  async send(batch) {
    let res;
    try {
      res = await this.o.post(JSON.stringify({ events: batch }));
    } catch (e) {
      return this.retry(0, { code: "network", message: String(e) });
    }
    const status = res.status;
    if (status === 429 || status >= 500)
      return this.retry(retryAfterMs(res.headers.get("Retry-After")), { code: "http", status });
    if (status === 413 && this.batchSize > 1) {
      this.batchSize = Math.ceil(this.batchSize / 2);
      return true;
    }
    if (status === 401 || status === 403) {
      // A revoked key or a refused origin: keep the events for a later page load.
      this.halted = true;
      this.o.error({ code: "refused", status });
      return false;
    }
    if (status >= 300) {
      this.queue.remove(batch.map((e) => e.id));
      this.o.error({ code: "rejected", status, events: batch });
      return true;
    }
    return this.settle(batch, await res.json().catch(() => ({})));
  }

  settle(batch, body) {
    const results = body?.results || [];
    const known = new Set(batch.map((e) => e.id));
    const done = results.filter((r) => known.has(r?.id));
    if (!done.length) return this.retry(0, { code: "http", status: 200 });
    this.queue.remove(done.map((r) => r.id));
    this.attempt = 0;
    this.batchSize = MAX_BATCH;
    const ok = done.filter((r) => DELIVERED[r.status]);
    if (ok.length) this.o.sent(ok);
    for (const r of done)
      if (!DELIVERED[r.status])
        this.o.error({
          code: "rejected",
          reason: r.reason,
          events: batch.filter((e) => e.id === r.id),
        });
    return true;
  }

  retry(after, error) {
    const ms = Math.max(after, backoff(this.attempt++, this.o.random, this.o.base, this.o.cap));
    this.wait(ms);
    this.o.retry(ms, error);
    return false;
  }
}
