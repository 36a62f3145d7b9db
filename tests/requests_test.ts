/** Integration: read and write requests, end to end through D-Bus. */
import { deepStrictEqual, strictEqual } from "node:assert";
import dbus from "dbus-next";
import { BridgeProcess } from "./support/bridge.ts";
import { withGx } from "./support/gx.ts";

const { Variant } = dbus;
const HUB4 = "com.victronenergy.vebus.ttyO1";

Deno.test("a read request answers with a fresh value from D-Bus, also for silent settings", async () => {
  await withGx({
    services: [
      {
        name: "com.victronenergy.settings",
        items: { "/Settings/SystemSetup/MaxChargeCurrent": 50 },
      },
    ],
  }, async (gx) => {
    const topic = gx.topic("settings", 0, "/Settings/SystemSetup/MaxChargeCurrent");
    await gx.wake(topic);
    // Settings change without a signal: only a read can tell.
    gx.sim.get("com.victronenergy.settings").items.set(
      "/Settings/SystemSetup/MaxChargeCurrent",
      new Variant("i", 70),
    );
    await gx.read("settings", 0, "/Settings/SystemSetup/MaxChargeCurrent");
    await gx.client.waitFor("the fresh value", () => gx.client.value(topic) === 70);
    // A read of an unchanged value still answers.
    const before = gx.client.log.length;
    await gx.read("settings", 0, "/Settings/SystemSetup/MaxChargeCurrent");
    await gx.client.waitFor(
      "an answer",
      () => gx.client.log.slice(before).some((m) => m.topic === topic),
    );
  });
});

Deno.test("writes reach D-Bus with the type of the JSON literal and come back as notifications", async () => {
  await withGx({
    services: [{
      name: HUB4,
      items: {
        "/DeviceInstance": 257,
        "/Hub4/L1/AcPowerSetpoint": 0,
        "/Name": "x",
        "/Flag": false,
        "/List": null,
      },
    }],
  }, async (gx) => {
    const setpoint = gx.topic("vebus", 257, "/Hub4/L1/AcPowerSetpoint");
    await gx.wake(setpoint);
    const vebus = gx.sim.get(HUB4);
    const cases: [string, string, string, unknown][] = [
      ["/Hub4/L1/AcPowerSetpoint", "-200", "i", -200],
      ["/Hub4/L1/AcPowerSetpoint", "-200.0", "d", -200],
      ["/Hub4/L1/AcPowerSetpoint", "3000000000", "x", 3000000000n],
      ["/Name", '"abc"', "s", "abc"],
      ["/Flag", "true", "b", true],
      ["/List", "null", "ai", []],
      ["/List", "[]", "au", []],
    ];
    for (const [path, literal, signature, value] of cases) {
      const count = vebus.writes.length;
      await gx.write("vebus", 257, path, `{"value": ${literal}}`);
      await gx.client.waitFor(`the write of ${literal}`, () => vebus.writes.length > count);
      const written = vebus.writes.at(-1)!;
      strictEqual(written.path, path);
      strictEqual(written.value.signature, signature, literal);
      deepStrictEqual(written.value.value, value);
    }
    await gx.write("vebus", 257, "/List", '{"value": [1, 2.5, "x"]}');
    await gx.client.waitFor("the array write", () => vebus.writes.at(-1)!.value.signature === "av");
    deepStrictEqual(
      (vebus.writes.at(-1)!.value.value as { signature: string }[]).map((v) => v.signature),
      ["i", "d", "s"],
    );
    await gx.write("vebus", 257, "/Hub4/L1/AcPowerSetpoint", '{"value": -100}');
    await gx.client.waitFor(
      "the change as a notification",
      () => gx.client.value(setpoint) === -100,
    );
  });
});

Deno.test("a refused write is logged with the reason and changes nothing", async () => {
  await withGx({
    services: [{ name: HUB4, items: { "/DeviceInstance": 257, "/Mode": 3 }, readOnly: ["/Mode"] }],
  }, async (gx) => {
    const mode = gx.topic("vebus", 257, "/Mode");
    await gx.wake(mode);
    await gx.write("vebus", 257, "/Mode", '{"value": 4}');
    await gx.bridge.waitForLine(/\[write\].*\/Mode.*refused.*returned 1/);
    strictEqual(gx.sim.get(HUB4).items.get("/Mode")!.value, 3);
    strictEqual(gx.client.value(mode), 3);
  });
});

Deno.test("a retained write is not executed when the broker replays it", async () => {
  await withGx({
    services: [{ name: HUB4, items: { "/DeviceInstance": 257, "/Mode": 3 } }],
  }, async (gx) => {
    await gx.wake(gx.topic("vebus", 257, "/Mode"));
    await gx.bridge.stop();
    // Left retained on the broker while the bridge is away: replayed when it subscribes.
    await gx.client.publish(`W/e0ff50a097c0/vebus/257/Mode`, '{"value": 1}', true);
    gx.bridge = new BridgeProcess(gx.bridgeArgs);
    await gx.bridge.waitForLine(/\[request\].*retained/);
    await gx.assertServing("vebus", 257, "/Mode");
    const vebus = gx.sim.get(HUB4);
    strictEqual(vebus.writes.length, 0);
    strictEqual(vebus.items.get("/Mode")!.value, 3);
    await gx.client.publish(`W/e0ff50a097c0/vebus/257/Mode`, "", true);
  });
});
