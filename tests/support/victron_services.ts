/**
 * A simulated GX device: Victron services exported over a real D-Bus with
 * the com.victronenergy.BusItem interface exactly as Victron's own services
 * answer it (GetItems/ItemsChanged on "/", GetValue/GetText/SetValue and
 * PropertiesChanged per item), plus older styles: a root that only answers
 * GetValue, and one that only answers Introspect. Shared by tests, demo and
 * benchmark; it can load the capture of a real GX.
 *
 *   deno run -A tests/support/victron_services.ts --dbus unix:path=/tmp/bus [--capture file.jsonl]
 */
import { Buffer } from "node:buffer";
import { readFileSync } from "node:fs";
import dbus from "dbus-next";
// dbus-next's own codec, for GetItems answers from a cache (see `cacheGetItems`).
import compat from "dbus-next/lib/marshall-compat.js";
import { encodeMessage, MessageType } from "../../lib/dbus_wire.ts";
import { parseSignature, type SignatureType } from "../../lib/dbus_signature.ts";
import { parseTypedJson, toVariant, type TypedJson, type Variant } from "../../lib/values.ts";

const { Message, Variant: DbusVariant } = dbus;
type Message = InstanceType<typeof Message>;
type MessageBus = ReturnType<typeof dbus.sessionBus>;

const BUS_ITEM = "com.victronenergy.BusItem";

/** A value as tests give it: numbers are int32 (or double when not whole) unless a Variant. */
export type SimValue = Variant | number | string | boolean | null;

/**
 * How the root object answers: Victron's services changed over the years;
 * "BrokenGetItems" answers GetItems with the wrong type (and GetValue on "/" right);
 * "EndlessIntrospect" is a buggy service: no GetItems, no GetValue, and every
 * object introspects with two children, without end.
 */
export type RootStyle =
  | "GetItems"
  | "GetValue"
  | "Introspect"
  | "BrokenGetItems"
  | "EndlessIntrospect";

export interface ServiceSpec {
  name: string;
  items: Record<string, SimValue>;
  style?: RootStyle;
  /** Paths whose SetValue answers 1 (refused), like Victron's read-only items. */
  readOnly?: string[];
  /** Limits of some items, as Victron's settings service gives them. */
  limits?: Record<string, Limits>;
  /** A buggy service: SetValue answers with a D-Bus error of this text. */
  writeError?: string;
  /** Paths that take any number but keep it within [min, max], as some of Victron's do. */
  clip?: Record<string, [min: number, max: number]>;
}

export type Limits = Partial<Record<"Min" | "Max" | "Default", SimValue>>;

/** One simulated service: its own bus connection, as each GX service has. */
export class SimService {
  readonly items = new Map<string, Variant>();
  readonly limits = new Map<string, Record<string, Variant>>();
  readonly writes: { path: string; value: Variant }[] = [];
  /** Methods that never answer, to simulate a hung service. */
  readonly hang = new Set<string>();
  /** Methods that make the service drop off the bus when called. */
  readonly dieOn = new Set<string>();
  /** Object paths whose calls are answered this many ms late. */
  readonly delays = new Map<string, number>();
  /** Every call received, as "<member> <path>". */
  readonly calls: string[] = [];
  readonly style: RootStyle;
  readonly #readOnly: Set<string>;
  readonly #writeError: string | undefined;
  readonly #clip: Map<string, [number, number]>;
  /**
   * Answer GetItems with the bytes of the last answer until set() or
   * setMany() changes a value (values changed through `items` directly are
   * not seen). dbus-next takes ~10 ms to marshal 500 items, far longer than a
   * GX's own services: the bench turns this on (and prepares the answers
   * before each start, see `prepareGetItems`) so that it times the bridge.
   */
  cacheGetItems = false;
  #getItemsBody: Uint8Array | undefined;
  /**
   * Write signals with the bridge's own encoder (lib/dbus_wire.ts), not
   * dbus-next's, which needs ~1 ms for an ItemsChanged of 50 values: the
   * bench turns this on so that the simulator keeps up with its loads. Tests
   * keep dbus-next's, so that the bridge is checked against another writer.
   */
  fastSignals = false;

