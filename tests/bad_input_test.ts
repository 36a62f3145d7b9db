/**
 * Integration: bad input from MQTT or D-Bus gets a log line and nothing else;
 * the bridge keeps serving everyone.
 */
import { strictEqual } from "node:assert";
import { PORTAL_ID, PV, pvInverter, sleep, withGx } from "./support/gx.ts";

Deno.test("malformed requests, unknown targets and bad payloads: a log line each, no write", async () => {
  await withGx({ services: [pvInverter()] }, async (gx) => {
    await gx.wake(gx.topic("pvinverter", 20, "/Ac/Power"));
    const bad: [string, string | Uint8Array, RegExp][] = [
      [`R/${PORTAL_ID}/pvinverter`, "", /expected <R\|W>/],
      [`R/${PORTAL_ID}/pvinverter/x/Ac/Power`, "", /instance 'x' is not a number/],
      [`R/${PORTAL_ID}/pvinverter/20/Ac//Power`, "", /empty topic level/],
      [`R/${PORTAL_ID}/nosuch/0/Ac/Power`, "", /no service nosuch\/0/],
      [`R/${PORTAL_ID}/pvinverter/21/Ac/Power`, "", /no service pvinverter\/21/],
      [`R/${PORTAL_ID}/pvinverter/20/No/Such`, "", /has no path or sub-tree \/No\/Such/],
      [`W/${PORTAL_ID}/pvinverter/20/No/Such`, '{"value": 1}', /has no path \/No\/Such/],
      [`W/${PORTAL_ID}/pvinverter/20/Ac/Power`, "garbage", /Ac\/Power: invalid JSON/],
      [`W/${PORTAL_ID}/pvinverter/20/Ac/Power`, '{"val": 1}', /must be a JSON object like/],
      [`W/${PORTAL_ID}/pvinverter/20/Ac/Power`, "", /Ac\/Power: invalid JSON/],
      [
        `W/${PORTAL_ID}/pvinverter/20/Ac/Power`,
        new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]),
        /not valid|encoded|decode/i,
      ],
      [`W/${PORTAL_ID}/pvinverter/20/Ac/Power`, "[".repeat(100000), /payload over/],
      [
        `W/${PORTAL_ID}/pvinverter/20/Ac/Power`,
        `{"value": ${"[".repeat(500)}`,
        /nested too deeply/,
      ],
    ];
    for (const [topic, payload, logged] of bad) {
      await gx.client.publish(topic, payload);
      await gx.bridge.waitForLine(logged);
      await gx.assertServing("pvinverter", 20, "/Ac/Power");
    }
    strictEqual(gx.sim.get(PV).writes.length, 0, "nothing was written");
  });
});

Deno.test("requests for another portal id do nothing", async () => {
  await withGx({ services: [pvInverter()] }, async (gx) => {
    await gx.client.publish("R/000000000000/keepalive");
    await gx.client.publish("W/000000000000/pvinverter/20/Ac/Power", '{"value": 1}');
    await sleep(500);
    strictEqual(gx.client.topics.has(gx.topic("pvinverter", 20, "/Ac/Power")), false, "not woken");
    strictEqual(gx.sim.get(PV).writes.length, 0);
  });
});

Deno.test("a service that never answers times out; the others keep flowing", async () => {
  await withGx({
    services: [pvInverter(), {
      name: "com.victronenergy.tank.hung",
      items: { "/DeviceInstance": 5, "/Level": 1 },
    }],
    beforeBridge: (sim) => void sim.get("com.victronenergy.tank.hung").hang.add("GetItems"),
    waitForScan: false,
  }, async (gx) => {
    const power = gx.topic("pvinverter", 20, "/Ac/Power");
    await gx.wake(power);
    gx.sim.get(PV).set("/Ac/Power", 1000);
    await gx.client.waitFor(
      "a change from the healthy service",
      () => gx.client.value(power) === 1000,
    );
    strictEqual(
      gx.bridge.lines.some((l) => l.includes("hung")),
      false,
      "served while the scan hangs",
    );
    await gx.bridge.waitForLine(
      /\[scan\] com\.victronenergy\.tank\.hung: not scanned: no answer/,
      10_000,
    );
    // A hung read does not block the next request either.
    gx.sim.get(PV).hang.add("GetValue");
    await gx.read("pvinverter", 20, "/Ac/Power");
    gx.sim.get(PV).set("/Ac/Power", 1001);
    await gx.client.waitFor("changes during a hung read", () => gx.client.value(power) === 1001);
    await gx.bridge.waitForLine(/\[read\].*no answer/, 10_000);
  });
});

Deno.test("a service that dies mid-scan is dropped; the rest is served", async () => {
  await withGx({
    services: [pvInverter(), {
      name: "com.victronenergy.tank.dying",
      items: { "/DeviceInstance": 6, "/Level": 1 },
    }],
    beforeBridge: (sim) => void sim.get("com.victronenergy.tank.dying").dieOn.add("GetItems"),
  }, async (gx) => {
    await gx.wake(gx.topic("pvinverter", 20, "/Ac/Power"));
    await gx.bridge.waitForLine(/tank\.dying: not scanned/);
    await sleep(200);
    strictEqual([...gx.client.topics.keys()].some((t) => t.includes("/tank/")), false);
    await gx.assertServing("pvinverter", 20, "/Ac/Power");
  });
});
