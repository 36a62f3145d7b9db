/**
 * The D-Bus wire format (the specification's "Message Protocol"), just what
 * the bridge needs: messages cut out of the byte stream, their headers, and
 * bodies read straight into what the bridge uses. Values become MQTT JSON
 * text without a detour through JS objects: on a busy GX most messages are
 * PropertiesChanged/ItemsChanged, and a generic unmarshaller spent most of
 * the bridge's time building objects that were thrown away at once.
 *
 * Pure: no I/O. Reading past a message's end throws (RangeError from the
 * DataView); the caller drops that message and reads on.
 */
import { parseSignature, parseSignatures, type SignatureType } from "./dbus_signature.ts";
import type { Variant } from "./values.ts";

export const MessageType = { METHOD_CALL: 1, METHOD_RETURN: 2, ERROR: 3, SIGNAL: 4 } as const;

/** The specification's limits: a whole message, and variants inside variants. */
const MAX_MESSAGE_BYTES = 128 * 1024 * 1024;
const MAX_VARIANT_DEPTH = 64;
const FIXED_HEADER_BYTES = 16;
/** Where the fixed header holds the serial; the header fields' array follows it. */
const SERIAL_AT = 8;

/** A received message: its header and a reader placed at the start of its body. */
export interface Message {
  type: number;
  serial: number;
  path?: string;
  interface?: string;
  member?: string;
  errorName?: string;
  replySerial?: number;
  destination?: string;
  sender?: string;
  /** The body's signature ("" for none). */
  signature: string;
  body: BodyReader;
}

type HeaderField = Exclude<keyof Message, "type" | "serial" | "body">;

/**
 * Header fields by their code (the specification's numbering): the member
 * they fill and the type they must have. Others (UNIX_FDS, later ones, bad
 * ones) are passed over.
 */
const FIELDS: ([HeaderField, string] | undefined)[] = [
  undefined,
  ["path", "o"],
  ["interface", "s"],
  ["member", "s"],
  ["errorName", "s"],
  ["replySerial", "u"],
  ["destination", "s"],
  ["sender", "s"],
  ["signature", "g"],
];

// ------------------------------------------------------------------ framing

/** Thrown when the stream cannot be a D-Bus message stream any more. */
export class FramingError extends Error {}

/**
 * Cuts complete messages out of the bytes as they arrive (one socket read
 * holds a part of a message or many). Complete messages are not copied; the
 * pieces of a long one are joined once, when it is all there.
 */
export class MessageFramer {
  /**
   * A reader alive as long as the connection, and with it readers' shape.
   * V8 holds the shapes its optimized code was built for weakly, and with
   * --optimize-for-size every full GC reduces memory and keeps no unused
   * shape: one between two reads took the readers' along, and V8 threw away
   * every reader method and optimized it anew (--trace-deopt: "weak objects",
   * ~8 times in 15 s at 2,000 changes/s).
   */
  readonly #keepsReaderShape = new BodyReader(new Uint8Array(0), true);
  #pieces: Uint8Array[] = [];
  #buffered = 0;
  /** Bytes needed before the next message can be cut: its size once known. */
  #needed = FIXED_HEADER_BYTES;

