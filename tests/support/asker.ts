/** An MQTT 5 client that asks with a Response Topic and collects the answers. */
import { strictEqual } from "node:assert";
import { Buffer } from "node:buffer";
import mqtt from "mqtt";

export interface Answer {
  payload: string;
  correlationData?: Uint8Array;
  retain: boolean;
}

export class Asker {
  readonly answers: Answer[] = [];
  /** Answers on any other topic: none may go astray. */
  readonly elsewhere: string[] = [];
  readonly topic = `reply/${crypto.randomUUID().slice(0, 8)}`;

  private constructor(readonly client: mqtt.MqttClient) {
    client.on("message", (topic, payload, packet) => {
      if (topic === this.topic) {
        const data = packet.properties?.correlationData;
        this.answers.push({
          payload: payload.toString(),
          correlationData: data && new Uint8Array(data),
          retain: packet.retain,
        });
      } else if (payload.toString().includes('"status"')) this.elsewhere.push(topic);
    });
  }

  static async connect(url: string): Promise<Asker> {
    const client = await mqtt.connectAsync(url, {
      clientId: `asker_${crypto.randomUUID().slice(0, 8)}`,
      protocolVersion: 5,
      reconnectPeriod: 0,
    });
    const asker = new Asker(client);
    // Everything: its reply topic among it (two overlapping subscriptions would deliver twice).
    await client.subscribeAsync("#", { qos: 0 });
    return asker;
  }

  /** Publishes a request; `correlation` null sends none. */
  async send(
    topic: string,
    payload: string,
    correlation: Uint8Array | null,
    extra: { retain?: boolean; responseTopic?: string } = {},
  ): Promise<void> {
    await this.client.publishAsync(topic, payload, {
      retain: extra.retain ?? false,
      properties: {
        responseTopic: extra.responseTopic ?? this.topic,
        ...(correlation && { correlationData: Buffer.from(correlation) }),
      },
    });
  }

  /** Sends a request and returns its one answer, parsed. */
  async ask(topic: string, payload = "", timeoutMs = 8000): Promise<Record<string, unknown>> {
    const correlation = crypto.getRandomValues(new Uint8Array(16));
    await this.send(topic, payload, correlation);
    const answer = await this.answerTo(correlation, timeoutMs);
    strictEqual(answer.retain, false, "answers are not retained");
    return JSON.parse(answer.payload);
  }

  async answerTo(correlation: Uint8Array, timeoutMs = 8000): Promise<Answer> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const found = this.answers.filter((a) => same(a.correlationData, correlation));
      if (found.length > 0) {
        // One answer only: wait a little for a second that should not come.
        await sleep(100);
        strictEqual(this.answers.filter((a) => same(a.correlationData, correlation)).length, 1);
        return found[0];
      }
      if (Date.now() > end) throw new Error(`no answer; got ${JSON.stringify(this.answers)}`);
      await sleep(20);
    }
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const same = (a: Uint8Array | undefined, b: Uint8Array) =>
  a !== undefined && a.length === b.length && a.every((x, i) => x === b[i]);
