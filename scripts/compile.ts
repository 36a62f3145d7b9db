/**
 * `deno task compile`: standalone executables of the bridge for GX devices
 * (aarch64: Cerbo GX, Ekrano GX) and x86_64 (a PC or VM running Venus OS or
 * any Linux), with exactly the permissions and V8 flags of the `start` task.
 *
 *   deno task compile                                   both targets
 *   deno task compile -- --target aarch64-unknown-linux-gnu
 *   DENORT_BIN=/path/to/denort deno task compile -- --target x86_64-unknown-linux-gnu
 *
 * `deno compile` downloads its runtime (denort) for each target; where that
 * is not reachable, DENORT_BIN names a denort binary fetched elsewhere.
 */
const ROOT = new URL("..", import.meta.url).pathname;
const TARGETS = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"];

/** The start task's permission and V8 flags: the one place they are written down. */
function runtimeFlags(): string[] {
  const config = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  return (config.tasks.start as string).split(/\s+/)
    .filter((word) => word.startsWith("--allow") || word.startsWith("--v8-flags"));
}

function outputName(target: string): string {
  return `dist/dbus-mqtt-${target.split("-")[0]}`;
}

async function compile(target: string): Promise<boolean> {
  const output = outputName(target);
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["compile", ...runtimeFlags(), "--target", target, "--output", output, "main.ts"],
    cwd: ROOT,
    stdout: "inherit",
    stderr: "piped",
  }).output();
  if (result.success) {
    console.error(`compile: ${output} (${target})`);
    return true;
  }
  const error = new TextDecoder().decode(result.stderr);
  const runtime = Deno.env.get("DENORT_BIN");
  const url = /https:\/\/\S+denort-\S+\.zip/.exec(error)?.[0] ??
    `https://dl.deno.land/release/v${Deno.version.deno}/denort-${target}.zip`;
  if (runtime) {
    console.error(
      `compile: ${target} failed with DENORT_BIN=${runtime}: ` +
        (error.match(/Could not find denort[^\n]*/)?.[0] ?? error.trim().split("\n").pop()) +
        `\n  DENORT_BIN must be the denort of Deno ${Deno.version.deno} for ${target} (${url}).`,
    );
  } else if (/denort|dl\.deno\.land|error sending request/.test(error)) {
    console.error(
      `compile: ${target} needs Deno's runtime for that target (denort), which deno compile ` +
        `downloads from ${url} - not reachable from this machine.\n` +
        `  Fetch and unzip it where the internet is reachable, then:\n` +
        `    DENORT_BIN=/path/to/denort deno task compile -- --target ${target}\n` +
        `  Or ship dist/dbus-mqtt.js instead (deno task bundle): it runs with node or deno.`,
    );
  } else {
    console.error(`compile: ${target} failed:\n${error}`);
  }
  return false;
}

if (import.meta.main) {
  const at = Deno.args.indexOf("--target");
  const targets = at >= 0 ? [Deno.args[at + 1]] : TARGETS;
  const unknown = targets.filter((t) => !TARGETS.includes(t));
  if (unknown.length) {
    console.error(
      `compile: unknown target ${unknown.join(", ")}; use one of ${TARGETS.join(", ")}`,
    );
    Deno.exit(2);
  }
  if (Deno.env.get("DENORT_BIN") && targets.length > 1) {
    console.error("compile: DENORT_BIN is the runtime of one target: add --target <target>");
    Deno.exit(2);
  }
  let ok = true;
  for (const target of targets) ok = await compile(target) && ok;
  Deno.exit(ok ? 0 : 1);
}
