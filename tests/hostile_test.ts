/**
 * Integration, as an attacker would try it: what a hostile MQTT client
 * publishes and what a buggy D-Bus service puts on the bus. Each gets a log
 * line and nothing else: the bridge stays up, keeps its broker connection,
 * writes nothing it was not asked for and publishes no topic a broker
 * would refuse.
 */
import { deepStrictEqual, strictEqual } from "node:assert";
import dbus from "dbus-next";
import { loadCapture } from "./support/victron_services.ts";
import { MASKED } from "../lib/topics.ts";
import { PORTAL_ID, PV, pvInverter, sleep, withGx } from "./support/gx.ts";

const { Variant } = dbus;

/** The bridge never lost its broker connection or the bus. */
function assertConnectedThroughout(lines: string[]): void {
  const lost = lines.filter((l) => /connection lost|lost the bus|protocol/i.test(l));
  deepStrictEqual(lost, [], "no lost connection");
}

Deno.test("writes D-Bus cannot carry are refused with a log line; the bus connection stays", async () => {
  await withGx({ services: [pvInverter()] }, async (gx) => {
    await gx.wake(gx.topic("pvinverter", 20, "/Ac/Power"));
    const deep = (open: string, close: string, n: number) => open.repeat(n) + "1" + close.repeat(n);
    const refused: [string, RegExp][] = [
      ['{"value": "a\\u0000b"}', /NUL/],
      ['{"value": {"a\\u0000": 1}}', /NUL/],
      ['{"value": "\\ud800"}', /half a UTF-16 pair/],
      // The service's echo of these (ItemsChanged) would be over the daemon's 64 containers.
      [`{"value": ${deep("[", "]", 30)}}`, /echo of it would be over 64/],
      [`{"value": ${deep('{"a":', "}", 20)}}`, /echo of it would be over 64/],
      ['{"value": 1e999}', /too large/],
      ['{"value": -1e999}', /too large/],
      [`{"value": ${"9".repeat(400)}}`, /does not fit in 64 bits/],
      ['{"value": -9223372036854775809}', /does not fit in 64 bits/],
    ];
    for (const [payload, why] of refused) {
      const before = gx.bridge.lines.length;
      await gx.write("pvinverter", 20, "/Ac/Power", payload);
      const line = await gx.bridge.waitForLine(why, 5000, before);
      strictEqual(/\[write\].*not written/.test(line), true, line);
      await gx.assertServing("pvinverter", 20, "/Ac/Power");
    }
    strictEqual(gx.sim.get(PV).writes.length, 0, "nothing was written");
    // The deepest value a service can echo still goes through, and the service stays.
    await gx.write("pvinverter", 20, "/Ac/Power", `{"value": ${deep("[", "]", 29)}}`);
    await gx.client.waitFor("the deep write", () => gx.sim.get(PV).writes.length === 1);
    await gx.assertServing("pvinverter", 20, "/Ac/Power");
    strictEqual(gx.bridge.exited, false);
    assertConnectedThroughout(gx.bridge.lines);
  });
});

Deno.test("item paths that cannot be object paths or topics are passed over at scan and in signals", async () => {
  const odd = "com.victronenergy.tank.odd";
  const long = "/" + "x".repeat(70_001);
  await withGx({
    services: [pvInverter(), {
      name: odd,
      items: {
        "/DeviceInstance": 3,
        "/Level": 50,
        "/Dash-Path": 1,
        "/Space Path": 2,
        "/a#b": 3,
        "/a+b": 4,
        "/new\nline": 5,
        [long]: 6,
        ["/a".repeat(198)]: 7, // Mosquitto refuses topics over 200 levels
      },
    }],
  }, async (gx) => {
    const level = gx.topic("tank", 3, "/Level");
    await gx.wake(level);
    await gx.bridge.waitForLine(/tank\.odd: passed over 7 paths that cannot be D-Bus object paths/);
    // Reads of them are refused by the bridge, not sent to D-Bus.
    for (const path of ["/Dash-Path", "/Space Path"]) {
      await gx.client.publish(`R/${PORTAL_ID}/tank/3${path}`);
    }
    await gx.bridge.waitForLine(/has no path or sub-tree \/Space Path/);
    // ItemsChanged with such paths changes nothing.
    gx.sim.get(odd).setMany({ "/a#b": 7, "/new\nline": 8, "/Level": 51 });
    await gx.client.waitFor("the valid change", () => gx.client.value(level) === 51);
    await gx.assertServing("pvinverter", 20, "/Ac/Power");
    const tankTopics = [...gx.client.topics.keys()].filter((t) => t.includes("/tank/"));
    deepStrictEqual(tankTopics.sort(), [gx.topic("tank", 3, "/DeviceInstance"), level].sort());
    strictEqual(gx.sim.get(odd).calls.some((c) => /Dash|Space/.test(c)), false);
    assertConnectedThroughout(gx.bridge.lines);
  });
});

