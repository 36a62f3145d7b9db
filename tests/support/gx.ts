/**
 * One test's whole world: a private dbus-daemon, a broker, a simulated GX,
 * the bridge as its own process, and an MQTT client subscribed to N/<id>/#.
 */
import { BridgeProcess } from "./bridge.ts";
import { type Broker, type BrokerOptions, startBroker } from "./broker.ts";
import { type DbusDaemon, startDbusDaemon } from "./dbus_daemon.ts";
import { TestClient } from "./mqtt_client.ts";
import { GxSim, type ServiceSpec } from "./victron_services.ts";

export const PORTAL_ID = "e0ff50a097c0";
/** The login of a Gx's own client and bridge on a broker that checks logins. */
const GX_LOGIN = ["gx", "gx-pass"];

/** The PV inverter most tests use: pvinverter/20 with /Ac/Power. */
export const PV = "com.victronenergy.pvinverter.pv0";
export function pvInverter(power = 936): ServiceSpec {
  return { name: PV, items: { "/DeviceInstance": 20, "/Ac/Power": power } };
}

export interface GxOptions {
  services: ServiceSpec[];
  /** Extra bridge arguments, e.g. ["-k", "1"]. */
  args?: string[];
  /** Called after the sim is up and before the bridge starts. */
  beforeBridge?: (sim: GxSim) => void | Promise<void>;
  /** Use the bus's TCP address instead of its unix socket. */
  tcp?: boolean;
  /** Use the bus's addresses as dbus-daemon prints them, as a user pastes them. */
  printedAddress?: boolean;
  /** Wait for the startup line, i.e. the end of the first scan (default true). */
  waitForScan?: boolean;
  /** The bridge reaches the broker over WebSockets. */
  websockets?: boolean;
  /** How to run the bridge (default: the `start` task), e.g. ["node", "dist/dbus-mqtt.js"]. */
  command?: string[];
  /** The broker also listens for TLS with this certificate; the bridge uses it. */
  tls?: { certFile: string; keyFile: string };
  /**
   * The only logins the broker lets in (user -> password); the test's client
   * and the bridge started here log in with one of their own.
   */
  users?: Record<string, string>;
  /** Which broker, and how it is set up, when not the default. */
  broker?: Pick<BrokerOptions, "kind" | "maxPacketBytes">;
}

export class Gx {
  private constructor(
    readonly bus: DbusDaemon,
    public broker: Broker,
    readonly sim: GxSim,
    public bridge: BridgeProcess,
    readonly client: TestClient,
    readonly bridgeArgs: string[],
  ) {}

  static async start(options: GxOptions): Promise<Gx> {
    const bus = await startDbusDaemon();
    const broker = await startBroker({
      ...options.broker,
      websockets: options.websockets,
      tls: options.tls,
      users: options.users && { ...options.users, [GX_LOGIN[0]]: GX_LOGIN[1] },
    });
    const url = options.users ? broker.url.replace("//", `//${GX_LOGIN.join(":")}@`) : broker.url;
    const sim = await GxSim.start(bus.address, options.services);
    await options.beforeBridge?.(sim);
    const client = await TestClient.connect(url, [`N/${PORTAL_ID}/#`]);
    const args = [
      "--dbus",
      options.printedAddress ? bus.printed : options.tcp ? bus.tcpAddress : bus.address,
      "--mqtt",
      (options.websockets ? broker.wsUrl : options.tls ? broker.tlsUrl : url)!,
      "--portal-id",
      PORTAL_ID,
      ...(options.args ?? []),
    ];
    const bridge = new BridgeProcess(args, options.command);
    const gx = new Gx(bus, broker, sim, bridge, client, args);
    if (options.waitForScan ?? true) await bridge.waitForLine(/\[start\]/);
    await client.waitFor("the Serial", () => client.topics.has(gx.topic("system", 0, "/Serial")));
    return gx;
  }

  topic(type: string, instance: number, path: string): string {
    return `N/${PORTAL_ID}/${type}/${instance}${path}`;
  }

  /**
   * Sends keep-alives until `topic` holds a value: once a second, as one sent
   * before the bridge has subscribed is lost (for any client).
   */
  async wake(topic: string, timeoutMs = 5000): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      await this.client.publish(`R/${PORTAL_ID}/keepalive`);
      const wait = Math.min(1000, end - Date.now());
      try {
        return await this.client.waitFor(topic, () => this.client.topics.has(topic), wait);
      } catch (error) {
        if (Date.now() >= end) throw error;
      }
    }
  }

  async read(type: string, instance: number, path: string): Promise<void> {
    await this.client.publish(`R/${PORTAL_ID}/${type}/${instance}${path}`);
  }

  async write(type: string, instance: number, path: string, payload: string | Uint8Array) {
    await this.client.publish(`W/${PORTAL_ID}/${type}/${instance}${path}`, payload);
  }

  /** Proves the bridge still serves: a read round trip through D-Bus. */
  async assertServing(type: string, instance: number, path: string): Promise<void> {
    const topic = this.topic(type, instance, path);
    const before = this.client.log.length;
    await this.read(type, instance, path);
    await this.client.waitFor(
      `an answer on ${topic}`,
      () => this.client.log.slice(before).some((m) => m.topic === topic && m.payload !== ""),
    );
  }

  async stop(): Promise<void> {
    await this.client.close();
    await this.bridge.stop();
    this.sim.stop();
    await this.broker.stop();
    await this.bus.stop();
  }
}

/** Runs `body` in a fresh Gx and always tears it down. */
export async function withGx(options: GxOptions, body: (gx: Gx) => Promise<void>): Promise<void> {
  const gx = await Gx.start(options);
  try {
    await body(gx);
  } finally {
    await gx.stop();
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
