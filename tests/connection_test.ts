/** Integration: the broker restarting, the bus going away, the command line. */
import { deepStrictEqual, strictEqual } from "node:assert";
import dbus from "dbus-next";
import { createServer } from "node:net";
import { DbusConnection } from "../lib/dbus_connection.ts";
import { startBroker } from "./support/broker.ts";
import { BridgeProcess } from "./support/bridge.ts";
import { PORTAL_ID, PV, pvInverter, sleep, withGx } from "./support/gx.ts";

const { Variant } = dbus;

for (const outage of [1, 30]) {
  Deno.test(`the broker away for ${outage} s: reconnect, resubscribe, the D-Bus truth again`, async () => {
    await withGx({ services: [pvInverter()] }, async (gx) => {
      const power = gx.topic("pvinverter", 20, "/Ac/Power");
      const serial = gx.topic("system", 0, "/Serial");
      const battery = gx.topic("battery", 256, "/Soc");
      await gx.wake(power);
      await gx.broker.stop();
      // The system goes on meanwhile: a value changes, a device arrives.
      gx.sim.get(PV).set("/Ac/Power", 500);
      await gx.sim.add({
        name: "com.victronenergy.battery.ttyO0",
        items: { "/DeviceInstance": 256, "/Soc": new Variant("d", 58.5) },
      });
      await sleep(outage * 1000);
      if (outage > 8) {
        // Each failed try says when the next comes: the first came 1 s after the loss, then 2, 4, 8.
        const tries = gx.bridge.lines.filter((l) => /WARN {2}\[mqtt\] .*ECONNREFUSED/.test(l));
        strictEqual(tries.length >= 3, true, tries.join("\n"));
        deepStrictEqual(
          tries.map((l) => /; trying again in (\d+) s$/.exec(l)?.[1]),
          ["2", "4", "8", "8", "8"].slice(0, tries.length),
        );
      }
      gx.broker = await startBroker({ port: gx.broker.port }); // same port, empty store
      gx.client.topics.clear();
      await gx.client.waitFor(
        "the Serial again",
        () => gx.client.value(serial) === PORTAL_ID,
        15_000,
      );
      await gx.client.publish(`R/${PORTAL_ID}/keepalive`);
      await gx.client.waitFor(
        "the picture as D-Bus has it",
        () => gx.client.value(power) === 500 && gx.client.value(battery) === 58.5,
      );
      // Subscribed again: requests work.
      gx.sim.get(PV).items.set("/Ac/Power", new Variant("i", 20));
      await gx.read("pvinverter", 20, "/Ac/Power");
      await gx.client.waitFor("a read answered", () => gx.client.value(power) === 20);
    });
  });
}

Deno.test("losing the D-Bus connection exits non-zero for the supervisor", async () => {
  await withGx({
    services: [{ name: "com.victronenergy.pvinverter.pv0", items: { "/DeviceInstance": 20 } }],
  }, async (gx) => {
    await gx.bus.stop();
    const status = await gx.bridge.status;
    strictEqual(status.code, 1);
    await gx.bridge.waitForLine(/ERROR \[dbus\] lost the bus/);
  });
});

Deno.test("invalid options: one line on stderr, exit code 2; --help and --version exit 0", async () => {
  for (
    const args of [["--nope"], ["-k", "soon"], ["--dbus", "abstract:x"], ["--mqtt", "http://x"]]
  ) {
    const bridge = new BridgeProcess(args);
    const status = await bridge.status;
    await bridge.stop();
    strictEqual(status.code, 2, args.join(" "));
    strictEqual(bridge.lines.filter((l) => l.trim()).length, 1, bridge.lines.join("\n"));
  }
  const help = new BridgeProcess(["--help"]);
  strictEqual((await help.status).code, 0);
  await help.stop();
  for (
    const option of [
      "--dbus",
      "--mqtt-server",
      "--mqtt ",
      "--keep-alive",
      "--portal-id",
      "(default: 60)",
    ]
  ) {
    strictEqual(help.lines.some((l) => l.includes(option)), true, option);
  }
  // As `deno task start -- --version` and `deno task watch -- --version` pass them on.
  for (const args of [["--version"], ["--", "--version"], ["watch", "--", "--version"]]) {
    const version = new BridgeProcess(args);
    strictEqual((await version.status).code, 0, args.join(" "));
    await version.stop();
    strictEqual(/^\d+\.\d+\.\d+$/.test(version.lines[0]), true, args.join(" "));
  }
});

