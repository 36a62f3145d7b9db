/**
 * Victron D-Bus access: connect, list services, scan one (GetItems, else
 * GetValue on "/", else an Introspect walk), read and write items, and the
 * three signals the bridge lives on.
 *
 * Every incoming message gets a sequence number in arrival order, and every
 * reply carries its number, so the caller can tell whether a reply is older
 * than a signal it already applied (promise continuations run after the
 * signals that arrived in the same socket read).
 */
import { DbusConnection } from "./dbus_connection.ts";
import { type BodyReader, type Message, MessageType } from "./dbus_wire.ts";
import { SERVICE_PREFIX } from "./topics.ts";
import { parseSignature, type Variant } from "./values.ts";

const BUS_ITEM = "com.victronenergy.BusItem";
const DBUS = "org.freedesktop.DBus";
/** How long one D-Bus call may take before the bridge gives up on it. */
const CALL_TIMEOUT_MS = 5000;
/**
 * Calls made for MQTT requests that may wait for answers at once, per
 * service and in all; beyond that a request is dropped (and logged), so a
 * flood cannot queue without limit and one hung service cannot starve the
 * others.
 */
const MAX_REQUEST_CALLS = 1000;
const MAX_REQUEST_CALLS_PER_SERVICE = 100;

/** New values of one or more items of a service, as JSON text. */
export type ItemValues = Map<string, string>;
/**
 * The limits a service told for some of its items, as JSON members after the
 * value (`"min": 0, "max": 100, "default": 50`); settings have them.
 */
export type ItemLimits = Map<string, string>;

/** Takes one item as a service told it: its value and, when told, its limits. */
type ItemSink = (path: string, json: string, limits: string | undefined) => void;

export interface BusHandlers {
  /**
   * An item's new value (and limits, when the service told them) from a
   * PropertiesChanged or ItemsChanged of the service owning `sender`.
   */
  itemChanged(
    sender: string,
    path: string,
    json: string,
    limits: string | undefined,
    seq: number,
  ): void;
  /** A com.victronenergy.* name got, lost or changed its owner ("" = none). */
  ownerChanged(name: string, oldOwner: string, newOwner: string): void;
  /** The connection to the bus is gone. */
  lost(error: Error): void;
}

export class CallError extends Error {
  constructor(readonly errorName: string, message: string) {
    super(message);
  }
}

interface PendingCall {
  resolve(reply: Reply): void;
  reject(error: Error): void;
  deadline: number;
}

interface Reply {
  message: Message;
  seq: number;
}

export interface ScanResult {
  values: ItemValues;
  limits: ItemLimits;
  /** Arrival number of the reply each value came from. */
  seqOf(path: string): number;
  /** How the service answered: GetItems, GetValue or Introspect. */
  method: string;
}

export class VictronBus {
  #seq = 0;
  readonly #pending = new Map<number, PendingCall>();
  /** Calls for MQTT requests now waiting for their answer, by service. */
  readonly #requestCalls = new Map<string, number>();
  #requestCallsTotal = 0;
  readonly #sweeper: ReturnType<typeof setInterval>;
  /** Our own close, not a lost bus. */
  #closing = false;

  #connection!: DbusConnection;

  private constructor(
    private readonly handlers: BusHandlers,
    private readonly debug: (message: string) => void,
  ) {
    // One sweep for every call's timeout: cheaper than a timer per call.
    this.#sweeper = setInterval(() => this.#expireCalls(), 250);
  }

