/**
 * The D-Bus wire reader on its own: messages cut out of a byte stream however
 * it is split, headers, both byte orders, streams that cannot be D-Bus, and
 * bus addresses.
 */
import { deepStrictEqual, strictEqual, throws } from "node:assert";
import dbus from "dbus-next";
import {
  decodeMessage,
  encodeMessage,
  FramingError,
  MessageFramer,
  MessageType,
} from "../lib/dbus_wire.ts";
import { socketOptions } from "../lib/bus_address.ts";
import { parseSignature } from "../lib/dbus_signature.ts";
import { dbusNextBytes, dbusNextReads } from "./support/wire.ts";

const { Variant } = dbus;

function stream(): Uint8Array[] {
  return [
    dbusNextBytes("a{sv}", [{ Value: new Variant("d", 12.5), Text: new Variant("s", "12.5 V") }]),
    dbusNextBytes("s", ["x".repeat(300)]),
    dbusNextBytes("", []),
  ];
}

Deno.test("messages come out whole however the stream is split", () => {
  const messages = stream();
  const all = new Uint8Array(messages.reduce((n, m) => n + m.length, 0));
  let at = 0;
  for (const m of messages) all.set(m, (at += m.length) - m.length);
  for (const size of [1, 2, 3, 7, 16, 100, all.length]) {
    const framer = new MessageFramer();
    const out: Uint8Array[] = [];
    for (let i = 0; i < all.length; i += size) out.push(...framer.push(all.slice(i, i + size)));
    deepStrictEqual(out.map((m) => [...m]), messages.map((m) => [...m]), `chunks of ${size}`);
  }
});

Deno.test("a message's header and body read as dbus-next wrote them", () => {
  const message = decodeMessage(stream()[0]);
  strictEqual(message.type, MessageType.SIGNAL);
  strictEqual(message.serial, 7);
  strictEqual(message.path, "/Some/Path");
  strictEqual(message.interface, "com.victronenergy.BusItem");
  strictEqual(message.member, "PropertiesChanged");
  strictEqual(message.signature, "a{sv}");
  const body = message.body.value(parseSignature("a{sv}")) as Map<string, string>;
  deepStrictEqual([...body], [["Value", "12.5"], ["Text", '"12.5 V"']]);
});

Deno.test("strings read again come back right, however many share a slot", () => {
  // More paths than the reader keeps (it remembers recent short strings by a
  // hash): slots are shared, and each read must still give its own bytes.
  const paths = Array.from({ length: 40_000 }, (_, i) => `/Ac/P${i.toString(36)}/V`);
  const pathOf = (i: number) =>
    decodeMessage(
      encodeMessage({
        type: MessageType.SIGNAL,
        serial: 1,
        path: paths[i],
        interface: "com.victronenergy.BusItem",
        member: "PropertiesChanged",
      }),
    ).path;
  for (const order of [1, -1]) {
    for (let n = 0; n < paths.length; n++) {
      const i = order > 0 ? n : paths.length - 1 - n;
      if (pathOf(i) !== paths[i]) throw new Error(`read ${pathOf(i)} for ${paths[i]}`);
    }
  }
});

Deno.test("big-endian messages read as well as little-endian ones", () => {
  // A signal from a big-endian service: path "/", member "M", body "d" = 2.0.
  const bytes = new Uint8Array(64);
  const view = new DataView(bytes.buffer);
  bytes.set([0x42, MessageType.SIGNAL, 0, 1]);
  view.setUint32(4, 8); // body length
  view.setUint32(8, 5); // serial
  view.setUint32(12, 39); // header fields, 16..55
  bytes.set([1, 1, 0x6f, 0, 0, 0, 0, 1, 0x2f, 0], 16); // PATH (o) "/"
  bytes.set([3, 1, 0x73, 0, 0, 0, 0, 1, 0x4d, 0], 32); // MEMBER (s) "M"
  bytes.set([8, 1, 0x67, 0, 1, 0x64, 0], 48); // SIGNATURE (g) "d"
  view.setFloat64(56, 2);
  const bodyAt = 56;
  const message = decodeMessage(bytes.subarray(0, bodyAt + 8));
  strictEqual(message.path, "/");
  strictEqual(message.member, "M");
  strictEqual(message.signature, "d");
  strictEqual(message.body.json(parseSignature("d"), 0), "2.0");
});

