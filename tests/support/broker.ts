/**
 * A real MQTT broker for one test on a free loopback port: Mosquitto when it
 * is installed (CI installs it), else an embedded aedes broker.
 */
import { connect, createServer, type Server } from "node:net";
import { WebSocketServer } from "ws";

export interface Broker {
  kind: "mosquitto" | "aedes";
  /** Freezes the broker (it stops reading) until `resume`; Mosquitto only. */
  pause?(): void;
  resume?(): void;
  url: string;
  port: number;
  /** `ws://` URL of the same broker, when started with websockets. */
  wsUrl?: string;
  /** `mqtts://` URL of the same broker, when started with a certificate. */
  tlsUrl?: string;
  stop(): Promise<void>;
}

export interface BrokerOptions {
  /** Listen on this port (to restart a broker where it was). */
  port?: number;
  /** Also listen for MQTT over WebSockets. */
  websockets?: boolean;
  /** Also listen for MQTT over TLS with this certificate and key (PEM files). */
  tls?: { certFile: string; keyFile: string };
  /** The only logins the broker lets in (user -> password); none: anyone may connect. */
  users?: Record<string, string>;
  /** This broker rather than the one brokerKind() picks. */
  kind?: Broker["kind"];
  /** Mosquitto's max_packet_size: the largest packet it takes, and tells MQTT 5 clients. */
  maxPacketBytes?: number;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

let announced = false;

/**
 * Starts a broker. DBUS_MQTT_TEST_BROKER=aedes picks the embedded one even
 * where Mosquitto is.
 */
export async function startBroker(options: BrokerOptions = {}): Promise<Broker> {
  const port = options.port ?? await freePort();
  const wsPort = options.websockets ? await freePort() : undefined;
  const tls = options.tls && { ...options.tls, port: await freePort() };
  const broker = (options.kind ?? brokerKind()) === "mosquitto"
    ? await startMosquitto(port, wsPort, tls, options.users, options.maxPacketBytes)
    : await startAedes(port, wsPort, tls, options.users);
  if (tls) broker.tlsUrl = `mqtts://127.0.0.1:${tls.port}`;
  if (!announced) {
    console.log(`MQTT broker: ${broker.kind}`);
    announced = true;
  }
  return broker;
}

/** The broker the tests start here: Mosquitto when installed and not told otherwise. */
export function brokerKind(): Broker["kind"] {
  return mosquittoPath() && Deno.env.get("DBUS_MQTT_TEST_BROKER") !== "aedes"
    ? "mosquitto"
    : "aedes";
}

function mosquittoPath(): string | undefined {
  for (const path of ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"]) {
    try {
      Deno.statSync(path);
      return path;
    } catch { /* not here */ }
  }
  return undefined;
}

type TlsListener = { certFile: string; keyFile: string; port: number };

async function startMosquitto(
  port: number,
  wsPort?: number,
  tls?: TlsListener,
  users?: Record<string, string>,
  maxPacketBytes?: number,
): Promise<Broker> {
  const dir = await Deno.makeTempDir({ prefix: "dbus-mqtt-broker-" });
  let logins = "allow_anonymous true\n";
  if (users) {
    const file = `${dir}/passwords`;
    await Deno.writeTextFile(file, "");
    for (const [user, password] of Object.entries(users)) {
      const made = await new Deno.Command("mosquitto_passwd", {
        args: ["-b", file, user, password],
      }).output();
      if (!made.success) throw new Error(`mosquitto_passwd failed for ${user}`);
    }
    // Mosquitto started as root reads the password file as user mosquitto.
    await Deno.chmod(dir, 0o755);
    logins = `allow_anonymous false\npassword_file ${file}\n`;
  }
  await Deno.writeTextFile(
    `${dir}/mosquitto.conf`,
    `listener ${port} 127.0.0.1\n${logins}persistence false\n` +
      // No dropping of messages to a busy subscriber: tests and the bench count them all.
      "max_queued_messages 0\n" +
      (maxPacketBytes ? `max_packet_size ${maxPacketBytes}\n` : "") +
      // Mosquitto 2.0's websockets listener cannot bind to one address.
      (wsPort ? `listener ${wsPort}\nprotocol websockets\n` : "") +
      (tls
        ? `listener ${tls.port} 127.0.0.1\ncertfile ${tls.certFile}\nkeyfile ${tls.keyFile}\n`
        : ""),
  );
  const process = new Deno.Command(mosquittoPath()!, {
    args: ["-c", `${dir}/mosquitto.conf`],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await waitForPort(port);
  if (wsPort) await waitForPort(wsPort);
  if (tls) await waitForPort(tls.port);
  return {
    kind: "mosquitto",
    url: `mqtt://127.0.0.1:${port}`,
    port,
    wsUrl: wsPort ? `ws://127.0.0.1:${wsPort}` : undefined,
    pause: () => process.kill("SIGSTOP"),
    resume: () => process.kill("SIGCONT"),
    async stop() {
      try {
        process.kill("SIGCONT");
        process.kill("SIGTERM");
      } catch { /* already gone */ }
      await process.status;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

async function startAedes(
  port: number,
  wsPort?: number,
  tls?: TlsListener,
  users?: Record<string, string>,
): Promise<Broker> {
  // aedes 1.x drops retained messages on their way to live subscribers; 0.51 delivers them.
  const { default: aedesModule } = await import("aedes");
  // The module is the factory itself (CommonJS); its typings describe a class.
  const aedes = (aedesModule as unknown as typeof import("aedes").createBroker)();
  if (users) {
    aedes.authenticate = (_client, user, password, done) =>
      done(null, user !== undefined && Object.hasOwn(users, user) && users[user] === `${password}`);
  }
  const server: Server = createServer(aedes.handle);
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  let tlsServer: Server | undefined;
  if (tls) {
    const { createServer: createTlsServer } = await import("node:tls");
    tlsServer = createTlsServer(
      { cert: Deno.readTextFileSync(tls.certFile), key: Deno.readTextFileSync(tls.keyFile) },
      aedes.handle,
    );
    await new Promise<void>((resolve) => tlsServer!.listen(tls.port, "127.0.0.1", resolve));
  }
  let wsServer: WebSocketServer | undefined;
  if (wsPort) {
    // MQTT over WebSockets in front of the TCP listener: binary frames both ways.
    wsServer = new WebSocketServer({ host: "127.0.0.1", port: wsPort });
    wsServer.on("connection", (socket) => {
      const tcp = connect(port, "127.0.0.1");
      socket.on("message", (data) => tcp.write(data as Uint8Array));
      tcp.on("data", (data) => socket.send(data));
      socket.on("close", () => tcp.destroy());
      tcp.on("close", () => socket.close());
    });
    await new Promise((resolve) => wsServer!.once("listening", resolve));
  }
  return {
    kind: "aedes",
    url: `mqtt://127.0.0.1:${port}`,
    port,
    wsUrl: wsPort ? `ws://127.0.0.1:${wsPort}` : undefined,
    async stop() {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await new Promise((resolve) => server.close(resolve));
      if (wsServer) await new Promise((resolve) => wsServer!.close(resolve));
      if (tlsServer) await new Promise((resolve) => tlsServer!.close(resolve));
    },
  };
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      const connection = await Deno.connect({ hostname: "127.0.0.1", port });
      connection.close();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error(`broker did not listen on ${port}`);
}