  /** Connects and subscribes to the signals, before anything is scanned. */
  static async connect(
    address: string,
    handlers: BusHandlers,
    debug: (message: string) => void,
  ): Promise<VictronBus> {
    const victronBus = new VictronBus(handlers, debug);
    try {
      victronBus.#connection = await DbusConnection.open(address, {
        message: (message) => victronBus.#receive(message),
        malformed: (error) => debug(`ignored an unreadable message: ${error.message}`),
        closed: (error) => victronBus.#closing || handlers.lost(error),
      });
      // The bus takes them in order: no need to wait for one answer before the next call.
      await Promise.all([
        victronBus.#call(DBUS, "/org/freedesktop/DBus", DBUS, "Hello"),
        ...MATCH_RULES.map((rule) =>
          victronBus.#call(DBUS, "/org/freedesktop/DBus", DBUS, "AddMatch", "s", [rule])
        ),
      ]);
    } catch (error) {
      victronBus.close();
      throw error;
    }
    return victronBus;
  }

  close(): void {
    this.#closing = true;
    clearInterval(this.#sweeper);
    this.#connection?.close();
  }

  /** Every com.victronenergy.* service with its unique name. */
  async listServices(): Promise<{ name: string; owner: string }[]> {
    const reply = await this.#call(DBUS, "/org/freedesktop/DBus", DBUS, "ListNames");
    const names = (reply.message.body.value(parseSignature("as")) as string[])
      .filter((n) => n.startsWith(SERVICE_PREFIX));
    const owners = await Promise.allSettled(
      names.map((name) =>
        this.#call(DBUS, "/org/freedesktop/DBus", DBUS, "GetNameOwner", "s", [name])
      ),
    );
    return names.flatMap((name, i) => {
      const owner = owners[i];
      return owner.status === "fulfilled"
        ? [{ name, owner: owner.value.message.body.string() }]
        : [];
    });
  }

  /** Every item of a service with its value. */
  async scan(owner: string): Promise<ScanResult> {
    try {
      const reply = await this.#call(owner, "/", BUS_ITEM, "GetItems");
      if (reply.message.signature !== "a{sa{sv}}") {
        throw new CallError("Malformed", `GetItems returned '${reply.message.signature}'`);
      }
      const values: ItemValues = new Map();
      const limits: ItemLimits = new Map();
      readItems(reply.message.body, (path, json, told) => {
        values.set(path, json);
        if (told !== undefined) limits.set(path, told);
      });
      return { values, limits, seqOf: () => reply.seq, method: "GetItems" };
    } catch (error) {
      if (!isUnsupported(error)) throw error;
      this.debug(`${owner}: GetItems: ${(error as Error).message}`);
    }
    try {
      const reply = await this.#call(owner, "/", BUS_ITEM, "GetValue");
      const body = reply.message.body;
      const signature = reply.message.signature === "v" ? body.signature() : "";
      if (signature !== "a{sv}") {
        throw new CallError("Malformed", `GetValue on / returned '${signature}'`);
      }
      const values: ItemValues = new Map();
      const end = body.arrayEnd(8);
      while (body.at < end) {
        body.align(8);
        const path = body.string();
        values.set(path.startsWith("/") ? path : "/" + path, body.variantJson(0));
      }
      return { values, limits: new Map(), seqOf: () => reply.seq, method: "GetValue" };
    } catch (error) {
      if (!isUnsupported(error)) throw error;
      this.debug(`${owner}: GetValue on /: ${(error as Error).message}`);
    }
    const paths = await this.#introspectItems(owner, "/");
    // One reply per item: each value is as new as its own reply, no newer.
    const values: ItemValues = new Map();
    const seqs = new Map<string, number>();
    await Promise.all(paths.map(async (path) => {
      const reply = await this.getValue(owner, path);
      values.set(path, reply.json);
      seqs.set(path, reply.seq);
    }));
    return { values, limits: new Map(), seqOf: (path) => seqs.get(path)!, method: "Introspect" };
  }

  /** GetValue; `forRequest` calls count against the request limits. */
  async getValue(
    owner: string,
    path: string,
    forRequest = false,
  ): Promise<{ json: string; seq: number }> {
    const call = () => this.#call(owner, path, BUS_ITEM, "GetValue");
    const reply = forRequest ? await this.#forRequest(owner, call) : await call();
    if (reply.message.signature !== "v") {
      throw new CallError("Malformed", `GetValue returned '${reply.message.signature}'`);
    }
    return { json: reply.message.body.variantJson(0), seq: reply.seq };
  }

  /** SetValue for a request; resolves to the service's answer (0 = accepted). */
  async setValue(owner: string, path: string, value: Variant): Promise<number> {
    const reply = await this.#forRequest(
      owner,
      () => this.#call(owner, path, BUS_ITEM, "SetValue", "v", [value]),
    );
    const answer = reply.message.signature === "i"
      ? reply.message.body.value(parseSignature("i"))
      : NaN;
    return Number(answer);
  }

  async #forRequest(owner: string, call: () => Promise<Reply>): Promise<Reply> {
    const waiting = this.#requestCalls.get(owner) ?? 0;
    if (waiting >= MAX_REQUEST_CALLS_PER_SERVICE || this.#requestCallsTotal >= MAX_REQUEST_CALLS) {
      throw new CallError(
        "Busy",
        waiting >= MAX_REQUEST_CALLS_PER_SERVICE
          ? `${waiting} calls to this service are waiting for answers already; dropped`
          : `${MAX_REQUEST_CALLS} D-Bus calls for requests are waiting already; dropped`,
      );
    }
    this.#requestCalls.set(owner, waiting + 1);
    this.#requestCallsTotal++;
    try {
      return await call();
    } finally {
      this.#requestCallsTotal--;
      const left = this.#requestCalls.get(owner)! - 1;
      if (left) this.#requestCalls.set(owner, left);
      else this.#requestCalls.delete(owner);
    }
  }

  async #introspectItems(owner: string, path: string): Promise<string[]> {
    const reply = await this.#call(
      owner,
      path,
      "org.freedesktop.DBus.Introspectable",
      "Introspect",
    );
    const xml = reply.message.signature === "s" ? reply.message.body.string() : "";
    const children = [...xml.matchAll(/<node\s+name="([^"/]+)"/g)].map((m) =>
      (path === "/" ? "/" : path + "/") + m[1]
    );
    const own = path !== "/" && xml.includes(`"${BUS_ITEM}"`) ? [path] : [];
    const nested = await Promise.all(children.map((c) => this.#introspectItems(owner, c)));
    return own.concat(...nested);
  }

  #call(
    destination: string,
    path: string,
    iface: string,
    member: string,
    signature = "",
    body: unknown[] = [],
  ): Promise<Reply> {
    const serial = this.#connection.call({
      destination,
      path,
      interface: iface,
      member,
      signature,
      body,
    });
    this.debug(`call ${destination} ${path} ${member}`);
    return new Promise((resolve, reject) => {
      this.#pending.set(serial, { resolve, reject, deadline: Date.now() + CALL_TIMEOUT_MS });
    });
  }

  #expireCalls(): void {
    const now = Date.now();
    for (const [serial, call] of this.#pending) {
      if (call.deadline <= now) {
        this.#pending.delete(serial);
        call.reject(new CallError("Timeout", `no answer within ${CALL_TIMEOUT_MS / 1000} s`));
      }
    }
  }

  #receive(message: Message): void {
    const seq = ++this.#seq;
    if (message.type === MessageType.METHOD_RETURN || message.type === MessageType.ERROR) {
      const call = this.#pending.get(message.replySerial!);
      if (!call) return;
      this.#pending.delete(message.replySerial!);
      if (message.type === MessageType.METHOD_RETURN) return call.resolve({ message, seq });
      const errorName = message.errorName ?? "org.freedesktop.DBus.Error.Failed";
      let text = errorName;
      try {
        if (message.signature.startsWith("s")) text = message.body.string();
      } catch { /* the name says enough */ }
      call.reject(new CallError(errorName, text));
      return;
    }
    if (message.type !== MessageType.SIGNAL) return;
    try {
      this.#signal(message, seq);
    } catch (error) {
      this.debug(`ignored malformed ${message.member} from ${message.sender}: ${error}`);
    }
  }

  #signal(message: Message, seq: number): void {
    const { member, body, sender = "" } = message;
    if (member === "NameOwnerChanged" && message.interface === DBUS) {
      if (message.signature !== "sss") return;
      const [name, oldOwner, newOwner] = [body.string(), body.string(), body.string()];
      if (name.startsWith(SERVICE_PREFIX)) this.handlers.ownerChanged(name, oldOwner, newOwner);
      return;
    }
    if (message.interface !== BUS_ITEM) return;
    const changed: ItemSink = (path, json, limits) =>
      this.handlers.itemChanged(sender, path, json, limits, seq);
    if (member === "PropertiesChanged" && message.signature === "a{sv}" && message.path) {
      readItem(body, message.path, changed);
    } else if (member === "ItemsChanged" && message.signature === "a{sa{sv}}") {
      readItems(body, changed);
    }
  }
}

