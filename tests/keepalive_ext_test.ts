/** Integration: the modern keep-alive extensions (full_publish_completed, heartbeat, rate limit). */
import { strictEqual } from "node:assert";
import { PORTAL_ID, pvInverter, sleep, withGx } from "./support/gx.ts";

const COMPLETED = `N/${PORTAL_ID}/full_publish_completed`;
const KEEPALIVE = `R/${PORTAL_ID}/keepalive`;

Deno.test("keep-alive payloads: echo after every value, suppress-republish, plain and garbage", async () => {
  await withGx({ services: [pvInverter()] }, async (gx) => {
    const power = gx.topic("pvinverter", 20, "/Ac/Power");
    const echoes = () =>
      gx.client.log.filter((m) => m.topic === COMPLETED).map((m) => JSON.parse(m.payload));
    const powerCount = () => gx.client.log.filter((m) => m.topic === power).length;

    await gx.client.publish(
      KEEPALIVE,
      '{"keepalive-options": [{"full-publish-completed-echo": "abc"}]}',
    );
    await gx.client.waitFor(
      "the echo",
      () => echoes().some((e) => e["full-publish-completed-echo"] === "abc"),
    );
    const at = gx.client.log.findIndex((m) => m.topic === COMPLETED);
    strictEqual(gx.client.log.findIndex((m) => m.topic === power) < at, true, "values first");
    strictEqual(Math.abs(echoes()[0].value - Date.now() / 1000) < 5, true);

    const before = powerCount();
    await gx.client.publish(KEEPALIVE, '{"keepalive-options": ["suppress-republish"]}');
    await sleep(400);
    strictEqual(powerCount(), before, "no republish");
    strictEqual(echoes().length, 1, "no completion without a republish");

    for (const plain of ["", '{"keepalive-options": []}', '{"value": ""}', "garbage"]) {
      const count = echoes().length;
      await sleep(400); // stay under the rate limit
      await gx.client.publish(KEEPALIVE, plain);
      await gx.client.waitFor(
        `a republish for ${JSON.stringify(plain)}`,
        () => echoes().length > count,
      );
    }
    // A read of the Serial is a keep-alive with republish too, system service or not.
    const count = echoes().length;
    await sleep(400);
    await gx.client.publish(
      `R/${PORTAL_ID}/system/0/Serial`,
      '{"keepalive-options": [{"full-publish-completed-echo": "s"}]}',
    );
    await gx.client.waitFor(
      "the Serial's echo",
      () => echoes().slice(count).some((e) => e["full-publish-completed-echo"] === "s"),
    );
  });
});

Deno.test("two clients asking at once each get their own echo; a storm is rate-limited", async () => {
  await withGx({ services: [pvInverter()] }, async (gx) => {
    const start = gx.client.log.length;
    for (let i = 0; i < 1000; i++) {
      gx.client.client.publish(
        KEEPALIVE,
        `{"keepalive-options": [{"full-publish-completed-echo": "c${i % 2}"}]}`,
      );
    }
    await gx.client.waitFor("both echoes", () => {
      const got = new Set(
        gx.client.log.slice(start).filter((m) => m.topic === COMPLETED).map((m) =>
          JSON.parse(m.payload)["full-publish-completed-echo"]
        ),
      );
      return got.has("c0") && got.has("c1");
    });
    await sleep(1500);
    // Unlimited, every keep-alive would end in its own completion message.
    const completions = gx.client.log.slice(start).filter((m) => m.topic === COMPLETED).length;
    strictEqual(completions <= 2 * 3 * 3, true, `${completions} completions for 1,000 keep-alives`);
    await gx.assertServing("pvinverter", 20, "/Ac/Power");
  });
});

Deno.test("heartbeat every 3 s while alive, not retained, stops on expiry", async () => {
  await withGx({ args: ["-k", "4"], services: [pvInverter()] }, async (gx) => {
    const heartbeat = `N/${PORTAL_ID}/heartbeat`;
    const beats = () => gx.client.log.filter((m) => m.topic === heartbeat);
    strictEqual(beats().length, 0, "quiet before the first request");
    await gx.client.publish(KEEPALIVE);
    await gx.client.waitFor("two heartbeats", () => beats().length >= 2, 5000);
    strictEqual(beats().every((m) => !m.retain), true);
    await gx.client.waitFor(
      "expiry",
      () => !gx.client.topics.has(gx.topic("pvinverter", 20, "/Ac/Power")),
      6000,
    );
    const after = beats().length;
    await sleep(3500);
    strictEqual(beats().length, after, "no heartbeat after expiry");
  });
});
