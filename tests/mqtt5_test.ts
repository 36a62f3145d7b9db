/**
 * Integration, MQTT 5: requests with a Response Topic get one answer with
 * their Correlation Data; retained writes are refused however they arrive;
 * a broker that speaks only 3.1.1 gets a bridge that falls back.
 */
import { deepStrictEqual, ok, strictEqual } from "node:assert";
import { Asker, sleep } from "./support/asker.ts";
import { BridgeProcess } from "./support/bridge.ts";
import { brokerKind, startBroker } from "./support/broker.ts";
import { type Gx, type GxOptions, PORTAL_ID, PV, pvInverter, withGx } from "./support/gx.ts";
import type { ServiceSpec } from "./support/victron_services.ts";

const needsMosquitto = brokerKind() !== "mosquitto";
const SETTINGS = "com.victronenergy.settings";
const settings: ServiceSpec = {
  name: SETTINGS,
  items: {
    "/Settings/CGwacs/AcPowerSetPoint": 0,
    "/Settings/CGwacs/MaxFeedInPower": 1000,
    "/Settings/CGwacs/Hub4Mode": 1,
    "/Settings/Ble/Service/Pincode": "123456",
  },
  clip: { "/Settings/CGwacs/AcPowerSetPoint": [-1000, 1000] },
  readOnly: ["/Settings/CGwacs/Hub4Mode"],
};
const BROKEN = "com.victronenergy.battery.broken";
const broken: ServiceSpec = {
  name: BROKEN,
  items: { "/DeviceInstance": 7, "/Soc": 50 },
  writeError: "the device is busy",
};

const request = (verb: "R" | "W", item: string) => `${verb}/${PORTAL_ID}/${item}`;

/** A test against Mosquitto (MQTT 5), with a GX and a client that asks. */
function mqtt5Test(
  name: string,
  options: GxOptions,
  body: (gx: Gx, asker: Asker) => Promise<void>,
): void {
  Deno.test({
    name: `MQTT 5: ${name}`,
    ignore: needsMosquitto,
    fn: () =>
      withGx(options, async (gx) => {
        await gx.bridge.waitForLine(/\[start\]/);
        const asker = await Asker.connect(gx.broker.url);
        try {
          await body(gx, asker);
        } finally {
          await asker.close();
        }
      }),
  });
}

