import assert from "node:assert/strict";
import { test } from "node:test";

import {
  backoff,
  memoryStorage,
  pickStorage,
  Queue,
  retryAfterMs,
} from "../src/queue.js";

const ev = (n) => ({ id: `e${n}`, kind: "view", prediction: "p" });

function queue(max = 10, storage = memoryStorage()) {
  const evicted = [];
  const q = new Queue(storage, "q", max, (events) => evicted.push(...events));
  return { q, evicted, storage };
}

test("events survive a new Queue on the same storage (the next page load)", () => {
  const { q, storage } = queue();
  q.add(ev(1));
  q.add(ev(2));
  const again = new Queue(storage, "q", 10, () => {});
  assert.deepEqual(
    again.all().map((e) => e.id),
    ["e1", "e2"],
  );
});

test("the bound evicts the oldest first and reports each evicted event", () => {
  const { q, evicted } = queue(3);
  for (let i = 1; i <= 5; i++) q.add(ev(i));
  assert.deepEqual(
    q.all().map((e) => e.id),
    ["e3", "e4", "e5"],
  );
  assert.deepEqual(
    evicted.map((e) => e.id),
    ["e1", "e2"],
  );
});

test("batch takes the oldest events without removing them; remove drops by id", () => {
  const { q } = queue();
  for (let i = 1; i <= 4; i++) q.add(ev(i));
  assert.deepEqual(
    q.batch(2).map((e) => e.id),
    ["e1", "e2"],
  );
  assert.equal(q.all().length, 4);
  q.remove(["e2", "e4", "unknown"]);
  assert.deepEqual(
    q.all().map((e) => e.id),
    ["e1", "e3"],
  );
});

test("an event added while a batch is in flight is kept when the batch is confirmed", () => {
  const { q } = queue();
  q.add(ev(1));
  const inFlight = q.batch();
  q.add(ev(2));
  q.remove(inFlight.map((e) => e.id));
  assert.deepEqual(
    q.all().map((e) => e.id),
    ["e2"],
  );
});

test("a full storage evicts the oldest tenth until the write fits, reporting them", () => {
  const inner = memoryStorage();
  const tiny = {
    ...inner,
    setItem(k, v) {
      if (v.length > 200) throw new Error("QuotaExceededError");
      inner.setItem(k, v);
    },
  };
  const { q, evicted } = queue(100, tiny);
  for (let i = 1; i <= 12; i++) q.add(ev(i));
  const kept = q.all().map((e) => e.id);
  assert.ok(kept.length > 0 && kept.length < 12);
  assert.equal(kept.at(-1), "e12");
  assert.equal(evicted.length + kept.length, 12);
  assert.equal(evicted[0].id, "e1");
});

test("corrupt storage reads as an empty queue instead of throwing", () => {
  const storage = memoryStorage();
  storage.setItem("q", "{not json");
  assert.deepEqual(new Queue(storage, "q", 5, () => {}).all(), []);
  storage.setItem("q", '{"a":1}');
  assert.deepEqual(new Queue(storage, "q", 5, () => {}).all(), []);
});

test("pickStorage falls back to memory when localStorage throws", () => {
  const win = {
    get localStorage() {
      throw new Error("SecurityError");
    },
  };
  const s = pickStorage(win);
  s.setItem("a", 1);
  assert.equal(s.getItem("a"), "1");
});

test("backoff doubles up to the cap, with jitter between half and all of it", () => {
  assert.equal(backoff(0, () => 0), 500);
  assert.equal(backoff(0, () => 1), 1000);
  assert.equal(backoff(3, () => 0), 4000);
  assert.equal(backoff(20, () => 1), 60000);
  assert.equal(backoff(20, () => 0), 30000);
  const seen = new Set(Array.from({ length: 20 }, () => backoff(4)));
  assert.ok(seen.size > 1, "jitter varies the delay");
});

test("Retry-After in seconds; anything else means no minimum wait", () => {
  assert.equal(retryAfterMs(null), 0);
  assert.equal(retryAfterMs("7"), 7000);
  assert.equal(retryAfterMs("-3"), 0);
  assert.equal(retryAfterMs("Wed, 01 Jan 2025 00:00:30 GMT"), 0);
});
