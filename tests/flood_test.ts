/**
 * Floods: 10,000 reads, 10,000 writes and 1,000 keep-alives from many
 * clients, each within about a second. The bridge must stay within bounded
 * memory, keep forwarding D-Bus changes with bounded latency, and serve on.
 */
import { strictEqual } from "node:assert";
import dbus from "dbus-next";
import { rssMb } from "../scripts/proc_stats.ts";
import { TestClient } from "./support/mqtt_client.ts";
import { type Gx, PORTAL_ID, PV, pvInverter, sleep, withGx } from "./support/gx.ts";

const { Variant } = dbus;
const BATTERY = "com.victronenergy.battery.ttyO0";
const services = [pvInverter(100), {
  name: BATTERY,
  items: { "/DeviceInstance": 256, "/Soc": new Variant("d", 50) },
}];
const MAX_LATENCY_MS = 3000;
const MAX_RSS_MB = 400;

/**
 * Runs `flood` while the battery's SoC changes every 100 ms; returns the
 * worst time from a change on D-Bus to its notification.
 */
async function duringChanges(gx: Gx, flood: () => Promise<void>): Promise<number> {
  const soc = gx.topic("battery", 256, "/Soc");
  await gx.wake(soc);
  const sentAt = new Map<number, number>();
  let worst = 0;
  gx.client.client.on("message", (topic, payload) => {
    if (topic !== soc || payload.length === 0) return;
    const at = sentAt.get(JSON.parse(payload.toString()).value);
    if (at !== undefined) worst = Math.max(worst, performance.now() - at);
  });
  let n = 0;
  const changing = setInterval(() => {
    const value = 60 + ++n / 8;
    sentAt.set(value, performance.now());
    gx.sim.get(BATTERY).set("/Soc", new Variant("d", value));
  }, 100);
  try {
    // Changes go on for 2 s, during the flood and while the bridge works through it.
    await Promise.all([flood(), sleep(2000)]);
  } finally {
    clearInterval(changing);
  }
  const last = 60 + n / 8;
  await gx.client.waitFor("the last change", () => gx.client.value(soc) === last, 10_000);
  return worst;
}

function report(what: string, gx: Gx, worst: number): void {
  const rss = rssMb(gx.bridge.pid, "VmHWM");
  console.log(
    `${what}: worst change latency ${worst.toFixed(0)} ms, bridge peak RSS ${rss.toFixed(0)} MB`,
  );
  strictEqual(worst < MAX_LATENCY_MS, true, `latency ${worst} ms`);
  strictEqual(rss < MAX_RSS_MB, true, `RSS ${rss} MB`);
}

Deno.test("10,000 read requests, valid and not", async () => {
  await withGx({ services }, async (gx) => {
    const worst = await duringChanges(gx, async () => {
      for (let i = 0; i < 10_000; i++) {
        const path = i % 2 ? "/Ac/Power" : `/No/Such/${i}`;
        gx.client.client.publish(`R/${PORTAL_ID}/pvinverter/20${path}`, "");
      }
      await gx.client.client.publishAsync(`R/${PORTAL_ID}/keepalive`, "");
    });
    await gx.assertServing("pvinverter", 20, "/Ac/Power");
    report("10k reads", gx, worst);
  });
});

Deno.test("10,000 write requests, valid and not", async () => {
  await withGx({ services }, async (gx) => {
    const worst = await duringChanges(gx, async () => {
      for (let i = 0; i < 10_000; i++) {
        const [path, body] = [
          ["/Ac/Power", `{"value": ${i}}`],
          ["/No/Such", '{"value": 1}'],
          ["/Ac/Power", "not json"],
          ["/Ac/Power", '{"value": [1, {"a": null}]}'],
        ][i % 4];
        gx.client.client.publish(`W/${PORTAL_ID}/pvinverter/20${path}`, body);
      }
      await gx.client.client.publishAsync(`R/${PORTAL_ID}/keepalive`, "");
    });
    await gx.assertServing("pvinverter", 20, "/Ac/Power");
    strictEqual(gx.sim.get(PV).writes.length > 0, true);
    report("10k writes", gx, worst);
  });
});

Deno.test("1,000 keep-alives from 10 clients", async () => {
  await withGx({ services }, async (gx) => {
    const clients = await Promise.all(
      Array.from({ length: 10 }, () => TestClient.connect(gx.broker.url)),
    );
    try {
      const worst = await duringChanges(gx, async () => {
        for (let i = 0; i < 1000; i++) {
          clients[i % 10].client.publish(
            `R/${PORTAL_ID}/keepalive`,
            `{"keepalive-options": [{"full-publish-completed-echo": "c${i}"}]}`,
          );
        }
        await Promise.all(
          clients.map((c) => c.client.publishAsync(`R/${PORTAL_ID}/keepalive`, "")),
        );
      });
      await gx.assertServing("pvinverter", 20, "/Ac/Power");
      report("1k keep-alives", gx, worst);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });
});

Deno.test("requests to a service that never answers: calls are capped, the rest is dropped", async () => {
  await withGx({ services }, async (gx) => {
    gx.sim.get(PV).hang.add("GetValue");
    const worst = await duringChanges(gx, async () => {
      for (let i = 0; i < 3000; i++) {
        gx.client.client.publish(`R/${PORTAL_ID}/pvinverter/20/Ac/Power`, "");
      }
      await gx.client.client.publishAsync(`R/${PORTAL_ID}/keepalive`, "");
    });
    await gx.bridge.waitForLine(
      /100 calls to this service are waiting for answers already; dropped/,
    );
    await gx.assertServing("battery", 256, "/Soc");
    report("3k reads to a hung service", gx, worst);
  });
});

Deno.test("a hung service holds few of dbus-daemon's places: other services and new ones are served", async () => {
  await withGx({ services }, async (gx) => {
    gx.sim.get(PV).hang.add("GetValue");
    // dbus-daemon keeps 128 unanswered calls per connection, and a hung service's calls stay
    // unanswered after the bridge gave up on them: 2 x 70 reads would fill them all.
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 70; i++) {
        gx.client.client.publish(`R/${PORTAL_ID}/pvinverter/20/Ac/Power`, "");
      }
      await gx.bridge.waitForLine(
        /\[read\] .*no answer within 5 s/,
        10_000,
        gx.bridge.lines.length,
      );
    }
    await gx.assertServing("battery", 256, "/Soc");
    // A service that appears now is scanned, and served.
    await gx.sim.add({
      name: "com.victronenergy.tank.t3",
      items: { "/DeviceInstance": 3, "/Level": 42 },
    });
    await gx.client.waitFor(
      "the new tank",
      () => gx.client.value(gx.topic("tank", 3, "/Level")) === 42,
    );
    await gx.assertServing("tank", 3, "/Level");
    strictEqual(gx.bridge.lines.some((l) => /maximum number of pending replies/.test(l)), false);
  });
});
