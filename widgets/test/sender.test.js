import assert from "node:assert/strict";
import { test } from "node:test";

import { memoryStorage, Queue } from "../src/queue.js";
import { Sender } from "../src/sender.js";

/** A scripted server: each call to post takes the next reply (a function of the body). */
function harness(replies) {
  const q = new Queue(memoryStorage(), "q", 5000, () => {});
  const log = { bodies: [], sent: [], retries: [], errors: [], timers: [] };
  const sender = new Sender(q, {
    post: async (body) => {
      log.bodies.push(JSON.parse(body));
      const reply = replies.shift();
      if (!reply) throw new Error("no more replies scripted");
      return reply(JSON.parse(body));
    },
    setTimer: (fn, ms) => log.timers.push({ fn, ms }),
    clearTimer: () => {},
    random: () => 0.5,
    sent: (r) => log.sent.push(...r),
    retry: (ms, e) => log.retries.push({ ms, ...e }),
    error: (e) => log.errors.push(e),
  });
  return { q, sender, log };
}

const response = (status, body = {}, headers = {}) => ({
  status,
  headers: { get: (name) => headers[name] ?? null },
  json: async () => body,
});
const ok = (statuses = {}) => (body) =>
  response(202, {
    results: body.events.map((e) => ({ id: e.id, status: statuses[e.id] || "accepted" })),
  });
const fail = (status, headers) => () => response(status, {}, headers);
const offline = () => {
  throw new TypeError("Failed to fetch");
};
const ev = (n) => ({ id: `e${n}`, kind: "accept" });

test("a confirmed batch leaves the queue; duplicates count as delivered", async () => {
  const { q, sender, log } = harness([ok({ e2: "duplicate" })]);
  q.add(ev(1));
  q.add(ev(2));
  assert.equal(await sender.flush(), true);
  assert.deepEqual(q.all(), []);
  assert.deepEqual(
    log.sent.map((r) => r.id),
    ["e1", "e2"],
  );
  assert.equal(log.bodies.length, 1);
});

test("a rejected event is dropped and reported, its neighbours delivered", async () => {
  const { q, sender, log } = harness([ok({ e1: "rejected" })]);
  q.add(ev(1));
  q.add(ev(2));
  await sender.flush();
  assert.deepEqual(q.all(), []);
  assert.equal(log.errors.length, 1);
  assert.equal(log.errors[0].code, "rejected");
  assert.equal(log.errors[0].events[0].id, "e1");
  assert.deepEqual(
    log.sent.map((r) => r.id),
    ["e2"],
  );
});

test("network failure keeps the events and schedules a backoff retry that succeeds", async () => {
  const { q, sender, log } = harness([offline, offline, ok()]);
  q.add(ev(1));
  assert.equal(await sender.flush(), false);
  assert.equal(q.all().length, 1);
  assert.equal(log.retries[0].code, "network");
  log.timers.shift().fn();
  assert.equal(await sender.busy, false);
  assert.ok(log.retries[1].ms > log.retries[0].ms, "the delay grows");
  log.timers.shift().fn();
  assert.equal(await sender.busy, true);
  assert.deepEqual(q.all(), []);
  assert.equal(log.bodies.length, 3);
  assert.ok(log.bodies.every((b) => b.events[0].id === "e1"), "the same id is re-sent");
});

test("429 and 5xx retry no sooner than Retry-After", async () => {
  const { q, sender, log } = harness([fail(429, { "Retry-After": "30" }), fail(503)]);
  q.add(ev(1));
  await sender.flush();
  assert.equal(log.retries[0].ms, 30000);
  assert.equal(log.retries[0].status, 429);
  log.timers.shift().fn();
  await sender.busy;
  assert.equal(log.retries[1].status, 503);
  assert.ok(log.retries[1].ms < 30000);
  assert.equal(q.all().length, 1);
});

test("the attempt counter resets after a success", async () => {
  const { q, sender, log } = harness([offline, offline, ok(), offline]);
  q.add(ev(1));
  await sender.flush();
  await sender.flush();
  await sender.flush();
  q.add(ev(2));
  await sender.flush();
  assert.equal(log.retries.at(-1).ms, log.retries[0].ms);
});

test("401/403 stop retrying but keep the events for a later load", async () => {
  const { q, sender, log } = harness([fail(403)]);
  q.add(ev(1));
  assert.equal(await sender.flush(), false);
  assert.equal(log.errors[0].code, "refused");
  assert.equal(q.all().length, 1);
  sender.soon();
  assert.equal(log.timers.length, 0, "no automatic retry after a refusal");
});

test("other 4xx refuse the whole batch: dropped and reported", async () => {
  const { q, sender, log } = harness([fail(400)]);
  q.add(ev(1));
  assert.equal(await sender.flush(), true);
  assert.deepEqual(q.all(), []);
  assert.equal(log.errors[0].events.length, 1);
});

test("413 halves the batch until it fits", async () => {
  const { q, sender, log } = harness([fail(413), ok(), ok()]);
  for (let i = 0; i < 4; i++) q.add(ev(i));
  sender.batchSize = 4;
  assert.equal(await sender.flush(), true);
  assert.deepEqual(
    log.bodies.map((b) => b.events.length),
    [4, 2, 2],
  );
});

test("batches hold at most 500 events and a large queue drains in order", async () => {
  const { q, sender, log } = harness([ok(), ok(), ok()]);
  for (let i = 0; i < 1001; i++) q.add(ev(i));
  await sender.flush();
  assert.deepEqual(
    log.bodies.map((b) => b.events.length),
    [500, 500, 1],
  );
  assert.equal(log.bodies[2].events[0].id, "e1000");
});

test("a 2xx without results for the batch is not taken as delivery", async () => {
  const { q, sender, log } = harness([() => response(202, { results: [] })]);
  q.add(ev(1));
  assert.equal(await sender.flush(), false);
  assert.equal(q.all().length, 1);
  assert.equal(log.retries.length, 1);
});

test("flush during a send returns the same promise (one request at a time)", async () => {
  const { q, sender, log } = harness([ok()]);
  q.add(ev(1));
  const a = sender.flush();
  const b = sender.flush();
  assert.equal(a, b);
  await a;
  assert.equal(log.bodies.length, 1);
});