mqtt5Test("reads and writes answer with their outcome and the request's Correlation Data", {
  services: [pvInverter(936), settings, broken],
  args: ["--allow-write", "settings/0/Settings/#", "--allow-write", "battery/#"],
}, async (gx, asker) => {
  // Correlation Data comes back byte for byte, any bytes.
  const correlation = Uint8Array.from([0, 255, 10, 13, 0x80, 0x7f, 0]);
  await asker.send(request("R", "pvinverter/20/Ac/Power"), "", correlation);
  const answer = await asker.answerTo(correlation);
  deepStrictEqual(answer.correlationData, correlation);
  deepStrictEqual(JSON.parse(answer.payload), { status: "ok", value: 936 });

  // A write the service took: the value as the service has it now (clipped).
  const setpoint = "settings/0/Settings/CGwacs/AcPowerSetPoint";
  deepStrictEqual(await asker.ask(request("W", setpoint), '{"value": -200}'), {
    status: "ok",
    value: -200,
  });
  deepStrictEqual(await asker.ask(request("W", setpoint), '{"value": -5000}'), {
    status: "ok",
    value: -1000,
  });
  strictEqual(
    gx.sim.get(SETTINGS).items.get("/Settings/CGwacs/AcPowerSetPoint")!.value,
    -1000,
  );
  // Refused by the service: SetValue's answer.
  deepStrictEqual(
    await asker.ask(request("W", "settings/0/Settings/CGwacs/Hub4Mode"), '{"value": 3}'),
    { status: "refused", code: 1 },
  );
  // A sub-tree read: every path beneath, fresh; secrets stay masked.
  gx.sim.get(SETTINGS).items.get("/Settings/CGwacs/MaxFeedInPower")!.value = 1500;
  deepStrictEqual(await asker.ask(request("R", "settings/0/Settings/CGwacs")), {
    status: "ok",
    values: {
      "/Settings/CGwacs/AcPowerSetPoint": -1000,
      "/Settings/CGwacs/MaxFeedInPower": 1500,
      "/Settings/CGwacs/Hub4Mode": 1,
    },
  });
  deepStrictEqual(await asker.ask(request("R", "settings/0/Settings/Ble/Service/Pincode")), {
    status: "ok",
    value: "******",
  });

  // Everything else is an error a person can act on.
  const errors: [string, string, RegExp][] = [
    [request("W", setpoint), "not json", /JSON/],
    [request("W", setpoint), '{"val": 1}', /value/],
    [request("W", setpoint), '{"value": 1e999}', /double/],
    [request("W", "pvinverter/20/Ac/Power"), '{"value": 1}', /--allow-write/],
    [request("W", "battery/7/Soc"), '{"value": 1}', /the device is busy/],
    [request("R", "vebus/999/Mode"), "", /no service vebus\/999/],
    [request("R", "pvinverter/20/Nothing"), "", /has no path or sub-tree/],
    [request("W", "settings/0/Settings/CGwacs/Nothing"), '{"value": 1}', /has no path/],
    [request("R", "pvinverter/x/Ac/Power"), "", /device instance/],
    [request("R", "vebus/276/Interfaces/Mk2/Tunnel"), "", /no service|no path/],
  ];
  for (const [topic, payload, why] of errors) {
    const answer = await asker.ask(topic, payload);
    strictEqual(answer.status, "error", `${topic} ${payload}`);
    ok(why.test(answer.error as string), `${topic} ${payload}: ${answer.error}`);
  }
  strictEqual(gx.sim.get(PV).writes.length, 0);
  deepStrictEqual(asker.elsewhere, [], "answers only on the reply topic");
});

mqtt5Test("keep-alives answer after their full publish; no Response Topic, no answer", {
  services: [pvInverter(936)],
}, async (gx, asker) => {
  const before = Math.floor(Date.now() / 1000);
  const answer = await asker.ask(request("R", "keepalive"));
  strictEqual(answer.status, "ok");
  const at = answer["full-publish-completed"] as number;
  ok(at >= before && at <= before + 5, `full-publish-completed ${at}`);
  // The full publish it answers for did come.
  await gx.client.waitFor(
    "the values",
    () => gx.client.value(gx.topic("pvinverter", 20, "/Ac/Power")) === 936,
  );
  // The old keep-alive (a read of the Serial) answers the same way.
  const serial = await asker.ask(request("R", "system/0/Serial"));
  strictEqual(typeof serial["full-publish-completed"], "number");
  // Renew only: nothing to wait for.
  deepStrictEqual(
    await asker.ask(
      request("R", "keepalive"),
      '{"keepalive-options": ["suppress-republish"]}',
    ),
    { status: "ok" },
  );

  // Without a Response Topic: as under 3.1.1, no answer anywhere.
  const count = asker.answers.length;
  await asker.client.publishAsync(request("R", "pvinverter/20/Ac/Power"), "");
  await asker.client.publishAsync(request("W", "pvinverter/20/Nothing"), '{"value": 1}');
  // Without Correlation Data: answered without it.
  await asker.send(request("R", "pvinverter/20/Ac/Power"), "", null);
  await asker.client.publishAsync(request("R", "keepalive"), "");
  await gx.client.waitFor("the one answer", () => asker.answers.length > count);
  await sleep(300);
  strictEqual(asker.answers.length, count + 1);
  strictEqual(asker.answers.at(-1)!.correlationData, undefined);
  // An answer never goes to the bridge's own topics: it would forge a value or a request.
  for (
    const responseTopic of [`N/${PORTAL_ID}/pvinverter/20/Ac/Power`, request("W", "x/0/Y")]
  ) {
    await asker.send(request("R", "pvinverter/20/Ac/Power"), "", null, { responseTopic });
    await gx.bridge.waitForLine(/response topic .*cannot take answers; no answer/);
  }
  await sleep(300);
  deepStrictEqual(asker.elsewhere, []);
  strictEqual(gx.client.value(gx.topic("pvinverter", 20, "/Ac/Power")), 936);
});