Deno.test("a /DeviceInstance that cannot be a topic level is logged and replaced by 0", async () => {
  const name = "com.victronenergy.tank.huge";
  await withGx({
    services: [pvInverter(), {
      name,
      items: { "/DeviceInstance": new Variant("d", 1e21), "/Level": 9 },
    }],
  }, async (gx) => {
    const level = gx.topic("tank", 0, "/Level");
    await gx.wake(level);
    await gx.bridge.waitForLine(
      /tank\.huge: \/DeviceInstance 1e\+21 is not a whole number .* using 0/,
    );
    // A change to an invalid instance later is ignored, not a move to a bad topic.
    gx.sim.get(name).set("/DeviceInstance", new Variant("d", -5));
    await gx.bridge.waitForLine(/\/DeviceInstance -5.0 is not a whole number .*; ignored/);
    gx.sim.get(name).set("/Level", 10);
    await gx.client.waitFor("the tank still on instance 0", () => gx.client.value(level) === 10);
    assertConnectedThroughout(gx.bridge.lines);
  });
});

Deno.test("an endless Introspect tree: the scan stops at its budget, the rest is served", async () => {
  const name = "com.victronenergy.tank.endless";
  await withGx({
    services: [pvInverter(), { name, items: {}, style: "EndlessIntrospect" }],
    waitForScan: false,
  }, async (gx) => {
    await gx.bridge.waitForLine(/tank\.endless: not scanned: the Introspect tree is over/, 60_000);
    const calls = gx.sim.get(name).calls.length;
    strictEqual(calls <= 10_000, true, `${calls} calls`);
    await sleep(1000);
    strictEqual(gx.sim.get(name).calls.length, calls, "no call after the scan gave up");
    await gx.wake(gx.topic("pvinverter", 20, "/Ac/Power"));
    await gx.assertServing("pvinverter", 20, "/Ac/Power");
  });
});

Deno.test("a sub-tree read publishes every path beneath it; single reads are served meanwhile", async () => {
  const services = loadCapture();
  const settings = services.find((s) => s.name === "com.victronenergy.settings")!;
  const paths = Object.keys(settings.items)
    .filter((p) => p.startsWith("/Settings/") && !MASKED.includes(`settings${p}`));
  await withGx({ services }, async (gx) => {
    await gx.wake(gx.topic("settings", 0, paths[0]));
    // Settings change without signals: only a read can tell.
    const sim = gx.sim.get(settings.name);
    for (const path of paths) sim.items.set(path, new Variant("s", "read"));
    await gx.read("settings", 0, "/Settings");
    await gx.read("settings", 0, "/Settings");
    const single = "/Settings/SystemSetup/MaxChargeCurrent";
    await gx.read("settings", 0, single);
    await gx.client.waitFor(
      `all ${paths.length} paths`,
      () => paths.every((p) => gx.client.value(gx.topic("settings", 0, p)) === "read"),
      20_000,
    );
    strictEqual(paths.length > 900, true, `${paths.length} paths`);
    strictEqual(gx.bridge.lines.some((l) => /\[read\]/.test(l)), false, "nothing dropped");
    const reads = sim.calls.filter((c) => c.startsWith("GetValue /Settings/")).length;
    strictEqual(reads <= 2 * paths.length + 1, true, `${reads} GetValue calls`);
  });
});

Deno.test("a flood of echo tokens cannot make another client's echo disappear", async () => {
  await withGx({ services: [pvInverter()] }, async (gx) => {
    await gx.wake(gx.topic("pvinverter", 20, "/Ac/Power"));
    const keepalive = (echo: string) =>
      gx.client.publish(
        `R/${PORTAL_ID}/keepalive`,
        JSON.stringify({ "keepalive-options": [{ "full-publish-completed-echo": echo }] }),
      );
    for (let i = 0; i < 2000; i++) {
      await keepalive(`flood-${i}`);
      if (i === 1000) await keepalive("the-other-client");
    }
    const echoed = (token: string) =>
      gx.client.log.some((m) =>
        m.topic.endsWith("/full_publish_completed") && m.payload.includes(`"${token}"`)
      );
    await gx.client.waitFor("the other client's echo", () => echoed("the-other-client"), 20_000);
    await gx.client.waitFor("the flood's last echo", () => echoed("flood-1999"), 20_000);
  });
});

Deno.test("a service's error text cannot forge log lines or steer the terminal", async () => {
  const name = "com.victronenergy.tank.liar";
  await withGx({
    services: [{
      name,
      items: { "/DeviceInstance": 4, "/Level": 1 },
      writeError: "no\nERROR [dbus] lost the bus (forged)\u001b[2J\u202eevil",
    }],
  }, async (gx) => {
    await gx.wake(gx.topic("tank", 4, "/Level"));
    await gx.write("tank", 4, "/Level", '{"value": 2}');
    const line = await gx.bridge.waitForLine(/\[write\].*no\\nERROR/);
    strictEqual(line.includes("\\x1b[2J\\u202eevil"), true, line);
    deepStrictEqual(
      gx.bridge.lines.filter((l) =>
        ["forged", "\u001b", "\u202e"].some((bad) => l.includes(bad)) && l !== line
      ),
      [],
    );
  });
});

