/**
 * `dbus-mqtt watch`: the client a user reaches for first. It finds the GX on
 * the broker, keeps it alive, and shows every value as it changes: a table
 * on a terminal, a line (or JSON record) per message otherwise. When nothing
 * comes, it says what is missing instead of staying silent.
 */
import process from "node:process";
import mqtt from "mqtt";
import { escapeUnsafe } from "./log.ts";
import { connectOptions } from "./mqtt_link.ts";
import type { WatchOptions } from "./options.ts";
import {
  fullPublishCompletedTopic,
  heartbeatTopic,
  isPortalId,
  keepAliveTopic,
  matchesFilter,
  notificationFilter,
  serialTopic,
  shortTopic,
} from "./topics.ts";
import { changeLine, jsonLine, renderTable, type Row, valueText } from "./watch_view.ts";

/** How long to wait for the Serial or the first values before explaining. */
const HINT_AFTER_MS = 5000;
const REDRAW_MS = 200;

export interface Terminal {
  write(text: string): void;
  /** Columns and rows when the output is a terminal; undefined when piped. */
  size(): { columns: number; rows: number } | undefined;
}

export const processTerminal: Terminal = {
  write: (text) => process.stdout.write(text),
  size: () =>
    process.stdout.isTTY
      ? { columns: process.stdout.columns || 80, rows: process.stdout.rows || 24 }
      : undefined,
};

