import { startDbusDaemon } from "./support/dbus_daemon.ts";
import { startBroker } from "./support/broker.ts";
import { TestClient } from "./support/mqtt_client.ts";
import { BridgeProcess } from "./support/bridge.ts";
import { GxSim } from "../scripts/gx_sim.ts";

Deno.test("smoke", async () => {
  const bus = await startDbusDaemon();
  const broker = await startBroker();
  const sim = await GxSim.start(bus.address, [
    {
      name: "com.victronenergy.pvinverter.pv0",
      items: { "/DeviceInstance": 20, "/Ac/Power": 936, "/Ac/L2/Power": null },
    },
  ]);
  const bridge = new BridgeProcess([
    "--dbus",
    bus.address,
    "--mqtt",
    broker.url,
    "--portal-id",
    "e0ff50a097c0",
  ]);
  await bridge.waitForLine(/\[start\]/);
  const c = await TestClient.connect(broker.url, ["N/#"]);
  await c.publish("R/e0ff50a097c0/pvinverter/20/Ac/Power");
  await c.waitFor("power", () => c.topics.has("N/e0ff50a097c0/pvinverter/20/Ac/Power"));
  console.log([...c.topics]);
  sim.get("com.victronenergy.pvinverter.pv0").set("/Ac/Power", 12.5);
  await c.waitFor("change", () => c.value("N/e0ff50a097c0/pvinverter/20/Ac/Power") === 12.5);
  console.log(bridge.lines);
  await c.close();
  await bridge.stop();
  sim.stop();
  await broker.stop();
  await bus.stop();
});