const MATCH_RULES = [
  `type='signal',interface='${BUS_ITEM}',member='PropertiesChanged'`,
  `type='signal',interface='${BUS_ITEM}',member='ItemsChanged'`,
  `type='signal',sender='${DBUS}',interface='${DBUS}',member='NameOwnerChanged',arg0namespace='com.victronenergy'`,
];

const VARIANT = parseSignature("v");
/** An item's limits by their D-Bus keys, in the order their JSON members are written. */
const LIMIT_KEYS = ["Min", "Max", "Default"];

/** Items as GetItems and ItemsChanged give them: a{sa{sv}}, path -> properties. */
function readItems(body: BodyReader, sink: ItemSink): void {
  const end = body.arrayEnd(8);
  while (body.at < end) {
    body.align(8);
    readItem(body, body.string(), sink);
  }
}

/** One item's properties (a{sv}): its Value, maybe limits; the rest is passed over. */
function readItem(body: BodyReader, path: string, sink: ItemSink): void {
  let value: string | undefined;
  let limit: string[] | undefined;
  const end = body.arrayEnd(8);
  while (body.at < end) {
    body.align(8);
    const key = body.string();
    const slot = LIMIT_KEYS.indexOf(key);
    if (key === "Value") value = body.variantJson(0);
    else if (slot >= 0) (limit ??= [])[slot] = body.variantJson(0);
    else body.skip(VARIANT);
  }
  if (value === undefined || !path.startsWith("/")) return;
  if (!limit) return sink(path, value, undefined);
  const members = LIMIT_KEYS.flatMap((key, i) =>
    limit[i] === undefined ? [] : [`"${key.toLowerCase()}": ${limit[i]}`]
  );
  sink(path, value, members.join(", "));
}

/** Errors that mean "this service is older, try the next way to scan it". */
function isUnsupported(error: unknown): boolean {
  return error instanceof CallError && error.errorName !== "Timeout" &&
    !error.errorName.endsWith(".ServiceUnknown") && !error.errorName.endsWith(".NoReply") &&
    !error.errorName.endsWith(".Disconnected");
}
