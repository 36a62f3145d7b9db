/**
 * scripts/install-venus.sh in a temporary root (DESTDIR), as on a GX: the
 * layout under /data, the boot hook, the refusal next to Venus' own bridge,
 * the installed service really serving, and a clean uninstall.
 */
import { deepStrictEqual, strictEqual } from "node:assert";
import { ROOT } from "./support/bridge.ts";
import { buildBundle } from "./support/bundle.ts";
import { PORTAL_ID, pvInverter, withGx } from "./support/gx.ts";

const SCRIPT = `${ROOT}scripts/install-venus.sh`;
const APP = "/data/dbus-mqtt-bridge";
const BUNDLE = await buildBundle();

async function run(root: string, ...args: string[]) {
  const out = await new Deno.Command("sh", { args: [SCRIPT, ...args], env: { DESTDIR: root } })
    .output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

async function withRoot(body: (root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "dbus-mqtt-venus-" });
  try {
    await body(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("install lays out /data, links the service and survives a reboot via rc.local", async () => {
  await withRoot(async (root) => {
    await Deno.mkdir(`${root}/data`, { recursive: true });
    await Deno.writeTextFile(`${root}/data/rc.local`, "#!/bin/sh\necho mine\n");
    strictEqual((await run(root, "install", BUNDLE)).code, 0);
    for (const file of ["dbus-mqtt.mjs", "dbus-mqtt.conf", "service/run", "service/log/run"]) {
      strictEqual(Deno.statSync(`${root}${APP}/${file}`).isFile, true, file);
    }
    strictEqual(Deno.readLinkSync(`${root}/service/dbus-mqtt-bridge`), `${APP}/service`);
    strictEqual(Deno.statSync(`${root}${APP}/service/run`).mode! & 0o111, 0o111);
    const log = Deno.readTextFileSync(`${root}${APP}/service/log/run`);
    strictEqual(log.includes("exec multilog t s25000 n4 /var/log/dbus-mqtt-bridge"), true);

    // A second install keeps the user's options and adds no second boot line.
    await Deno.writeTextFile(`${root}${APP}/dbus-mqtt.conf`, 'DBUS_MQTT_ARGS="-k 30"\n');
    strictEqual((await run(root, "install", BUNDLE)).code, 0);
    strictEqual(Deno.readTextFileSync(`${root}${APP}/dbus-mqtt.conf`), 'DBUS_MQTT_ARGS="-k 30"\n');
    const rc = Deno.readTextFileSync(`${root}/data/rc.local`).trim().split("\n");
    deepStrictEqual(rc, [
      "#!/bin/sh",
      "echo mine",
      `ln -sfn ${APP}/service /service/dbus-mqtt-bridge # dbus-mqtt-bridge`,
    ]);

    strictEqual((await run(root, "uninstall")).code, 0);
    strictEqual(Deno.readTextFileSync(`${root}/data/rc.local`), "#!/bin/sh\necho mine\n");
    deepStrictEqual([...Deno.readDirSync(`${root}/service`)], []);
    deepStrictEqual([...Deno.readDirSync(`${root}/data`)].map((e) => e.name), ["rc.local"]);
  });
});

Deno.test("install refuses next to Venus' own bridge on the same broker", async () => {
  await withRoot(async (root) => {
    await Deno.mkdir(`${root}/service/dbus-mqtt`, { recursive: true });
    const refused = await run(root, "install", BUNDLE);
    strictEqual(refused.code, 1);
    strictEqual(refused.stderr.includes("svc -d /service/dbus-mqtt"), true, refused.stderr);
    strictEqual(Deno.statSync(`${root}/service`).isDirectory, true);
    strictEqual([...Deno.readDirSync(`${root}/service`)].length, 1); // nothing linked

    // Venus' Python bridge switched off: fine.
    await Deno.writeTextFile(`${root}/service/dbus-mqtt/down`, "");
    strictEqual((await run(root, "install", BUNDLE)).code, 0);

    // FlashMQ with its D-Bus plugin on the local broker: refused, unless another broker is used.
    await Deno.mkdir(`${root}/etc/flashmq`, { recursive: true });
    await Deno.writeTextFile(
      `${root}/etc/flashmq/flashmq.conf`,
      "plugin /usr/lib/libflashmq-dbus-plugin.so\n",
    );
    strictEqual((await run(root, "check")).code, 1);
    await Deno.writeTextFile(`${root}${APP}/dbus-mqtt.conf`, 'DBUS_MQTT_ARGS="-q 10.0.0.9"\n');
    strictEqual((await run(root, "check")).code, 0);
  });
});

Deno.test("the installed service runs the bridge with the options of its config file", async () => {
  await withRoot(async (root) => {
    strictEqual((await run(root, "install", BUNDLE)).code, 0);
    await withGx({ services: [pvInverter(100)], waitForScan: false }, async (gx) => {
      await gx.bridge.stop(); // the service's bridge replaces the test's own
      await Deno.writeTextFile(
        `${root}${APP}/dbus-mqtt.conf`,
        `DBUS_MQTT_ARGS="--dbus ${gx.bus.address} --mqtt ${gx.broker.url} --portal-id ${PORTAL_ID}"\n`,
      );
      const service = new Deno.Command("sh", {
        args: [`${root}${APP}/service/run`], // /service links to the device path
        stdout: "null",
        stderr: "null",
      }).spawn();
      try {
        // Keep asking until the service's bridge is up and answers.
        const topic = gx.topic("pvinverter", 20, "/Ac/Power");
        const asking = setInterval(() => gx.client.publish(`R/${PORTAL_ID}/keepalive`), 300);
        try {
          await gx.client.waitFor(
            "the service's answer",
            () => gx.client.topics.has(topic),
            10_000,
          );
        } finally {
          clearInterval(asking);
        }
        strictEqual(gx.client.value(topic), 100);
      } finally {
        service.kill("SIGTERM");
        await service.status;
      }
    });
  });
});
