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
import { CallSlots } from "./call_slots.ts";
import { DbusConnection } from "./dbus_connection.ts";
import { type BodyReader, isObjectPath, type Message, MessageType } from "./dbus_wire.ts";
import { shown } from "./log.ts";
import { isItemPath, SERVICE_PREFIX } from "./topics.ts";
import { parseSignature } from "./dbus_signature.ts";
import type { Variant } from "./values.ts";

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
/**
 * Calls of one scan or of sub-tree reads that run at once per service: a
 * read of a thousand settings is queued, never dropped, and leaves room for
 * other requests meanwhile.
 */
const CALLS_AT_ONCE = 16;
/**
 * Our calls that dbus-daemon may hold at once, in all and per service (see
 * CallSlots): below its 128, which the bus's own methods do not count
 * against; a hung service holds at most 16, so six hung at once still leave
 * 16 for the others.
 */
const CALLS_AT_DAEMON = 112;
const CALLS_AT_DAEMON_PER_SERVICE = 16;
/**
 * Sub-tree reads waiting at once per service; beyond that a read is refused.
 * Per service: a hung service must not hold up reads of the others.
 */
const MAX_TREE_READS = 10;

/**
 * A scan's budget per service, so that a service that lists without end (or
 * whose Introspect tree never ends) cannot take the bridge's memory: items
 * (a GX's largest service, settings, has ~1,000), levels and Introspect calls.
 */
export const MAX_ITEMS_PER_SERVICE = 20_000;
const MAX_INTROSPECT_DEPTH = 32;
const MAX_INTROSPECT_CALLS = 10_000;

/** New values of one or more items of a service, as JSON text. */
export type ItemValues = Map<string, string>;
/** What a scan found: the items the bridge takes, and those it passed over. */
export class ScannedItems {
  readonly values: ItemValues = new Map();
  /**
   * The limits a service told for some of its items, as JSON members after
   * the value (`"min": 0, "max": 100, "default": 50`); settings have them.
   */
  readonly limits = new Map<string, string>();
  /** Paths that cannot be object paths and topic levels (the first few of them). */
  readonly badPaths: string[] = [];
  badPathCount = 0;
  /** Items over MAX_ITEMS_PER_SERVICE. */
  overBudget = 0;

  readonly add: ItemSink = (path, json, limits) => {
    if (!isItemPath(path)) {
      if (this.badPathCount++ < 3) this.badPaths.push(path);
    } else if (this.values.size >= MAX_ITEMS_PER_SERVICE && !this.values.has(path)) {
      this.overBudget++;
    } else {
      this.values.set(path, json);
      if (limits !== undefined) this.limits.set(path, limits);
    }
  };
}

/** Takes one item as a service told it: its value and, when told, its limits. */
type ItemSink = (path: string, json: string, limits: string | undefined) => void;

export interface BusHandlers {
  /**
   * An item's new value (and limits, when the service told them) from a
   * PropertiesChanged or ItemsChanged of the service owning `sender`.
   */
  itemChanged(sender: string, path: string, json: string, seq: number, limits?: string): void;
  /** A com.victronenergy.* name got, lost or changed its owner ("" = none). */
  ownerChanged(name: string, oldOwner: string, newOwner: string): void;
  /** The connection to the bus is gone. */
  lost(error: Error): void;
}

class CallError extends Error {
  constructor(readonly errorName: string, message: string) {
    super(message);
  }
}

interface PendingCall {
  resolve(reply: Reply): void;
  reject(error: Error): void;
  deadline: number;
  destination: string;
  /** Sends the call; returns its serial. */
  send(): number;
}

interface Reply {
  message: Message;
  seq: number;
}

/** A value read with GetValue, and the arrival number of its reply. */
export interface ReadValue {
  json: string;
  seq: number;
}

/** A GetValue queued for a sub-tree read, not yet sent. */
interface QueuedRead {
  promise: Promise<ReadValue>;
  resolve(value: ReadValue): void;
  reject(error: Error): void;
}

/** A service's sub-tree reads: GetValues queued (in order) and running, by path; reads waiting. */
interface TreeReads {
  queued: Map<string, QueuedRead>;
  running: Map<string, Promise<ReadValue>>;
  waiting: number;
}

export interface ScanResult {
  items: ScannedItems;
  /** Arrival number of the reply each value came from. */
  seqOf(path: string): number;
  /** How the service answered: GetItems, GetValue or Introspect. */
  method: string;
}

