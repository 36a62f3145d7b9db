/**
 * A simulated GX with the bridge running on it, for the demo and the soak:
 * a private dbus-daemon, a broker, the services, and the bridge as users
 * start it, with its startup line already printed.
 */
import { GxSim, type ServiceSpec } from "../tests/support/victron_services.ts";
import { BridgeProcess } from "../tests/support/bridge.ts";
import { type Broker, startBroker } from "../tests/support/broker.ts";
import { type DbusDaemon, startDbusDaemon } from "../tests/support/dbus_daemon.ts";

export interface SimulatedGx {
  bus: DbusDaemon;
  broker: Broker;
  sim: GxSim;
  bridge: BridgeProcess;
  /** The bridge's startup summary line. */
  startLine: string;
  stop(): Promise<void>;
}

export async function startSimulatedGx(
  services: ServiceSpec[],
  portalId: string,
): Promise<SimulatedGx> {
  const bus = await startDbusDaemon();
  const broker = await startBroker();
  const sim = await GxSim.start(bus.address, services);
  const bridge = new BridgeProcess([
    "--dbus",
    bus.address,
    "--mqtt",
    broker.url,
    "--portal-id",
    portalId,
  ]);
  const startLine = await bridge.waitForLine(/\[start\]/);
  return {
    bus,
    broker,
    sim,
    bridge,
    startLine,
    async stop() {
      await bridge.stop();
      sim.stop();
      await broker.stop();
      await bus.stop();
    },
  };
}