Deno.test("--dbus takes the address as dbus-daemon prints it (guid, several addresses)", async () => {
  await withGx(
    { services: [pvInverter()], printedAddress: true },
    (gx) => gx.wake(gx.topic("pvinverter", 20, "/Ac/Power")),
  );
});

Deno.test("an unreachable bus is a clear error, exit code 1", async () => {
  const bridge = new BridgeProcess(["--dbus", "unix:path=/nonexistent/bus", "--portal-id", "x"]);
  strictEqual((await bridge.status).code, 1);
  await bridge.stop();
  await bridge.waitForLine(/ERROR \[dbus\] cannot connect to unix:path=\/nonexistent\/bus/);
});

Deno.test("the broker login: -P wins over the URL's; secrets never reach the log, not even with --debug", async () => {
  const users = { me: "option-s3cret" };
  await withGx({ services: [pvInverter()], waitForScan: false, users }, async (gx) => {
    await gx.bridge.stop();
    const url = gx.broker.url.replace("mqtt://", "mqtt://me:url-s3cret@");
    const bridge = new BridgeProcess([
      "--dbus",
      gx.bus.address,
      "--mqtt",
      url,
      "-P",
      "option-s3cret",
      "--portal-id",
      PORTAL_ID,
      "--debug",
    ]);
    try {
      await bridge.waitForLine(/\[start\]/);
      await gx.wake(gx.topic("pvinverter", 20, "/Ac/Power"));
      await gx.write("pvinverter", 20, "/Ac/Power", '{"value": 1}');
      await bridge.waitForLine(/SetValue/);
      strictEqual(bridge.lines.some((l) => l.includes("me:***@127.0.0.1")), true);
      deepStrictEqual(bridge.lines.filter((l) => l.includes("s3cret")), []);
    } finally {
      await bridge.stop();
    }
  });
});

Deno.test("a login the broker refuses is logged, without the password", async () => {
  const users = { me: "s3cret" };
  await withGx({ services: [pvInverter()], waitForScan: false, users }, async (gx) => {
    await gx.bridge.stop();
    const url = gx.broker.url.replace("mqtt://", "mqtt://me:wr0ng@");
    const bridge = new BridgeProcess(["--dbus", gx.bus.address, "--mqtt", url, "--portal-id", "x"]);
    try {
      await bridge.waitForLine(/WARN\s+\[mqtt\] Connection refused: (Not authorized|Bad user)/i);
      deepStrictEqual(bridge.lines.filter((l) => l.includes("wr0ng")), []);
    } finally {
      await bridge.stop();
    }
  });
});

Deno.test("over tcp, a bus behind a forwarder takes EXTERNAL without an identity", async () => {
  // Like a GX's system bus reached through socat: the daemon sees socat's
  // credentials (root), so our own uid is refused, and so is ANONYMOUS.
  const heard: string[] = [];
  const server = createServer((socket) => {
    let buffered = "";
    socket.on("data", (chunk) => {
      buffered += chunk.toString("latin1").replace(/^\0/, "");
      for (let end; (end = buffered.indexOf("\r\n")) >= 0; buffered = buffered.slice(end + 2)) {
        const line = buffered.slice(0, end);
        heard.push(line.replace(/ [0-9a-f]+$/, " <hex>"));
        if (line === "AUTH EXTERNAL") socket.write("DATA\r\n");
        else if (line === "DATA") socket.write("OK 0123456789abcdef0123456789abcdef\r\n");
        else if (line.startsWith("AUTH ")) socket.write("REJECTED EXTERNAL\r\n");
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  const connection = await DbusConnection.open(`tcp:host=127.0.0.1,port=${port}`, {
    message() {},
    malformed() {},
    closed() {},
    awaitingAnswers: () => false,
  });
  while (!heard.includes("BEGIN")) await sleep(10);
  connection.close();
  await new Promise((resolve) => server.close(resolve));
  deepStrictEqual(heard, [
    "AUTH EXTERNAL <hex>",
    "AUTH ANONYMOUS <hex>",
    "AUTH EXTERNAL",
    "DATA",
    "BEGIN",
  ]);
});