export class VictronBus {
  #seq = 0;
  /** Calls sent, by serial, until answered or timed out. */
  readonly #pending = new Map<number, PendingCall>();
  /** Calls not sent yet, in order: the daemon holds as many of ours as it should. */
  readonly #waiting = new Set<PendingCall>();
  readonly #slots = new CallSlots(CALLS_AT_DAEMON, CALLS_AT_DAEMON_PER_SERVICE);
  /** Calls for MQTT requests now waiting for their answer, by service. */
  readonly #requestCalls = new Map<string, number>();
  #requestCallsTotal = 0;
  readonly #treeReads = new Map<string, TreeReads>();
  /** Times out calls; runs only while calls wait, so an idle bridge sleeps. */
  #sweeper: ReturnType<typeof setInterval> | undefined;
  /** Our own close, not a lost bus. */
  #closing = false;

  #connection!: DbusConnection;

  private constructor(
    private readonly handlers: BusHandlers,
    private readonly debug: (message: string) => void,
  ) {}

  /** Connects and subscribes to the signals, before anything is scanned. */
  static async connect(
    address: string,
    handlers: BusHandlers,
    debug: (message: string) => void,
    maxDelayMs = 0,
  ): Promise<VictronBus> {
    const victronBus = new VictronBus(handlers, debug);
    try {
      victronBus.#connection = await DbusConnection.open(address, {
        message: (message) => victronBus.#receive(message),
        malformed: (error) => debug(`ignored an unreadable message: ${error.message}`),
        closed: (error) => victronBus.#closing || handlers.lost(error),
        awaitingAnswers: () => victronBus.#pending.size > 0,
      }, maxDelayMs);
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

  /** Every item of a service with its value, within the scan's budget. */
  async scan(owner: string): Promise<ScanResult> {
    const items = new ScannedItems();
    try {
      const reply = await this.#call(owner, "/", BUS_ITEM, "GetItems");
      if (reply.message.signature !== "a{sa{sv}}") {
        throw new CallError("Malformed", `GetItems returned '${reply.message.signature}'`);
      }
      readItems(reply.message.body, items.add);
      return { items, seqOf: () => reply.seq, method: "GetItems" };
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
      body.eachEntry(() => {
        const path = body.string();
        items.add(path.startsWith("/") ? path : "/" + path, body.variantJson(0), undefined);
      });
      return { items, seqOf: () => reply.seq, method: "GetValue" };
    } catch (error) {
      if (!isUnsupported(error)) throw error;
      this.debug(`${owner}: GetValue on /: ${(error as Error).message}`);
    }
    for (const path of await this.#introspectItems(owner)) items.add(path, "", undefined);
    // One reply per item: each value is as new as its own reply, no newer.
    const seqs = new Map<string, number>();
    await eachLimited([...items.values.keys()], async (path) => {
      const reply = await this.getValue(owner, path);
      items.values.set(path, reply.json);
      seqs.set(path, reply.seq);
    });
    return { items, seqOf: (path) => seqs.get(path)!, method: "Introspect" };
  }

  /** GetValue; `forRequest` calls count against the request limits. */
  async getValue(owner: string, path: string, forRequest = false): Promise<ReadValue> {
    const call = () => this.#call(owner, path, BUS_ITEM, "GetValue");
    const reply = forRequest ? await this.#forRequest(owner, call) : await call();
    if (reply.message.signature !== "v") {
      throw new CallError("Malformed", `GetValue returned '${reply.message.signature}'`);
    }
    return { json: reply.message.body.variantJson(0), seq: reply.seq };
  }

  /**
   * GetValue of every path of a sub-tree read, queued (see CALLS_AT_ONCE);
   * each promise settles as its value arrives, and a path queued already is
   * read once for every read that asks for it. Throws when MAX_TREE_READS
   * wait already.
   */
  readTree(owner: string, paths: string[]): Promise<ReadValue>[] {
    let reads = this.#treeReads.get(owner);
    if (!reads) {
      this.#treeReads.set(owner, reads = { queued: new Map(), running: new Map(), waiting: 0 });
    }
    if (reads.waiting >= MAX_TREE_READS) {
      throw new CallError(
        "Busy",
        `${MAX_TREE_READS} sub-tree reads of this service are waiting already; dropped`,
      );
    }
    reads.waiting++;
    const values = paths.map((path) => reads.running.get(path) ?? this.#queue(reads, path));
    this.#startTreeReads(owner, reads);
    Promise.allSettled(values).then(() => {
      reads.waiting--;
      this.#forgetTreeReads(owner, reads);
    });
    return values;
  }

  /** A service's entry goes once nothing of it waits. */
  #forgetTreeReads(owner: string, reads: TreeReads): void {
    if (reads.waiting + reads.running.size + reads.queued.size === 0) {
      this.#treeReads.delete(owner);
    }
  }

  #queue(reads: TreeReads, path: string): Promise<ReadValue> {
    let queued = reads.queued.get(path);
    if (!queued) {
      let settle!: Omit<QueuedRead, "promise">;
      const promise = new Promise<ReadValue>((resolve, reject) => settle = { resolve, reject });
      reads.queued.set(path, queued = { ...settle, promise });
    }
    return queued.promise;
  }

