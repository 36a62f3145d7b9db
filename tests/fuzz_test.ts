/**
 * Fuzz: random topics and payloads thrown at a running bridge over MQTT; it
 * must still answer a valid read afterwards, and stay up. Under MQTT 5 every
 * request for our portal id gets exactly one answer, valid JSON.
 */
import { deepStrictEqual, ok, strictEqual } from "node:assert";
import fc from "fast-check";
import { Asker, sleep } from "./support/asker.ts";
import { brokerKind } from "./support/broker.ts";
import { PORTAL_ID, pvInverter, withGx } from "./support/gx.ts";

const settings = {
  name: "com.victronenergy.settings",
  items: { "/Settings/CGwacs/AcPowerSetPoint": 0, "/Settings/Gui/Brightness": 4 },
};

/** Topics near the real ones, so that the parser's deeper branches are reached too. */
const topic = fc.oneof(
  fc.string({ maxLength: 60 }),
  fc.tuple(
    fc.constantFrom("R", "W", "N", "r", ""),
    fc.constantFrom(PORTAL_ID, "other", "", "+"),
    fc.constantFrom("settings", "pvinverter", "system", "keepalive", "", "#"),
    fc.constantFrom("0", "20", "-1", "x", "4294967296", "007", ""),
    fc.array(fc.constantFrom("Settings", "Ac", "Power", "CGwacs", "", "\u0000", "é"), {
      maxLength: 4,
    }),
  ).map(([verb, id, type, instance, path]) => [verb, id, type, instance, ...path].join("/")),
).filter((t) => t.length > 0 && !t.includes("+") && !t.includes("#") && !t.includes("\u0000"));

const body = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify({ value: v })),
  fc.string({ maxLength: 40 }),
  fc.constantFrom("", "{", '{"value": 1', '{"value": 1e400}', '{"keepalive-options": [{}]}'),
);

/** A new seed every run explores more; FUZZ_SEED=<n> replays a failure. */
const SEED = Number(Deno.env.get("FUZZ_SEED") ?? Math.floor(Math.random() * 2 ** 31));

Deno.test(`a thousand random requests, then the bridge still answers (FUZZ_SEED=${SEED})`, async () => {
  await withGx({ services: [pvInverter(100), settings] }, async (gx) => {
    const samples = fc.sample(fc.tuple(topic, body), { numRuns: 1000, seed: SEED });
    for (const [t, b] of samples) await gx.client.publish(t, b);
    await gx.assertServing("pvinverter", 20, "/Ac/Power");
    await gx.assertServing("settings", 0, "/Settings/Gui/Brightness");
    strictEqual(gx.bridge.exited, false);
  });
});

Deno.test({
  name: `MQTT 5: random requests each get one answer, valid JSON (FUZZ_SEED=${SEED})`,
  ignore: brokerKind() !== "mosquitto",
  async fn() {
    await withGx({ services: [pvInverter(100), settings] }, async (gx) => {
      const asker = await Asker.connect(gx.broker.url);
      try {
        const samples = fc.sample(fc.tuple(topic, body), { numRuns: 500, seed: SEED });
        const ours = (t: string) => /^[RW]$/.test(t.split("/")[0]) && t.split("/")[1] === PORTAL_ID;
        for (const [i, [t, b]] of samples.entries()) {
          await asker.send(t, b as string, Uint8Array.of(i >> 8, i & 0xff));
        }
        const expected = samples.filter(([t]) => ours(t)).length;
        await gx.client.waitFor(
          `${expected} answers`,
          () => asker.answers.length >= expected,
          15_000,
        );
        await sleep(500);
        const seen = new Set<number>();
        for (const answer of asker.answers) {
          const [hi, lo] = answer.correlationData!;
          const i = (hi << 8) | lo;
          ok(!seen.has(i), `request ${i} (${samples[i][0]}) answered twice`);
          seen.add(i);
          ok(ours(samples[i][0]), `request ${i} (${samples[i][0]}) is not ours`);
          const status = JSON.parse(answer.payload).status;
          ok(["ok", "refused", "error"].includes(status), answer.payload);
        }
        strictEqual(seen.size, expected);
        deepStrictEqual(asker.elsewhere, []);
      } finally {
        await asker.close();
      }
      await gx.assertServing("pvinverter", 20, "/Ac/Power");
    });
  },
});
