/**
 * `dbus-mqtt read` and `dbus-mqtt write`: one request with a Response Topic
 * (MQTT 5), and its answer printed, so that a script or a person learns
 * whether a write was done, refused or not understood. It finds the GX as
 * `watch` does, from the retained Serial, unless given `--portal-id`.
 */
import { Buffer } from "node:buffer";
import mqtt from "mqtt";
import { connectOptions } from "./mqtt_link.ts";
import type { AskOptions } from "./options.ts";
import { shown } from "./log.ts";
import { isPortalId, serialTopic } from "./topics.ts";

/** Prints the answer (stdout) and resolves to the exit code: 0 only for `"ok"`. */
export function ask(
  options: AskOptions,
  print = (line: string) => console.log(line),
): Promise<number> {
  const say = (message: string) => console.error(`${options.kind}: ${message}`);
  const id = crypto.randomUUID().slice(0, 8);
  const answerTopic = `dbus-mqtt-${options.kind}/${id}`;
  const correlationData = crypto.getRandomValues(new Uint8Array(8));
  const client = mqtt.connect(options.mqttUrl, {
    ...connectOptions(options, `dbus-mqtt-${options.kind}_${id}`, 5),
    reconnectPeriod: 0,
  });
  if (options.insecure) say("--insecure: the broker's certificate is NOT checked");

  return new Promise((resolve) => {
    let finished = false;
    const done = (code: number, message?: string) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      if (message) say(message);
      client.end(true, () => resolve(code));
    };
    const timer = setTimeout(
      () =>
        done(
          1,
          `no answer within ${options.timeoutSeconds} s: is a bridge for this GX connected to ` +
            `${options.mqttName}, and does the broker speak MQTT 5?`,
        ),
      options.timeoutSeconds * 1000,
    );
    client.on("error", (error) => {
      const unsupported = [1, 132].includes((error as { code?: number }).code ?? 0);
      done(
        1,
        unsupported
          ? "the broker does not speak MQTT 5, which answers need"
          : `broker: ${error.message}`,
      );
    });
    client.on("close", () => done(1, `lost the connection to ${options.mqttName}`));

    client.on("connect", () => {
      client.subscribe(answerTopic, () => {
        if (options.portalId) return send(options.portalId);
        client.subscribe(serialTopic("+"));
      });
    });

    client.on("message", (topic, payload, packet) => {
      if (topic === answerTopic) {
        const data = packet.properties?.correlationData;
        if (!data || !sameBytes(data, correlationData)) return;
        const text = payload.toString();
        const status = statusOf(text);
        if (status === undefined) return done(1, `not an answer: ${shown(text)}`);
        print(text);
        return done(status === "ok" ? 0 : 1);
      }
      // Anyone may publish a Serial: only a portal id that can be one is taken.
      const portalId = topic.split("/")[1];
      if (sent || !isPortalId(portalId)) return;
      say(`found GX ${portalId} (when the broker serves several, pick one with --portal-id)`);
      client.unsubscribe(serialTopic("+"));
      send(portalId);
    });

    let sent = false;
    function send(portalId: string): void {
      if (sent) return;
      sent = true;
      const verb = options.kind === "read" ? "R" : "W";
      client.publish(`${verb}/${portalId}/${options.item}`, options.payload, {
        properties: { responseTopic: answerTopic, correlationData: Buffer.from(correlationData) },
      });
    }
  });
}

/** An answer's status; undefined for anything that is not an answer. */
function statusOf(answer: string): unknown {
  try {
    return JSON.parse(answer)?.status;
  } catch {
    return undefined;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
