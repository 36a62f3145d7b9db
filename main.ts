/**
 * dbus-mqtt: publishes the Victron D-Bus on MQTT and serves read, write and
 * keep-alive requests. The story: options -> D-Bus and broker -> scan -> react
 * to bus signals and MQTT requests until stopped. `dbus-mqtt watch` is the
 * other side: a terminal client that shows what a bridge publishes.
 *
 * This file is the program's entry point under Deno, under Node and as the
 * bundle: it always runs `main`.
 */
import process from "node:process";
import { KeepAlive, parseKeepAliveOptions, RepublishLimiter } from "./lib/keepalive.ts";
import { createLogger, type Logger } from "./lib/log.ts";
import { MqttLink } from "./lib/mqtt_link.ts";
import {
  type Options,
  OptionsError,
  parseOptions,
  parseWatchOptions,
  type WatchOptions,
} from "./lib/options.ts";
import { discoverPortalId } from "./lib/portal_id.ts";
import { BridgeState, type Item, type Service, toInstance } from "./lib/state.ts";
import {
  fullPublishCompletedTopic,
  heartbeatTopic,
  isKeepAliveRequest,
  itemName,
  type ItemRequest,
  matchesFilter,
  parseRequest,
  requestTopics,
  serialTopic,
} from "./lib/topics.ts";
import { payload, writePayloadToVariant } from "./lib/values.ts";
import { type ItemValues, VictronBus } from "./lib/victron_bus.ts";
import { watch } from "./lib/watch.ts";

/** Requests larger than this are not parsed. */
const MAX_PAYLOAD_BYTES = 64 * 1024;
const HEARTBEAT_MS = 3000;
/** Echo tokens waiting for a rate-limited republish; more are dropped. */
const MAX_PENDING_ECHOES = 100;
const utf8 = new TextDecoder("utf-8", { fatal: true });
/** Keep-alive payloads are optional hints: undecodable bytes just mean "plain". */
const lenientUtf8 = new TextDecoder();

async function main(args: string[]): Promise<number> {
  const write = (text: string) => process.stdout.write(text);
  let options: Options | WatchOptions | undefined;
  try {
    options = args[0] === "watch"
      ? parseWatchOptions(args.slice(1), process.env, write)
      : parseOptions(args, process.env, write);
  } catch (error) {
    if (!(error instanceof OptionsError)) throw error;
    console.error(`dbus-mqtt: ${error.message} (see --help)`);
    return 2;
  }
  if (!options) return 0;
  if (!("dbusAddress" in options)) return await watch(options);
  const log = createLogger(options.logLevel);
  const portalId = options.portalId ?? discoverPortalId(process.env);
  if (!portalId) {
    log.error("start", "no portal id: not a GX device and no eth0 MAC; pass --portal-id");
    return 2;
  }
  return await bridge(options, portalId, log);
}

