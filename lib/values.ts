/**
 * The value rules from MQTT to D-Bus: JSON text as clients write it becomes
 * a D-Bus value; and the payloads. The rules the other way, D-Bus values to
 * JSON text, live in one place: `BodyReader.json` in dbus_wire.ts, which
 * writes the text as it reads the wire.
 */
import { shown } from "./log.ts";

/** A D-Bus value with its type, as written to the bus. */
export interface Variant {
  signature: string;
  value: unknown;
}

// ---------------------------------------------------------------- payloads

/**
 * The MQTT payload of a notification; `extra` is more members after the
 * value, such as the item's limits (`"min": 0, "max": 100`).
 */
export function payload(json: string, extra = ""): string {
  return extra ? `{"value": ${json}, ${extra}}` : `{"value": ${json}}`;
}

// ---------------------------------------------------------- JSON -> D-Bus

/**
 * A JSON document parsed so that the literal's kind survives: integer
 * literals become BigInt, float literals (with "." or an exponent) number;
 * objects become Maps, which keep their keys in order ("2" before "1") and
 * "__proto__" an ordinary key.
 */
export type TypedJson =
  | null
  | boolean
  | string
  | bigint
  | number
  | TypedJson[]
  | Map<string, TypedJson>;

const MAX_DEPTH = 64;

/** Parses JSON text keeping integer and float literals apart; throws on bad input. */
export function parseTypedJson(text: string): TypedJson {
  const parser = new TypedJsonParser(text);
  const value = parser.value(0);
  parser.end();
  return value;
}

class TypedJsonParser {
  #at = 0;
  constructor(private readonly text: string) {}

