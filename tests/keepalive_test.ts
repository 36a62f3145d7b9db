import { deepStrictEqual, strictEqual } from "node:assert";
import { KeepAlive, parseKeepAliveOptions, RepublishLimiter } from "../lib/keepalive.ts";

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
