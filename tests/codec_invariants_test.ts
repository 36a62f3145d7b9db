/**
 * Property tests (fast-check): topic parsing, JSON -> D-Bus and D-Bus -> JSON
 * on generated input, with the round trips that must hold, and the D-Bus
 * wire format against another implementation (dbus-next) and damage.
 */
import { deepStrictEqual, strictEqual } from "node:assert";
import dbus from "dbus-next";
import fc from "fast-check";
import { parseRequest } from "../lib/topics.ts";
import { decodeMessage, encodeMessage, FramingError, MessageFramer } from "../lib/dbus_wire.ts";
import { parseSignatures } from "../lib/dbus_signature.ts";
import { parseTypedJson, type Variant, writePayloadToVariant } from "../lib/values.ts";
import { dbusNextBytes, dbusNextReads, wireJson } from "./support/wire.ts";

const { Variant: DbusVariant } = dbus;
const ID = "e0ff50a097c0";
const RUNS = { numRuns: 2000 };

/** A JSON value as read back: an empty list is written as `au`, which reads as invalid. */
function readBack(value: unknown): unknown {
  if (Array.isArray(value)) return value.length === 0 ? null : value.map(readBack);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, readBack(v)]));
  }
  return value;
}

Deno.test("any topic: parseRequest answers a request or a reason, never throws", () => {
  fc.assert(
    fc.property(fc.string({ unit: "grapheme-ascii", maxLength: 80 }), (topic) => {
      const result = parseRequest(topic, ID);
      strictEqual(typeof result === "string" || typeof result === "object", true);
    }),
    RUNS,
  );
});

Deno.test("a well-formed request topic parses back into its parts", () => {
  const level = fc.stringMatching(/^[A-Za-z0-9_.-]{1,12}$/);
  fc.assert(
    fc.property(
      fc.constantFrom("R", "W"),
      level,
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.array(level, { minLength: 1, maxLength: 6 }),
      (verb, type, instance, path) => {
        const request = parseRequest(`${verb}/${ID}/${type}/${instance}/${path.join("/")}`, ID);
        deepStrictEqual(request, {
          kind: verb === "R" ? "read" : "write",
          type,
          instance,
          path: "/" + path.join("/"),
        });
      },
    ),
    RUNS,
  );
});

Deno.test("JSON -> D-Bus -> JSON keeps every value (empty lists read back as invalid)", () => {
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 4 }), (value) => {
      const text = JSON.stringify(value);
      let variant;
      try {
        variant = writePayloadToVariant(`{"value": ${text}}`);
      } catch (error) {
        // Large doubles print as integer literals (1.8e19 as "18446744073709552000").
        strictEqual(/does not fit in 64 bits/.test(String(error)), true, String(error));
        return;
      }
      deepStrictEqual(JSON.parse(wireJson(variant)), readBack(JSON.parse(text)));
    }),
    RUNS,
  );
});

Deno.test("the typed parser agrees with JSON.parse and refuses anything else with a reason", () => {
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 5 }), (value) => {
      const text = JSON.stringify(value);
      const typed = parseTypedJson(text);
      const plain = (_: string, v: unknown) =>
        typeof v === "bigint" ? Number(v) : v instanceof Map ? Object.fromEntries(v) : v;
      deepStrictEqual(JSON.parse(JSON.stringify(typed, plain)), JSON.parse(text));
    }),
    RUNS,
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 40 }), (text) => {
      try {
        parseTypedJson(text);
      } catch (error) {
        // Or a number a double cannot hold (1e-400), which is valid JSON.
        const refused = error instanceof SyntaxError || /too small for a double/.test(`${error}`);
        strictEqual(refused, true, String(error));
      }
    }),
    RUNS,
  );
});

/** D-Bus values of the types Victron services publish, with their signature. */
const variant: fc.Arbitrary<Variant> = fc.letrec<{ v: Variant }>((tie) => ({
  v: fc.oneof(
    { maxDepth: 3 },
    fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map((n) => new DbusVariant("i", n)),
    fc.integer({ min: 0, max: 2 ** 32 - 1 }).map((n) => new DbusVariant("u", n)),
    // -2^63 itself dbus-next (which marshals these) refuses.
    fc.bigInt({ min: 1n - 2n ** 63n, max: 2n ** 63n - 1n }).map((n) => new DbusVariant("x", n)),
    fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => new DbusVariant("d", d)),
    fc.string().map((s) => new DbusVariant("s", s)),
    fc.boolean().map((b) => new DbusVariant("b", b)),
    fc.array(fc.integer({ min: -5, max: 5 }), { maxLength: 4 }).map((a) =>
      new DbusVariant("ai", a)
    ),
    fc.array(tie("v"), { maxLength: 3 }).map((a) => new DbusVariant("av", a)),
    fc.dictionary(fc.string({ maxLength: 5 }), tie("v"), { maxKeys: 3 }).map((d) =>
      new DbusVariant("a{sv}", d)
    ),
  ),
})).v;

Deno.test("D-Bus -> JSON is always valid JSON; doubles stay floats, integers stay integers", () => {
  fc.assert(
    fc.property(variant, (v) => {
      const json = wireJson(v);
      JSON.parse(json); // throws on invalid JSON
      if (v.signature === "d") strictEqual(/[.eE]/.test(json) || json === "null", true, json);
      if ("iux".includes(v.signature)) strictEqual(json, String(v.value));
    }),
    RUNS,
  );
});

Deno.test("what the bridge writes on D-Bus, another implementation reads as the same value", () => {
  fc.assert(
    fc.property(variant, (v) => {
      const call = encodeMessage({
        serial: 9,
        destination: "com.victronenergy.settings",
        path: "/Settings/Some/Item",
        interface: "com.victronenergy.BusItem",
        member: "SetValue",
        signature: "v",
        body: [v],
      });
      const read = dbusNextReads(call);
      strictEqual(read.member, "SetValue");
      strictEqual(read.path, "/Settings/Some/Item");
      strictEqual(wireJson(read.body[0] as Variant), wireJson(v));
    }),
    RUNS,
  );
});

Deno.test("damaged messages are refused with an Error, never a hang or a crash", () => {
  const item = { Value: new DbusVariant("d", 1.5), Text: new DbusVariant("s", "1.5 V") };
  const good = dbusNextBytes("a{sa{sv}}", [{ "/Dc/0/Voltage": item, "/Soc": item }]);
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 0, max: 255 })), {
        minLength: 1,
        maxLength: 8,
      }),
      (damage) => {
        const bytes = good.slice();
        for (const [at, byte] of damage) bytes[at] = byte;
        try {
          // Twice in a row, so a damaged length also decides where the next message starts.
          const framed = new MessageFramer().push(new Uint8Array([...bytes, ...bytes]));
          for (const message of framed) strictEqual(message.length >= 16, true);
        } catch (error) {
          strictEqual(error instanceof FramingError, true, String(error));
        }
        try {
          const message = decodeMessage(bytes);
          for (const type of parseSignatures(message.signature)) message.body.value(type);
        } catch (error) {
          strictEqual(error instanceof Error, true, String(error));
        }
      },
    ),
    RUNS,
  );
});
