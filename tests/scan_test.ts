/** Integration: how the bridge finds services and follows them on the bus. */
import { strictEqual } from "node:assert";
import dbus from "dbus-next";
import { PORTAL_ID, sleep, withGx } from "./support/gx.ts";

const { Variant } = dbus;

Deno.test("scans every style of service: GetItems, GetValue on /, Introspect only", async () => {
  await withGx({
    services: [
      {
        name: "com.victronenergy.pvinverter.modern",
        items: { "/DeviceInstance": 20, "/Ac/Power": 936 },
      },
      {
        name: "com.victronenergy.tank.old",
        style: "GetValue",
        items: { "/DeviceInstance": 3, "/Level": 55.5 },
      },
      {
        name: "com.victronenergy.meteo.oldest",
        style: "Introspect",
        items: { "/DeviceInstance": 7, "/Sensor/Irradiance": 800, "/Sensor/Name": "roof" },
      },
      // No /DeviceInstance: instance 0.
      { name: "com.victronenergy.logger", items: { "/Vrm/Status": 1 } },
    ],
  }, async (gx) => {
    const expected: [string, unknown][] = [
      [gx.topic("pvinverter", 20, "/Ac/Power"), 936],
      [gx.topic("tank", 3, "/Level"), 55.5],
      [gx.topic("meteo", 7, "/Sensor/Irradiance"), 800],
      [gx.topic("meteo", 7, "/Sensor/Name"), "roof"],
      [gx.topic("logger", 0, "/Vrm/Status"), 1],
    ];
    await gx.wake(expected[0][0]);
    await gx.client.waitFor(
      "every service",
      () => expected.every(([t]) => gx.client.topics.has(t)),
    );
    for (const [topic, value] of expected) strictEqual(gx.client.value(topic), value, topic);
  });
});

Deno.test("follows PropertiesChanged and ItemsChanged, services that come and go", async () => {
  await withGx({
    services: [{
      name: "com.victronenergy.battery.ttyO0",
      items: { "/DeviceInstance": 256, "/Soc": 50 },
    }],
  }, async (gx) => {
    const soc = gx.topic("battery", 256, "/Soc");
    await gx.wake(soc);
    const battery = gx.sim.get("com.victronenergy.battery.ttyO0");

    battery.set("/Soc", 51.5);
    await gx.client.waitFor("PropertiesChanged", () => gx.client.value(soc) === 51.5);

    battery.setMany({ "/Soc": 52, "/Dc/0/Voltage": new Variant("d", 51) });
    await gx.client.waitFor("ItemsChanged", () => gx.client.value(soc) === 52);
    await gx.client.waitFor(
      "a path first seen in ItemsChanged",
      () => gx.client.topics.get(gx.topic("battery", 256, "/Dc/0/Voltage")) === '{"value": 51.0}',
    );

    // A device that appears later is scanned and published while alive.
    await gx.sim.add({
      name: "com.victronenergy.pvinverter.pv1",
      items: { "/DeviceInstance": 21, "/Ac/Power": 5 },
    });
    const power = gx.topic("pvinverter", 21, "/Ac/Power");
    await gx.client.waitFor("the new service", () => gx.client.value(power) === 5);

    // A device that disappears gets its topics emptied (retained, so the broker forgets them).
    gx.sim.remove("com.victronenergy.pvinverter.pv1");
    await gx.client.waitFor("the topics cleared", () => !gx.client.topics.has(power));
    const cleared = gx.client.log.filter((m) =>
      m.topic.startsWith(`N/${PORTAL_ID}/pvinverter/21/`)
    );
    strictEqual(cleared.at(-1)!.payload, "");
    strictEqual(gx.client.topics.get(soc), '{"value": 52}', "other services untouched");
  });
});

Deno.test("a service re-registering under a new unique name is rescanned", async () => {
  await withGx({
    services: [{
      name: "com.victronenergy.tank.t1",
      items: { "/DeviceInstance": 1, "/Level": 10 },
    }],
  }, async (gx) => {
    const level = gx.topic("tank", 1, "/Level");
    await gx.wake(level);
    gx.sim.remove("com.victronenergy.tank.t1");
    await gx.client.waitFor("cleared", () => !gx.client.topics.has(level));
    await sleep(100);
    await gx.sim.add({
      name: "com.victronenergy.tank.t1",
      items: { "/DeviceInstance": 1, "/Level": 20 },
    });
    await gx.client.waitFor("the new owner's value", () => gx.client.value(level) === 20);
    // Signals from the new owner are followed.
    gx.sim.get("com.victronenergy.tank.t1").set("/Level", 30);
    await gx.client.waitFor("a change from the new owner", () => gx.client.value(level) === 30);
  });
});

Deno.test("works over a tcp: bus address", async () => {
  await withGx({
    tcp: true,
    services: [{
      name: "com.victronenergy.grid.cg",
      items: { "/DeviceInstance": 30, "/Ac/Power": -120 },
    }],
  }, async (gx) => {
    const power = gx.topic("grid", 30, "/Ac/Power");
    await gx.wake(power);
    strictEqual(gx.client.value(power), -120);
  });
});

Deno.test("the simulator's cached GetItems answer (the bench's) is a GetItems answer", async () => {
  const name = "com.victronenergy.settings";
  const path = "/Settings/CGwacs/AcPowerSetPoint";
  await withGx({
    services: [{ name, items: { [path]: 50 }, limits: { [path]: { Min: -100, Max: 100 } } }],
    // Only GetItems carries limits: a failing cache would fall back to GetValue without them.
    beforeBridge: (sim) => void (sim.get(name).cacheGetItems = true),
  }, async (gx) => {
    const topic = gx.topic("settings", 0, path);
    await gx.wake(topic);
    strictEqual(gx.client.topics.get(topic), '{"value": 50, "min": -100, "max": 100}');
  });
});
