/**
 * A test's own MQTT client, as a user's would be: it remembers the latest
 * message of every topic (retained or live) and waits for conditions.
 */
import mqtt from "mqtt";

export interface Received {
  topic: string;
  payload: string;
  retain: boolean;
}

export class TestClient {
  /** Latest payload per topic; an empty payload deletes the topic. */
  readonly topics = new Map<string, string>();
  /** Every message in arrival order. */
  readonly log: Received[] = [];

  private constructor(readonly client: mqtt.MqttClient) {
    client.on("message", (topic, payload, packet) => {
      const text = new TextDecoder().decode(payload);
      this.log.push({ topic, payload: text, retain: packet.retain });
      if (text === "") this.topics.delete(topic);
      else this.topics.set(topic, text);
    });
  }

  static async connect(url: string, subscribe: string[] = []): Promise<TestClient> {
    const client = await mqtt.connectAsync(url, {
      clientId: `test_${crypto.randomUUID().slice(0, 8)}`,
      reconnectPeriod: 200,
    });
    const test = new TestClient(client);
    if (subscribe.length) await client.subscribeAsync(subscribe);
    return test;
  }

  async publish(topic: string, payload: string | Uint8Array = "", retain = false): Promise<void> {
    await this.client.publishAsync(topic, payload as string, { retain });
  }

  /** The value of a topic's `{"value": ...}` payload, parsed. */
  value(topic: string): unknown {
    const payload = this.topics.get(topic);
    return payload === undefined ? undefined : JSON.parse(payload).value;
  }

  async waitFor(
    what: string,
    condition: () => boolean,
    timeoutMs = 5000,
  ): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!condition()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}
