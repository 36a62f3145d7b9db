/**
 * The broker connection: connects (MQTT 5, or 3.1.1 with a broker that does
 * not speak 5) and reconnects by itself, hands incoming requests to the
 * bridge, and publishes with coalescing: a topic queued several times before
 * the next flush goes out once, with its latest payload. When busy it flushes
 * at most every quarter budget (see FLUSH_MS), all messages in one write.
 * Nothing is queued while the broker is away; the bridge republishes what
 * the keep-alive calls for when it is back. While the broker is slower than
 * the bus, messages wait here (coalesced) until the socket has drained.
 */
import net from "node:net";
import type { Duplex } from "node:stream";
import { createRequire } from "node:module";
import mqtt from "mqtt";
import {
  encodePublishes,
  MQTT_3_1_1,
  type PacketRules,
  packetSizeProblem,
  type Publish,
} from "./mqtt_packets.ts";
import { shown } from "./log.ts";
import type { BrokerOptions } from "./options.ts";

/**
 * How often a busy bridge writes to the broker: at most once per quarter
 * latency budget (--max-delay), and never more often than FLUSH_MS. A write
 * costs more than a read of the bus: over loopback the kernel delivers it to
 * the broker within the write call (a profile at 2,000 changes/s: a quarter
 * of the bridge's time). So the write waits for the first read of the bus
 * that comes a quarter budget after the last write, in that read's wake-up;
 * a value held so waits a quarter budget at most (a timer then sends it, and
 * that write does not count), on top of the bus side's rest. After a quiet spell a value goes out at once.
 * (A timer of a whole budget won the race with the next read, due at the same
 * time, and locked the writes onto itself: at 50 changes/s every value waited
 * ~95 ms more.)
 */
const FLUSH_MS = 5;
/**
 * Events (never coalesced) that may wait for a broker that is behind; the
 * oldest go beyond that, so that a keep-alive flood into a stalled broker
 * cannot take the bridge's memory. A full republish sends up to 10,000 echoes.
 */
const MAX_WAITING_EVENTS = 20_000;
/** Reconnect attempts start this often and back off to the maximum. */
const RECONNECT_MS = 1000;
const MAX_RECONNECT_MS = 8000;
/**
 * MQTT 5: the largest packet the broker may send us. A valid request is far
 * smaller (a 64 KiB payload at most, see main.ts); the broker drops larger
 * ones instead of making the bridge read them whole.
 */
export const MAX_INCOMING_PACKET_BYTES = 256 * 1024;
/**
 * What a broker that does not speak MQTT 5 answers a v5 CONNECT with: 3.1.1's
 * "unacceptable protocol version" (Mosquitto 1.5, aedes), or 5's own code.
 */
const UNSUPPORTED_PROTOCOL = new Set([1, 132]);

/** How every client of ours connects: clean session, reconnecting by itself. */
export function connectOptions(
  options: BrokerOptions,
  clientId: string,
  protocolVersion: 4 | 5 = 4,
): mqtt.IClientOptions {
  return {
    clientId,
    username: options.mqttUser,
    password: options.mqttPassword,
    ca: options.mqttCa,
    rejectUnauthorized: !options.insecure,
    ...protocol(protocolVersion),
    clean: true,
    reconnectPeriod: RECONNECT_MS,
    // A refused CONNECT (a login the broker does not know yet, MQTT 5 unknown
    // to it) is tried again like a lost connection.
    reconnectOnConnackError: true,
    connectTimeout: 10_000,
  };
}

/** MQTT 5, telling the broker the largest packet we take; or 3.1.1. */
function protocol(version: 4 | 5): Pick<mqtt.IClientOptions, "protocolVersion" | "properties"> {
  return version === 5
    ? { protocolVersion: 5, properties: { maximumPacketSize: MAX_INCOMING_PACKET_BYTES } }
    : { protocolVersion: 4, properties: undefined };
}

/** An R or W request as it came from the broker. */
export interface IncomingRequest {
  topic: string;
  payload: Uint8Array;
  /**
   * The retain flag: under MQTT 5 (Retain As Published) as the client set it;
   * under 3.1.1 only on a replay of a retained message.
   */
  retained: boolean;
  /** MQTT 5: where the client wants its answer, and what the answer carries back. */
  responseTopic?: string;
  correlationData?: Uint8Array;
}

export interface LinkHandlers {
  /** (Re)connected and subscribed: time to publish what the broker should hold. */
  connected(): void;
  request(request: IncomingRequest): void;
  /** Connection trouble, for the log. */
  problem(message: string): void;
  /** Said once: the broker speaks only 3.1.1. */
  fellBack(): void;
}