mqtt5Test("--read-only, a hung service's timeouts and the flood cap are answered as errors", {
  services: [pvInverter(936)],
  args: ["--read-only"],
}, async (gx, asker) => {
  const write = await asker.ask(request("W", "pvinverter/20/Ac/Power"), '{"value": 1}');
  deepStrictEqual(write, {
    status: "error",
    error: "refused, the bridge is read-only (--read-only)",
  });
  gx.sim.get(PV).hang.add("GetValue");
  const reads = Array.from(
    { length: 101 },
    () => asker.ask(request("R", "pvinverter/20/Ac/Power"), "", 10_000),
  );
  const answers = await Promise.all(reads);
  const errors = answers.map((a) => a.error as string);
  strictEqual(
    errors.filter((e) => /no answer within 5 s/.test(e)).length,
    100,
    errors.join("\n"),
  );
  strictEqual(errors.filter((e) => /waiting for answers already; dropped/.test(e)).length, 1);
});

mqtt5Test("a retained W is refused live and when replayed, with an error answer", {
  services: [settings],
}, async (gx, asker) => {
  const setpoint = request("W", "settings/0/Settings/CGwacs/AcPowerSetPoint");
  const correlation = Uint8Array.from([1, 2, 3]);
  // Live: under 3.1.1 the broker would clear the retain flag and it would be done once.
  await asker.send(setpoint, '{"value": 300}', correlation, { retain: true });
  const answer = JSON.parse((await asker.answerTo(correlation)).payload);
  strictEqual(answer.status, "error");
  ok(/retained/.test(answer.error), answer.error);
  // Replayed to a bridge that starts later.
  await gx.bridge.stop();
  gx.bridge = new BridgeProcess(gx.bridgeArgs);
  await gx.bridge.waitForLine(/\[request\].*retained/);
  await gx.assertServing("settings", 0, "/Settings/CGwacs/AcPowerSetPoint");
  strictEqual(gx.sim.get(SETTINGS).writes.length, 0);
  // Taking the retained W back (an empty retained message) is no bad request.
  await asker.client.publishAsync(setpoint, "", { retain: true });
  const line = await gx.bridge.waitForLine(/retained request taken back; nothing to do/);
  ok(line.startsWith("INFO"), line);
});

Deno.test({
  name: "a broker that speaks only MQTT 3.1.1: the bridge falls back, says so once, and serves",
  async fn() {
    await withGx({ services: [pvInverter(936)], broker: { kind: "aedes" } }, async (gx) => {
      await gx.bridge.waitForLine(/does not speak MQTT 5; using 3\.1\.1/);
      await gx.wake(gx.topic("pvinverter", 20, "/Ac/Power"));
      await gx.assertServing("pvinverter", 20, "/Ac/Power");
      strictEqual(gx.bridge.lines.filter((l) => /does not speak MQTT 5/.test(l)).length, 1);
      // `dbus-mqtt write` needs MQTT 5, and says so.
      const write = await run(["write", "--mqtt", gx.broker.url, "pvinverter/20/Ac/Power", "1"]);
      strictEqual(write.code, 1);
      ok(write.lines.some((l) => /does not speak MQTT 5/.test(l)), write.lines.join("\n"));
    });
  },
});

