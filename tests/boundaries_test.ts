/**
 * Unit tests of the checks at the bridge's boundaries: what the D-Bus writer,
 * the PUBLISH encoder, the typed JSON rules and the log refuse or escape, and
 * the bounds on waiting echo tokens and device instances.
 */
import { deepStrictEqual, strictEqual, throws } from "node:assert";
import fc from "fast-check";
import { isObjectPath } from "../lib/dbus_wire.ts";
import { WaitingEchoes } from "../lib/keepalive.ts";
import { createLogger, escapeUnsafe, shown } from "../lib/log.ts";
import { encodePublishes, type Publish, topicProblem } from "../lib/mqtt_packets.ts";
import { toInstance } from "../lib/state.ts";
import { isItemPath } from "../lib/topics.ts";
import { parseTypedJson, toVariant, type Variant, writePayloadToVariant } from "../lib/values.ts";
import { dbusNextReads, setValueBytes as setValue } from "./support/wire.ts";

const nested = (open: string, inner: string, close: string, n: number) =>
  open.repeat(n) + inner + close.repeat(n);

Deno.test("the D-Bus writer refuses what the daemon would drop the connection for", () => {
  const refused: [string, Variant | string, RegExp][] = [
    ["a NUL in a string", toVariant("a\u0000b"), /NUL/],
    ["a NUL in a dict key", toVariant(parseTypedJson('{"a\\u0000": 1}')), /NUL/],
    ["half a UTF-16 pair", toVariant("\ud800"), /half a UTF-16 pair/],
    ["arrays 32 deep (65 containers)", arrays(32, { signature: "i", value: 1 }), /nested over 64/],
    ["a dict inside 31 arrays (66 containers)", arrays(31, dict), /nested over 64/],
    ["a signature that is not one", { signature: "a{vs}", value: [] }, /basic key/],
    ["an object path with a dash", "/Dash-Path", /object path/],
    ["an object path with a space", "/Space Path", /object path/],
  ];
  for (const [what, value, why] of refused) {
    throws(
      () => typeof value === "string" ? setValue(toVariant(1), value) : setValue(value),
      why,
      what,
    );
  }
});

Deno.test("the deepest values the daemon takes are written, and read back by dbus-next", () => {
  // 1 + 2 x 31 = 63 and 1 + 2 x 30 + 3 = 64 containers: measured against dbus-daemon.
  for (const value of [arrays(31, { signature: "i", value: 1 }), arrays(30, dict)]) {
    const read = dbusNextReads(setValue(value));
    strictEqual(read.member, "SetValue");
  }
});

Deno.test("a W value leaves room for the service's echo of it: 59 containers at most", () => {
  // ItemsChanged (a{sa{sv}}) puts five containers around the value; the daemon takes 64.
  // [arrays or objects around the innermost value, how many, the value's containers]
  const cases: [string, string, number, number][] = [
    ["[", "1", 29, 58],
    ["[", "null", 29, 59],
    ["[", '{"a":1}', 28, 59],
    ['{"a":', "[]", 19, 59],
    ['{"a":', "1", 19, 57],
    ["[", "1", 30, 60],
    ["[", "null", 30, 61],
    ["[", '{"a":1}', 29, 61],
    ['{"a":', "[null]", 19, 60],
    ['{"a":', "1", 20, 60],
  ];
  for (const [open, inner, n, containers] of cases) {
    const json = nested(open, inner, open === "[" ? "]" : "}", n);
    if (containers <= 59) {
      strictEqual(dbusNextReads(setValue(parseJson(json))).member, "SetValue");
    } else {
      throws(() => parseJson(json), /echo of it/, `${n} x ${open} ${inner}`);
    }
  }
});

/** A variant of `n` arrays inside each other around `inner`, past the value rules' limit. */
function arrays(n: number, inner: Variant): Variant {
  return n === 0 ? inner : { signature: "av", value: [arrays(n - 1, inner)] };
}
const dict: Variant = { signature: "a{sv}", value: new Map([["a", { signature: "i", value: 1 }]]) };

Deno.test("numbers D-Bus cannot carry are refused, not rounded", () => {
  for (
    const text of [
      "1e999",
      "-1e999",
      "1".repeat(400),
      "-9223372036854775809",
      "18446744073709551616",
    ]
  ) {
    throws(
      () => writePayloadToVariant(`{"value": ${text}}`),
      /does not fit in 64 bits|too large/,
      text,
    );
  }
  deepStrictEqual(writePayloadToVariant('{"value": -9223372036854775808}'), {
    signature: "x",
    value: -9223372036854775808n,
  });
  deepStrictEqual(writePayloadToVariant('{"value": 18446744073709551615}'), {
    signature: "t",
    value: 18446744073709551615n,
  });
});

Deno.test("item paths: D-Bus object paths whose levels are topic levels, of a sane length", () => {
  for (
    const path of ["/Ac/Power", "/Settings/CGwacs/AcPowerSetPoint", "/_1/a_b", "/a".repeat(64)]
  ) {
    strictEqual(isItemPath(path), true, path);
  }
  for (
    const path of [
      "/",
      "",
      "Ac",
      "/a".repeat(65),
      "/Dash-Path",
      "/Space Path",
      "/a#b",
      "/a+b",
      "/a\nb",
      "/a//b",
      "/a/",
      "/é",
      "/" + "x".repeat(70_001),
    ]
  ) {
    strictEqual(isItemPath(path), false, JSON.stringify(path.slice(0, 20)));
  }
  strictEqual(isObjectPath("/"), true);
});

