/**
 * MQTT 3.1.1 PUBLISH packets at QoS 0, written straight into one buffer for
 * a whole flush: the bridge's values are QoS 0, which needs no packet id and
 * no state, and building them here saves the client library's per-message
 * objects, debug calls and small writes.
 */
import { Buffer } from "node:buffer";

export interface Publish {
  topic: string;
  payload: string;
  retain: boolean;
}

const PUBLISH = 0x30;
const RETAIN = 0x01;

/** The packets for `messages`, one after the other. */
export function encodePublishes(messages: Publish[]): Uint8Array {
  const lengths = new Array<number>(messages.length * 2);
  let total = 0;
  messages.forEach(({ topic, payload }, i) => {
    const topicBytes = Buffer.byteLength(topic);
    const rest = 2 + topicBytes + Buffer.byteLength(payload);
    lengths[2 * i] = topicBytes;
    lengths[2 * i + 1] = rest;
    total += 1 + lengthBytes(rest) + rest;
  });
  const out = Buffer.allocUnsafe(total);
  let at = 0;
  messages.forEach(({ topic, payload, retain }, i) => {
    out[at++] = retain ? PUBLISH | RETAIN : PUBLISH;
    // "Remaining length": 7 bits a byte, least significant first.
    for (let rest = lengths[2 * i + 1];; rest >>= 7) {
      out[at++] = rest > 0x7f ? (rest & 0x7f) | 0x80 : rest;
      if (rest <= 0x7f) break;
    }
    at = out.writeUInt16BE(lengths[2 * i], at);
    at += out.write(topic, at);
    at += out.write(payload, at);
  });
  return out;
}

function lengthBytes(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : 4;
}