/** Runs until Ctrl-C, SIGTERM or `stop` is aborted; resolves to the exit code. */
export function watch(
  options: WatchOptions,
  terminal: Terminal = processTerminal,
  stop?: AbortSignal,
): Promise<number> {
  // The broker's words and topics come from elsewhere: escaped as in the bridge's log.
  const say = (message: string) => console.error(`watch: ${escapeUnsafe(message)}`);
  const token = `watch-${Math.random().toString(36).slice(2, 10)}`;
  const rows = new Map<string, Row>();
  let portalId = options.portalId;
  /** The latest payload of each topic shown: a republished value is no change. */
  const latest = new Map<string, string>();
  let complete = false;
  let lastHeartbeat = 0;
  let redraw: ReturnType<typeof setTimeout> | undefined;
  /** The hint shown when nothing comes. */
  let waiting: ReturnType<typeof setTimeout> | undefined;
  let keepingAlive: ReturnType<typeof setInterval> | undefined;

  const client = mqtt.connect(
    options.mqttUrl,
    connectOptions(options, `dbus-mqtt-watch_${token.slice(6)}`),
  );
  say(`connecting to ${options.mqttName}`);
  if (options.insecure) say("--insecure: the broker's certificate is NOT checked");

  /** Said once while the broker stays away, not at every try (one a second). */
  let problem = "";
  let connected = false;
  /**
   * The GX's Serial came on this connection. The bridge publishes it once it
   * has subscribed to requests: a keep-alive sent before would be lost (a
   * bridge that starts with watch, or that falls back to MQTT 3.1.1 a second
   * later), and watch would show nothing until its next keep-alive.
   */
  let following = false;
  /** What this connection waits on: the Serial of --portal-id's GX, or any GX's. */
  let serials = "";
  client.on("connect", () => {
    connected = true;
    problem = "";
    following = false;
    serials = serialTopic(portalId ?? "+");
    say(`connected; waiting for ${portalId ? `${portalId}'s` : "a GX's"} retained ${serials}`);
    client.subscribe(serials);
    waiting = setTimeout(() =>
      say(
        `no GX on this broker yet: nothing publishes ${serials}. Is dbus-mqtt running and ` +
          `connected to ${options.mqttName}?`,
      ), HINT_AFTER_MS);
  });
  client.on("error", (error) => {
    if (error.message !== problem) say(`broker: ${error.message}; trying again`);
    problem = error.message;
  });
  client.on("offline", () => {
    if (connected) say("broker connection lost; reconnecting");
    connected = false;
  });

  client.on("message", (topic, buffer, packet) => {
    const payload = buffer.toString();
    if (!following || !portalId) {
      const id = topic.split("/")[1];
      if (!isPortalId(id)) return; // anyone may publish a Serial topic
      if (!portalId) {
        say(`found GX ${id} (when the broker serves several, pick one with --portal-id)`);
      }
      client.unsubscribe(serials); // it comes with the GX's other topics now
      portalId = id;
      following = true;
      clearTimeout(waiting);
      return follow(portalId);
    }
    if (!matchesFilter(notificationFilter(portalId), topic)) return;
    // A Serial that comes live, not as the broker's retained copy: the bridge
    // has just (re)connected, quiet if it restarted, and a keep-alive sent
    // while it was away (the broker kept its Serial meanwhile) was lost.
    if (topic === serialTopic(portalId) && !packet.retain) keepAlive(portalId, fullPublish);
    if (topic === heartbeatTopic(portalId)) {
      lastHeartbeat = Date.now();
      return scheduleRedraw();
    }
    if (topic === fullPublishCompletedTopic(portalId)) {
      if (!complete && payload.includes(`"${token}"`)) {
        complete = true;
        const n = latest.size;
        say(`${n} ${n === 1 ? "value" : "values"}: the complete picture; changes follow`);
      }
      return scheduleRedraw();
    }
    const short = shortTopic(topic);
    if (options.filters.length && !options.filters.some((f) => matchesFilter(f, short))) return;
    if (latest.get(short) === payload) return;
    if (payload === "") latest.delete(short);
    else latest.set(short, payload);
    show(topic, short, payload);
  });

  /** A full republish, with our echo when it is done. */
  const fullPublish = [{ "full-publish-completed-echo": token }];

  function keepAlive(id: string, keepAliveOptions: unknown[]): void {
    client.publish(keepAliveTopic(id), JSON.stringify({ "keepalive-options": keepAliveOptions }));
  }

  /** Subscribes to the GX and keeps it alive; again after every reconnect. */
  function follow(id: string): void {
    client.subscribe(notificationFilter(id), () => {
      keepAlive(id, fullPublish);
      say(`watching ${id}; keep-alive sent, every ${options.keepAliveSeconds} s from now on`);
      clearInterval(keepingAlive);
      keepingAlive = setInterval(
        () => keepAlive(id, ["suppress-republish"]),
        options.keepAliveSeconds * 1000,
      );
      clearTimeout(waiting);
      waiting = setTimeout(() => {
        // The Serial may be the broker's copy from a bridge that is gone.
        const serial = shortTopic(serialTopic(id));
        if ([...latest.keys()].some((short) => short !== serial)) return;
        say(
          `no values after the keep-alive. Is the bridge for ${id} connected to this broker` +
            (options.filters.length ? ", and does --filter match anything?" : "?"),
        );
      }, HINT_AFTER_MS);
    });
  }

  function show(topic: string, short: string, payload: string): void {
    if (options.json) return terminal.write(jsonLine(topic, payload) + "\n");
    if (!terminal.size()) return terminal.write(changeLine(topic, payload) + "\n");
    if (payload === "") rows.delete(short);
    else rows.set(short, { text: valueText(payload), changedAt: Date.now() });
    scheduleRedraw();
  }

  function scheduleRedraw(): void {
    const size = terminal.size();
    if (!size || options.json || redraw !== undefined) return;
    redraw = setTimeout(() => {
      redraw = undefined;
      const beat = lastHeartbeat
        ? `heartbeat ${Math.round((Date.now() - lastHeartbeat) / 1000)} s ago`
        : "no heartbeat yet";
      const status = `dbus-mqtt watch ${portalId} on ${options.mqttName}: ${rows.size} values, ` +
        `${complete ? "complete" : "loading"}, ${beat}  (Ctrl-C quits)`;
      const lines = renderTable({
        status,
        rows,
        width: size.columns,
        height: size.rows,
        now: Date.now(),
      });
      terminal.write("\x1b[H\x1b[2J" + lines.join("\n") + "\n");
    }, REDRAW_MS);
  }

  return new Promise((resolve) => {
    const end = () => {
      [keepingAlive, waiting, redraw].forEach(clearTimeout);
      client.end(true, () => resolve(0));
    };
    process.once("SIGINT", end);
    process.once("SIGTERM", end);
    stop?.addEventListener("abort", end);
  });
}