Deno.test({
  name: "MQTT 5 is tried again at every reconnect: a broker that speaks it gets answers again",
  ignore: needsMosquitto,
  async fn() {
    await withGx({ services: [pvInverter(936)], broker: { kind: "aedes" } }, async (gx) => {
      await gx.bridge.waitForLine(/does not speak MQTT 5; using 3\.1\.1/);
      const lines = gx.bridge.lines.length;
      await gx.broker.stop();
      gx.broker = await startBroker({ kind: "mosquitto", port: gx.broker.port });
      await gx.bridge.waitForLine(/\[mqtt\] connected/, 15_000, lines);
      const asker = await Asker.connect(gx.broker.url);
      try {
        deepStrictEqual(await asker.ask(request("R", "pvinverter/20/Ac/Power")), {
          status: "ok",
          value: 936,
        });
      } finally {
        await asker.close();
      }
    });
  },
});

Deno.test({
  name: "dbus-mqtt read and write print the answer and exit 0 only for ok",
  ignore: needsMosquitto,
  async fn() {
    await withGx({ services: [pvInverter(936), settings] }, async (gx) => {
      await gx.bridge.waitForLine(/\[start\]/);
      const broker = ["--mqtt", gx.broker.url];
      const setpoint = "settings/0/Settings/CGwacs/AcPowerSetPoint";
      // The GX found from its Serial; the value's JSON kept as typed (-200.0 is a double).
      const written = await run(["write", ...broker, setpoint, "--", "-200.0"]);
      deepStrictEqual([written.code, written.stdout], [0, ['{"status": "ok", "value": -200.0}']]);
      strictEqual(gx.sim.get(SETTINGS).writes.at(-1)!.value.signature, "d");
      const refused = await run([
        "write",
        ...broker,
        "--portal-id",
        PORTAL_ID,
        "settings/0/Settings/CGwacs/Hub4Mode",
        "3",
      ]);
      deepStrictEqual([refused.code, refused.stdout], [1, ['{"status": "refused", "code": 1}']]);
      const read = await run(["read", ...broker, "pvinverter/20/Ac/Power"]);
      deepStrictEqual([read.code, read.stdout], [0, ['{"status": "ok", "value": 936}']]);
      const unknown = await run(["read", ...broker, "pvinverter/21/Ac/Power"]);
      strictEqual(unknown.code, 1);
      strictEqual(JSON.parse(unknown.stdout[0]).status, "error");
      const notJson = await run(["write", ...broker, setpoint, "abc"]);
      strictEqual(notJson.code, 2, "an option error");
    });
  },
});

/** `dbus-mqtt <args>` as a user runs it: exit code, stdout lines, all lines. */
async function run(args: string[]): Promise<{ code: number; stdout: string[]; lines: string[] }> {
  const process = new BridgeProcess(args);
  const { code } = await process.status;
  await process.stop();
  return { code, stdout: process.stdout, lines: process.lines };
}

mqtt5Test("a message over the broker's Maximum Packet Size: values left out, answers say so", {
  services: [pvInverter(936), {
    name: "com.victronenergy.tank.t0",
    items: Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`/Tank/P${i}`, 1000 + i])),
  }],
  broker: { maxPacketBytes: 2000 },
}, async (gx, asker) => {
  await gx.wake(gx.topic("pvinverter", 20, "/Ac/Power"));
  gx.sim.get("com.victronenergy.tank.t0").set("/Tank/P0", "x".repeat(3000));
  await gx.bridge.waitForLine(
    /not published: .*\/P0: a packet of \d+ bytes, over the broker's maximum of 2000/,
  );
  gx.sim.get(PV).set("/Ac/Power", 937);
  await gx.client.waitFor(
    "later values",
    () => gx.client.value(gx.topic("pvinverter", 20, "/Ac/Power")) === 937,
  );
  // The answer to a read of all 40 paths would be too large: an answer says so.
  const answer = await asker.ask(request("R", "tank/0/Tank"));
  strictEqual(answer.status, "error");
  ok(/the answer is a packet of \d+ bytes, over the broker's maximum of 2000/.test(
    answer.error as string,
  ));
});
