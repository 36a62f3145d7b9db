/**
 * dbus-mqtt: publishes the Victron D-Bus on MQTT and serves read, write and
 * keep-alive requests. The story: options -> D-Bus and broker -> scan -> react
 * to bus signals and MQTT requests until stopped. `dbus-mqtt watch` is the
 * other side: a terminal client that shows what a bridge publishes; `dbus-mqtt
 * read` and `write` send one request and print its answer.
 *
 * This file is the program's entry point under Deno, under Node and as the
 * bundle: it always runs `main`.
 */
import process from "node:process";
import { type Answer, answerPayload, answerProblem } from "./lib/answers.ts";
import { ask } from "./lib/ask.ts";
import { KeepAlive } from "./lib/keepalive.ts";
import { UnsendableError } from "./lib/dbus_wire.ts";
import { createLogger, type Logger, shown } from "./lib/log.ts";
import { type IncomingRequest, MqttLink } from "./lib/mqtt_link.ts";
import {
  type AskOptions,
  type Options,
  OptionsError,
  parseAskOptions,
  parseOptions,
  parseWatchOptions,
  type WatchOptions,
} from "./lib/options.ts";
import { discoverPortalId, portalInterface } from "./lib/portal_id.ts";
import { BridgeState, type Item, type Service, toInstance } from "./lib/state.ts";
import {
  fullPublishCompletedTopic,
  heartbeatTopic,
  isSerial,
  itemName,
  type ItemRequest,
  matchesFilter,
  parseRequest,
  requestTopics,
  serialTopic,
} from "./lib/topics.ts";
import { payload, writePayloadToVariant } from "./lib/values.ts";
import {
  type ItemValues,
  MAX_ITEMS_PER_SERVICE,
  type ReadValue,
  type ScannedItems,
  VictronBus,
} from "./lib/victron_bus.ts";
import { watch } from "./lib/watch.ts";

/** Requests larger than this are not parsed. */
const MAX_PAYLOAD_BYTES = 64 * 1024;
const utf8 = new TextDecoder("utf-8", { fatal: true });
/** Keep-alive payloads are optional hints: undecodable bytes just mean "plain". */
const lenientUtf8 = new TextDecoder();

async function main(args: string[]): Promise<number> {
  const write = (text: string) => process.stdout.write(text);
  // `deno task start -- <options>` hands its "--" on; it means nothing here.
  if (args[0] === "--") args = args.slice(1);
  const [command, ...afterCommand] = args;
  const rest = afterCommand[0] === "--" ? afterCommand.slice(1) : afterCommand;
  let options: Options | WatchOptions | AskOptions | undefined;
  try {
    options = command === "watch"
      ? parseWatchOptions(rest, process.env, write)
      : command === "read" || command === "write"
      ? parseAskOptions(command, rest, process.env, write)
      : parseOptions(args, process.env, write);
  } catch (error) {
    if (!(error instanceof OptionsError)) throw error;
    console.error(`dbus-mqtt: ${error.message} (see --help)`);
    return 2;
  }
  if (!options) return 0;
  if ("kind" in options) return await ask(options);
  if (!("dbusAddress" in options)) return await watch(options);
  const log = createLogger(options.logLevel);
  const portalId = options.portalId ?? discoverPortalId(process.env);
  if (!portalId) {
    const iface = shown(portalInterface(process.env));
    log.error(
      "start",
      `no portal id: not a GX device, and no MAC address of ${iface} (under Deno only an ` +
        "interface with an address shows one); pass --portal-id",
    );
    return 2;
  }
  return await bridge(options, portalId, log);
}

