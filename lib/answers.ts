/**
 * MQTT 5 answers: a request that carries a Response Topic gets exactly one
 * answer there, with the request's Correlation Data, saying how it went.
 * This module says what each answer holds and where one may go; main.ts
 * decides which answer a request gets.
 */
import { topicProblem } from "./mqtt_packets.ts";

/** How a request went. Values are JSON text, as the N topics carry them. */
export type Answer =
  | { status: "ok"; value: string }
  | { status: "ok"; values: Array<[path: string, json: string]> }
  /** A keep-alive: done, with the time of its full publish when it asked for one. */
  | { status: "ok"; fullPublishCompleted?: number }
  /** The service refused a write: SetValue's non-zero answer. */
  | { status: "refused"; code: number }
  /** Anything else, in words a person can act on. */
  | { status: "error"; error: string };

/** The answer's payload: `{"status": "ok", "value": ...}` and so on. */
export function answerPayload(answer: Answer): string {
  if (answer.status === "refused") return `{"status": "refused", "code": ${answer.code}}`;
  if (answer.status === "error") {
    return `{"status": "error", "error": ${JSON.stringify(answer.error)}}`;
  }
  if ("value" in answer) return `{"status": "ok", "value": ${answer.value}}`;
  if ("values" in answer) {
    const values = answer.values.map(([path, json]) => `${JSON.stringify(path)}: ${json}`);
    return `{"status": "ok", "values": {${values.join(", ")}}}`;
  }
  return answer.fullPublishCompleted === undefined
    ? `{"status": "ok"}`
    : `{"status": "ok", "full-publish-completed": ${answer.fullPublishCompleted}}`;
}

/**
 * Response Topics and Correlation Data longer than this get no answer:
 * clients use short ones (a UUID), and answers may wait (for a full publish,
 * for a broker that is behind) by the ten thousand.
 */
export const MAX_ANSWER_ROUTE_BYTES = 1024;

/**
 * Why the bridge will not answer on this Response Topic with this
 * Correlation Data, or undefined when it may. The bridge's own topics are
 * refused: an answer there would be a forged value (`N/`), or a request made
 * in the bridge's name (`R/`, `W/`): a client allowed only to read could have
 * a value read back into a write. `$` topics belong to the broker.
 */
export function answerProblem(topic: string, correlationData?: Uint8Array): string | undefined {
  if (/^[NRW]\//.test(topic) || topic.startsWith("$")) {
    return "an N/, R/, W/ or $ topic cannot take answers";
  }
  if (topic.length > MAX_ANSWER_ROUTE_BYTES) {
    return `a response topic over ${MAX_ANSWER_ROUTE_BYTES} characters`;
  }
  if ((correlationData?.length ?? 0) > MAX_ANSWER_ROUTE_BYTES) {
    return `correlation data over ${MAX_ANSWER_ROUTE_BYTES} bytes`;
  }
  return topicProblem(topic);
}
