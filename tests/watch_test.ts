/** Integration: `dbus-mqtt watch` against a running bridge, as a user runs it. */
import { deepStrictEqual, strictEqual } from "node:assert";
import dbus from "dbus-next";
import { BridgeProcess } from "./support/bridge.ts";
import { startBroker } from "./support/broker.ts";
import { startDbusDaemon } from "./support/dbus_daemon.ts";
import { GxSim } from "./support/victron_services.ts";
import { TestClient } from "./support/mqtt_client.ts";
import { PORTAL_ID, PV, pvInverter, withGx } from "./support/gx.ts";

const { Variant } = dbus;
const BATTERY = "com.victronenergy.battery.ttyO0";
const battery = {
  name: BATTERY,
  items: { "/DeviceInstance": 256, "/Soc": 58.5, "/Dc/0/Voltage": new Variant("d", 52) },
};

Deno.test("watch finds the GX, keeps it alive and prints a line per change", async () => {
  await withGx({ services: [pvInverter(100), battery], args: ["-k", "2"] }, async (gx) => {
    const watch = new BridgeProcess(["watch", "--mqtt", gx.broker.url, "-k", "1"]);
    try {
      await watch.waitForLine(new RegExp(`found GX ${PORTAL_ID}`));
      await watch.waitForLine(/^pvinverter\/20\/Ac\/Power 100$/);
      await watch.waitForLine(/^battery\/256\/Dc\/0\/Voltage 52\.0$/);
      // Serial, and two values plus /DeviceInstance of each service.
      await watch.waitForLine(/^watch: 6 values: the complete picture/);
      // Its keep-alives hold the bridge alive past its 2 s interval.
      for (const power of [200, 300, 400]) {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        gx.sim.get(PV).set("/Ac/Power", power);
        await watch.waitForLine(new RegExp(`^pvinverter/20/Ac/Power ${power}$`));
      }
      // Another client's keep-alive republishes everything: no change, no line.
      const completed = `N/${PORTAL_ID}/full_publish_completed`;
      const before = gx.client.log.filter((m) => m.topic === completed).length;
      await gx.client.publish(`R/${PORTAL_ID}/keepalive`);
      await gx.client.waitFor(
        "the republish",
        () => gx.client.log.filter((m) => m.topic === completed).length > before,
      );
      await new Promise((resolve) => setTimeout(resolve, 500));
      strictEqual(watch.stdout.filter((l) => l.startsWith("battery/256/Soc ")).length, 1);
    } finally {
      strictEqual((await watch.stop()).code, 0);
    }
  });
});

Deno.test("watch --filter and --json: only matching topics, one JSON record each", async () => {
  await withGx({ services: [pvInverter(100), battery] }, async (gx) => {
    const watch = new BridgeProcess([
      "watch",
      "--mqtt",
      gx.broker.url,
      "--portal-id",
      PORTAL_ID,
      "--filter",
      "battery/+/Soc",
      "--json",
    ]);
    try {
      await watch.waitForLine(/"topic"/);
      gx.sim.get(BATTERY).set("/Soc", new Variant("d", 60));
      await watch.waitForLine(/"value": 60\.0/);
      const records = watch.lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
      deepStrictEqual(records, [
        { topic: `N/${PORTAL_ID}/battery/256/Soc`, value: 58.5 },
        { topic: `N/${PORTAL_ID}/battery/256/Soc`, value: 60 },
      ]);
    } finally {
      await watch.stop();
    }
  });
});

Deno.test("watch --portal-id started before the bridge: its keep-alive waits for the Serial", async () => {
  const bus = await startDbusDaemon();
  const broker = await startBroker();
  const sim = await GxSim.start(bus.address, [pvInverter(100), battery]);
  const watch = new BridgeProcess(["watch", "--mqtt", broker.url, "--portal-id", PORTAL_ID]);
  let bridge: BridgeProcess | undefined;
  try {
    // Connected to the broker (earlier versions sent their keep-alive then, into the void).
    await watch.waitForLine(new RegExp(`waiting for ${PORTAL_ID}'s retained|keep-alive sent`));
    bridge = new BridgeProcess(
      ["--dbus", bus.address, "--mqtt", broker.url, "--portal-id", PORTAL_ID],
    );
    await watch.waitForLine(/^watch: 6 values: the complete picture/);
  } finally {
    await watch.stop();
    await bridge?.stop();
    sim.stop();
    await broker.stop();
    await bus.stop();
  }
});

Deno.test("watch gets the whole picture from a bridge that comes back after its keep-alive", async () => {
  await withGx({ services: [pvInverter(100), battery] }, async (gx) => {
    await gx.bridge.stop(); // the broker keeps its retained Serial
    const watch = new BridgeProcess(["watch", "--mqtt", gx.broker.url]);
    try {
      await watch.waitForLine(/keep-alive sent/); // to no bridge
      gx.bridge = new BridgeProcess(gx.bridgeArgs);
      await watch.waitForLine(/^watch: 6 values: the complete picture/);
    } finally {
      await watch.stop();
    }
  });
});

Deno.test("watch explains a Serial that no bridge answers for", async () => {
  const broker = await startBroker();
  const client = await TestClient.connect(broker.url);
  const watch = new BridgeProcess(["watch", "--mqtt", broker.url]);
  try {
    await client.client.publishAsync(
      `N/${PORTAL_ID}/system/0/Serial`,
      `{"value": "${PORTAL_ID}"}`,
      {
        retain: true,
      },
    );
    await watch.waitForLine(
      new RegExp(`no values after the keep-alive. Is the bridge for ${PORTAL_ID}`),
    );
  } finally {
    await watch.stop();
    await client.close();
    await broker.stop();
  }
});

Deno.test("watch explains an empty broker instead of staying silent", async () => {
  const broker = await startBroker();
  const watch = new BridgeProcess(["watch", "--mqtt", broker.url]);
  try {
    await watch.waitForLine(/no GX on this broker yet: nothing publishes N\/\+\/system\/0\/Serial/);
  } finally {
    await watch.stop();
    await broker.stop();
  }
});

Deno.test("watch says once that the broker is away, not at every try", async () => {
  const away = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (away.addr as Deno.NetAddr).port;
  away.close(); // a port nothing listens on
  const watch = new BridgeProcess(["watch", "--mqtt", `mqtt://127.0.0.1:${port}`]);
  try {
    await watch.waitForLine(/watch: broker: .*ECONNREFUSED/);
    await new Promise((resolve) => setTimeout(resolve, 3500)); // three more tries
    strictEqual(watch.lines.filter((l) => l.startsWith("watch: broker")).length, 1);
    strictEqual(watch.lines.some((l) => l.includes("connection lost")), false);
  } finally {
    await watch.stop();
  }
});

Deno.test("watch passes over a Serial topic whose id is no portal id", async () => {
  const broker = await startBroker();
  const client = await TestClient.connect(broker.url);
  const watch = new BridgeProcess(["watch", "--mqtt", broker.url]);
  try {
    await client.client.publishAsync("N/not a portal id/system/0/Serial", '{"value": 1}', {
      retain: true,
    });
    await watch.waitForLine(/connected; waiting for a GX/);
    await client.client.publishAsync(`N/${PORTAL_ID}/system/0/Serial`, '{"value": 2}', {
      retain: true,
    });
    await watch.waitForLine(new RegExp(`found GX ${PORTAL_ID}`));
    strictEqual(watch.lines.filter((l) => l.includes("found GX")).length, 1);
  } finally {
    await watch.stop();
    await client.close();
    await broker.stop();
  }
});
