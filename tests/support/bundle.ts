/**
 * The bundle as `deno task bundle` makes it, built into a file of the
 * calling test's own, so that test files running in parallel never read a
 * bundle another one is still writing.
 */
import { strictEqual } from "node:assert";
import { ROOT } from "./bridge.ts";

export async function buildBundle(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "dbus-mqtt-bundle-" });
  globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
  const output = `${dir}/dbus-mqtt.js`;
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  const task = (config.tasks.bundle as string).split(/\s+/)
    .map((word) => word === "dist/dbus-mqtt.js" ? output : word);
  strictEqual(task.includes(output), true, "the bundle task writes dist/dbus-mqtt.js");
  const built = await new Deno.Command(Deno.execPath(), { args: task.slice(1), cwd: ROOT })
    .output();
  strictEqual(built.code, 0, new TextDecoder().decode(built.stderr));
  return output;
}