  /** The complete messages now available, as byte ranges of their own. */
  push(chunk: Uint8Array): Uint8Array[] {
    this.#pieces.push(chunk);
    this.#buffered += chunk.length;
    if (this.#buffered < this.#needed) return [];
    const bytes = this.#pieces.length === 1 ? chunk : join(this.#pieces, this.#buffered);
    const messages: Uint8Array[] = [];
    let at = 0;
    this.#needed = FIXED_HEADER_BYTES;
    while (bytes.length - at >= FIXED_HEADER_BYTES) {
      const size = messageSize(bytes, at);
      if (bytes.length - at < size) {
        this.#needed = size;
        break;
      }
      messages.push(bytes.subarray(at, at + size));
      at += size;
    }
    const rest = bytes.subarray(at);
    this.#pieces = rest.length ? [rest] : [];
    this.#buffered = rest.length;
    return messages;
  }
}

function join(pieces: Uint8Array[], length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let at = 0;
  for (const piece of pieces) {
    bytes.set(piece, at);
    at += piece.length;
  }
  return bytes;
}

function messageSize(bytes: Uint8Array, at: number): number {
  const le = littleEndian(bytes[at]);
  const bodyLength = uint32(bytes, at + 4, le);
  const fieldsLength = uint32(bytes, at + 12, le);
  // Plain arithmetic, not bit tricks: lengths near 2^32 must not wrap around.
  const size = FIXED_HEADER_BYTES + Math.ceil(fieldsLength / 8) * 8 + bodyLength;
  if (size > MAX_MESSAGE_BYTES) throw new FramingError(`a message of ${size} bytes`);
  return size;
}

/** Without a DataView: one per message cost more than the message's framing. */
function uint32(bytes: Uint8Array, at: number, le: boolean): number {
  return le
    ? (bytes[at] | bytes[at + 1] << 8 | bytes[at + 2] << 16) + bytes[at + 3] * 0x1000000
    : (bytes[at + 3] | bytes[at + 2] << 8 | bytes[at + 1] << 16) + bytes[at] * 0x1000000;
}

function littleEndian(marker: number): boolean {
  if (marker === 0x6c) return true; // 'l'
  if (marker === 0x42) return false; // 'B'
  throw new FramingError(`no byte-order mark at a message start (0x${marker.toString(16)})`);
}

/** A whole message's header, and its body ready to be read. */
export function decodeMessage(bytes: Uint8Array): Message {
  const reader = new BodyReader(bytes, littleEndian(bytes[0]), SERIAL_AT);
  // Every field from the start: one shape, the literal's, which V8 keeps (see MessageFramer).
  const header: Message = {
    type: bytes[1],
    serial: reader.uint32(),
    path: undefined,
    interface: undefined,
    member: undefined,
    errorName: undefined,
    replySerial: undefined,
    destination: undefined,
    sender: undefined,
    signature: "",
    body: reader,
  };
  // The header fields, a(yv): each a code and a variant; unknown ones are passed over.
  reader.eachEntry(() => {
    const field = FIELDS[reader.byte()];
    const type = parseSignature(reader.signature());
    if (field?.[1] === type.code) {
      (header as unknown as Record<HeaderField, unknown>)[field[0]] = reader.value(type);
    } else {
      reader.skip(type);
    }
  });
  reader.align(8); // the body starts on the next 8-byte boundary
  return header;
}

// ------------------------------------------------------------------ reading

const utf8 = new TextDecoder("utf-8", { fatal: true });
/** The one-character strings: most header fields are typed by one. */
const ASCII = Array.from({ length: 0x80 }, (_, c) => String.fromCharCode(c));

function isAscii(bytes: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (bytes[i] >= 0x80) return false;
  return true;
}

/**
 * Names, paths and signatures are short ASCII: one fromCharCode call is ~3x
 * cheaper than a decoder call, and the bridge reads ~10 of them a message.
 */
function ascii(bytes: Uint8Array, start: number, end: number): string {
  return String.fromCharCode.apply(null, bytes.subarray(start, end) as unknown as number[]);
}

/**
 * The short ASCII strings read last, by a hash of their bytes, a newer one
 * taking an older one's slot. On a GX the same few come in every message
 * (senders, interface, member, "Value", "Text") and each item's path again
 * and again: one string for each saves building it anew and, as the state's
 * map keys, hashing it anew (V8 keeps a string's hash with it).
 */
const INTERN_SLOTS = 16384;
const MAX_INTERNED = 64;
const interned: string[] = new Array(INTERN_SLOTS).fill("");

function sameAscii(text: string, bytes: Uint8Array, start: number): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) !== bytes[start + i]) return false;
  return true;
}

/** Alignment of each type code on the wire. */
const ALIGNMENT: Record<string, number> = {
  y: 1,
  b: 4,
  n: 2,
  q: 2,
  i: 4,
  u: 4,
  x: 8,
  t: 8,
  d: 8,
  h: 4,
  s: 4,
  o: 4,
  g: 1,
  v: 1,
  a: 4,
  "(": 8,
  "{": 8,
};

const INTEGER_CODES = "ynqiuxth";

// ------------------------------------------------------ D-Bus -> JSON rules
// D-Bus values become MQTT JSON text here and only here, in BodyReader.json,
// as they are read. The text is written directly rather than through
// JSON.stringify, because clients in typed languages tell an int from a
// float by the literal: a whole double keeps its ".0", a 64-bit integer every
// digit.

/** JSON text of an invalid value. */
export const INVALID_JSON = "null";

/** A double as earlier bridges wrote it: whole numbers keep ".0". */
export function formatDouble(x: number): string {
  if (!Number.isFinite(x)) return INVALID_JSON;
  const text = String(x);
  // String() gives the shortest text that reads back exactly; it only lacks a
  // fraction for whole numbers below 1e21 (larger ones come out as "1e+21").
  return Number.isInteger(x) && !text.includes("e") ? text + ".0" : text;
}

/** Reads values of one message; alignment counts from the message's start. */
export class BodyReader {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  readonly #le: boolean;
  /** The cursor: where the next value starts. */
  #at: number;