Deno.test("long topics are cut in the log: 300 requests of 60 KB write little log", async () => {
  await withGx({ services: [pvInverter()] }, async (gx) => {
    const before = gx.bridge.lines.length;
    for (let i = 0; i < 300; i++) {
      await gx.client.publish(`R/${PORTAL_ID}/pvinverter/20/${"x".repeat(60_000)}${i}`);
    }
    await gx.assertServing("pvinverter", 20, "/Ac/Power");
    const bytes = gx.bridge.lines.slice(before).reduce((n, l) => n + l.length, 0);
    strictEqual(bytes < 100_000, true, `${bytes} bytes of log`);
    strictEqual(gx.bridge.lines.some((l) => /\(60003 characters\)/.test(l)), true);
  });
});

Deno.test("two services on one type/instance: when one leaves, the other keeps its topics", async () => {
  const twin = "com.victronenergy.pvinverter.twin";
  await withGx({
    services: [pvInverter(100), {
      name: twin,
      items: { "/DeviceInstance": 20, "/Ac/Power": 200, "/Only/Twin": 1 },
    }],
  }, async (gx) => {
    const power = gx.topic("pvinverter", 20, "/Ac/Power");
    const onlyTwin = gx.topic("pvinverter", 20, "/Only/Twin");
    await gx.wake(onlyTwin);
    await gx.bridge.waitForLine(/both claim pvinverter\/20/);
    const stays = gx.bridge.lines.some((l) => l.includes(`requests go to ${twin}`)) ? PV : twin;
    const leaves = stays === PV ? twin : PV;
    gx.sim.remove(leaves);
    await gx.bridge.waitForLine(new RegExp(`${leaves.replaceAll(".", "\\.")} left the bus`));
    await sleep(500);
    strictEqual(
      gx.client.value(power),
      stays === PV ? 100 : 200,
      "the remaining value, not emptied",
    );
    strictEqual(gx.client.topics.has(onlyTwin), stays === twin, "the leaving one's own items go");
    await gx.assertServing("pvinverter", 20, "/Ac/Power");
  });
});

Deno.test("a service whose reads hang holds up only its own sub-tree reads", async () => {
  const hung = "com.victronenergy.tank.hung";
  const items: Record<string, number> = { "/DeviceInstance": 7 };
  for (let i = 0; i < 40; i++) items[`/X/Item${i}`] = i;
  await withGx({
    services: [pvInverter(), { name: hung, items }, {
      name: "com.victronenergy.tank.fine",
      items: { "/DeviceInstance": 8, "/Y/A": 1, "/Y/B": 2 },
    }],
  }, async (gx) => {
    const b = gx.topic("tank", 8, "/Y/B");
    await gx.wake(b);
    gx.sim.get(hung).hang.add("GetValue");
    for (let i = 0; i < 11; i++) await gx.read("tank", 7, "/X");
    await gx.bridge.waitForLine(/tank\/7\/X: 10 sub-tree reads of this service are waiting/);
    gx.sim.get("com.victronenergy.tank.fine").items.set("/Y/B", new Variant("i", 3));
    await gx.read("tank", 8, "/Y");
    await gx.client.waitFor("the other service's sub-tree read", () => gx.client.value(b) === 3);
  });
});

Deno.test("a NameOwnerChanged from anyone but the bus changes nothing", async () => {
  await withGx({ services: [pvInverter()] }, async (gx) => {
    const power = gx.topic("pvinverter", 20, "/Ac/Power");
    await gx.wake(power);
    const spoofer = gx.sim.get(PV).bus;
    const bridgeName = await uniqueNameOf(spoofer, gx.bridge.pid);
    const pvOwner = await call(spoofer, "GetNameOwner", "s", [PV]) as string;
    spoofer.send(
      new dbus.Message({
        type: dbus.MessageType.SIGNAL,
        destination: bridgeName,
        path: "/org/freedesktop/DBus",
        interface: "org.freedesktop.DBus",
        member: "NameOwnerChanged",
        signature: "sss",
        body: [PV, pvOwner, ""],
      }),
    );
    await sleep(500);
    strictEqual(gx.bridge.lines.some((l) => l.includes("left the bus")), false);
    strictEqual(gx.client.value(power), 936, "its topics kept");
    await gx.assertServing("pvinverter", 20, "/Ac/Power");
  });
});

type Bus = ReturnType<typeof dbus.sessionBus>;

function call(bus: Bus, member: string, signature = "", body: unknown[] = []): Promise<unknown> {
  return bus.call(
    new dbus.Message({
      destination: "org.freedesktop.DBus",
      path: "/org/freedesktop/DBus",
      interface: "org.freedesktop.DBus",
      member,
      signature,
      body,
    }),
  ).then((reply) => reply!.body[0]);
}

/** The unique bus name of the connection the process `pid` made. */
async function uniqueNameOf(bus: Bus, pid: number): Promise<string> {
  for (const name of await call(bus, "ListNames") as string[]) {
    if (!name.startsWith(":")) continue;
    if (await call(bus, "GetConnectionUnixProcessID", "s", [name]) === pid) return name;
  }
  throw new Error(`no bus connection of process ${pid}`);
}