Deno.test("a stream that is not D-Bus, or a message over 128 MiB, stops the framer", () => {
  throws(
    () => new MessageFramer().push(new TextEncoder().encode("HTTP/1.1 200 OK\r\n\r\n")),
    FramingError,
  );
  const huge = stream()[2].slice();
  new DataView(huge.buffer).setUint32(4, 200 * 1024 * 1024, true);
  throws(() => new MessageFramer().push(huge), FramingError);
});

Deno.test("calls the bridge writes carry their fields and body", () => {
  const call = decodeMessage(encodeMessage({
    serial: 41,
    destination: "com.victronenergy.settings",
    path: "/Settings/A",
    interface: "com.victronenergy.BusItem",
    member: "SetValue",
    signature: "sv",
    body: ["é", { signature: "a{is}", value: new Map([[3, "three"]]) }],
  }));
  strictEqual(call.type, MessageType.METHOD_CALL);
  strictEqual(call.serial, 41);
  strictEqual(call.destination, "com.victronenergy.settings");
  strictEqual(call.body.string(), "é");
  strictEqual(call.body.variantJson(0), '{"3":"three"}');
});

Deno.test("signatures that cannot be a value are refused", () => {
  for (const bad of ["()", "a{vs}", "a{sss}", "a{(i)s}", "a", "(i", "q)", "z"]) {
    throws(() => parseSignature(bad), Error, bad);
  }
});

Deno.test("D-Bus addresses: unix path, tcp, escapes; the first of a list", () => {
  deepStrictEqual(socketOptions("unix:path=/var/run/dbus/system_bus_socket"), {
    path: "/var/run/dbus/system_bus_socket",
  });
  deepStrictEqual(socketOptions("unix:path=/tmp/dbus-x,guid=ab12"), { path: "/tmp/dbus-x" });
  throws(() => socketOptions("unix:abstract=/tmp/dbus-x"), /abstract socket .* use unix:path=/);
  deepStrictEqual(socketOptions("tcp:host=venus.local,port=78"), { host: "venus.local", port: 78 });
  deepStrictEqual(socketOptions("unix:path=/tmp/a%2cb;tcp:host=x,port=1"), { path: "/tmp/a,b" });
  throws(() => socketOptions("tcp:host=venus.local"), /a tcp: address needs port=/);
  throws(() => socketOptions("unix:path="), /a unix: address needs path=/);
  throws(() => socketOptions("launchd:env=X"), /unsupported D-Bus address/);
  throws(() => socketOptions("tcp:host=x,port=70000"), /port '70000' is no port from 1 to 65535/);
  throws(() => socketOptions("unix:path=/tmp/%zz"), /'\/tmp\/%zz' has a malformed %-escape/);
});

Deno.test("signals the simulator writes with it are what dbus-next reads", () => {
  const message = dbusNextReads(encodeMessage({
    type: MessageType.SIGNAL,
    serial: 9,
    path: "/",
    interface: "com.victronenergy.BusItem",
    member: "ItemsChanged",
    signature: "a{sa{sv}}",
    body: [{
      "/Ac/Power": {
        Value: { signature: "d", value: 12.5 },
        Text: { signature: "s", value: "12.5" },
      },
    }],
  }));
  deepStrictEqual(
    [message.type, message.serial, message.path, message.member, message.destination],
    [dbus.MessageType.SIGNAL, 9, "/", "ItemsChanged", undefined],
  );
  const item = (message.body[0] as Record<string, Record<string, { value: unknown }>>)["/Ac/Power"];
  deepStrictEqual([item.Value.value, item.Text.value], [12.5, "12.5"]);
});
