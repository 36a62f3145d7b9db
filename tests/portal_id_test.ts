/**
 * Without --portal-id the bridge takes the portal id from the network
 * interface's MAC address, as a GX does, under the `start` task's
 * permissions (which do not let Deno read /sys/devices).
 */
import { existsSync, readFileSync } from "node:fs";
import { strictEqual } from "node:assert";
import { networkInterfaces } from "node:os";
import { discoverPortalId } from "../lib/portal_id.ts";
import { BridgeProcess } from "./support/bridge.ts";
import { startBroker } from "./support/broker.ts";
import { startDbusDaemon } from "./support/dbus_daemon.ts";
import { pvInverter } from "./support/gx.ts";
import { TestClient } from "./support/mqtt_client.ts";
import { GxSim } from "./support/victron_services.ts";

/** An interface with an address and a MAC, and that MAC as sysfs gives it. */
function addressedInterface(): { name: string; mac: string } | undefined {
  for (const [name, addresses] of Object.entries(networkInterfaces())) {
    if (!addresses?.some((address) => !address.internal)) continue;
    try {
      const mac = readFileSync(`/sys/class/net/${name}/address`, "utf8").trim();
      if (/^[0-9a-f:]{17}$/.test(mac) && mac !== "00:00:00:00:00:00") return { name, mac };
    } catch { /* not a sysfs interface */ }
  }
}

const iface = addressedInterface();
/** On a GX, /sbin/get-unique-id names it first. */
const onGx = existsSync("/sbin/get-unique-id");

Deno.test({
  name: "no --portal-id: the MAC of $VRM_IFACE names the topics",
  ignore: iface === undefined || onGx,
  async fn() {
    const portalId = iface!.mac.replaceAll(":", "");
    const bus = await startDbusDaemon();
    const broker = await startBroker();
    const sim = await GxSim.start(bus.address, [pvInverter()]);
    const client = await TestClient.connect(broker.url, [`N/${portalId}/#`]);
    const bridge = new BridgeProcess(["--dbus", bus.address, "--mqtt", broker.url], undefined, {
      VRM_IFACE: iface!.name,
    });
    try {
      const topic = `N/${portalId}/pvinverter/20/Ac/Power`;
      await client.waitFor("the Serial", () => client.topics.has(`N/${portalId}/system/0/Serial`));
      await client.publish(`R/${portalId}/keepalive`);
      await client.waitFor(topic, () => client.value(topic) === 936);
    } finally {
      await client.close();
      await bridge.stop();
      sim.stop();
      await broker.stop();
      await bus.stop();
    }
  },
});

Deno.test({
  name: "no --portal-id and no MAC (loopback, a path, no such interface): exit 2, not a crash",
  ignore: onGx,
  async fn() {
    const bus = await startDbusDaemon();
    const broker = await startBroker();
    try {
      for (const name of ["lo", "../../../sys/class/net/lo", "nosuch0"]) {
        const bridge = new BridgeProcess(["--dbus", bus.address, "--mqtt", broker.url], undefined, {
          VRM_IFACE: name,
        });
        const status = await bridge.status;
        await bridge.stop();
        strictEqual(status.code, 2, `VRM_IFACE=${name}: ${bridge.lines.join("\n")}`);
      }
    } finally {
      await broker.stop();
      await bus.stop();
    }
  },
});

Deno.test({
  name: "a $VRM_IFACE that is a path names no interface, though the path leads to one",
  ignore: iface === undefined || onGx,
  fn() {
    strictEqual(discoverPortalId({ VRM_IFACE: iface!.name }), iface!.mac.replaceAll(":", ""));
    strictEqual(
      discoverPortalId({ VRM_IFACE: `../../../sys/class/net/${iface!.name}` }),
      undefined,
    );
  },
});