  #startTreeReads(owner: string, reads: TreeReads): void {
    for (const [path, queued] of reads.queued) {
      if (reads.running.size >= CALLS_AT_ONCE) return;
      reads.queued.delete(path);
      reads.running.set(path, queued.promise);
      this.#countRequestCall(owner, 1);
      this.getValue(owner, path).then(queued.resolve, queued.reject).finally(() => {
        this.#countRequestCall(owner, -1);
        reads.running.delete(path);
        this.#startTreeReads(owner, reads);
        this.#forgetTreeReads(owner, reads);
      });
    }
  }

  /** SetValue for a request; resolves to the service's answer (0 = accepted). */
  async setValue(owner: string, path: string, value: Variant): Promise<number> {
    const reply = await this.#forRequest(
      owner,
      () => this.#call(owner, path, BUS_ITEM, "SetValue", "v", [value]),
    );
    const signature = reply.message.signature;
    // Victron's services answer an int32; a service of another maker any integer.
    if (signature.length !== 1 || !"ynqiuxt".includes(signature)) {
      throw new CallError("Malformed", `SetValue answered '${signature}', not a number`);
    }
    return Number(reply.message.body.value(parseSignature(signature)));
  }

  /** A call for a request, refused when too many wait for answers already. */
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
    this.#countRequestCall(owner, 1);
    try {
      return await call();
    } finally {
      this.#countRequestCall(owner, -1);
    }
  }

  #countRequestCall(owner: string, change: 1 | -1): void {
    this.#requestCallsTotal += change;
    const waiting = (this.#requestCalls.get(owner) ?? 0) + change;
    if (waiting) this.#requestCalls.set(owner, waiting);
    else this.#requestCalls.delete(owner);
  }

  /**
   * The paths of a service's items, from an Introspect walk level by level,
   * within the scan's budget: one failed call ends the walk.
   */
  async #introspectItems(owner: string): Promise<string[]> {
    const items: string[] = [];
    let level = ["/"];
    let calls = 0;
    for (let depth = 0; level.length > 0; depth++) {
      calls += level.length;
      if (depth > MAX_INTROSPECT_DEPTH || calls > MAX_INTROSPECT_CALLS) {
        throw new CallError(
          "Budget",
          `the Introspect tree is over ${MAX_INTROSPECT_DEPTH} levels deep or over ` +
            `${MAX_INTROSPECT_CALLS} objects`,
        );
      }
      const xmls: string[] = [];
      await eachLimited(level, async (path, i) => {
        const reply = await this.#call(
          owner,
          path,
          "org.freedesktop.DBus.Introspectable",
          "Introspect",
        );
        xmls[i] = reply.message.signature === "s" ? reply.message.body.string() : "";
      });
      level = level.flatMap((path, i) => {
        if (path !== "/" && xmls[i].includes(`"${BUS_ITEM}"`)) items.push(path);
        const children = [...xmls[i].matchAll(/<node\s+name="([^"/]+)"/g)];
        // A child that cannot be in an object path cannot be called either.
        return children.map((m) => (path === "/" ? "/" : path + "/") + m[1]).filter(isObjectPath);
      });
    }
    return items;
  }

  #call(
    destination: string,
    path: string,
    iface: string,
    member: string,
    signature = "",
    body: unknown[] = [],
  ): Promise<Reply> {
    // One sweep for every call's timeout: cheaper than a timer per call.
    this.#sweeper ??= setInterval(() => this.#expireCalls(), 250);
    return new Promise((resolve, reject) => {
      const call: PendingCall = {
        resolve,
        reject,
        deadline: Date.now() + CALL_TIMEOUT_MS,
        destination,
        send: () => {
          this.debug(`call ${destination} ${path} ${member}`);
          return this.#connection.call({
            destination,
            path,
            interface: iface,
            member,
            signature,
            body,
          });
        },
      };
      // The bus's own methods are answered at once and hold no place at the daemon.
      if (destination === DBUS || this.#slots.free(destination)) this.#send(call);
      else this.#waiting.add(call);
    });
  }

  #send(call: PendingCall): void {
    const serial = call.send();
    if (call.destination !== DBUS) this.#slots.sent(serial, call.destination);
    this.#pending.set(serial, call);
  }

  /** Places at the daemon came free: calls that waited for one go, in order. */
  #sendWaiting(): void {
    for (const call of this.#waiting) {
      if (!this.#slots.free(call.destination)) continue;
      this.#waiting.delete(call);
      this.#send(call);
    }
  }

  #expireCalls(): void {
    const now = Date.now();
    const timeout = new CallError("Timeout", `no answer within ${CALL_TIMEOUT_MS / 1000} s`);
    // A call sent keeps its place at the daemon until its reply comes (see CallSlots).
    for (const [serial, call] of this.#pending) {
      if (call.deadline > now) continue;
      this.#pending.delete(serial);
      call.reject(timeout);
    }
    for (const call of this.#waiting) {
      if (call.deadline > now) continue;
      this.#waiting.delete(call);
      const held = this.#slots.held(call.destination);
      call.reject(
        new CallError(
          "Timeout",
          `no answer within ${CALL_TIMEOUT_MS / 1000} s: not sent, as ${held} calls to this ` +
            `service are unanswered`,
        ),
      );
    }
    if (this.#pending.size + this.#waiting.size === 0) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }

  #receive(message: Message): void {
    const seq = ++this.#seq;
    if (message.type === MessageType.METHOD_RETURN || message.type === MessageType.ERROR) {
      this.#slots.answered(message.replySerial!);
      this.#sendWaiting();
      const call = this.#pending.get(message.replySerial!);
      if (!call) return;
      this.#pending.delete(message.replySerial!);
      if (message.type === MessageType.METHOD_RETURN) return call.resolve({ message, seq });
      const errorName = message.errorName ?? "org.freedesktop.DBus.Error.Failed";
      let text = errorName;
      try {
        if (message.signature.startsWith("s")) text = shown(message.body.string());
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
      // Only the bus's own: anyone may send a signal of that name to us directly.
      if (sender !== DBUS) return;
      if (message.signature !== "sss") return;
      const [name, oldOwner, newOwner] = [body.string(), body.string(), body.string()];
      if (oldOwner && !newOwner) {
        this.#slots.left(oldOwner);
        this.#sendWaiting();
      }
      if (name.startsWith(SERVICE_PREFIX)) this.handlers.ownerChanged(name, oldOwner, newOwner);
      return;
    }
    if (message.interface !== BUS_ITEM) return;
    const changed: ItemSink = (path, json, limits) => {
      if (isItemPath(path)) this.handlers.itemChanged(sender, path, json, seq, limits);
      else this.debug(`${sender}: passed over item ${shown(path)}: not an item path`);
    };
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
  body.eachEntry(() => readItem(body, body.string(), sink));
}

/** One item's properties (a{sv}): its Value, maybe limits; the rest is passed over. */
function readItem(body: BodyReader, path: string, sink: ItemSink): void {
  let value: string | undefined;
  let limit: string[] | undefined;
  body.eachEntry(() => {
    const key = body.string();
    const slot = LIMIT_KEYS.indexOf(key);
    if (key === "Value") value = body.variantJson(0);
    else if (slot >= 0) (limit ??= [])[slot] = body.variantJson(0);
    else body.skip(VARIANT);
  });
  if (value === undefined) return;
  if (!limit) return sink(path, value, undefined);
  const told: string[] = limit;
  const members = LIMIT_KEYS.flatMap((key, i) =>
    told[i] === undefined ? [] : [`"${key.toLowerCase()}": ${told[i]}`]
  );
  sink(path, value, members.join(", "));
}

/** `call` for every item, CALLS_AT_ONCE at a time; the first failure ends it (no more calls). */
async function eachLimited<T>(items: T[], call: (item: T, i: number) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      try {
        await call(items[i], i);
      } catch (error) {
        next = items.length;
        throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(CALLS_AT_ONCE, items.length) }, worker));
}

/** Errors that mean "this service is older, try the next way to scan it". */
function isUnsupported(error: unknown): boolean {
  return error instanceof CallError && error.errorName !== "Timeout" &&
    !error.errorName.endsWith(".ServiceUnknown") && !error.errorName.endsWith(".NoReply") &&
    !error.errorName.endsWith(".Disconnected");
}
