/**
 * Integration: what modern clients use beyond the original spec: sub-tree
 * reads, min/max/default in payloads, --no-retain, and WebSockets.
 */
import { deepStrictEqual, strictEqual } from "node:assert";
import dbus from "dbus-next";
import { TestClient } from "./support/mqtt_client.ts";
import { PORTAL_ID, PV, pvInverter, sleep, withGx } from "./support/gx.ts";

const { Variant } = dbus;
const SETTINGS = "com.victronenergy.settings";

Deno.test("a read of a sub-tree publishes a fresh value of every path beneath it", async () => {
  const items = {
    "/Settings/Cgwacs/AcPowerSetPoint": 0,
    "/Settings/Cgwacs/Hub4Mode": 1,
    "/Settings/Cgwacs/BatteryLife/State": 2,
    "/Settings/CgwacsX": 3, // shares the prefix, not the sub-tree
    "/Settings/Gui/Brightness": 4,
  };
  await withGx({ services: [{ name: SETTINGS, items }] }, async (gx) => {
    const topic = (path: string) => gx.topic("settings", 0, path);
    await gx.wake(topic("/Settings/Gui/Brightness"));
    // Settings change without a signal: only a read can tell.
    const sim = gx.sim.get(SETTINGS);
    for (const path of Object.keys(items)) sim.items.set(path, new Variant("i", 10));

    await gx.read("settings", 0, "/Settings/Cgwacs");
    const beneath = [
      "/Settings/Cgwacs/AcPowerSetPoint",
      "/Settings/Cgwacs/Hub4Mode",
      "/Settings/Cgwacs/BatteryLife/State",
    ];
    await gx.client.waitFor(
      "the sub-tree's fresh values",
      () => beneath.every((path) => gx.client.value(topic(path)) === 10),
    );
    await sleep(300);
    strictEqual(gx.client.value(topic("/Settings/CgwacsX")), 3);
    strictEqual(gx.client.value(topic("/Settings/Gui/Brightness")), 4);

    await gx.read("settings", 0, "/Settings");
    await gx.client.waitFor(
      "every setting's fresh value",
      () => Object.keys(items).every((path) => gx.client.value(topic(path)) === 10),
    );

    // Neither an item nor a sub-tree: nothing is published, the bridge serves on.
    const before = gx.client.log.length;
    await gx.read("settings", 0, "/Settings/Cgw");
    await gx.assertServing("settings", 0, "/Settings/Gui/Brightness");
    deepStrictEqual(
      gx.client.log.slice(before).map((m) => m.topic),
      [topic("/Settings/Gui/Brightness")],
    );
  });
});

Deno.test("min, max and default join the value when the service gives them", async () => {
  const path = "/Settings/SystemSetup/MaxChargeCurrent";
  const pin = "/Settings/Ble/Service/Pincode";
  await withGx({
    services: [{
      name: SETTINGS,
      items: { [path]: 50, [pin]: "123456", "/Settings/Gui/Brightness": 4 },
      limits: {
        [path]: { Min: -1, Max: 100, Default: new Variant("d", 50) },
        [pin]: { Default: "000000" },
      },
    }],
  }, async (gx) => {
    const topic = gx.topic("settings", 0, path);
    await gx.wake(topic);
    const parsed = () => JSON.parse(gx.client.topics.get(topic)!);
    strictEqual(
      gx.client.topics.get(topic),
      '{"value": 50, "min": -1, "max": 100, "default": 50.0}',
    );
    // Items without limits, and secrets, carry only the value.
    strictEqual(
      gx.client.topics.get(gx.topic("settings", 0, "/Settings/Gui/Brightness")),
      '{"value": 4}',
    );
    strictEqual(gx.client.topics.get(gx.topic("settings", 0, pin)), '{"value": "******"}');

    // PropertiesChanged with new limits replaces them ...
    const sim = gx.sim.get(SETTINGS);
    sim.set(path, 60, { Min: 0, Max: 80, Default: 40 });
    await gx.client.waitFor("the new limits", () => parsed().max === 80);
    deepStrictEqual(parsed(), { value: 60, min: 0, max: 80, default: 40 });
    // ... one with only the value keeps them.
    sim.set(path, 70);
    await gx.client.waitFor("the new value", () => parsed().value === 70);
    deepStrictEqual(parsed(), { value: 70, min: 0, max: 80, default: 40 });
    // A change of the limits alone is published too.
    sim.set(path, 70, { Min: 0, Max: 90, Default: 40 });
    await gx.client.waitFor("the wider limit", () => parsed().max === 90);
  });
});

Deno.test("--no-retain: values reach live subscribers only, the Serial stays retained", async () => {
  const services = [pvInverter(100), { name: SETTINGS, items: { "/Settings/Gui/Brightness": 4 } }];
  await withGx({ services, args: ["--no-retain", "-k", "2"] }, async (gx) => {
    const topic = gx.topic("pvinverter", 20, "/Ac/Power");
    await gx.wake(topic);
    gx.sim.get(PV).set("/Ac/Power", 200);
    await gx.client.waitFor("a live change", () => gx.client.value(topic) === 200);

    const late = await TestClient.connect(gx.broker.url, [`N/${PORTAL_ID}/#`]);
    try {
      const serial = gx.topic("system", 0, "/Serial");
      await late.waitFor("the retained Serial", () => late.topics.has(serial));
      await sleep(300);
      deepStrictEqual([...late.topics.keys()], [serial]);
    } finally {
      await late.close();
    }

    // The service leaves while alive: live subscribers learn its topics are gone.
    await gx.client.publish(
      `R/${PORTAL_ID}/keepalive`,
      '{"keepalive-options": ["suppress-republish"]}',
    );
    gx.sim.remove(PV);
    await gx.client.waitFor("the topic gone", () => !gx.client.topics.has(topic));

    // On expiry there is nothing to clear: no more messages but heartbeats.
    const before = gx.client.log.length;
    await sleep(3000);
    deepStrictEqual(
      gx.client.log.slice(before).filter((m) => !m.topic.endsWith("/heartbeat")),
      [],
    );
  });
});

Deno.test("the bridge works through a broker's WebSockets listener", async () => {
  await withGx({ services: [pvInverter(100)], websockets: true }, async (gx) => {
    const topic = gx.topic("pvinverter", 20, "/Ac/Power");
    await gx.wake(topic);
    strictEqual(gx.client.value(topic), 100);
    await gx.write("pvinverter", 20, "/Ac/Power", '{"value": 300}');
    await gx.client.waitFor("the written value", () => gx.client.value(topic) === 300);
    gx.sim.get(PV).items.set("/Ac/Power", new Variant("i", 400));
    await gx.read("pvinverter", 20, "/Ac/Power");
    await gx.client.waitFor("the read value", () => gx.client.value(topic) === 400);
  });
});
