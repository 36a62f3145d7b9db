/** Integration: notifications, their JSON, the Serial and the keep-alive. */
import { deepStrictEqual, strictEqual } from "node:assert";
import { Buffer } from "node:buffer";
import dbus from "dbus-next";
import { PORTAL_ID, PV, pvInverter, sleep, withGx } from "./support/gx.ts";

const { Variant } = dbus;

Deno.test("values keep their JSON type; invalid is null; internal items never go out", async () => {
  await withGx({
    services: [{
      name: "com.victronenergy.vebus.ttyO1",
      items: {
        "/DeviceInstance": 257,
        "/Int": new Variant("i", -200),
        "/Whole": new Variant("d", 12),
        "/Float": new Variant("d", 20.43000030517578),
        "/Big": new Variant("t", 18446744073709551615n),
        "/Text": "MultiPlus 48/3000",
        "/Flag": true,
        "/Invalid": null,
        "/List": new Variant("as", ["a", "b"]),
        "/Bytes": new Variant("ay", Buffer.from([1, 2])),
        "/Dict": new Variant("a{sv}", { soc: new Variant("d", 58.5) }),
        "/Interfaces/Mk2/Tunnel": 1,
      },
    }],
  }, async (gx) => {
    const t = (path: string) => gx.topic("vebus", 257, path);
    await gx.wake(t("/Dict"));
    const raw = (path: string) => gx.client.topics.get(t(path));
    strictEqual(raw("/Int"), '{"value": -200}');
    strictEqual(raw("/Whole"), '{"value": 12.0}');
    strictEqual(raw("/Float"), '{"value": 20.43000030517578}');
    strictEqual(raw("/Big"), '{"value": 18446744073709551615}');
    strictEqual(raw("/Text"), '{"value": "MultiPlus 48/3000"}');
    strictEqual(raw("/Flag"), '{"value": true}');
    strictEqual(raw("/Invalid"), '{"value": null}');
    strictEqual(raw("/List"), '{"value": ["a","b"]}');
    strictEqual(raw("/Bytes"), '{"value": [1,2]}');
    deepStrictEqual(gx.client.value(t("/Dict")), { soc: 58.5 });
    await sleep(200);
    strictEqual(gx.client.topics.has(t("/Interfaces/Mk2/Tunnel")), false);
    const retained = gx.client.log.filter((m) => m.topic === t("/Int"));
    strictEqual(retained.length, 1);
  });
});

Deno.test("Serial from the start, quiet until a request, cleared on expiry, woken again", async () => {
  await withGx({
    args: ["-k", "1"],
    services: [pvInverter()],
  }, async (gx) => {
    const serial = gx.topic("system", 0, "/Serial");
    const power = gx.topic("pvinverter", 20, "/Ac/Power");
    strictEqual(gx.client.value(serial), PORTAL_ID);
    // Not alive: changes are not published.
    gx.sim.get(PV).set("/Ac/Power", 937);
    await sleep(300);
    strictEqual(gx.client.topics.has(power), false);

    // A read request on anything wakes it: every value goes out.
    await gx.read("pvinverter", 20, "/DeviceInstance");
    await gx.client.waitFor("values", () => gx.client.value(power) === 937);
    gx.sim.get(PV).set("/Ac/Power", 938);
    await gx.client.waitFor("a change while alive", () => gx.client.value(power) === 938);

    // No request for the interval: every topic emptied except the Serial.
    await gx.client.waitFor("expiry", () => !gx.client.topics.has(power), 3000);
    strictEqual(gx.client.value(serial), PORTAL_ID);
    strictEqual(gx.client.log.some((m) => m.topic === serial && m.payload === ""), false);
    gx.sim.get(PV).set("/Ac/Power", 939);
    await sleep(300);
    strictEqual(gx.client.topics.has(power), false, "quiet again");

    // A write request wakes it too.
    await gx.write("pvinverter", 20, "/Ac/Power", '{"value": 940}');
    await gx.client.waitFor("woken by a write", () => gx.client.value(power) === 940);
  });
});

Deno.test("the Serial is the portal id, whatever the system service's /Serial says", async () => {
  const SYSTEM = "com.victronenergy.system";
  await withGx({
    services: [pvInverter(), { name: SYSTEM, items: { "/Serial": "0123456789ab" } }],
  }, async (gx) => {
    const serial = gx.topic("system", 0, "/Serial");
    await gx.wake(gx.topic("pvinverter", 20, "/Ac/Power"));
    gx.sim.get(SYSTEM).set("/Serial", "changed00000");
    await gx.read("system", 0, "/Serial"); // the old keep-alive: the Serial comes again
    await gx.assertServing("pvinverter", 20, "/Ac/Power");
    const sent = gx.client.log.filter((m) => m.topic === serial).map((m) => m.payload);
    strictEqual(sent.length >= 2, true, "published at connect and for the read");
    deepStrictEqual(new Set(sent), new Set([`{"value": "${PORTAL_ID}"}`]));
    await gx.write("system", 0, "/Serial", '{"value": "evil"}');
    await gx.bridge.waitForLine(/Serial: refused, the Serial is the portal id/);
    strictEqual(gx.sim.get(SYSTEM).writes.length, 0, "nothing written");
  });
});

Deno.test("a request keeps it alive past the interval", async () => {
  await withGx({
    args: ["-k", "1"],
    services: [pvInverter(1)],
  }, async (gx) => {
    const power = gx.topic("pvinverter", 20, "/Ac/Power");
    await gx.wake(power);
    for (let i = 0; i < 4; i++) {
      await sleep(500);
      await gx.read("system", 0, "/Serial");
    }
    strictEqual(gx.client.topics.has(power), true, "2 s later, still alive");
  });
});

Deno.test("-k 0 publishes from the start and never clears", async () => {
  await withGx({
    args: ["-k", "0"],
    services: [pvInverter(7)],
  }, async (gx) => {
    const power = gx.topic("pvinverter", 20, "/Ac/Power");
    await gx.client.waitFor("values without any request", () => gx.client.value(power) === 7);
    gx.sim.get(PV).set("/Ac/Power", 8);
    await gx.client.waitFor("a change", () => gx.client.value(power) === 8);
  });
});
