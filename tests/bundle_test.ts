/**
 * Integration: `deno task bundle` makes one JavaScript file that runs the
 * bridge unchanged under Deno (with the start task's permissions), under
 * Node, and under Node 18 as the Venus installer names it (`.mjs`), which
 * older GX firmware may have: keep-alive, read and write round trips through
 * each, and TLS to the broker under Node 18.
 */
import { strictEqual } from "node:assert";
import dbus from "dbus-next";
import { VERSION } from "../lib/version.ts";
import { startCommand } from "./support/bridge.ts";
import { buildBundle } from "./support/bundle.ts";
import { PV, pvInverter, withGx } from "./support/gx.ts";
import { withTlsGx } from "./support/tls.ts";

const { Variant } = dbus;
const BUNDLE = await buildBundle();
const MODULE = BUNDLE.replace(/\.js$/, ".mjs");
await Deno.copyFile(BUNDLE, MODULE);
const NODE_18 = await node18();

const runtimes: [string, string[]][] = [
  ["deno", [Deno.execPath(), ...startCommand().map((a) => a === "main.ts" ? BUNDLE : a)]],
  ["node", ["node", BUNDLE]],
  ["node 18", [NODE_18, "--optimize-for-size", "--no-concurrent-recompilation", MODULE]],
];

/** Node 18's executable, from the npm registry (npx caches it). */
async function node18(): Promise<string> {
  const out = await new Deno.Command("npx", { args: ["-y", "node@18", "-p", "process.execPath"] })
    .output();
  strictEqual(out.code, 0, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).trim();
}

for (const [runtime, command] of runtimes) {
  Deno.test(`the bundle runs under ${runtime}: keep-alive, read and write`, async () => {
    await withGx({ services: [pvInverter(100)], command }, async (gx) => {
      const topic = gx.topic("pvinverter", 20, "/Ac/Power");
      await gx.wake(topic);
      strictEqual(gx.client.value(topic), 100);
      gx.sim.get(PV).items.set("/Ac/Power", new Variant("i", 150));
      await gx.read("pvinverter", 20, "/Ac/Power");
      await gx.client.waitFor("the read value", () => gx.client.value(topic) === 150);
      await gx.write("pvinverter", 20, "/Ac/Power", '{"value": 250.0}');
      await gx.client.waitFor("the written value", () => gx.client.value(topic) === 250);
      strictEqual(gx.client.topics.get(topic), '{"value": 250.0}');
    });
  });
}

Deno.test("the bundle under Node 18 reaches the broker over TLS", async () => {
  await withTlsGx(
    { services: [pvInverter(100)], command: [NODE_18, MODULE] },
    (gx) => gx.wake(gx.topic("pvinverter", 20, "/Ac/Power")),
  );
});

Deno.test("the bundle prints its version under node", async () => {
  const out = await new Deno.Command("node", { args: [BUNDLE, "--version"] }).output();
  strictEqual(new TextDecoder().decode(out.stdout).trim(), VERSION);
});

Deno.test("the bundle is Latin-1 text: V8 keeps its source at one byte a character", async () => {
  // One character beyond (an em dash in a dependency's comment) doubled the
  // source in the bridge's heap, to 2.2 MB.
  const text = await Deno.readTextFile(BUNDLE);
  const wide = [...text].findIndex((c) => c.codePointAt(0)! > 0xff);
  strictEqual(
    wide,
    -1,
    `a character beyond Latin-1 at ${wide}: ${text.slice(wide - 40, wide + 10)}`,
  );
});
