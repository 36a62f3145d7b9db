import { deepStrictEqual, strictEqual } from "node:assert";
import { type Answer, answerPayload } from "../lib/answers.ts";
import {
  type Clock,
  HEARTBEAT_MS,
  KeepAlive,
  parseKeepAliveOptions,
  RepublishLimiter,
} from "../lib/keepalive.ts";

/** Time moves only when a test says so; due timers run in order. */
class FakeClock implements Clock {
  #now = 0;
  #timers = new Set<{ at: number; run: () => void }>();

  now(): number {
    return this.#now;
  }

  after(ms: number, run: () => void): () => void {
    const timer = { at: this.#now + ms, run };
    this.#timers.add(timer);
    return () => this.#timers.delete(timer);
  }

  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      const due = [...this.#timers].filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.#timers.delete(due);
      this.#now = due.at;
      due.run();
    }
    this.#now = end;
  }

  get pending(): number {
    return this.#timers.size;
  }
}

/** A keep-alive on a fake clock, with what it asked for written down. */
function keepAlive(intervalMs: number) {
  const clock = new FakeClock();
  const asked: string[] = [];
  const k = new KeepAlive(intervalMs, {
    woke: () => asked.push("woke"),
    publishAll: () => asked.push("all"),
    completed: (s, echo) =>
      asked.push(echo === undefined ? `completed ${s}` : `completed ${s} ${echo}`),
    beat: (s) => asked.push(`beat ${s}`),
    expired: () => asked.push("expired"),
    problem: (message) => asked.push(`problem: ${message}`),
  }, clock);
  /** What was asked since the last call. */
  const since = () => asked.splice(0);
  return { k, clock, since };
}

Deno.test("keep-alive: quiet until a request, alive for the interval after the latest", () => {
  const { k, clock, since } = keepAlive(60_000);
  k.start();
  clock.advance(10_000);
  deepStrictEqual(since(), [], "quiet: no heartbeat, nothing published");
  strictEqual(k.alive, false);

  k.onItemRequest();
  strictEqual(k.alive, true);
  deepStrictEqual(since(), ["woke", "beat 10", "all", "completed 10"]);
  clock.advance(30_000);
  k.onItemRequest(); // renews: ends at 100 s now, not 70 s
  strictEqual(since().filter((a) => !a.startsWith("beat")).length, 0, "renewing publishes nothing");
  clock.advance(59_999);
  strictEqual(k.alive, true, "renewed, so alive past the first deadline");
  since();
  clock.advance(1);
  deepStrictEqual(since(), ["expired"]);
  strictEqual(k.alive, false);
  clock.advance(600_000);
  deepStrictEqual(since(), [], "expires once, and the heartbeat stops with it");
  strictEqual(clock.pending, 0);

  k.onKeepAlive('{"keepalive-options": ["suppress-republish"]}');
  deepStrictEqual(since(), ["woke", "beat 700", "all", "completed 700"], "waking republishes");
});

Deno.test("keep-alive: a heartbeat every 3 s while alive", () => {
  const { k, clock, since } = keepAlive(60_000);
  k.onItemRequest();
  since();
  clock.advance(4 * HEARTBEAT_MS);
  deepStrictEqual(since(), ["beat 3", "beat 6", "beat 9", "beat 12"]);
});

Deno.test("keep-alive: an interval of 0 is always alive and never expires", () => {
  const { k, clock, since } = keepAlive(0);
  strictEqual(k.alive, true);
  k.start();
  deepStrictEqual(since(), ["beat 0"]);
  k.onItemRequest();
  deepStrictEqual(since(), [], "a read or write republishes only when it wakes");
  clock.advance(1e7);
  strictEqual(since().includes("expired"), false);
  strictEqual(k.alive, true);
  k.onKeepAlive("");
  deepStrictEqual(since(), ["all", "completed 10000"]);
});

Deno.test("keep-alive: options say whether to republish and what to echo", () => {
  const { k, since } = keepAlive(60_000);
  k.onKeepAlive('{"keepalive-options": [{"full-publish-completed-echo": "a"}]}');
  deepStrictEqual(since(), ["woke", "beat 0", "all", "completed 0 a"]);
  k.onKeepAlive('{"keepalive-options": ["suppress-republish"]}');
  deepStrictEqual(since(), [], "alive and asked not to: nothing");
  const long = "x".repeat(1025);
  k.onKeepAlive(`{"keepalive-options": [{"full-publish-completed-echo": "${long}"}]}`);
  deepStrictEqual(since(), [
    "problem: echo token over 1024 characters; not echoed",
    "all",
    "completed 0",
  ]);
});

