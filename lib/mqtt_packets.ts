/**
 * MQTT 3.1.1 PUBLISH packets at QoS 0, written straight into one buffer for
 * a whole flush: the bridge's values are QoS 0, which needs no packet id and
 * no state, and building them here saves the client library's per-message
 * objects, debug calls and small writes.
 */
export interface Publish {
  topic: string;
  payload: string;
  retain: boolean;
}

const PUBLISH = 0x30;
const RETAIN = 0x01;
/** Room for the longest "remaining length" (4 bytes) and the topic's length (2). */
const HEADER_ROOM = 1 + 4 + 2;
const utf8 = new TextEncoder();

/** MQTT's limits: a topic's length field has 2 bytes, a packet's "remaining length" 4 x 7 bits. */
const MAX_TOPIC_BYTES = 0xffff;
const MAX_REMAINING_LENGTH = 0xfffffff;
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
): Uint8Array {
  let room = 0;
  for (const { topic, payload } of messages) {
    room += HEADER_ROOM + 3 * (topic.length + payload.length); // UTF-8: <= 3 bytes a UTF-16 unit
  }
  const out = new Uint8Array(room);
  let at = 0;
  for (const message of messages) {
    const { topic, payload, retain } = message;
    const problem = topicProblem(topic);
    if (problem) {
      refused(message, problem);
      continue;
    }
    // Topic and payload go in first, after room for the longest header; the
    // header is then written in front of them and the packet closed up.
    const body = at + HEADER_ROOM;
    const topicBytes = utf8.encodeInto(topic, out.subarray(body)).written;
    const payloadBytes = utf8.encodeInto(payload, out.subarray(body + topicBytes)).written;
    const rest = 2 + topicBytes + payloadBytes;
    if (topicBytes > MAX_TOPIC_BYTES || rest > MAX_REMAINING_LENGTH) {
      refused(message, topicBytes > MAX_TOPIC_BYTES ? "a topic over 65,535 bytes" : "over 256 MB");
      continue;
    }
    out[at++] = retain ? PUBLISH | RETAIN : PUBLISH;
    // "Remaining length": 7 bits a byte, least significant first.
    for (let n = rest;; n >>= 7) {
      out[at++] = n > 0x7f ? (n & 0x7f) | 0x80 : n;
      if (n <= 0x7f) break;
    }
    out[at++] = topicBytes >> 8;
    out[at++] = topicBytes & 0xff;
    out.copyWithin(at, body, body + rest - 2);
    at += rest - 2;
  }
  return out.subarray(0, at);
}