  private constructor(readonly name: string, readonly bus: MessageBus, spec: ServiceSpec) {
    this.style = spec.style ?? "GetItems";
    this.#readOnly = new Set(spec.readOnly ?? []);
    this.#writeError = spec.writeError;
    this.#clip = new Map(Object.entries(spec.clip ?? {}));
    for (const [path, value] of Object.entries(spec.items)) this.items.set(path, asVariant(value));
    for (const [path, limits] of Object.entries(spec.limits ?? {})) {
      this.limits.set(path, limitVariants(limits));
    }
    bus.addMethodHandler((message: Message) => this.#handle(message));
  }

  static async start(address: string, spec: ServiceSpec): Promise<SimService> {
    const bus = dbus.sessionBus({ busAddress: address });
    await new Promise<void>((resolve, reject) => {
      bus.once("connect", resolve);
      bus.once("error", reject);
    });
    const service = new SimService(spec.name, bus, spec);
    await bus.requestName(spec.name, 0);
    return service;
  }

  /**
   * Changes one value and signals it with PropertiesChanged on its path,
   * with new limits when given.
   */
  set(path: string, value: SimValue, limits?: Limits): void {
    const variant = asVariant(value);
    this.items.set(path, variant);
    this.#getItemsBody = undefined;
    if (limits) this.limits.set(path, limitVariants(limits));
    this.#signal(path, "PropertiesChanged", "a{sv}", {
      Value: variant,
      Text: textVariant(variant),
      ...(limits ? this.limits.get(path) : {}),
    });
  }

  /** Changes several values and signals them in one ItemsChanged on "/". */
  setMany(values: Record<string, SimValue>): void {
    const changes: Record<string, Record<string, Variant>> = {};
    this.#getItemsBody = undefined;
    for (const [path, value] of Object.entries(values)) {
      const variant = asVariant(value);
      this.items.set(path, variant);
      changes[path] = { Value: variant, Text: textVariant(variant) };
    }
    this.#signal("/", "ItemsChanged", "a{sa{sv}}", changes);
  }

  #signal(path: string, member: string, signature: string, body: unknown): void {
    if (!this.fastSignals) {
      this.bus.send(Message.newSignal(path, BUS_ITEM, member, signature, [body]));
      return;
    }
    const serial = this.bus.newSerial();
    this.#stream().write(
      encodeMessage({
        type: MessageType.SIGNAL,
        serial,
        path,
        interface: BUS_ITEM,
        member,
        signature,
        body: [body],
      }),
    );
  }

  /** The socket under dbus-next's connection, for bytes written by the sim itself. */
  #stream(): NodeJS.WritableStream {
    return (this.bus as unknown as { _connection: { stream: NodeJS.WritableStream } })
      ._connection.stream;
  }

  #stopped = false;

  /** Leaves the bus, as a device that is switched off. */
  stop(): void {
    this.#stopped = true;
    this.bus.disconnect();
  }

  #handle(message: Message): boolean {
    // Calls already read from the socket still arrive after stop(): a switched-off device is silent.
    if (this.#stopped) return true;
    const { member } = message;
    if (this.dieOn.has(member)) {
      this.stop();
      return true;
    }
    if (this.hang.has(member)) return true;
    this.calls.push(`${member} ${message.path}`);
    const delay = this.delays.get(message.path);
    if (delay !== undefined) {
      setTimeout(() => {
        if (!this.#stopped) this.bus.send(this.#answer(message) ?? unknownMethod(message));
      }, delay);
      return true;
    }
    if (this.cacheGetItems && member === "GetItems" && this.style === "GetItems") {
      this.#sendCachedGetItems(message);
      return true;
    }
    const reply = this.#answer(message);
    if (reply === undefined) return false;
    this.bus.send(reply);
    return true;
  }

  #sendCachedGetItems(call: Message): void {
    const body = this.prepareGetItems();
    // This answer's header (serial, reply serial, destination), then the cached body.
    const empty: Buffer = compat.marshallMessage(
      new Message({
        type: dbus.MessageType.METHOD_RETURN,
        serial: this.bus.newSerial(),
        replySerial: call.serial as never,
        destination: call.sender,
        signature: "a{sa{sv}}",
        body: [{}],
      }),
    )[0];
    const header = empty.subarray(0, empty.length - empty.readUInt32LE(4));
    header.writeUInt32LE(body.length, 4);
    this.#stream().write(Buffer.concat([header, body]));
  }

  /**
   * The cached GetItems body, made now if the values changed since: the
   * bench calls it before it starts a bridge, so that no start pays for it.
   */
  prepareGetItems(): Uint8Array {
    if (!this.#getItemsBody) {
      const answer = new Message({
        type: dbus.MessageType.METHOD_RETURN,
        serial: 1, // any: only the body is kept
        replySerial: 1 as never,
        signature: "a{sa{sv}}",
        body: [this.#getItems()],
      });
      const bytes: Buffer = compat.marshallMessage(answer)[0];
      this.#getItemsBody = bytes.subarray(bytes.length - bytes.readUInt32LE(4));
    }
    return this.#getItemsBody;
  }

  #getItems(): Record<string, Record<string, Variant>> {
    const items: Record<string, Record<string, Variant>> = {};
    for (const [p, v] of this.items) {
      items[p] = { Value: v, Text: textVariant(v), ...this.limits.get(p) };
    }
    return items;
  }

  #answer(message: Message): Message | undefined {
    const { path, member } = message;
    if (member === "Introspect") {
      return Message.newMethodReturn(message, "s", [this.#introspect(path)]);
    }
    if (this.style === "EndlessIntrospect") return undefined;
    if (message.interface && message.interface !== BUS_ITEM) return undefined;
    if (path === "/") {
      if (member === "GetItems" && this.style === "BrokenGetItems") {
        return Message.newMethodReturn(message, "as", [["not", "a", "dict"]]);
      }
      if (member === "GetItems" && this.style === "GetItems") {
        return Message.newMethodReturn(message, "a{sa{sv}}", [this.#getItems()]);
      }
      if (member === "GetValue" && this.style !== "Introspect") {
        const values: Record<string, Variant> = {};
        for (const [p, v] of this.items) values[p.slice(1)] = v;
        return Message.newMethodReturn(message, "v", [new DbusVariant("a{sv}", values)]);
      }
      return undefined;
    }
    const value = this.items.get(path);
    if (value === undefined) {
      return Message.newError(
        message as never,
        "org.freedesktop.DBus.Error.UnknownObject",
        `no item ${path}`,
      );
    }
    switch (member) {
      case "GetValue":
        return Message.newMethodReturn(message, "v", [value]);
      case "GetText":
        return Message.newMethodReturn(message, "s", [textOf(value)]);
      case "SetValue": {
        const written = message.body[0] as Variant;
        this.writes.push({ path, value: written });
        if (this.#writeError !== undefined) {
          return Message.newError(message as never, "com.victronenergy.Error", this.#writeError);
        }
        if (this.#readOnly.has(path)) return Message.newMethodReturn(message, "i", [1]);
        const range = this.#clip.get(path);
        const clipped = range && typeof written.value === "number"
          ? new DbusVariant(
            written.signature,
            Math.min(range[1], Math.max(range[0], written.value)),
          )
          : written;
        this.set(path, clipped);
        return Message.newMethodReturn(message, "i", [0]);
      }
    }
    return undefined;
  }

  #introspect(path: string): string {
    const prefix = path === "/" ? "/" : path + "/";
    const children = new Set<string>(this.style === "EndlessIntrospect" ? ["a", "b"] : []);
    for (const p of this.items.keys()) {
      if (p.startsWith(prefix)) children.add(p.slice(prefix.length).split("/")[0]);
    }
    const isItem = this.items.has(path) || (path === "/" && this.style !== "Introspect");
    return '<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN" ' +
      '"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">\n<node>\n' +
      '  <interface name="org.freedesktop.DBus.Introspectable">' +
      '<method name="Introspect"><arg direction="out" type="s"/></method></interface>\n' +
      (isItem ? `  <interface name="${BUS_ITEM}"><method name="GetValue"/></interface>\n` : "") +
      [...children].map((c) => `  <node name="${c}"/>\n`).join("") + "</node>\n";
  }
}

/** A whole simulated GX: several services on one bus. */
export class GxSim {
  readonly services = new Map<string, SimService>();

  constructor(readonly address: string) {}

  static async start(address: string, specs: ServiceSpec[]): Promise<GxSim> {
    const sim = new GxSim(address);
    await Promise.all(specs.map((spec) => sim.add(spec)));
    return sim;
  }

  async add(spec: ServiceSpec): Promise<SimService> {
    const service = await SimService.start(this.address, spec);
    this.services.set(spec.name, service);
    return service;
  }

  get(name: string): SimService {
    const service = this.services.get(name);
    if (!service) throw new Error(`no simulated service ${name}`);
    return service;
  }

  remove(name: string): void {
    this.get(name).stop();
    this.services.delete(name);
  }

  stop(): void {
    for (const service of this.services.values()) service.stop();
    this.services.clear();
  }
}

function asVariant(value: SimValue): Variant {
  if (value instanceof DbusVariant) return value;
  if (typeof value === "number") {
    return Number.isInteger(value) ? new DbusVariant("i", value) : new DbusVariant("d", value);
  }
  if (value === null) return new DbusVariant("ai", []);
  return new DbusVariant(typeof value === "string" ? "s" : "b", value);
}

function unknownMethod(message: Message): Message {
  return Message.newError(
    message as never,
    "org.freedesktop.DBus.Error.UnknownMethod",
    `no ${message.member} on ${message.path}`,
  );
}

function limitVariants(limits: Limits): Record<string, Variant> {
  const variants: Record<string, Variant> = {};
  for (const [key, value] of Object.entries(limits)) variants[key] = asVariant(value);
  return variants;
}

function textVariant(value: Variant): Variant {
  return new DbusVariant("s", textOf(value));
}

function textOf(value: Variant): string {
  return Array.isArray(value.value) && value.value.length === 0 ? "---" : String(value.value);
}

// ------------------------------------------------------------ the capture

/** The capture of a real GX (see data/README.md): 22 services, 2,306 paths. */
export const CAPTURE_FILE = new URL("../../data/gx-dbus-capture.jsonl", import.meta.url);

/** The services of a capture (`gx-dbus-capture.jsonl`), values typed as on the GX. */
export function loadCapture(file: string | URL = CAPTURE_FILE): ServiceSpec[] {
  const specs = new Map<string, ServiceSpec>();
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (!line.trim()) continue;
    const row = parseTypedJson(line) as Map<string, TypedJson>;
    const name = row.get("service") as string;
    let spec = specs.get(name);
    if (!spec) specs.set(name, spec = { name, items: {} });
    spec.items[row.get("path") as string] = fromCapture(row.get("value")!);
  }
  return [...specs.values()];
}

/**
 * Capture values are as the Signal K plugin's D-Bus library recorded them:
 * an empty list is invalid, `{type: "Buffer"}` is `ay`, and a variant is
 * `[[signature tree], [value]]`, with dicts as lists of [key, variant].
 */
function fromCapture(value: TypedJson): Variant {
  if (Array.isArray(value)) {
    if (value.length === 0) return new DbusVariant("ai", []);
    if (value.every(isCaptureEntry)) return new DbusVariant("a{sv}", captureDict(value));
    if (value.every((v) => Array.isArray(v) && v.every(isCaptureEntry))) {
      return new DbusVariant("aa{sv}", value.map((d) => captureDict(d as TypedJson[])));
    }
    if (value.every(isCaptureVariant)) {
      return new DbusVariant("av", value.map((v) => captureVariant(v as TypedJson[])));
    }
  }
  if (value instanceof Map && value.get("type") === "Buffer") {
    return new DbusVariant("ay", Buffer.from((value.get("data") as bigint[]).map(Number)));
  }
  return toDbusNext(toVariant(value));
}

/** values.ts builds plain variants; dbus-next sends only its own class. */
export function toDbusNext(v: Variant): Variant {
  return new DbusVariant(v.signature, dbusNextValue(parseSignature(v.signature), v.value));
}

function dbusNextValue(type: SignatureType, value: unknown): unknown {
  const [element] = type.children;
  if (type.code === "v") return toDbusNext(value as Variant);
  if (type.code === "a" && element.code === "{") {
    // values.ts makes Maps; dbus-next takes objects.
    const entries = value instanceof Map
      ? [...value]
      : Object.entries(value as Record<string, unknown>);
    return Object.fromEntries(entries.map(([k, x]) => [k, dbusNextValue(element.children[1], x)]));
  }
  if (type.code === "a" && element.code !== "y") {
    return (value as unknown[]).map((x) => dbusNextValue(element, x));
  }
  if (type.code === "(") {
    return (value as unknown[]).map((x, i) => dbusNextValue(type.children[i], x));
  }
  return value;
}

function isCaptureVariant(v: TypedJson): boolean {
  return Array.isArray(v) && v.length === 2 && Array.isArray(v[0]) && Array.isArray(v[1]) &&
    v[1].length === 1;
}

function isCaptureEntry(v: TypedJson): boolean {
  return Array.isArray(v) && v.length === 2 && typeof v[0] === "string" && isCaptureVariant(v[1]);
}

function captureDict(entries: TypedJson[]): Record<string, Variant> {
  const dict: Record<string, Variant> = {};
  for (const entry of entries) {
    const [key, variant] = entry as [string, TypedJson[]];
    dict[key] = captureVariant(variant);
  }
  return dict;
}

function captureVariant(variant: TypedJson[]): Variant {
  const [signature, [value]] = variant as [TypedJson[], TypedJson[]];
  const code = (signature[0] as Map<string, TypedJson>).get("type");
  if (code === "d") return new DbusVariant("d", Number(value));
  if (code === "i") return new DbusVariant("i", Number(value));
  return fromCapture(value);
}

if (import.meta.main) {
  const args = Deno.args;
  const address = args[args.indexOf("--dbus") + 1];
  if (!args.includes("--dbus") || !address) {
    console.error("usage: victron_services.ts --dbus <address> [--capture <file>]");
    Deno.exit(2);
  }
  const capture = args.includes("--capture") ? args[args.indexOf("--capture") + 1] : undefined;
  const specs = loadCapture(capture ?? CAPTURE_FILE);
  await GxSim.start(address, specs);
  const paths = specs.reduce((n, s) => n + Object.keys(s.items).length, 0);
  console.error(`victron_services: ${specs.length} services, ${paths} paths on ${address}`);
}