export class MqttLink {
  readonly #client: mqtt.MqttClient;
  /** Coalesced messages by topic; others by a number of their own, in order. */
  readonly #queue = new Map<string | number, Publish>();
  #uncoalesced = 0;
  /** The number of the oldest event that may still wait. */
  #oldestEvent = 1;
  #droppedEvents = 0;
  /** A flush comes: in a microtask, or when the socket has drained. */
  #flushQueued = false;
  /** The flush of held values for when no read of the bus comes (see FLUSH_MS). */
  #backstop: ReturnType<typeof setTimeout> | undefined;
  #lastFlush = -Infinity;
  #wasConnected = false;
  /** The broker refused MQTT 5 once already (said once). */
  #fellBack = false;
  /** What the current connection speaks; 3.1.1 until a CONNACK says otherwise. */
  #rules: PacketRules = MQTT_3_1_1;

  constructor(
    options: BrokerOptions,
    clientId: string,
    private readonly subscriptions: string[],
    private readonly handlers: LinkHandlers,
    /** The latency budget (--max-delay), in ms. */
    private readonly maxDelayMs = 0,
  ) {
    const clientOptions: mqtt.IClientOptions = {
      ...connectOptions(options, clientId, 5),
      resubscribe: false,
      queueQoSZero: false,
      // mqtt-packet's cache of 65,536 two-byte Buffers costs 5-13 MB RSS
      // (measured), for the few packets mqtt.js still writes: PUBLISHes are ours.
      writeCache: false,
    };
    const url = new URL(options.mqttUrl);
    this.#client = url.protocol === "mqtt:" || url.protocol === "mqtts:"
      ? new mqtt.MqttClient(socketTo(url, clientOptions), clientOptions)
      : mqtt.connect(options.mqttUrl, clientOptions);
    this.#client.on("connect", (connack) => this.#onConnect(connack));
    // Back off while the broker stays away: 1, 2, 4, then every 8 s.
    this.#client.on("reconnect", () => {
      const options = this.#client.options;
      options.reconnectPeriod = Math.min(MAX_RECONNECT_MS, 2 * options.reconnectPeriod!);
    });
    this.#client.on("message", (topic, payload, packet) => {
      // A property sent twice comes as an array: such a request asked for nothing valid.
      const { responseTopic, correlationData } = packet.properties ?? {};
      handlers.request({
        topic,
        payload,
        retained: packet.retain,
        responseTopic: typeof responseTopic === "string" ? responseTopic : undefined,
        correlationData: correlationData instanceof Uint8Array ? correlationData : undefined,
      });
    });
    this.#client.on("error", (error) => {
      const code = (error as { code?: unknown }).code;
      if (this.#client.options.protocolVersion === 5 && UNSUPPORTED_PROTOCOL.has(code as number)) {
        return this.#fallBack();
      }
      // Before a connection, mqtt.js's error is Node's alone (connect ECONNREFUSED ...).
      const retry = this.#client.connected
        ? ""
        : `; trying again in ${this.#client.options.reconnectPeriod! / 1000} s`;
      handlers.problem(error.message + retry);
    });
    this.#client.on("offline", () => {
      if (this.#wasConnected) {
        handlers.problem("broker connection lost; reconnecting");
        // The broker may be another one when it is back: MQTT 5 is tried first every time,
        // so that one refusal cannot take answers and the retained-W check away for good.
        this.#speak(5);
      }
      this.#wasConnected = false;
    });
  }

  get connected(): boolean {
    return this.#client.connected;
  }

  /** The connection speaks MQTT 5: requests can be answered. */
  get v5(): boolean {
    return this.#rules.v5;
  }

  /**
   * Queues a value: a later value for the same topic replaces it while it
   * waits. An empty payload removes a retained topic.
   */
  publishValue(topic: string, payload: string, retain: boolean): void {
    if (this.#client.connected) this.#enqueue(topic, { topic, payload, retain });
  }

  /** Why the broker would refuse this (unretained) message for its size, if it would. */
  sizeProblem(topic: string, payload: string, correlationData?: Uint8Array): string | undefined {
    return packetSizeProblem({ topic, payload, retain: false, correlationData }, this.#rules);
  }

  /**
   * Queues an event (heartbeat, full_publish_completed, an answer with the
   * Correlation Data of its request): never retained, and each one sent, in
   * order with the values around it.
   */
  publishEvent(topic: string, payload: string, correlationData?: Uint8Array): void {
    if (!this.#client.connected) return;
    this.#enqueue(++this.#uncoalesced, { topic, payload, retain: false, correlationData });
    if (this.#uncoalesced - this.#oldestEvent >= MAX_WAITING_EVENTS) {
      this.#queue.delete(this.#oldestEvent++);
      this.#droppedEvents++;
    }
  }

  #enqueue(key: string | number, message: Publish): void {
    this.#queue.set(key, message);
    if (this.#flushQueued) return;
    const sinceFlush = performance.now() - this.#lastFlush;
    const hold = Math.max(FLUSH_MS, this.maxDelayMs / 4);
    if (sinceFlush >= hold) {
      // A microtask: after the current event's publishes, in the same wake-up.
      this.#flushQueued = true;
      queueMicrotask(() => this.#flush());
    } else if (!this.#backstop) {
      // Counted from now, not from the last write: a read due then should win.
      const wait = this.maxDelayMs > 0 ? hold : hold - sinceFlush;
      // Its write holds nothing back: with reads a little more than `hold`
      // apart it would come just before each, and each read's values would wait for the next.
      this.#backstop = setTimeout(() => {
        this.#backstop = undefined; // spent: no clearTimeout (see ReadPacer)
        this.#flush(this.maxDelayMs === 0);
      }, wait);
    }
  }

  async close(): Promise<void> {
    this.#flush();
    await this.#client.endAsync();
  }

  /** `paced`: later values wait a `hold` after this write (see #enqueue). */
  #flush(paced = true): void {
    this.#flushQueued = false;
    clearTimeout(this.#backstop);
    this.#backstop = undefined;
    if (!this.#client.connected) {
      this.#clear();
      return;
    }
    if (this.#queue.size === 0) return;
    const stream = this.#client.stream;
    if (stream.writableNeedDrain) {
      // The broker is behind: values keep coalescing here, one per topic, rather
      // than piling up in the socket's buffer. A new connection flushes anew.
      this.#flushQueued = true;
      stream.once("drain", () => stream === this.#client.stream && this.#flush());
      return;
    }
    if (paced) this.#lastFlush = performance.now();
    // Every packet of this flush leaves in one write.
    stream.write(encodePublishes([...this.#queue.values()], (message, why) => {
      this.handlers.problem(`not published: ${shown(message.topic)}: ${why}`);
    }, this.#rules));
    this.#clear();
    if (this.#droppedEvents > 0) {
      this.handlers.problem(
        `the broker fell behind: ${this.#droppedEvents} events (heartbeats, ` +
          `full_publish_completed) dropped, oldest first`,
      );
      this.#droppedEvents = 0;
    }
  }

  #clear(): void {
    this.#queue.clear();
    this.#oldestEvent = this.#uncoalesced + 1;
  }

  /** The broker refused MQTT 5: the next connect speaks 3.1.1, at once. */
  #fallBack(): void {
    this.#speak(4);
    this.#client.options.reconnectPeriod = RECONNECT_MS;
    if (!this.#fellBack) this.handlers.fellBack();
    this.#fellBack = true;
  }

  #speak(version: 4 | 5): void {
    Object.assign(this.#client.options, protocol(version));
  }

  #onConnect(connack: mqtt.IConnackPacket): void {
    this.#wasConnected = true;
    // What waited for the old socket is dropped: the bridge publishes anew now.
    this.#flushQueued = false;
    this.#clear();
    const v5 = this.#client.options.protocolVersion === 5;
    this.#rules = {
      v5,
      maxPacketBytes: (v5 && connack.properties?.maximumPacketSize) ||
        MQTT_3_1_1.maxPacketBytes,
    };
    this.#client.options.reconnectPeriod = RECONNECT_MS;
    // Retain As Published: a W sent with the retain flag keeps it when the
    // broker delivers it live, so it is refused every time, not only on replay.
    this.#client.subscribe(this.subscriptions, { qos: 0, rap: v5 }, (error) => {
      if (error) this.handlers.problem(`subscribe failed: ${error.message}`);
      // Only once the broker has the subscription: a client that sees our
      // Serial can then be sure that its requests reach us.
      if (this.#client.connected) this.handlers.connected();
    });
  }
}

/**
 * The transport of mqtt:// and mqtts://, for every (re)connect. mqtt.connect
 * would do the same, but also load its WebSocket and SOCKS transports on the
 * first connect: ~4 MB RSS (measured) that a bridge on a plain socket never uses.
 *
 * Without Nagle's algorithm: the bridge already gathers a flush into one write,
 * and Nagle would hold the next write until the broker's (delayed) ACK of the
 * last one; the bench measured p99 tails of 20-30 ms at 1k-10k changes/s that
 * TCP_NODELAY removes. (mqtt.js's WebSocket transport sets it by itself.)
 */
function socketTo(url: URL, options: mqtt.IClientOptions): (client: mqtt.MqttClient) => Duplex {
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  if (url.protocol === "mqtt:") {
    return () => net.connect(Number(url.port || 1883), host).setNoDelay(true);
  }
  // Loaded only for mqtts://: node:tls and the node:crypto it brings cost a bridge
  // on a plain socket ~1.7 MB RSS (the bundle under Node, measured). Required, as
  // process.getBuiltinModule needs Node 20.16 and the bundle runs on Node 18 too.
  const tls: typeof import("node:tls") = createRequire(import.meta.url)("node:tls");
  return (client) => {
    const socket = tls.connect({
      host,
      port: Number(url.port || 8883),
      servername: net.isIP(host) ? undefined : host,
      ca: options.ca,
      rejectUnauthorized: options.rejectUnauthorized,
    });
    socket.setNoDelay(true);
    // Until the handshake is through, an error ends this socket. mqtt.js reports
    // the socket's errors that carry a code; one without (if any) is reported here.
    const refused = (error: Error & { code?: string }) => {
      if (error.code === undefined) client.emit("error", error);
      socket.destroy();
    };
    socket.once("error", refused);
    socket.once("secureConnect", () => socket.off("error", refused));
    return socket;
  };
}
