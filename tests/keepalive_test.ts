import { strictEqual } from "node:assert";
import { KeepAlive } from "../lib/keepalive.ts";

Deno.test("quiet until the first request, alive for the interval after the last", () => {
  const k = new KeepAlive(60_000);
  strictEqual(k.alive, false);
  strictEqual(k.deadline, Infinity);
  strictEqual(k.request(1000), true, "the first request wakes it");
  strictEqual(k.request(30_000), false, "later ones only renew");
  strictEqual(k.deadline, 90_000);
  strictEqual(k.expire(61_000), false, "renewed, so not expired at the first deadline");
  strictEqual(k.expire(90_000), true);
  strictEqual(k.alive, false);
  strictEqual(k.expire(200_000), false, "expires once");
  strictEqual(k.request(200_000), true, "the next request wakes it again");
});

Deno.test("an interval of 0 means always alive", () => {
  const k = new KeepAlive(0);
  strictEqual(k.alive, true);
  strictEqual(k.deadline, Infinity);
  strictEqual(k.request(5), false);
  strictEqual(k.expire(1e12), false);
});
