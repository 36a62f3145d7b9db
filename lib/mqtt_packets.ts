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

/** The packets for `messages`, one after the other. */
export function encodePublishes(messages: Publish[]): Uint8Array {
  let room = 0;
  for (const { topic, payload } of messages) {
    room += HEADER_ROOM + 3 * (topic.length + payload.length); // UTF-8: <= 3 bytes a UTF-16 unit
  }
  const out = new Uint8Array(room);
  let at = 0;
  for (const { topic, payload, retain } of messages) {
    // Topic and payload go in first, after room for the longest header; the
    // header is then written in front of them and the packet closed up.
    const body = at + HEADER_ROOM;
    const topicBytes = utf8.encodeInto(topic, out.subarray(body)).written;
    const payloadBytes = utf8.encodeInto(payload, out.subarray(body + topicBytes)).written;
    const rest = 2 + topicBytes + payloadBytes;
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
