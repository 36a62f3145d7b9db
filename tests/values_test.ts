import { deepStrictEqual, strictEqual, throws } from "node:assert";
import { Buffer } from "node:buffer";
import { parseTypedJson, payload, toVariant, writePayloadToVariant } from "../lib/values.ts";
import { decodeMessage, formatDouble } from "../lib/dbus_wire.ts";
import { setValueBytes, wireJson } from "./support/wire.ts";

const variant = (signature: string, value: unknown) => ({ signature, value });
const json = (signature: string, value: unknown) => wireJson(variant(signature, value));

Deno.test("doubles keep .0 when whole and read back exactly otherwise", () => {
  strictEqual(formatDouble(0), "0.0");
  strictEqual(formatDouble(12), "12.0");
  strictEqual(formatDouble(-200), "-200.0");
  strictEqual(formatDouble(20.43000030517578), "20.43000030517578");
  strictEqual(formatDouble(1e21), "1e+21");
  strictEqual(formatDouble(NaN), "null");
  strictEqual(json("d", 12), "12.0");
});

Deno.test("integers of every width stay integers, 64-bit ones exact", () => {
  strictEqual(json("i", -200), "-200");
  strictEqual(json("u", 4294967295), "4294967295");
  strictEqual(json("y", 255), "255");
  strictEqual(json("n", -5), "-5");
  strictEqual(json("x", 9007199254740993n), "9007199254740993");
  strictEqual(json("t", 18446744073709551615n), "18446744073709551615");
});

Deno.test("strings, booleans, arrays, dicts, structs and nested variants", () => {
  strictEqual(json("s", 'say "hi"\n'), '"say \\"hi\\"\\n"');
  strictEqual(json("b", true), "true");
  strictEqual(json("ad", [1, 2.5]), "[1.0,2.5]");
  strictEqual(json("as", []), "[]");
  strictEqual(json("ay", Buffer.from([1, 2, 255])), "[1,2,255]");
  strictEqual(
    json("a{sv}", { a: variant("i", 1), b: variant("s", "x") }),
    '{"a":1,"b":"x"}',
  );
  strictEqual(json("(isd)", [1, "a", 2]), '[1,"a",2.0]');
  strictEqual(json("av", [variant("d", 3), variant("as", ["q"])]), '[3.0,["q"]]');
  strictEqual(
    json("aa{sv}", [{ soc: variant("d", 58.2) }]),
    '[{"soc":58.2}]',
  );
});

Deno.test("an empty array of integers is Victron's invalid value: null", () => {
  strictEqual(json("ai", []), "null");
  strictEqual(json("au", []), "null");
  strictEqual(json("ay", Buffer.from([])), "null");
  strictEqual(json("v", variant("ai", [])), "null");
  strictEqual(payload("null"), '{"value": null}');
});

Deno.test("typed JSON keeps integer and float literals apart", () => {
  deepStrictEqual(parseTypedJson("-200"), -200n);
  deepStrictEqual(parseTypedJson("-200.0"), -200);
  deepStrictEqual(parseTypedJson("2e3"), 2000);
  deepStrictEqual(
    parseTypedJson('{"value": [1, 1.5, "a", true, null]}'),
    new Map([["value", [1n, 1.5, "a", true, null]]]),
  );
});

Deno.test("typed JSON objects keep every key as written, in order: __proto__ and numbers too", () => {
  const dict = writePayloadToVariant('{"value": {"b": 1, "2": 2, "1": 3, "__proto__": {"x": 4}}}');
  deepStrictEqual([...(dict.value as Map<string, unknown>).keys()], ["b", "2", "1", "__proto__"]);
  // On the wire, in that order (dbus-next would read them into an object, losing it).
  strictEqual(
    decodeMessage(setValueBytes(dict)).body.variantJson(0),
    '{"b":1,"2":2,"1":3,"__proto__":{"x":4}}',
  );
});

Deno.test("a number a double would change is refused: 1e999 and 1e-400, not 0", () => {
  throws(() => writePayloadToVariant('{"value": 1e-400}'), /too small for a double/);
  throws(() => writePayloadToVariant('{"value": 1e999}'), /too large for a double/);
  deepStrictEqual(writePayloadToVariant('{"value": 0e-400}'), { signature: "d", value: 0 });
  deepStrictEqual(writePayloadToVariant('{"value": 5e-324}'), { signature: "d", value: 5e-324 });
});

Deno.test("typed JSON rejects garbage, trailing text and deep nesting", () => {
  for (const bad of ["", "{", "[1,]", "01", "1.", "tru", '{"a" 1}', "1 2", "'x'", "NaN"]) {
    throws(() => parseTypedJson(bad), SyntaxError, bad);
  }
  throws(() => parseTypedJson("[".repeat(100) + "]".repeat(100)), /nested too deeply/);
});

Deno.test("write payloads get the types the original bridge chose", () => {
  const types = (text: string) => {
    const v = writePayloadToVariant(`{"value": ${text}}`);
    return [v.signature, v.value];
  };
  deepStrictEqual(types("-200"), ["i", -200]);
  deepStrictEqual(types("-200.0"), ["d", -200]);
  deepStrictEqual(types("2147483648"), ["x", 2147483648n]);
  deepStrictEqual(types("18446744073709551615"), ["t", 18446744073709551615n]);
  deepStrictEqual(types('"abc"'), ["s", "abc"]);
  deepStrictEqual(types("false"), ["b", false]);
  deepStrictEqual(types("null"), ["ai", []]);
  deepStrictEqual(types("[]"), ["au", []]);
  const list = writePayloadToVariant('{"value": [1, 2.0]}');
  strictEqual(list.signature, "av");
  deepStrictEqual((list.value as { signature: string }[]).map((v) => v.signature), ["i", "d"]);
  const dict = writePayloadToVariant('{"value": {"a": "b"}}');
  strictEqual(dict.signature, "a{sv}");
  strictEqual((dict.value as Map<string, { signature: string }>).get("a")!.signature, "s");
});

Deno.test("write payloads without a value are refused with a reason", () => {
  for (const bad of ["5", "[]", "null", '{"val": 1}', "garbage"]) {
    throws(() => writePayloadToVariant(bad), SyntaxError, bad);
  }
});

Deno.test("JSON -> D-Bus -> JSON round trip keeps the literal's kind", () => {
  for (const literal of ["-200", "-200.0", "12.5", '"x"', "true", "[1,2.0]", '{"a":1}']) {
    strictEqual(wireJson(toVariant(parseTypedJson(literal))), literal);
  }
});