Deno.test("keep-alive: over the rate limit, one republish later for every echo owed", () => {
  const { k, clock, since } = keepAlive(60_000);
  for (const echo of ["a", "b", "c", "d", "e"]) {
    k.onKeepAlive(`{"keepalive-options": [{"full-publish-completed-echo": "${echo}"}]}`);
  }
  deepStrictEqual(since(), [
    "woke",
    "beat 0",
    "all",
    "completed 0 a",
    "all",
    "completed 0 b",
    "all",
    "completed 0 c",
  ]);
  clock.advance(999);
  deepStrictEqual(since(), []);
  clock.advance(1);
  deepStrictEqual(since(), ["all", "completed 1 d", "completed 1 e"]);
});

Deno.test("keep-alive: answers (MQTT 5) after their full publish, at once when there is none", () => {
  const { k, clock, since } = keepAlive(60_000);
  const answers: string[] = [];
  const answer = (name: string) => (a: Answer) => answers.push(`${name} ${answerPayload(a)}`);
  clock.advance(5000);
  k.onKeepAlive("", answer("first"));
  deepStrictEqual(answers, ['first {"status": "ok", "full-publish-completed": 5}']);
  k.onKeepAlive('{"keepalive-options": ["suppress-republish"]}', answer("renew"));
  deepStrictEqual(answers.splice(0), [
    'first {"status": "ok", "full-publish-completed": 5}',
    'renew {"status": "ok"}',
  ]);
  // Over the rate limit: each answer waits for the republish that covers it, and comes after it.
  k.onKeepAlive("", answer("b"));
  k.onKeepAlive("", answer("c"));
  k.onKeepAlive("", answer("d"));
  deepStrictEqual(answers.splice(0), [
    'b {"status": "ok", "full-publish-completed": 5}',
    'c {"status": "ok", "full-publish-completed": 5}',
  ]);
  since();
  clock.advance(1000);
  deepStrictEqual(since(), ["all", "completed 6"]);
  deepStrictEqual(answers.splice(0), ['d {"status": "ok", "full-publish-completed": 6}']);
});

Deno.test("keep-alive: answers waiting beyond 10,000 are answered at once with an error", () => {
  const { k } = keepAlive(60_000);
  const answers: Answer[] = [];
  for (let i = 0; i < 3 + 10_003; i++) k.onKeepAlive("", (a) => answers.push(a));
  strictEqual(answers.length, 3 + 3, "three republishes, three dropped");
  strictEqual(answers.filter((a) => a.status === "error").length, 3);
});

Deno.test("keep-alive: stop cancels every timer", () => {
  const { k, clock } = keepAlive(60_000);
  for (let i = 0; i < 5; i++) k.onKeepAlive("");
  strictEqual(clock.pending, 3, "heartbeat, expiry and the waiting republish");
  k.stop();
  strictEqual(clock.pending, 0);
});

Deno.test("keep-alive options: suppress-republish, echo, both; anything else republishes", () => {
  deepStrictEqual(parseKeepAliveOptions(""), { republish: true });
  deepStrictEqual(parseKeepAliveOptions('{"keepalive-options": ["suppress-republish"]}'), {
    republish: false,
  });
  deepStrictEqual(
    parseKeepAliveOptions('{"keepalive-options": [{"full-publish-completed-echo": "abc"}]}'),
    { republish: true, echo: "abc" },
  );
  deepStrictEqual(
    parseKeepAliveOptions(
      '{"keepalive-options": ["suppress-republish", {"full-publish-completed-echo": "x"}]}',
    ),
    { republish: false, echo: "x" },
  );
  for (const plain of ['{"keepalive-options": []}', '{"value": ""}', "garbage", "null", "[1]"]) {
    deepStrictEqual(parseKeepAliveOptions(plain), { republish: true }, plain);
  }
});

Deno.test("at most 3 full republishes per second", () => {
  const limiter = new RepublishLimiter(3);
  const taken = [0, 10, 20, 30, 40].map((t) => limiter.take(t));
  deepStrictEqual(taken, [true, true, true, false, false]);
  strictEqual(limiter.nextAt(), 1000);
  strictEqual(limiter.take(1000), true);
});