async function bridge(options: Options, portalId: string, log: Logger): Promise<number> {
  const state = new BridgeState(portalId, options.masked);
  const keepAlive = new KeepAlive(options.keepAliveSeconds * 1000, {
    woke: () => log.info("keepalive", "request received: publishing"),
    publishAll,
    completed: publishCompleted,
    beat: (now) => link.publishEvent(heartbeatTopic(portalId), payload(String(now))),
    expired() {
      log.info(
        "keepalive",
        options.retain
          ? "no request within the interval: clearing topics"
          : "no request within the interval: quiet",
      );
      for (const item of state.items()) clearItem(item);
    },
    problem: (message) => log.warn("keepalive", message),
  });
  let exit: (code: number) => void = () => {};
  const stopped = new Promise<number>((resolve) => exit = resolve);

  let bus: VictronBus;
  try {
    bus = await VictronBus.connect(
      options.dbusAddress,
      {
        itemChanged,
        ownerChanged,
        lost(error) {
          log.error(
            "dbus",
            `lost the bus (${error.message}); exiting so the supervisor restarts us`,
          );
          exit(1);
        },
      },
      (message) => log.debug("dbus", message),
      options.maxDelayMs,
    );
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
      fellBack: () =>
        log.warn(
          "mqtt",
          "the broker does not speak MQTT 5; using 3.1.1: requests get no answers, and a " +
            "retained W is refused only when the broker replays it",
        ),
    },
    options.maxDelayMs,
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

  keepAlive.start();
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => exit(0));
  const code = await stopped;
  keepAlive.stop();
  bus.close();
  await link.close();
  return code;

  // ------------------------------------------------------------ D-Bus side

  async function scan(name: string, owner: string): Promise<void> {
    const service = state.add(name, owner);
    if (!service) return;
    try {
      const { items, seqOf, method } = await bus.scan(owner);
      if (state.services.get(name) !== service) return; // gone or replaced meanwhile
      for (const [path, json] of items.values) {
        state.set(service, path, json, seqOf(path), items.limits.get(path));
      }
      reportPassedOver(name, items);
      const instance = await deviceInstance(service, items.values);
      if (state.services.get(name) !== service) return;
      warnConflict(service, state.ready(service, instance));
      log.debug("scan", `${name}: ${service.items.size} paths via ${method}`);
      if (keepAlive.alive) { for (const item of service.items.values()) publishItem(item); }
    } catch (error) {
      if (state.services.get(name) === service) state.remove(name);
      log.warn("scan", `${name}: not scanned: ${(error as Error).message}`);
    }
  }

  function reportPassedOver(name: string, items: ScannedItems): void {
    if (items.badPathCount > 0) {
      log.warn(
        "scan",
        `${name}: passed over ${items.badPathCount} paths that cannot be D-Bus object paths ` +
          `and topic levels (letters, digits and _ only), e.g. ` +
          items.badPaths.map((path) => `'${shown(path, 80)}'`).join(", "),
      );
    }
    if (items.overBudget > 0) {
      log.warn(
        "scan",
        `${name}: passed over ${items.overBudget} items beyond ${MAX_ITEMS_PER_SERVICE} per service`,
      );
    }
  }

  async function deviceInstance(service: Service, values: ItemValues): Promise<number> {
    const json = values.get("/DeviceInstance") ??
      await bus.getValue(service.owner, "/DeviceInstance").then(
        (reply) => reply.json,
        () => "0", // services without /DeviceInstance are instance 0
      );
    return validInstance(service, json) ?? 0;
  }

  function validInstance(service: Service, json: string): number | undefined {
    const instance = toInstance(json);
    if (instance === undefined) {
      log.warn(
        "scan",
        `${service.name}: /DeviceInstance ${shown(json, 40)} is not a whole number ` +
          `from 0 to 4294967295` + (service.instance === undefined ? "; using 0" : "; ignored"),
      );
    }
    return instance;
  }

  function itemChanged(
    sender: string,
    path: string,
    json: string,
    seq: number,
    limits?: string,
  ): void {
    const service = state.byOwner(sender);
    if (!service) return;
    if (service.items.size >= MAX_ITEMS_PER_SERVICE && !service.items.has(path)) {
      log.warn("scan", `${service.name}: passed over a new item beyond ${MAX_ITEMS_PER_SERVICE}`);
      return;
    }
    const item = state.set(service, path, json, seq, limits);
    if (service.instance === undefined) return; // still being scanned
    if (path === "/DeviceInstance") {
      const instance = validInstance(service, json);
      if (instance !== undefined && instance !== service.instance) {
        return rehome(service, instance);
      }
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

  /** New topics for every item; the old ones are handed on or emptied (see vacate). */
  function rehome(service: Service, instance: number): void {
    log.info("scan", `${service.name}: device instance ${service.instance} -> ${instance}`);
    state.release(service);
    vacate(service);
    warnConflict(service, state.ready(service, instance));
    for (const item of service.items.values()) publishItem(item);
  }

  /**
   * The service no longer publishes on its topics. A service that claims the
   * same type/instance takes over those it has items for; the others are
   * emptied, so that clients drop them.
   */
  function vacate(service: Service): void {
    const heir = service.instance === undefined
      ? undefined
      : state.byDevice(service.type, service.instance);
    for (const item of service.items.values()) {
      const taken = heir?.items.get(item.path);
      if (taken) publishItem(taken);
      else itemGone(item);
    }
  }

  function ownerChanged(name: string, oldOwner: string, newOwner: string): void {
    if (oldOwner) {
      const service = state.remove(name);
      if (service) {
        log.info("scan", `${name} left the bus`);
        vacate(service);
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
    publishSerial();
    if (keepAlive.alive) publishAll();
  }

  /** The Serial, retained: the portal id, whatever D-Bus says (see isSerial). */
  function publishSerial(): void {
    link.publishValue(serialTopic(portalId), payload(JSON.stringify(portalId)), true);
  }

  /** Answers the request (MQTT 5), once; undefined when it asked for no answer. */
  type Reply = ((answer: Answer) => void) | undefined;

  function request(incoming: IncomingRequest): void {
    // The topic as log lines show it: escaped and cut, as it comes from anyone.
    const topic = shown(incoming.topic);
    const reply = replyTo(topic, incoming);
    const req = parseRequest(incoming.topic, portalId);
    if (typeof req === "string") return fail(reply, "request", topic, `${req}; ignored`);
    if (incoming.retained) {
      // An empty retained message is how a client takes its retained request off the broker.
      if (incoming.payload.length === 0) {
        return log.info("request", `${topic}: a retained request taken back; nothing to do`);
      }
      return fail(
        reply,
        "request",
        topic,
        "retained requests are replayed at every connect; ignored",
      );
    }
    log.debug("request", topic);
    const body = incoming.payload;
    switch (req.kind) {
      case "keepalive":
        keepAlive.onKeepAlive(lenientUtf8.decode(body.subarray(0, MAX_PAYLOAD_BYTES)), reply);
        // A read of the Serial is also a keep-alive, answered as the original bridge did.
        if (req.read) publishSerial();
        return;
      case "read":
        keepAlive.onItemRequest();
        return void read(topic, req, reply);
      case "write":
        keepAlive.onItemRequest();
        return void write(topic, req, body, reply);
    }
  }

  /**
   * How this request is answered: on its Response Topic with its Correlation
   * Data (MQTT 5), at most once; without a Response Topic, not at all.
   */
  function replyTo(topic: string, incoming: IncomingRequest): Reply {
    const { responseTopic, correlationData } = incoming;
    if (responseTopic === undefined || !link.v5) return undefined;
    const problem = answerProblem(responseTopic, correlationData);
    if (problem) {
      log.warn(
        "request",
        `${topic}: response topic ${shown(responseTopic)}: ${problem}; no answer`,
      );
      return undefined;
    }
    let answered = false;
    return (answer) => {
      if (answered) return;
      answered = true;
      let text = answerPayload(answer);
      // Too large for the broker (a big sub-tree): an answer that says so, not none.
      const tooLarge = link.sizeProblem(responseTopic, text, correlationData);
      if (tooLarge) text = answerPayload({ status: "error", error: `the answer is ${tooLarge}` });
      link.publishEvent(responseTopic, text, correlationData);
    };
  }

  /** The request cannot be done: a log line, and the same words as its answer. */
  function fail(reply: Reply, context: string, topic: string, why: string): void {
    log.warn(context, `${topic}: ${why}`);
    reply?.({ status: "error", error: why });
  }

  function target(topic: string, req: ItemRequest, reply: Reply): Service | undefined {
    const service = state.byDevice(req.type, req.instance);
    if (!service) fail(reply, "request", topic, `no service ${shown(req.type)}/${req.instance}`);
    return service;
  }

  /**
   * A fresh GetValue of the item, or of every item beneath the path when it
   * names a sub-tree (`settings/0/Settings`), each published as it arrives.
   */
  async function read(topic: string, req: ItemRequest, reply: Reply): Promise<void> {
    const service = target(topic, req, reply);
    if (!service) return;
    const single = service.items.has(req.path);
    const paths = single ? [req.path] : subTree(service, req.path);
    if (paths.length === 0) {
      const why = `${service.name} has no path or sub-tree ${shown(req.path)}`;
      return fail(reply, "read", topic, why);
    }
    let replies;
    try {
      replies = single
        ? [bus.getValue(service.owner, req.path, true)]
        : bus.readTree(service.owner, paths);
    } catch (error) {
      return fail(reply, "read", topic, (error as Error).message);
    }
    const results = await Promise.allSettled(
      paths.map(async (path, i) => fresh(service, path, await replies[i])),
    );
    const failed = results.filter((r) => r.status === "rejected");
    if (failed.length > 0) {
      const more = paths.length > 1 ? ` (${failed.length} of ${paths.length} paths)` : "";
      return fail(reply, "read", topic, `${(failed[0].reason as Error).message}${more}`);
    }
    const values = results.map((r, i): [string, string] => [
      paths[i],
      (r as PromiseFulfilledResult<string>).value,
    ]);
    reply?.(single ? { status: "ok", value: values[0][1] } : { status: "ok", values });
  }

  /** A value just read from the service: recorded, published, and returned as published. */
  function fresh(service: Service, path: string, value: ReadValue): string {
    state.set(service, path, value.json, value.seq);
    const item = service.items.get(path);
    if (item) publishItem(item);
    return item?.json ?? value.json;
  }

  function subTree(service: Service, path: string): string[] {
    const prefix = path + "/";
    return [...service.items.keys()].filter((p) => p.startsWith(prefix));
  }

  async function write(
    topic: string,
    req: ItemRequest,
    body: Uint8Array,
    reply: Reply,
  ): Promise<void> {
    if (options.readOnly) {
      return fail(reply, "write", topic, "refused, the bridge is read-only (--read-only)");
    }
    if (isSerial(req)) return fail(reply, "write", topic, "refused, the Serial is the portal id");
    const name = itemName(req.type, req.instance, req.path);
    if (options.allowWrite.length && !options.allowWrite.some((p) => matchesFilter(p, name))) {
      return fail(reply, "write", topic, `refused, ${name} matches no --allow-write pattern`);
    }
    const service = target(topic, req, reply);
    if (!service) return;
    if (!service.items.has(req.path)) {
      return fail(reply, "write", topic, `${service.name} has no path ${shown(req.path)}`);
    }
    let value;
    try {
      if (body.length > MAX_PAYLOAD_BYTES) {
        throw new Error(`payload over ${MAX_PAYLOAD_BYTES} bytes`);
      }
      value = writePayloadToVariant(utf8.decode(body));
    } catch (error) {
      return fail(reply, "write", topic, `${(error as Error).message}; not written`);
    }
    let result;
    try {
      result = await bus.setValue(service.owner, req.path, value);
    } catch (error) {
      const sent = !(error instanceof UnsendableError);
      return fail(
        reply,
        "write",
        topic,
        `${(error as Error).message}${sent ? "" : "; not written"}`,
      );
    }
    if (result !== 0) {
      log.warn(
        "write",
        `${topic}: ${service.name} refused the value (SetValue returned ${result})`,
      );
      return reply?.({ status: "refused", code: result });
    }
    if (!reply) return;
    // The answer carries the value as the service now has it (it may have clipped it).
    try {
      const value = await bus.getValue(service.owner, req.path, true);
      reply({ status: "ok", value: fresh(service, req.path, value) });
    } catch (error) {
      fail(
        reply,
        "write",
        topic,
        `written, but reading it back failed: ${(error as Error).message}`,
      );
    }
  }

  // ------------------------------------------------------------ publishing

  function publishItem(item: Item): void {
    if (!keepAlive.alive || !link.connected || !item.topic) return;
    link.publishValue(item.topic, payload(item.json, item.limits), options.retain);
    item.retainedByBroker = options.retain;
  }

  function publishAll(): void {
    for (const item of state.items()) publishItem(item);
  }

  /** After a full publish: clients know their picture is complete. */
  function publishCompleted(now: number, echo: string | undefined): void {
    const extra = echo === undefined
      ? ""
      : `"full-publish-completed-echo": ${JSON.stringify(echo)}`;
    link.publishEvent(fullPublishCompletedTopic(portalId), payload(String(now), extra));
  }

  /** Removes our retained message from the broker. */
  function clearItem(item: Item): void {
    if (!item.retainedByBroker) return;
    link.publishValue(item.topic, "", true);
    item.retainedByBroker = false;
  }

  /** The item's service left: subscribers drop the topic on an empty payload. */
  function itemGone(item: Item): void {
    if (item.retainedByBroker) clearItem(item);
    else if (!options.retain && keepAlive.alive && item.topic) {
      link.publishValue(item.topic, "", false);
    }
  }
}

main(process.argv.slice(2)).then((code) => process.exit(code));
