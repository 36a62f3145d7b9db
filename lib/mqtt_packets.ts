/**
 * PUBLISH packets at QoS 0 (MQTT 3.1.1 or 5), written straight into one
 * buffer for a whole flush: the bridge's values are QoS 0, which needs no
 * packet id and no state, and building them here saves the client library's
 * per-message objects, debug calls and small writes.
 */
export interface Publish {
  topic: string;
  payload: string;
  retain: boolean;
  /** MQTT 5: the Correlation Data of the request this message answers. */
  correlationData?: Uint8Array;
}

/** How the broker's connection speaks: the protocol, and the largest packet it takes. */
export interface PacketRules {
  v5: boolean;
  /** The broker's Maximum Packet Size (MQTT 5), in bytes. */
  maxPacketBytes: number;
}

/** MQTT's own limit: a "remaining length" of 4 x 7 bits, plus the fixed header. */
const MAX_REMAINING_LENGTH = 0xfffffff;
export const MQTT_3_1_1: PacketRules = { v5: false, maxPacketBytes: 1 + 4 + MAX_REMAINING_LENGTH };

const PUBLISH = 0x30;
const RETAIN = 0x01;
/** MQTT 5's property identifier of Correlation Data (binary data: 2-byte length, bytes). */
const CORRELATION_DATA = 0x09;
/** Room for the longest "remaining length" (4 bytes) and the topic's length (2). */
const HEADER_ROOM = 1 + 4 + 2;
/** MQTT 5: room for the property length (4) and Correlation Data's identifier and length (3). */
const PROPERTIES_ROOM = 4 + 3;
const utf8 = new TextEncoder();

/** A topic's length field has 2 bytes. */
const MAX_TOPIC_BYTES = 0xffff;
/** Mosquitto drops the connection of a client that publishes a topic deeper than this. */
const MAX_TOPIC_LEVELS = 200;
/**
 * What brokers refuse in a topic name, closing the connection (Mosquitto
 * does): wildcards, control characters (NUL among them), noncharacters, and
 * halves of UTF-16 pairs, which have no UTF-8 form.
 */
const FORBIDDEN_IN_TOPIC = /[+#\p{Cc}\p{Noncharacter_Code_Point}]|\p{Cs}/u;
/** The common case, checked first: printable ASCII without wildcards. */
const PLAIN_TOPIC = /^[\x20-\x22\x24-\x2a\x2c-\x7e]+$/;

/** Why a broker would refuse this topic name, or undefined when it is fine. */
export function topicProblem(topic: string): string | undefined {
  if (topic.length >= MAX_TOPIC_LEVELS && topic.split("/").length > MAX_TOPIC_LEVELS) {
    return `over ${MAX_TOPIC_LEVELS} topic levels`;
  }
  if (PLAIN_TOPIC.test(topic)) return undefined;
  if (topic === "") return "an empty topic";
  const bad = FORBIDDEN_IN_TOPIC.exec(topic)?.[0];
  if (bad === undefined) return undefined;
  const code = bad.codePointAt(0)!.toString(16).padStart(4, "0");
  return bad === "+" || bad === "#" ? `a wildcard '${bad}' in the topic` : `U+${code} in the topic`;
}

/**
 * The packets for `messages`, one after the other. A message a broker would
 * refuse (see topicProblem, and the length limits) is left out and handed to
 * `refused`: one bad topic must not cost the connection everybody's values use.
 */
export function encodePublishes(
  messages: Publish[],
  refused: (message: Publish, why: string) => void,
  rules: PacketRules = MQTT_3_1_1,
): Uint8Array {
  let room = 0;
  for (const { topic, payload, correlationData } of messages) {
    room += HEADER_ROOM + 3 * (topic.length + payload.length); // UTF-8: <= 3 bytes a UTF-16 unit
    if (rules.v5) room += PROPERTIES_ROOM + (correlationData?.length ?? 0);
  }
  const out = new Uint8Array(room);
  let at = 0;
  for (const message of messages) {
    const { topic, payload, retain, correlationData } = message;
    const problem = topicProblem(topic);
    if (problem) {
      refused(message, problem);
      continue;
    }
    // Topic, properties and payload go in first, after room for the longest
    // header; the header is then written in front of them and the packet closed up.
    const body = at + HEADER_ROOM;
    const topicBytes = utf8.encodeInto(topic, out.subarray(body)).written;
    let end = body + topicBytes;
    if (rules.v5) end = writeProperties(out, end, correlationData);
    end += utf8.encodeInto(payload, out.subarray(end)).written;
    const rest = 2 + end - body;
    const tooLarge = topicBytes > MAX_TOPIC_BYTES
      ? "a topic over 65,535 bytes"
      : sizeProblem(1 + varIntBytes(rest) + rest, rules);
    if (tooLarge) {
      refused(message, tooLarge);
      continue;
    }
    out[at++] = retain ? PUBLISH | RETAIN : PUBLISH;
    at = writeVarInt(out, at, rest);
    out[at++] = topicBytes >> 8;
    out[at++] = topicBytes & 0xff;
    out.copyWithin(at, body, end);
    at += end - body;
  }
  return out.subarray(0, at);
}

/**
 * Why the broker would refuse this message for its size (MQTT 5's Maximum
 * Packet Size), or undefined when it fits: for a message worth replacing by
 * a smaller one rather than leaving out.
 */
export function packetSizeProblem(message: Publish, rules: PacketRules): string | undefined {
  const properties = message.correlationData ? 3 + message.correlationData.length : 0;
  const rest = 2 + utf8.encode(message.topic).length + utf8.encode(message.payload).length +
    (rules.v5 ? varIntBytes(properties) + properties : 0);
  return sizeProblem(1 + varIntBytes(rest) + rest, rules);
}

function sizeProblem(size: number, rules: PacketRules): string | undefined {
  if (size <= rules.maxPacketBytes) return undefined;
  return `a packet of ${size} bytes, over the broker's maximum of ${rules.maxPacketBytes}`;
}

/** MQTT 5's properties of a PUBLISH: none, or the Correlation Data of an answer. */
function writeProperties(out: Uint8Array, at: number, correlationData?: Uint8Array): number {
  if (!correlationData) {
    out[at] = 0;
    return at + 1;
  }
  at = writeVarInt(out, at, 3 + correlationData.length);
  out[at++] = CORRELATION_DATA;
  out[at++] = correlationData.length >> 8;
  out[at++] = correlationData.length & 0xff;
  out.set(correlationData, at);
  return at + correlationData.length;
}

/** MQTT's Variable Byte Integer: 7 bits a byte, least significant first. */
function writeVarInt(out: Uint8Array, at: number, n: number): number {
  for (;; n >>= 7) {
    out[at++] = n > 0x7f ? (n & 0x7f) | 0x80 : n;
    if (n <= 0x7f) return at;
  }
}

function varIntBytes(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : 4;
}
