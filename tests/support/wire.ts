/**
 * The wire format as another implementation writes and reads it: dbus-next's
 * marshaller, so the bridge's reader is checked against more than itself.
 */
import dbus from "dbus-next";
// dbus-next's own (internal) message codec: what its services put on the bus.
import compat from "dbus-next/lib/marshall-compat.js";
import message from "dbus-next/lib/message.js";
import { Buffer } from "node:buffer";
import { decodeMessage, encodeMessage } from "../../lib/dbus_wire.ts";
import type { Variant } from "../../lib/values.ts";
import { toDbusNext } from "./victron_services.ts";

/** A signal with this body, as dbus-next puts it on the bus. */
export function dbusNextBytes(signature: string, body: unknown[]): Uint8Array {
  const m = new dbus.Message({
    type: dbus.MessageType.SIGNAL,
    path: "/Some/Path",
    interface: "com.victronenergy.BusItem",
    member: "PropertiesChanged",
    signature,
    body,
  });
  m.serial = 7;
  return compat.marshallMessage(m)[0];
}

/** The JSON text the bridge makes of a variant dbus-next marshalled. */
export function wireJson(variant: Variant): string {
  return decodeMessage(dbusNextBytes("v", [toDbusNext(variant)])).body.variantJson(0);
}

/** The message dbus-next reads from bytes the bridge wrote (body as plain JS). */
export function dbusNextReads(bytes: Uint8Array): Record<string, unknown> & { body: unknown[] } {
  return compat.messageToJsFmt(message.unmarshall(Buffer.from(bytes)));
}

/** The bridge's SetValue call of `value` on `path`, as it would send it. */
export function setValueBytes(value: Variant, path = "/A"): Uint8Array {
  return encodeMessage({
    serial: 1,
    destination: "com.victronenergy.x",
    path,
    interface: "com.victronenergy.BusItem",
    member: "SetValue",
    signature: "v",
    body: [value],
  });
}
