/**
 * Integration: the bridge as a modern app sees it, end to end, on the
 * simulated real GX: find the portal id, ask for everything with an echo,
 * trust the picture once the echo comes, then stay alive without republishes.
 */
import { deepStrictEqual, strictEqual } from "node:assert";
import { readFileSync } from "node:fs";
import { CAPTURE_FILE, loadCapture } from "./support/victron_services.ts";
import { TestClient } from "./support/mqtt_client.ts";
import { sleep, withGx } from "./support/gx.ts";

const BATTERY = "com.victronenergy.battery.ttyO0";

Deno.test("a modern client's flow: discover, full picture with echo, then quiet keep-alives", async () => {
  const rows = readFileSync(CAPTURE_FILE, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  await withGx({ services: loadCapture(), args: ["-k", "2"] }, async (gx) => {
    const app = await TestClient.connect(gx.broker.url, ["N/+/system/0/Serial"]);
    try {
      // 1. The retained Serial tells the portal id.
      await app.waitFor("the Serial", () => app.topics.size > 0);
      const [serialTopic] = app.topics.keys();
      const portalId = serialTopic.split("/")[1];
      strictEqual(app.value(serialTopic), portalId);

      // 2. Everything, and our own echo after it.
      await app.client.subscribeAsync(`N/${portalId}/#`);
      const completed = `N/${portalId}/full_publish_completed`;
      const echoed = (token: string) =>
        app.log.some((m) =>
          m.topic === completed && JSON.parse(m.payload)["full-publish-completed-echo"] === token
        );
      await app.publish(
        `R/${portalId}/keepalive`,
        '{"keepalive-options": [{"full-publish-completed-echo": "app-1"}]}',
      );
      await app.waitFor("our echo", () => echoed("app-1"), 20_000);

      // 3. The picture is complete the moment the echo arrives.
      const topicOf = (row: { service: string; instance: number | null; path: string }) =>
        `N/${portalId}/${row.service.split(".")[2]}/${row.instance ?? 0}${row.path}`;
      const publicRows = rows.filter((r) => r.path !== "/Interfaces/Mk2/Tunnel");
      deepStrictEqual(publicRows.filter((r) => !app.topics.has(topicOf(r))).map(topicOf), []);
      const masked = ["/Settings/Ble/Service/Pincode", "/Settings/Services/AccessPointPassword"];
      const scalarsWrong = publicRows.filter((r) => {
        const expected = masked.includes(r.path) ? "******" : topicOf(r) === serialTopic
          ? portalId // the capture's GX had another id
          : Array.isArray(r.value) && r.value.length === 0
          ? null
          : r.value;
        return (expected === null || typeof expected !== "object") &&
          app.value(topicOf(r)) !== expected;
      });
      deepStrictEqual(scalarsWrong.map((r) => `${topicOf(r)} ${JSON.stringify(r.value)}`), []);

      // 4. Past the 2 s interval with suppress-republish keep-alives: changes
      // keep coming, nothing is republished, nothing is cleared.
      const soc = `N/${portalId}/battery/256/Soc`;
      const quiet = `N/${portalId}/system/0/Serial`; // any topic that does not change
      const before = app.log.length;
      for (let second = 1; second <= 5; second++) {
        await app.publish(
          `R/${portalId}/keepalive`,
          '{"keepalive-options": ["suppress-republish"]}',
        );
        gx.sim.get(BATTERY).set("/Soc", 50 + second + 0.5);
        await app.waitFor(`change ${second}`, () => app.value(soc) === 50 + second + 0.5);
        await sleep(1000);
      }
      const after = app.log.slice(before);
      strictEqual(after.filter((m) => m.topic === soc).length, 5);
      deepStrictEqual(after.filter((m) => m.topic === completed || m.topic === quiet), []);
      deepStrictEqual(after.filter((m) => m.payload === ""), []);
      strictEqual(after.some((m) => m.topic.endsWith("/heartbeat")), true);
    } finally {
      await app.close();
    }
  });
});
