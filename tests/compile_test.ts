/**
 * `deno task compile`: an executable when Deno's runtime for the target can
 * be had, else a message that says what to do, never a bare stack trace.
 */
import { strictEqual } from "node:assert";
import { VERSION } from "../lib/version.ts";
import { ROOT } from "./support/bridge.ts";

const TARGET = "x86_64-unknown-linux-gnu";

async function compileTask(env: Record<string, string>) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "compile", "--target", TARGET],
    cwd: ROOT,
    env,
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test("compile makes a working executable or says how to get denort", async () => {
  const { code, stderr } = await compileTask({});
  if (code === 0) {
    const version = await new Deno.Command(`${ROOT}dist/dbus-mqtt-x86_64`, { args: ["--version"] })
      .output();
    strictEqual(new TextDecoder().decode(version.stdout).trim(), VERSION);
  } else {
    strictEqual(code, 1);
    strictEqual(
      stderr.includes(`DENORT_BIN=/path/to/denort deno task compile -- --target ${TARGET}`),
      true,
      stderr,
    );
    strictEqual(stderr.includes("Stack backtrace"), false, stderr);
  }
});

Deno.test("compile with a wrong DENORT_BIN names the problem", async () => {
  const { code, stderr } = await compileTask({ DENORT_BIN: "/nonexistent/denort" });
  strictEqual(code, 1);
  strictEqual(stderr.includes("Could not find denort at '/nonexistent/denort'"), true, stderr);
});
