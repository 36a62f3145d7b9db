/**
 * Every topic rule of the bridge: D-Bus service names to service types, the
 * N/R/W topic layout, and which D-Bus items never go out or go out masked.
 */

import { isObjectPath } from "./dbus_wire.ts";

export const SERVICE_PREFIX = "com.victronenergy.";

/**
 * Longest and deepest item path served: real ones are under 100 characters
 * and 10 levels; this keeps every topic far below MQTT's limit of 65,535
 * bytes and Mosquitto's of 200 levels.
 */
const MAX_ITEM_PATH = 1024;
const MAX_ITEM_PATH_LEVELS = 64;

/**
 * Whether a path a service lists can be an item: a D-Bus object path (other
 * than "/") can be called, and its levels (letters, digits, "_") are MQTT
 * topic levels; "/Dash-Path" or "/a#b" is neither.
 */
export function isItemPath(path: string): boolean {
  return path.length <= MAX_ITEM_PATH && path !== "/" && isObjectPath(path) &&
    // Checked on every signal: only a long path can have too many levels.
    (path.length <= 2 * MAX_ITEM_PATH_LEVELS || path.split("/").length <= MAX_ITEM_PATH_LEVELS + 1);
}

/** A portal id fills one topic level: letters, digits, "-" and "_". */
export function isPortalId(id: string): boolean {
  return /^[A-Za-z0-9_-]{1,64}$/.test(id);
}

/** `com.victronenergy.pvinverter.cgwacs_ttyUSB0` -> `pvinverter`. */
export function serviceType(busName: string): string | undefined {
  if (!busName.startsWith(SERVICE_PREFIX)) return undefined;
  const type = busName.slice(SERVICE_PREFIX.length).split(".")[0];
  return type === "" ? undefined : type;
}

export function notificationTopic(
  portalId: string,
  type: string,
  instance: number,
  path: string,
): string {
  return `N/${portalId}/${itemName(type, instance, path)}`;
}

export function serialTopic(portalId: string): string {
  return notificationTopic(portalId, "system", 0, "/Serial");
}

export function fullPublishCompletedTopic(portalId: string): string {
  return `N/${portalId}/full_publish_completed`;
}

export function heartbeatTopic(portalId: string): string {
  return `N/${portalId}/heartbeat`;
}

/** Every topic a GX publishes; `+` for every GX on the broker. */
export function notificationFilter(portalId: string): string {
  return `N/${portalId}/#`;
}

export function keepAliveTopic(portalId: string): string {
  return `R/${portalId}/keepalive`;
}

/** `N/<id>/battery/512/Soc` -> `battery/512/Soc`, as users write it and filters match. */
export function shortTopic(topic: string): string {
  return topic.split("/").slice(2).join("/");
}

/** The topics the bridge subscribes to. */
export function requestTopics(portalId: string): string[] {
  return [`R/${portalId}/#`, `W/${portalId}/#`];
}

/** A request from an MQTT client, as its topic says. */
export interface ItemRequest {
  kind: "read" | "write";
  type: string;
  instance: number;
  path: string;
}
/**
 * A keep-alive: `R/<id>/keepalive`, or a read of the Serial
 * (`R/<id>/system/0/Serial`), which is both and carries that read.
 */
export interface KeepAliveRequest {
  kind: "keepalive";
  read?: ItemRequest;
}
export type Request = ItemRequest | KeepAliveRequest;

const INSTANCE = /^(0|[1-9][0-9]{0,9})$/;

/**
 * Parses an R or W topic for our portal id; returns a reason string for
 * anything else, which the caller logs.
 */
export function parseRequest(topic: string, portalId: string): Request | string {
  const parts = topic.split("/");
  const verb = parts[0];
  if (verb !== "R" && verb !== "W") return "not a read or write request";
  if (parts[1] !== portalId) return `not for portal id ${portalId}`;
  if (topic.includes("+") || topic.includes("#")) {
    return "wildcards are not supported in requests";
  }
  if (parts.length === 3 && parts[2] === "keepalive" && verb === "R") {
    return { kind: "keepalive" };
  }
  if (parts.length < 5) {
    return "expected <R|W>/<portal id>/<service type>/<instance>/<path>";
  }
  const [, , type, instance, ...path] = parts;
  if (!INSTANCE.test(instance) || Number(instance) > 0xffffffff) {
    return `device instance '${instance}' is not a number`;
  }
  if (type === "" || path.some((segment) => segment === "")) {
    return "empty topic level";
  }
  const request: ItemRequest = {
    kind: verb === "R" ? "read" : "write",
    type,
    instance: Number(instance),
    path: "/" + path.join("/"),
  };
  return request.kind === "read" && isSerial(request)
    ? { kind: "keepalive", read: request }
    : request;
}

/**
 * The Serial: its topic carries the portal id, which the bridge publishes
 * itself; a service's /Serial (a W to it, a GX whose id is not --portal-id)
 * must not change whom clients take the GX for.
 */
export function isSerial(item: Pick<ItemRequest, "type" | "instance" | "path">): boolean {
  return item.type === "system" && item.instance === 0 && item.path === "/Serial";
}

/** Items that exist on D-Bus but are internal; never published or served. */
const BLOCKED = new Set([
  "vebus/Interfaces/Mk2/Tunnel",
  "paygo/LVD/Threshold",
]);

/**
 * Secrets that live on the bus, as `<type><path>`; published and read as
 * `"******"`. `--mask` adds more.
 */
export const MASKED = [
  "settings/Settings/Ble/Service/Pincode",
  "settings/Settings/Services/AccessPointPassword",
];
export const MASKED_JSON = '"******"';

export function isBlocked(type: string, path: string): boolean {
  return BLOCKED.has(type + path);
}

/** The short form users write and filters match: `settings/0/Settings/CGwacs/Hub4Mode`. */
export function itemName(type: string, instance: number, path: string): string {
  return `${type}/${instance}${path}`;
}

/** An MQTT topic filter: `+` and `#` each fill a whole level, `#` only the last one. */
export function isValidFilter(filter: string): boolean {
  const levels = filter.split("/");
  return filter !== "" &&
    levels.every((level, i) =>
      (level === "#" ? i === levels.length - 1 : !level.includes("#")) &&
      (level === "+" || !level.includes("+"))
    );
}

/** MQTT matching of a valid filter against a topic (`a/+/c`, `a/#`). */
export function matchesFilter(filter: string, topic: string): boolean {
  const want = filter.split("/");
  const have = topic.split("/");
  for (let i = 0; i < want.length; i++) {
    if (want[i] === "#") return true;
    if (i >= have.length || (want[i] !== "+" && want[i] !== have[i])) return false;
  }
  return want.length === have.length;
}