Deno.test("device instances: whole numbers that fit a topic's instance level", () => {
  deepStrictEqual(["0", "20", "4294967295"].map(toInstance), [0, 20, 4294967295]);
  for (const json of ["1e21", "1e+21", "4294967296", "-1", "1.5", "null", '"3"', "[]"]) {
    strictEqual(toInstance(json), undefined, json);
  }
});

Deno.test("the PUBLISH encoder leaves out what a broker would refuse, and says why", () => {
  const refused: string[] = [];
  const good = { topic: "N/id/battery/0/Soc", payload: '{"value": 1}', retain: true };
  const bad: Publish[] = [
    "N/id/a#b",
    "N/id/a+b",
    "N/id/a\nb",
    "N/id/a\u0000b",
    "",
    "N/\ud800",
    "N/\ufffe",
    "N/" + "x".repeat(70_000),
  ]
    .map((topic) => ({ topic, payload: "{}", retain: true }));
  const bytes = encodePublishes([...bad, good], (_, why) => refused.push(why));
  strictEqual(refused.length, bad.length);
  deepStrictEqual(refused.slice(0, 2), [
    "a wildcard '#' in the topic",
    "a wildcard '+' in the topic",
  ]);
  strictEqual(refused.at(-1), "a topic over 65,535 bytes");
  // Only the good packet is written.
  strictEqual(bytes.length, 2 + 2 + good.topic.length + good.payload.length);
  strictEqual(topicProblem("N/id/vebus/276/Ünïcode/😀"), undefined, "other Unicode is fine");
  strictEqual(topicProblem("N" + "/a".repeat(199)), undefined, "200 levels");
  strictEqual(topicProblem("N" + "/a".repeat(200)), "over 200 topic levels");
});

Deno.test("log lines: outside text escaped and cut, so it cannot forge lines or steer a terminal", () => {
  strictEqual(
    escapeUnsafe("a\nb\r\u001b[31m\u0000\u202e\u2028ok é 😀"),
    "a\\nb\\r\\x1b[31m\\x00\\u202e\\u2028ok é 😀",
  );
  strictEqual(shown("x".repeat(60_000)), "x".repeat(200) + "... (60000 characters)");
  const lines: string[] = [];
  const log = createLogger("debug", (line) => lines.push(line));
  log.warn("write", "refused: bad\nWARN  [forged] line");
  log.debug("request", "y".repeat(5000));
  strictEqual(lines.length, 2);
  strictEqual(lines[0], "WARN  [write] refused: bad\\nWARN  [forged] line");
  strictEqual(lines[1].length < 1100, true, "a line is cut, however long its message");
});

Deno.test("echo tokens: a flood keeps memory bounded and drops its oldest first", () => {
  const echoes = new WaitingEchoes();
  strictEqual(echoes.add("first"), 0);
  strictEqual(echoes.add("first"), 0, "asked twice, echoed once");
  let dropped = 0;
  for (let i = 0; i < 12_000; i++) dropped += echoes.add(`flood-${i}`);
  strictEqual(echoes.add("late"), 1);
  const taken = echoes.take();
  strictEqual(taken.length, 10_000);
  strictEqual(dropped, 2_001, "the oldest 2,001 went for the flood");
  strictEqual(taken.includes("first"), false);
  strictEqual(taken.at(-1), "late");
  deepStrictEqual(echoes.take(), []);
  // Long tokens count by their length.
  for (let i = 0; i < 2000; i++) echoes.add(`${i}`.padEnd(1024, "x"));
  strictEqual(echoes.take().length, 1024);
});

function parseJson(text: string): Variant {
  return toVariant(parseTypedJson(text));
}

/** JSON text as a hostile client writes it: NULs, halves of pairs, huge numbers, deep nesting. */
const hostileJson: fc.Arbitrary<string> = fc.letrec<{ value: string }>((tie) => ({
  value: fc.oneof(
    { maxDepth: 4 },
    fc.constantFrom("null", "true", "-0", "0.5", "1e999", "-9223372036854775809", "1".repeat(30)),
    fc.string({ unit: "binary", maxLength: 6 }).map((text) => JSON.stringify(text)),
    fc.array(tie("value"), { maxLength: 3 }).map((items) => `[${items.join(",")}]`),
    fc.dictionary(fc.string({ unit: "binary", maxLength: 3 }), tie("value"), { maxKeys: 2 })
      .map((d) => `{${Object.entries(d).map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`),
    fc.tuple(fc.integer({ min: 20, max: 40 }), fc.constantFrom("[", '{"k":'), tie("value"))
      .map(([n, open, inner]) => nested(open, inner, open === "[" ? "]" : "}", n)),
  ),
})).value;

Deno.test("any JSON the parser takes is written so dbus-next reads it, or refused before the socket", () => {
  fc.assert(
    fc.property(hostileJson, (text) => {
      let parsed;
      try {
        parsed = parseTypedJson(text);
      } catch {
        return fc.pre(false); // the parser's own limit (nesting): not a case of this property
      }
      let bytes;
      try {
        bytes = setValue(toVariant(parsed));
      } catch (error) {
        // Refused before the socket: by the value rules or by the writer.
        strictEqual(error instanceof RangeError, true, String(error));
        return;
      }
      const read = dbusNextReads(bytes);
      deepStrictEqual([read.member, read.signature, read.body.length], ["SetValue", "v", 1]);
    }),
    { numRuns: 2000 },
  );
});
