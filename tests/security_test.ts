/** Integration: who may write (--read-only, --allow-write) and extra secrets (--mask). */
import { deepStrictEqual, strictEqual } from "node:assert";
import { PV, pvInverter, sleep, withGx } from "./support/gx.ts";

const SETTINGS = "com.victronenergy.settings";
const settings = {
  name: SETTINGS,
  items: { "/Settings/CGwacs/AcPowerSetPoint": 0, "/Settings/Vrm/Token": "s3cret" },
};

Deno.test("--read-only: write requests are logged and never reach D-Bus", async () => {
  await withGx({ services: [pvInverter(100)], args: ["--read-only"] }, async (gx) => {
    const topic = gx.topic("pvinverter", 20, "/Ac/Power");
    await gx.wake(topic);
    await gx.write("pvinverter", 20, "/Ac/Power", '{"value": 5}');
    await gx.bridge.waitForLine(/\[write\] .*refused, the bridge is read-only/);
    await gx.assertServing("pvinverter", 20, "/Ac/Power");
    deepStrictEqual(gx.sim.get(PV).writes, []);
    strictEqual(gx.client.value(topic), 100);
  });
});

Deno.test("--allow-write: only matching writes pass", async () => {
  await withGx({
    services: [pvInverter(100), settings],
    args: ["--allow-write", "settings/0/Settings/CGwacs/#"],
  }, async (gx) => {
    const setpoint = gx.topic("settings", 0, "/Settings/CGwacs/AcPowerSetPoint");
    await gx.wake(setpoint);
    await gx.write("pvinverter", 20, "/Ac/Power", '{"value": 5}');
    await gx.bridge.waitForLine(/refused, pvinverter\/20\/Ac\/Power matches no --allow-write/);
    await gx.write("settings", 0, "/Settings/CGwacs/AcPowerSetPoint", '{"value": -200}');
    await gx.client.waitFor("the allowed write", () => gx.client.value(setpoint) === -200);
    await sleep(200);
    deepStrictEqual(gx.sim.get(PV).writes, []);
    strictEqual(gx.sim.get(SETTINGS).writes.length, 1);
  });
});

Deno.test("--mask: an extra secret goes out as ****** on notifications and reads", async () => {
  await withGx({
    services: [settings],
    args: ["--mask", "settings/Settings/Vrm/Token"],
  }, async (gx) => {
    const token = gx.topic("settings", 0, "/Settings/Vrm/Token");
    await gx.wake(token);
    strictEqual(gx.client.value(token), "******");
    const before = gx.client.log.length;
    await gx.read("settings", 0, "/Settings/Vrm/Token");
    await gx.client.waitFor("the read", () => gx.client.log.length > before);
    deepStrictEqual(gx.client.log.filter((m) => m.payload.includes("s3cret")), []);
  });
});