  value(depth: number): TypedJson {
    if (depth > MAX_DEPTH) this.fail("nested too deeply");
    this.#space();
    const c = this.text[this.#at];
    if (c === "{") return this.#object(depth);
    if (c === "[") return this.#array(depth);
    if (c === '"') return this.#string();
    if (c === "-" || (c >= "0" && c <= "9")) return this.#number();
    for (const [word, value] of WORDS) {
      if (this.text.startsWith(word, this.#at)) {
        this.#at += word.length;
        return value;
      }
    }
    return this.fail(c === undefined ? "unexpected end" : `unexpected '${c}'`);
  }

  end(): void {
    this.#space();
    if (this.#at !== this.text.length) this.fail("trailing characters");
  }

  fail(why: string): never {
    throw new SyntaxError(`invalid JSON at ${this.#at}: ${why}`);
  }

  #space(): void {
    while (" \t\n\r".includes(this.text[this.#at]) && this.#at < this.text.length) {
      this.#at++;
    }
  }

  #expect(c: string): void {
    this.#space();
    if (this.text[this.#at] !== c) this.fail(`expected '${c}'`);
    this.#at++;
  }

  #object(depth: number): Map<string, TypedJson> {
    const result = new Map<string, TypedJson>();
    this.#at++;
    this.#space();
    if (this.text[this.#at] === "}") {
      this.#at++;
      return result;
    }
    for (;;) {
      this.#space();
      if (this.text[this.#at] !== '"') this.fail("expected a key");
      const key = this.#string();
      this.#expect(":");
      result.set(key, this.value(depth + 1));
      this.#space();
      const c = this.text[this.#at++];
      if (c === "}") return result;
      if (c !== ",") this.fail("expected ',' or '}'");
    }
  }

  #array(depth: number): TypedJson[] {
    const result: TypedJson[] = [];
    this.#at++;
    this.#space();
    if (this.text[this.#at] === "]") {
      this.#at++;
      return result;
    }
    for (;;) {
      result.push(this.value(depth + 1));
      this.#space();
      const c = this.text[this.#at++];
      if (c === "]") return result;
      if (c !== ",") this.fail("expected ',' or ']'");
    }
  }

  #string(): string {
    STRING.lastIndex = this.#at;
    const match = STRING.exec(this.text);
    if (!match) this.fail("bad string");
    this.#at += match[0].length;
    return JSON.parse(match[0]);
  }

  #number(): bigint | number {
    NUMBER.lastIndex = this.#at;
    const match = NUMBER.exec(this.text);
    if (!match) this.fail("bad number");
    this.#at += match[0].length;
    if (!match[1] && !match[2]) return BigInt(match[0]);
    const number = Number(match[0]);
    // A double would carry another number: 0 for 1e-400 (1e999 is refused as infinite later).
    if (number === 0 && /[1-9]/.test(match[0].split(/[eE]/)[0])) {
      throw new RangeError(`the number ${shown(match[0], 40)} is too small for a double`);
    }
    return number;
  }
}

const WORDS: [string, TypedJson][] = [["true", true], ["false", false], [
  "null",
  null,
]];
// Sticky: matched in place at the parser's position, without copying the rest.
// deno-lint-ignore no-control-regex
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;

const INT32 = [-(2n ** 31n), 2n ** 31n - 1n];
const INT64 = [-(2n ** 63n), 2n ** 63n - 1n];
const UINT64_MAX = 2n ** 64n - 1n;

const variant = (signature: string, value: unknown): Variant => ({ signature, value });

/**
 * How deep a written value's D-Bus containers may go. A service that takes
 * it announces it again, in an ItemsChanged (a{sa{sv}}: five containers
 * around it), and dbus-daemon drops a service whose message nests over 64
 * deep: a W 31 arrays deep took the service off the bus (PropertiesChanged
 * adds three). Counted on the safe side, empty or not: a JSON array as two
 * containers (av), an object three (a{sv}), null one; so 29 arrays or 19
 * objects inside each other at most.
 */
const MAX_WRITTEN_CONTAINERS = 64 - 5;

/**
 * The D-Bus value for a parsed JSON value, with the types the original
 * bridge chose: integer -> int32 (int64, uint64 when out of range), float ->
 * double, array -> av (empty: au), object -> a{sv}, null -> invalid.
 * `containers`: how many the value is inside.
 */
export function toVariant(value: TypedJson, containers = 0): Variant {
  switch (typeof value) {
    case "bigint":
      if (value >= INT32[0] && value <= INT32[1]) {
        return variant("i", Number(value));
      }
      if (value >= INT64[0] && value <= INT64[1]) return variant("x", value);
      if (value > 0n && value <= UINT64_MAX) return variant("t", value);
      // As the original bridge: rounding it to a double would write another number.
      throw new RangeError(`the integer ${shown(String(value))} does not fit in 64 bits`);
    case "number":
      if (!Number.isFinite(value)) throw new RangeError("a number too large for a double");
      return variant("d", value);
    case "string":
      return variant("s", value);
    case "boolean":
      return variant("b", value);
  }
  if (value === null) {
    deeper(containers, 1);
    return variant("ai", []); // invalid, as Victron services write it
  }
  if (Array.isArray(value)) {
    const inside = deeper(containers, 2);
    // An empty `ai` would read as "invalid", so an empty list goes out as `au`.
    if (value.length === 0) return variant("au", []);
    return variant("av", value.map((item) => toVariant(item, inside)));
  }
  const inside = deeper(containers, 3);
  return variant("a{sv}", new Map([...value].map(([k, v]) => [k, toVariant(v, inside)])));
}

function deeper(containers: number, more: number): number {
  if (containers + more > MAX_WRITTEN_CONTAINERS) {
    throw new RangeError(
      "nested too deeply for D-Bus: the service's echo of it would be over 64 containers deep",
    );
  }
  return containers + more;
}

/**
 * The value of a write request payload `{"value": X}` as a D-Bus value;
 * throws with a reason a user can act on.
 */
export function writePayloadToVariant(text: string): Variant {
  const parsed = parseTypedJson(text);
  if (!(parsed instanceof Map) || !parsed.has("value")) {
    throw new SyntaxError('payload must be a JSON object like {"value": 1}');
  }
  return toVariant(parsed.get("value")!);
}