  constructor(bytes: Uint8Array, littleEndian: boolean, at = 0) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    this.#le = littleEndian;
    this.#at = at;
  }

  /** Moves to the next multiple of `n` bytes from the message's start. */
  align(n: number): void {
    this.#at = (this.#at + n - 1) & -n;
  }

  /**
   * Reads an array of dict entries or structs: `readEntry` is called once
   * for each, with the reader placed at its start, and reads it whole.
   */
  eachEntry(readEntry: () => void): void {
    const end = this.#arrayEnd(8);
    while (this.#at < end) {
      this.align(8);
      readEntry();
    }
  }

  byte(): number {
    return this.#view.getUint8(this.#at++);
  }

  uint32(): number {
    this.align(4);
    const n = this.#view.getUint32(this.#at, this.#le);
    this.#at += 4;
    return n;
  }

  string(): string {
    return this.#text(this.uint32());
  }

  signature(): string {
    return this.#text(this.byte());
  }

  /** A string of `length` bytes and its terminating NUL. */
  #text(length: number): string {
    const start = this.#at;
    const end = start + length;
    if (end >= this.#bytes.length) throw new RangeError("string runs past the message");
    this.#at = end + 1;
    const bytes = this.#bytes;
    if (length === 1 && bytes[start] < 0x80) return ASCII[bytes[start]];
    if (length <= MAX_INTERNED) {
      let hash = length;
      for (let i = start; i < end; i++) {
        if (bytes[i] >= 0x80) return utf8.decode(bytes.subarray(start, end));
        hash = Math.imul(hash ^ bytes[i], 0x01000193);
      }
      const slot = hash & (INTERN_SLOTS - 1);
      const known = interned[slot];
      if (known.length === length && sameAscii(known, bytes, start)) return known;
      return interned[slot] = ascii(bytes, start, end);
    }
    if (length <= 256 && isAscii(bytes, start, end)) return ascii(bytes, start, end);
    return utf8.decode(bytes.subarray(start, end));
  }

  /**
   * A value as plain JS: numbers (64-bit integers as BigInt), strings,
   * booleans, arrays, dicts as Maps, and variants as their JSON text.
   */
  value(type: SignatureType): unknown {
    switch (type.code) {
      case "s":
      case "o":
        return this.string();
      case "g":
        return this.signature();
      case "v":
        return this.variantJson(0);
      case "a": {
        const element = type.children[0];
        if (element.code === "{") {
          const map = new Map<unknown, unknown>();
          this.eachEntry(() =>
            map.set(this.value(element.children[0]), this.value(element.children[1]))
          );
          return map;
        }
        const end = this.#arrayEnd(ALIGNMENT[element.code]);
        const items = [];
        while (this.#at < end) items.push(this.value(element));
        return items;
      }
      case "(":
      case "{":
        this.align(8);
        return type.children.map((child) => this.value(child));
      default:
        return this.#number(type.code);
    }
  }

  /** Passes over a value without building it. */
  skip(type: SignatureType): void {
    switch (type.code) {
      case "s":
      case "o":
        this.#at = this.uint32() + this.#at + 1;
        return;
      case "g":
        this.#at += this.byte() + 1;
        return;
      case "v":
        return this.skip(parseSignature(this.signature()));
      case "a":
        this.#at = this.#arrayEnd(ALIGNMENT[type.children[0].code]);
        return;
      case "(":
      case "{":
        this.align(8);
        for (const child of type.children) this.skip(child);
        return;
      default:
        this.#number(type.code);
    }
  }

  /**
   * The JSON text of a variant, by the bridge's value rules: whole doubles
   * keep ".0", 64-bit integers every digit, Victron's "invalid" (an empty
   * array of integers) is null, dicts are objects, arrays and structs lists.
   */
  variantJson(depth: number): string {
    if (depth > MAX_VARIANT_DEPTH) throw new RangeError("variants nested too deeply");
    return this.json(parseSignature(this.signature()), depth + 1);
  }

  json(type: SignatureType, depth: number): string {
    switch (type.code) {
      case "d":
        return formatDouble(this.#number("d") as number);
      case "b":
        return this.#number("b") ? "true" : "false";
      case "s":
      case "o":
        return JSON.stringify(this.string());
      case "g":
        return JSON.stringify(this.signature());
      case "v":
        return this.variantJson(depth);
      case "a":
        return this.#arrayJson(type.children[0], depth);
      case "(":
      case "{": {
        this.align(8);
        return "[" + type.children.map((child) => this.json(child, depth)).join(",") + "]";
      }
      default:
        return String(this.#number(type.code));
    }
  }

  #arrayJson(element: SignatureType, depth: number): string {
    const parts: string[] = [];
    if (element.code === "{") {
      const [keyType, valueType] = element.children;
      this.eachEntry(() => {
        const key = this.value(keyType);
        parts.push(JSON.stringify(String(key)) + ":" + this.json(valueType, depth));
      });
      return "{" + parts.join(",") + "}";
    }
    const end = this.#arrayEnd(ALIGNMENT[element.code]);
    while (this.#at < end) parts.push(this.json(element, depth));
    if (parts.length === 0 && INTEGER_CODES.includes(element.code)) return INVALID_JSON;
    return "[" + parts.join(",") + "]";
  }

  /** Reads an array's length; returns where its elements end, placed at the first. */
  #arrayEnd(elementAlignment: number): number {
    const length = this.uint32();
    this.align(elementAlignment);
    const end = this.#at + length;
    if (end > this.#bytes.length) throw new RangeError("array runs past the message");
    return end;
  }

  #number(code: string): number | bigint | boolean {
    const size = ALIGNMENT[code]; // numbers are as long as they are aligned
    this.align(size);
    const at = this.#at;
    this.#at += size;
    const [view, le] = [this.#view, this.#le];
    switch (code) {
      case "y":
        return view.getUint8(at);
      case "b":
        return view.getUint32(at, le) !== 0;
      case "n":
        return view.getInt16(at, le);
      case "q":
        return view.getUint16(at, le);
      case "i":
        return view.getInt32(at, le);
      case "u":
      case "h":
        return view.getUint32(at, le);
      case "x":
        return view.getBigInt64(at, le);
      case "t":
        return view.getBigUint64(at, le);
      case "d":
        return view.getFloat64(at, le);
    }
    throw new RangeError(`unknown D-Bus type '${code}'`);
  }
}

// ------------------------------------------------------------------ writing

export interface OutgoingMessage {
  /** A method call unless told. */
  type?: typeof MessageType.METHOD_CALL | typeof MessageType.SIGNAL;
  serial: number;
  /** Calls go to a service; signals have no destination. */
  destination?: string;
  path: string;
  interface: string;
  member: string;
  signature?: string;
  body?: unknown[];
}

/**
 * A method call or signal in the wire format (little-endian). Throws, before
 * anything is sent, on what the specification forbids (a NUL in a string,
 * a bad object path, containers nested too deeply, ...): the daemon would
 * drop the whole connection for it.
 */
export function encodeMessage(message: OutgoingMessage): Uint8Array {
  try {
    return encode(message);
  } catch (error) {
    throw new UnsendableError(`cannot go on D-Bus: ${(error as Error).message}`);
  }
}

/** What the specification forbids to send; nothing was sent. */
export class UnsendableError extends RangeError {}

function encode(message: OutgoingMessage): Uint8Array {
  const signature = message.signature ?? "";
  const body = new Writer();
  parseSignatures(signature).forEach((type, i) => body.value(type, message.body![i], 0));
  const w = new Writer();
  w.bytes([0x6c, message.type ?? MessageType.METHOD_CALL, 0, 1]);
  w.uint32(body.length);
  w.uint32(message.serial);
  const fields: [HeaderField, string | undefined][] = [
    ["path", message.path],
    ["destination", message.destination],
    ["interface", message.interface],
    ["member", message.member],
    ["signature", signature || undefined],
  ];
  w.array(8, () => {
    for (const [name, value] of fields) {
      if (value === undefined) continue;
      const code = FIELDS.findIndex((field) => field?.[0] === name);
      const type = FIELDS[code]![1];
      w.align(8);
      w.bytes([code]);
      w.signature(type);
      w.value(parseSignature(type), value, 0);
    }
  });
  w.align(8);
  if (w.length + body.length > MAX_MESSAGE_BYTES) {
    throw new RangeError(`a message over ${MAX_MESSAGE_BYTES} bytes`);
  }
  return w.concat(body);
}

/** The specification's limits on what the writer sends. */
const MAX_ARRAY_BYTES = 64 * 1024 * 1024;
/** Containers (arrays, structs, variants) inside each other, in all. */
const MAX_CONTAINER_DEPTH = 64;
const OBJECT_PATH = /^\/$|^(\/[A-Za-z0-9_]+)+$/;

/** Whether `path` may name a D-Bus object: `/`, or `/`-separated `[A-Za-z0-9_]+`. */
export function isObjectPath(path: string): boolean {
  return OBJECT_PATH.test(path);
}

/** What String.prototype.isWellFormed finds, on Node 18 too (it came with Node 20). */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function checkString(text: string): void {
  if (typeof text !== "string") throw new TypeError(`not a string: ${typeof text}`);
  if (text.includes("\0")) throw new RangeError("a string with a NUL character");
  if (LONE_SURROGATE.test(text)) throw new RangeError("a string with half a UTF-16 pair");
}

const utf8Encoder = new TextEncoder();

/** Appends values in the wire format (little-endian), growing its buffer. */
class Writer {
  #buffer = new Uint8Array(256);
  #view = new DataView(this.#buffer.buffer);
  length = 0;

  #room(n: number): void {
    if (this.length + n <= this.#buffer.length) return;
    const bigger = new Uint8Array(Math.max(2 * this.#buffer.length, this.length + n));
    bigger.set(this.#buffer.subarray(0, this.length));
    this.#buffer = bigger;
    this.#view = new DataView(bigger.buffer);
  }

  align(n: number): void {
    const to = (this.length + n - 1) & -n;
    this.#room(to - this.length);
    this.#buffer.fill(0, this.length, to);
    this.length = to;
  }

  bytes(values: ArrayLike<number>): void {
    this.#room(values.length);
    this.#buffer.set(values, this.length);
    this.length += values.length;
  }

  uint32(n: number): void {
    this.align(4);
    this.#room(4);
    this.#view.setUint32(this.length, n, true);
    this.length += 4;
  }

  /** A signature (parsing checks it). */
  signature(text: string): void {
    parseSignatures(text);
    this.bytes([text.length, ...utf8Encoder.encode(text), 0]);
  }

  /** An array: its length is known once `elements` has written them. */
  array(elementAlignment: number, elements: () => void): void {
    this.uint32(0);
    const lengthAt = this.length - 4;
    this.align(elementAlignment);
    const start = this.length;
    elements();
    if (this.length - start > MAX_ARRAY_BYTES) {
      throw new RangeError(`an array over ${MAX_ARRAY_BYTES} bytes`);
    }
    this.#view.setUint32(lengthAt, this.length - start, true);
  }

  /** A value of `type`, inside `depth` containers. */
  value(type: SignatureType, value: unknown, depth: number): void {
    const code = type.code;
    if ("a({v".includes(code) && ++depth > MAX_CONTAINER_DEPTH) {
      throw new RangeError(`containers nested over ${MAX_CONTAINER_DEPTH} deep`);
    }
    switch (code) {
      case "s":
      case "o": {
        checkString(value as string);
        if (code === "o" && !isObjectPath(value as string)) {
          throw new RangeError("not a D-Bus object path");
        }
        const encoded = utf8Encoder.encode(value as string);
        this.uint32(encoded.length);
        this.bytes(encoded);
        this.bytes([0]);
        return;
      }
      case "g":
        return this.signature(value as string);
      case "v": {
        const variant = value as Variant;
        this.signature(variant.signature);
        return this.value(parseSignature(variant.signature), variant.value, depth);
      }
      case "a": {
        const element = type.children[0];
        return this.array(ALIGNMENT[element.code], () => {
          if (element.code === "{") {
            const entries = value instanceof Map
              ? value.entries()
              : Object.entries(value as Record<string, unknown>);
            for (const [k, v] of entries) this.value(element, [k, v], depth);
          } else {
            for (const item of value as unknown[]) this.value(element, item, depth);
          }
        });
      }
      case "(":
      case "{":
        this.align(8);
        type.children.forEach((child, i) => this.value(child, (value as unknown[])[i], depth));
        return;
    }
    const size = ALIGNMENT[code]; // numbers are as long as they are aligned
    this.align(size);
    this.#room(size);
    const at = this.length;
    this.length += size;
    const view = this.#view;
    switch (code) {
      case "y":
        return view.setUint8(at, value as number);
      case "b":
        return view.setUint32(at, value ? 1 : 0, true);
      case "n":
        return view.setInt16(at, value as number, true);
      case "q":
        return view.setUint16(at, value as number, true);
      case "i":
        return view.setInt32(at, value as number, true);
      case "u":
      case "h":
        return view.setUint32(at, value as number, true);
      case "x":
        return view.setBigInt64(at, BigInt(value as bigint), true);
      case "t":
        return view.setBigUint64(at, BigInt(value as bigint), true);
      case "d":
        return view.setFloat64(at, value as number, true);
    }
    throw new RangeError(`unknown D-Bus type '${code}'`);
  }

  /** These bytes, then `next`'s. */
  concat(next: Writer): Uint8Array {
    const out = new Uint8Array(this.length + next.length);
    out.set(this.#buffer.subarray(0, this.length));
    out.set(next.#buffer.subarray(0, next.length), this.length);
    return out;
  }
}
