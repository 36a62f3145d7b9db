/**
 * Integration: services that misbehave or change under the bridge's feet:
 * a malformed GetItems, two services on one type/instance, a DeviceInstance
 * that changes at run time, values that change while the bridge scans.
 */
import { strictEqual } from "node:assert";
import dbus from "dbus-next";
import { brokerKind } from "./support/broker.ts";
import { PORTAL_ID, PV, pvInverter, sleep, withGx } from "./support/gx.ts";

const SETTINGS = "com.victronenergy.settings";

const { Variant } = dbus;

Deno.test("a malformed GetItems answer: the service is scanned the older way", async () => {
  await withGx({
    services: [{ ...pvInverter(100), style: "BrokenGetItems" }],
  }, async (gx) => {
    const topic = gx.topic("pvinverter", 20, "/Ac/Power");
    await gx.wake(topic);
    strictEqual(gx.client.value(topic), 100);
  });
});

Deno.test("two services on one type/instance: logged; the newer serves requests until it leaves", async () => {
  await withGx({ services: [pvInverter(100)] }, async (gx) => {
    const topic = gx.topic("pvinverter", 20, "/Ac/Power");
    await gx.wake(topic);
    const twin = await gx.sim.add({ ...pvInverter(200), name: `${PV}_twin` });
    await gx.bridge.waitForLine(/both claim pvinverter\/20; requests go to .*pv0_twin/);
    await gx.client.waitFor("the twin's value", () => gx.client.value(topic) === 200);

    twin.items.set("/Ac/Power", new Variant("i", 201));
    gx.sim.get(PV).items.set("/Ac/Power", new Variant("i", 101));
    await gx.read("pvinverter", 20, "/Ac/Power");
    await gx.client.waitFor("a read from the newer", () => gx.client.value(topic) === 201);

    gx.sim.remove(`${PV}_twin`);
    await gx.bridge.waitForLine(/pv0_twin left the bus/);
    await sleep(100);
    await gx.read("pvinverter", 20, "/Ac/Power");
    await gx.client.waitFor("a read from the older", () => gx.client.value(topic) === 101);
  });
});

Deno.test("a DeviceInstance that changes at run time moves the topics", async () => {
  await withGx({ services: [pvInverter(100)] }, async (gx) => {
    const old = gx.topic("pvinverter", 20, "/Ac/Power");
    const moved = gx.topic("pvinverter", 21, "/Ac/Power");
    await gx.wake(old);
    gx.sim.get(PV).set("/DeviceInstance", 21);
    await gx.client.waitFor("the new topic", () => gx.client.value(moved) === 100);
    await gx.client.waitFor("the old topic emptied", () => !gx.client.topics.has(old));
    gx.sim.get(PV).items.set("/Ac/Power", new Variant("i", 150));
    await gx.read("pvinverter", 21, "/Ac/Power");
    await gx.client.waitFor("a read on the new instance", () => gx.client.value(moved) === 150);
  });
});

Deno.test("a value changing during an item-by-item scan: the last value wins", async () => {
  await withGx({
    services: [{
      name: PV,
      style: "Introspect",
      items: { "/DeviceInstance": 20, "/Ac/Power": 100, "/Ac/Energy": 5 },
    }],
    waitForScan: false,
    beforeBridge: (sim) => void sim.get(PV).delays.set("/Ac/Energy", 600),
  }, async (gx) => {
    const sim = gx.sim.get(PV);
    // The bridge has its answer for /Ac/Power; /Ac/Energy's is still on its way.
    await gx.client.waitFor("the scan under way", () => sim.calls.includes("GetValue /Ac/Energy"));
    await sleep(100);
    sim.set("/Ac/Power", 300);
    await gx.bridge.waitForLine(/\[start\]/);
    const topic = gx.topic("pvinverter", 20, "/Ac/Power");
    await gx.client.publish(
      `R/${PORTAL_ID}/keepalive`,
      '{"keepalive-options": ["suppress-republish"]}',
    );
    await gx.client.waitFor("everything", () => gx.client.topics.has(topic));
    strictEqual(gx.client.value(topic), 300);
  });
});

Deno.test({
  name: "a broker slower than the bus: values wait in the bridge, coalesced; the last arrives",
  // Only Mosquitto can be frozen (SIGSTOP); with aedes the test is reported as ignored.
  ignore: brokerKind() !== "mosquitto",
}, async () => {
  const paths = Array.from({ length: 200 }, (_, i) => `/Settings/Big${i}`);
  await withGx({
    services: [{ name: SETTINGS, items: Object.fromEntries(paths.map((p) => [p, ""])) }],
  }, async (gx) => {
    const topics = paths.map((p) => gx.topic("settings", 0, p));
    await gx.wake(topics[0]);
    await gx.client.waitFor("every value", () => topics.every((t) => gx.client.topics.has(t)));
    const before = gx.client.log.length;
    gx.broker.pause!();
    // Rounds of 4 MB, each apart so that each is a flush of its own: 20 MB
    // in all, more than the sockets between the bridge and the broker hold.
    const big = (round: number, i: number) => `${round}/${i}:`.padEnd(20_000, "x");
    const rounds = 5;
    try {
      for (let round = 1; round <= rounds; round++) {
        paths.forEach((path, i) => gx.sim.get(SETTINGS).set(path, big(round, i)));
        await sleep(200);
      }
    } finally {
      gx.broker.resume!();
    }
    await gx.client.waitFor(
      "the last values",
      () => topics.every((t, i) => gx.client.value(t) === big(rounds, i)),
      20_000,
    );
    const sent = rounds * paths.length;
    const received = gx.client.log.slice(before).filter((m) => topics.includes(m.topic)).length;
    console.log(`sent ${sent} values while the broker was frozen, ${received} arrived`);
    strictEqual(received < sent * 0.8, true, `${received} of ${sent} arrived: nothing coalesced`);
  });
});
