/**
 * Integration: the broker side of the latency budget, MqttLink against a real
 * broker. While busy, writes are a quarter budget apart; a value held for that
 * goes out by a timer, and the timer's write holds nothing back after it.
 */
import { strictEqual } from "node:assert";
import { MqttLink } from "../lib/mqtt_link.ts";
import { startBroker } from "./support/broker.ts";
import { sleep } from "./support/gx.ts";
import { TestClient } from "./support/mqtt_client.ts";

/** A quarter of it, 200 ms, is how long a value may be held for the next write. */
const BUDGET_MS = 800;

Deno.test("a value after a timed write goes out at once, not a quarter budget later", async () => {
  const broker = await startBroker();
  const watcher = await TestClient.connect(broker.url, ["t/#"]);
  let connected!: () => void;
  const up = new Promise<void>((resolve) => connected = resolve);
  const link = new MqttLink(
    { mqttUrl: broker.url, mqttName: broker.url, insecure: false },
    "link-test",
    ["requests/#"],
    { connected, request: () => {}, problem: () => {}, fellBack: () => {} },
    BUDGET_MS,
  );
  try {
    await up;
    const arrival = (value: string) =>
      watcher.waitFor(value, () => watcher.topics.get("t/a") === value).then(() =>
        performance.now()
      );
    link.publishValue("t/a", "1", false); // after a quiet spell: at once
    await arrival("1");
    link.publishValue("t/a", "2", false); // held: a write went out just now
    await arrival("2"); // by the timer
    await sleep(20);
    const sent = performance.now();
    link.publishValue("t/a", "3", false);
    const took = (await arrival("3")) - sent;
    strictEqual(took < BUDGET_MS / 8, true, `the value after the timed write took ${took} ms`);
  } finally {
    await link.close();
    await watcher.close();
    await broker.stop();
  }
});
