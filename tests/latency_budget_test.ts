/**
 * Integration: the latency budget (--max-delay). A change after a quiet
 * spell goes out at once; changes while the bridge rests wait for the next
 * read, and the last value of every path always arrives.
 */
import { strictEqual } from "node:assert";
import { PV, pvInverter, sleep, withGx } from "./support/gx.ts";

const BUDGET_MS = 1000;

Deno.test("a long --max-delay: the first change after a quiet spell is not held, no last value is lost", async () => {
  await withGx(
    { services: [pvInverter()], args: ["--max-delay", String(BUDGET_MS)] },
    async (gx) => {
      const power = gx.topic("pvinverter", 20, "/Ac/Power");
      await gx.wake(power);
      const pv = gx.sim.get(PV);
      for (const value of [1, 2]) {
        await sleep(BUDGET_MS + 500); // quiet: the bridge reads at once again
        const sent = performance.now();
        pv.set("/Ac/Power", value);
        await gx.client.waitFor(`change ${value}`, () => gx.client.value(power) === value);
        const took = performance.now() - sent;
        strictEqual(took < BUDGET_MS / 2, true, `the first change after quiet took ${took} ms`);
      }
      // Busy: many changes, each its own message, while the bridge rests between reads.
      const sent = performance.now();
      for (let value = 100; value <= 150; value++) {
        pv.set("/Ac/Power", value);
        await sleep(20);
      }
      await gx.client.waitFor("the last value", () => gx.client.value(power) === 150, 5000);
      const took = performance.now() - sent;
      strictEqual(took < 1000 + 2 * BUDGET_MS + 500, true, `${took} ms`);
      const seen = gx.client.log.filter((m) => m.topic === power).map((m) =>
        JSON.parse(m.payload).value
      );
      strictEqual(
        seen.length < 40,
        true,
        `changes travel together: ${seen.length} messages for 51`,
      );
    },
  );
});

Deno.test("--max-delay 0: every change goes out at once, as each arrives", async () => {
  await withGx({ services: [pvInverter()], args: ["--max-delay", "0"] }, async (gx) => {
    const power = gx.topic("pvinverter", 20, "/Ac/Power");
    await gx.wake(power);
    const before = gx.client.log.length;
    for (let value = 1; value <= 20; value++) {
      gx.sim.get(PV).set("/Ac/Power", value);
      await sleep(30);
    }
    await gx.client.waitFor("the last value", () => gx.client.value(power) === 20);
    const seen = gx.client.log.slice(before).filter((m) => m.topic === power);
    strictEqual(seen.length, 20, "each change on its own");
  });
});

Deno.test("a flood of single changes is read on: the bridge keeps up with dbus-daemon", async () => {
  // 20,000 messages written at once fill the bridge's socket, and dbus-daemon
  // keeps the rest: however the bridge paces its reads, every last value arrives soon.
  const paths = Array.from({ length: 20 }, (_, i) => `/Flood/${i}`);
  const items = Object.fromEntries([["/DeviceInstance", 20], ...paths.map((p) => [p, 0])]);
  await withGx({ services: [{ name: PV, items }] }, async (gx) => {
    const topics = paths.map((p) => gx.topic("pvinverter", 20, p));
    await gx.wake(topics[0]);
    const pv = gx.sim.get(PV);
    pv.fastSignals = true;
    for (let value = 1; value <= 1000; value++) {
      for (const path of paths) pv.set(path, value);
    }
    await gx.client.waitFor(
      "every path's last value",
      () => topics.every((t) => gx.client.value(t) === 1000),
      10_000,
    );
  });
});