async function bridge(options: Options, portalId: string, log: Logger): Promise<number> {
  const state = new BridgeState(portalId, options.masked);
  const keepAlive = new KeepAlive(options.keepAliveSeconds * 1000);
  const serial = serialTopic(portalId);
  let expiryTimer: ReturnType<typeof setTimeout> | undefined;
  let heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  const republishLimiter = new RepublishLimiter();
  /** A full republish is owed; the echoes to send after it ("" = none asked). */
  const pendingEchoes = new Set<string>();
  let republishTimer: ReturnType<typeof setTimeout> | undefined;
  let exit: (code: number) => void = () => {};
  const stopped = new Promise<number>((resolve) => exit = resolve);

  let bus: VictronBus;
  try {
    bus = await VictronBus.connect(options.dbusAddress, {
      itemChanged,
      ownerChanged,
      lost(error) {
        log.error("dbus", `lost the bus (${error.message}); exiting so the supervisor restarts us`);
        exit(1);
      },
    }, (message) => log.debug("dbus", message));
  } catch (error) {
    log.error("dbus", `cannot connect to ${options.dbusName}: ${(error as Error).message}`);
    return 1;
  }

  // The broker connection is set up while the services answer the scan.
  const services = await bus.listServices();
  const scanned = Promise.all(services.map(({ name, owner }) => scan(name, owner)));

  if (options.insecure) {
    log.warn(
      "mqtt",
      "--insecure: the broker's certificate is NOT checked; anyone in between can read and write",
    );
  }
  const link = new MqttLink(
    options,
    options.clientId ?? `dbus-mqtt_${portalId}`,
    requestTopics(portalId),
    {
      connected,
      request,
      problem: (message) => log.warn("mqtt", message),
    },
  );

  await scanned;

  const paths = [...state.services.values()].reduce((n, s) => n + s.items.size, 0);
  log.info(
    "start",
    `bus ${options.dbusName}, broker ${options.mqttName}, portal id ${portalId}, ` +
      `${state.services.size} services, ${paths} paths, keep-alive ` +
      (keepAlive.intervalMs ? `${options.keepAliveSeconds} s` : "off (always publishing)") +
      (options.retain ? "" : ", values not retained"),
  );

  if (keepAlive.alive) startHeartbeat();
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => exit(0));
  const code = await stopped;
  clearInterval(heartbeatTimer);
  clearTimeout(republishTimer);
  clearTimeout(expiryTimer);
  bus.close();
  await link.close();
  return code;

  // ------------------------------------------------------------ D-Bus side

  async function scan(name: string, owner: string): Promise<void> {
    const service = state.add(name, owner);
    if (!service) return;
    try {
      const result = await bus.scan(owner);
      if (state.services.get(name) !== service) return; // gone or replaced meanwhile
      for (const [path, json] of result.values) {
        state.set(service, path, json, result.seqOf(path), result.limits.get(path));
      }
      const instance = await deviceInstance(service, result.values);
      if (state.services.get(name) !== service) return;
      warnConflict(service, state.ready(service, instance));
      log.debug("scan", `${name}: ${service.items.size} paths via ${result.method}`);
      if (keepAlive.alive) { for (const item of service.items.values()) publishItem(item); }
    } catch (error) {
      if (state.services.get(name) === service) state.remove(name);
      log.warn("scan", `${name}: not scanned: ${(error as Error).message}`);
    }
  }

  async function deviceInstance(service: Service, values: ItemValues): Promise<number> {
    const json = values.get("/DeviceInstance") ??
      await bus.getValue(service.owner, "/DeviceInstance").then(
        (reply) => reply.json,
        () => "0", // services without /DeviceInstance are instance 0
      );
    return toInstance(json);
  }

  function itemChanged(
    sender: string,
    path: string,
    json: string,
    limits: string | undefined,
    seq: number,
  ): void {
    const service = state.byOwner(sender);
    if (!service) return;
    const item = state.set(service, path, json, seq, limits);
    if (service.instance === undefined) return; // still being scanned
    if (path === "/DeviceInstance") {
      const instance = toInstance(json);
      if (instance !== service.instance) return rehome(service, instance);
    }
    if (item) publishItem(item);
  }

  /** Two services with one type/instance: the newer gets requests until it leaves. */
  function warnConflict(service: Service, previous: Service | undefined): void {
    if (!previous) return;
    log.warn(
      "scan",
      `${service.name} and ${previous.name} both claim ${service.type}/${service.instance}; ` +
        `requests go to ${service.name}`,
    );
  }

  /** New topics for every item; the old ones are emptied so clients drop them. */
  function rehome(service: Service, instance: number): void {
    log.info("scan", `${service.name}: device instance ${service.instance} -> ${instance}`);
    for (const item of service.items.values()) itemGone(item);
    warnConflict(service, state.rehome(service, instance));
    for (const item of service.items.values()) publishItem(item);
  }

  function ownerChanged(name: string, oldOwner: string, newOwner: string): void {
    if (oldOwner) {
      const service = state.remove(name);
      if (service) {
        log.info("scan", `${name} left the bus`);
        for (const item of service.items.values()) itemGone(item);
      }
    }
    if (newOwner) {
      log.info("scan", `${name} appeared`);
      scan(name, newOwner);
    }
  }

  // ------------------------------------------------------------- MQTT side

  function connected(): void {
    log.info("mqtt", `connected to ${options.mqttName}`);
    link.publish(serial, payload(JSON.stringify(portalId)), true);
    if (keepAlive.alive) publishAll();
  }

  function request(topic: string, body: Uint8Array, retained: boolean): void {
    const req = parseRequest(topic, portalId);
    if (typeof req === "string") {
      log.warn("request", `${topic}: ${req}; ignored`);
      return;
    }
    if (retained) {
      log.warn("request", `${topic}: retained requests are replayed at every connect; ignored`);
      return;
    }
    log.debug("request", topic);
    const woke = keepAlive.request(Date.now());
    if (woke) {
      log.info("keepalive", "request received: publishing");
      startHeartbeat();
    }
    armExpiry();
    if (isKeepAliveRequest(req)) {
      const asked = parseKeepAliveOptions(
        lenientUtf8.decode(body.subarray(0, MAX_PAYLOAD_BYTES)),
      );
      if (woke || asked.republish) fullPublish(asked.echo);
    } else if (woke) {
      fullPublish(undefined);
    }
    switch (req.kind) {
      case "keepalive":
        return;
      case "read":
        if (isKeepAliveRequest(req) && !state.byDevice("system", 0)) return;
        return void read(topic, req);
      case "write":
        return void write(topic, req, body);
    }
  }

  function target(topic: string, req: ItemRequest): Service | undefined {
    const service = state.byDevice(req.type, req.instance);
    if (!service) log.warn("request", `${topic}: no service ${req.type}/${req.instance}`);
    return service;
  }

  /**
   * A fresh GetValue of the item, or of every item beneath the path when it
   * names a sub-tree (`settings/0/Settings`), each published as it arrives.
   */
  async function read(topic: string, req: ItemRequest): Promise<void> {
    const service = target(topic, req);
    if (!service) return;
    const paths = service.items.has(req.path) ? [req.path] : subTree(service, req.path);
    if (paths.length === 0) {
      log.warn("read", `${topic}: ${service.name} has no path or sub-tree ${req.path}`);
      return;
    }
    const results = await Promise.allSettled(paths.map(async (path) => {
      const reply = await bus.getValue(service.owner, path, true);
      state.set(service, path, reply.json, reply.seq);
      const item = service.items.get(path);
      if (item) publishItem(item);
    }));
    const failed = results.filter((r) => r.status === "rejected");
    if (failed.length > 0) {
      const more = paths.length > 1 ? ` (${failed.length} of ${paths.length} paths)` : "";
      log.warn("read", `${topic}: ${(failed[0].reason as Error).message}${more}`);
    }
  }

  function subTree(service: Service, path: string): string[] {
    const prefix = path + "/";
    return [...service.items.keys()].filter((p) => p.startsWith(prefix));
  }

  async function write(
    topic: string,
    req: ItemRequest,
    body: Uint8Array,
  ): Promise<void> {
    if (options.readOnly) {
      log.warn("write", `${topic}: refused, the bridge is read-only (--read-only)`);
      return;
    }
    const name = itemName(req.type, req.instance, req.path);
    if (options.allowWrite.length && !options.allowWrite.some((p) => matchesFilter(p, name))) {
      log.warn("write", `${topic}: refused, ${name} matches no --allow-write pattern`);
      return;
    }
    const service = target(topic, req);
    if (!service) return;
    if (!service.items.has(req.path)) {
      log.warn("write", `${topic}: ${service.name} has no path ${req.path}`);
      return;
    }
    let value;
    try {
      if (body.length > MAX_PAYLOAD_BYTES) {
        throw new Error(`payload over ${MAX_PAYLOAD_BYTES} bytes`);
      }
      value = writePayloadToVariant(utf8.decode(body));
    } catch (error) {
      log.warn("write", `${topic}: ${(error as Error).message}; not written`);
      return;
    }
    try {
      const result = await bus.setValue(service.owner, req.path, value);
      if (result !== 0) {
        log.warn(
          "write",
          `${topic}: ${service.name} refused the value (SetValue returned ${result})`,
        );
      }
    } catch (error) {
      log.warn("write", `${topic}: ${(error as Error).message}`);
    }
  }

  // --------------------------------------------------------- keep-alive

  function publishItem(item: Item): void {
    if (!keepAlive.alive || !link.connected || !item.topic) return;
    link.publish(item.topic, payload(item.json, item.limits), options.retain);
    item.published = options.retain;
  }

  function publishAll(): void {
    for (const item of state.items()) publishItem(item);
  }

  /**
   * Every value, then full_publish_completed (with each echo asked for), so
   * clients know their picture is complete. Rate-limited: a republish over
   * the limit happens when the next token comes, for every echo owed.
   */
  function fullPublish(echo: string | undefined): void {
    if (pendingEchoes.size < MAX_PENDING_ECHOES) pendingEchoes.add(echo ?? "");
    if (republishTimer !== undefined) return;
    if (!republishLimiter.take(Date.now())) {
      republishTimer = setTimeout(() => {
        republishTimer = undefined;
        fullPublish(undefined);
      }, Math.max(0, republishLimiter.nextAt() - Date.now()));
      return;
    }
    publishAll();
    const now = Math.floor(Date.now() / 1000);
    const echoes = [...pendingEchoes].filter((e) => e !== "");
    pendingEchoes.clear();
    for (const e of echoes.length ? echoes : [undefined]) {
      const extra = e === undefined ? "" : `, "full-publish-completed-echo": ${JSON.stringify(e)}`;
      link.publish(fullPublishCompletedTopic(portalId), `{"value": ${now}${extra}}`, false, false);
    }
  }

  function startHeartbeat(): void {
    clearInterval(heartbeatTimer);
    const beat = () =>
      link.publish(
        heartbeatTopic(portalId),
        payload(String(Math.floor(Date.now() / 1000))),
        false,
        false,
      );
    beat();
    heartbeatTimer = setInterval(beat, HEARTBEAT_MS);
  }

  /** Removes our retained message from the broker (never the Serial's). */
  function clearItem(item: Item): void {
    if (!item.published || item.topic === serial) return;
    link.publish(item.topic, "", true);
    item.published = false;
  }

  /** The item's service left: subscribers drop the topic on an empty payload. */
  function itemGone(item: Item): void {
    if (item.published) clearItem(item);
    else if (!options.retain && keepAlive.alive && item.topic) link.publish(item.topic, "", false);
  }

  function armExpiry(): void {
    if (expiryTimer !== undefined || keepAlive.deadline === Infinity) return;
    expiryTimer = setTimeout(() => {
      expiryTimer = undefined;
      if (keepAlive.expire(Date.now())) {
        log.info(
          "keepalive",
          options.retain
            ? "no request within the interval: clearing topics"
            : "no request within the interval: quiet",
        );
        clearInterval(heartbeatTimer);
        for (const item of state.items()) clearItem(item);
      } else {
        armExpiry();
      }
    }, Math.max(0, keepAlive.deadline - Date.now()));
  }
}

main(process.argv.slice(2)).then((code) => process.exit(code));
