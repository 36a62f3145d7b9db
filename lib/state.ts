/**
 * The bridge's one copy of the bus: services by name, by unique bus name and
 * by type/instance, and their items with the JSON last seen. Pure: methods
 * take what happened and return what changed; main.ts does the I/O.
 */
import {
  isBlocked,
  isSerial,
  MASKED,
  MASKED_JSON,
  notificationTopic,
  serviceType,
} from "./topics.ts";
import { INVALID_JSON } from "./dbus_wire.ts";

export interface Item {
  readonly path: string;
  /** Value as published (secrets already masked). */
  json: string;
  /** A secret: published as "******", without limits. */
  readonly masked: boolean;
  /** JSON members published after the value: min/max/default, or "". */
  limits: string;
  /** Arrival number of the D-Bus message the value came from. */
  seq: number;
  /** "" until the service's device instance is known, and for the Serial (see isSerial). */
  topic: string;
  /** The broker holds a retained message of ours on this topic. */
  retainedByBroker: boolean;
}

export interface Service {
  readonly name: string;
  readonly type: string;
  owner: string;
  /** undefined while the service is being scanned. */
  instance: number | undefined;
  readonly items: Map<string, Item>;
}

export class BridgeState {
  readonly services = new Map<string, Service>();
  readonly #byOwner = new Map<string, Service>();
  readonly #byDevice = new Map<string, Service>();

  readonly #masked: Set<string>;

  /** `masked`: more secrets as `<type><path>`, on top of the built-in ones. */
  constructor(readonly portalId: string, masked: string[] = []) {
    this.#masked = new Set([...MASKED, ...masked]);
  }

  /** A service appeared; it collects values until `ready`. */
  add(name: string, owner: string): Service | undefined {
    const type = serviceType(name);
    if (!type) return undefined;
    this.remove(name);
    const service: Service = { name, type, owner, instance: undefined, items: new Map() };
    this.services.set(name, service);
    this.#byOwner.set(owner, service);
    return service;
  }

  /** A service left the bus; returns it so its topics can be cleared. */
  remove(name: string): Service | undefined {
    const service = this.services.get(name);
    if (!service) return undefined;
    this.services.delete(name);
    if (this.#byOwner.get(service.owner) === service) this.#byOwner.delete(service.owner);
    this.release(service);
    return service;
  }

  /**
   * Gives up the service's type/instance (it left, or its /DeviceInstance
   * changed); when another service claims the same one (a conflict that was
   * logged), requests go to that one now.
   */
  release(service: Service): void {
    const key = deviceKey(service.type, service.instance);
    if (this.#byDevice.get(key) !== service) return;
    this.#byDevice.delete(key);
    for (const other of this.services.values()) {
      if (other !== service && other.type === service.type && other.instance === service.instance) {
        this.#byDevice.set(key, other);
      }
    }
  }

  byOwner(owner: string): Service | undefined {
    return this.#byOwner.get(owner);
  }

  byDevice(type: string, instance: number): Service | undefined {
    return this.#byDevice.get(deviceKey(type, instance));
  }

  /**
   * The scan told the device instance: items get their topics. Returns the
   * service that held the same type/instance before, if any.
   */
  ready(service: Service, instance: number): Service | undefined {
    service.instance = instance;
    for (const item of service.items.values()) item.topic = this.#topic(service, item.path);
    const key = deviceKey(service.type, instance);
    const previous = this.#byDevice.get(key);
    this.#byDevice.set(key, service);
    return previous === service ? undefined : previous;
  }

  /**
   * Records a value that arrived as message number `seq`, with the item's
   * limits when the message told them; returns the item when something
   * changed, undefined when nothing did, the message is older than what we
   * have, or the item is never published.
   */
  set(
    service: Service,
    path: string,
    json: string,
    seq: number,
    limits?: string,
  ): Item | undefined {
    let item = service.items.get(path);
    if (!item) {
      // Which items are blocked or secret is decided once, not on every change.
      if (isBlocked(service.type, path)) return undefined;
      const masked = this.#masked.has(service.type + path);
      if (masked) [json, limits] = secret(json);
      const topic = this.#topic(service, path);
      item = { path, json, masked, limits: limits ?? "", seq, topic, retainedByBroker: false };
      service.items.set(path, item);
      return item;
    }
    if (item.masked) [json, limits] = secret(json);
    if (seq < item.seq) return undefined;
    item.seq = seq;
    if (item.json === json && (limits === undefined || item.limits === limits)) return undefined;
    item.json = json;
    if (limits !== undefined) item.limits = limits;
    return item;
  }

  #topic({ type, instance }: Service, path: string): string {
    if (instance === undefined || isSerial({ type, instance, path })) return "";
    return notificationTopic(this.portalId, type, instance, path);
  }

  /** Every item of every scanned service. */
  *items(): Generator<Item> {
    for (const service of this.services.values()) {
      if (service.instance !== undefined) yield* service.items.values();
    }
  }
}

/**
 * A device instance as D-Bus gives it (JSON text), when it is a whole number
 * that fits a topic's instance level (0 to 2^32 - 1, as requests name it).
 */
export function toInstance(json: string): number | undefined {
  const instance = Number(json);
  return Number.isInteger(instance) && instance >= 0 && instance <= 0xffffffff
    ? instance
    : undefined;
}

/**
 * What goes out for a secret: "******" (an invalid value stays null), and no
 * limits, as a default could be the secret itself.
 */
function secret(json: string): [string, string] {
  return [json === INVALID_JSON ? json : MASKED_JSON, ""];
}

function deviceKey(type: string, instance: number | undefined): string {
  return `${type}/${instance}`;
}
