/**
 * What `dbus-mqtt watch` shows, as pure functions: a value exactly as
 * published, a line per change, a JSON record, and the in-place table for a
 * terminal.
 */

import { escapeUnsafe, UNSAFE } from "./log.ts";
import { shortTopic } from "./topics.ts";

/**
 * The payload's value exactly as published (`12.0` stays `12.0`), then any
 * other members in brackets, as published too (`50 (min 0, max 100)`); other
 * payloads, and payloads that are no JSON, as they are.
 */
export function valueText(payload: string): string {
  const match = /^\{\s*"value"\s*:\s*([\s\S]*)\}$/.exec(payload);
  const members = match ? jsonObject(payload) : undefined;
  if (!match || !members) return payload;
  const text = match[1].trimEnd();
  if (Object.keys(members).length === 1) return text;
  // Each comma is tried by parsing what is before it: a long payload is shown as it is.
  if (text.length > MAX_CUT) return payload;
  // Cut at the commas between the value and each member, not at those inside them.
  const parts: string[] = [];
  let from = 0;
  for (const { index } of text.matchAll(/,/g)) {
    const part = text.slice(from, index);
    if (isJson(parts.length === 0 ? `[${part}]` : `{${part}}`)) {
      parts.push(part.trim());
      from = index + 1;
    }
  }
  const [value, ...others] = [...parts, text.slice(from).trim()];
  const shown = others.map((member) => {
    const named = /^("(?:[^"\\]|\\.)*")\s*:\s*([\s\S]*)$/.exec(member);
    return named ? `${JSON.parse(named[1])} ${named[2]}` : member;
  });
  return `${value} (${shown.join(", ")})`;
}

const MAX_CUT = 1024;

function isJson(text: string): boolean {
  return jsonParsed(text) !== NOT_JSON;
}

/** `text` as a JSON object's members, when it is one. */
function jsonObject(text: string): Record<string, unknown> | undefined {
  const parsed = jsonParsed(text);
  return parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)
    ? parsed as Record<string, unknown>
    : undefined;
}

const NOT_JSON = Symbol("not JSON");

function jsonParsed(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return NOT_JSON;
  }
}

/**
 * One line per message when the output is not a terminal. Whoever may publish
 * on the broker writes topics and payloads: control characters are escaped,
 * as in the bridge's log, so they cannot steer the terminal or forge lines.
 */
export function changeLine(topic: string, payload: string): string {
  return escapeUnsafe(`${shortTopic(topic)} ${payload === "" ? "(removed)" : valueText(payload)}`);
}

/**
 * One JSON object per message: the topic plus the payload's members, value
 * text untouched. A payload with a member of the record's own ("topic",
 * "removed", "payload") comes as "payload" text, so that it cannot name
 * another topic or pass for another kind of record.
 * Characters that could steer a terminal are JSON escapes (the same text to
 * a JSON reader).
 */
export function jsonLine(topic: string, payload: string): string {
  const head = `{"topic": ${JSON.stringify(topic)}`;
  if (payload === "") return `${head}, "removed": true}`;
  let record = `${head}, "payload": ${JSON.stringify(payload)}}`;
  const members = jsonObject(payload);
  if (members && !RECORD_MEMBERS.some((member) => Object.hasOwn(members, member))) {
    // Raw line breaks in valid JSON are whitespace: one record stays one line.
    const rest = payload.trim().slice(1).trimStart().replace(/[\n\r\t]/g, " ");
    record = rest === "}" ? `${head}}` : `${head}, ${rest}`;
  }
  return record.replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** What jsonLine's records say themselves. */
const RECORD_MEMBERS = ["topic", "removed", "payload"];

export interface Row {
  text: string;
  /** When the value last changed (ms). */
  changedAt: number;
}

export interface TableView {
  status: string;
  rows: Map<string, Row>;
  width: number;
  height: number;
  now: number;
}

/** Rows changed this recently are marked. */
const FRESH_MS = 1500;

/**
 * The screen: a status line, then `topic  value` rows sorted by topic, as
 * many as fit, each cut to the width; recently changed rows start with `*`.
 */
export function renderTable(view: TableView): string[] {
  const topics = [...view.rows.keys()].sort();
  const room = Math.max(1, view.height - 2);
  const shown = topics.length > room ? topics.slice(0, room - 1) : topics;
  const nameWidth = Math.min(
    Math.max(10, ...shown.map((t) => t.length)),
    Math.floor(view.width / 2),
  );
  const lines = [escapeUnsafe(view.status).slice(0, view.width), ""];
  for (const topic of shown) {
    const row = view.rows.get(topic)!;
    const mark = view.now - row.changedAt < FRESH_MS ? "*" : " ";
    const name = topic.length > nameWidth ? topic.slice(0, nameWidth - 1) + "~" : topic;
    // Escaped as changeLine is, then cut: an escape cut in half cannot reach the terminal.
    const line = escapeUnsafe(`${mark} ${name.padEnd(nameWidth)}  ${row.text}`);
    lines.push(line.slice(0, view.width));
  }
  if (shown.length < topics.length) {
    lines.push(`  ... ${topics.length - shown.length} more: narrow it with --filter`);
  }
  return lines;
}
