/**
 * The bridge as users run it: a separate process started with the `start`
 * task's command line from deno.json, its log lines collected.
 */
export class BridgeProcess {
  /** Every line, stdout and stderr. */
  readonly lines: string[] = [];
  /** The lines of stdout alone (what `read` and `write` print). */
  readonly stdout: string[] = [];
  readonly #process: Deno.ChildProcess;
  readonly #done: Promise<void>;

  /** `command` runs the bridge; the `start` task's by default. `env` adds to the environment. */
  constructor(
    args: string[],
    command = [Deno.execPath(), ...startCommand()],
    env: Record<string, string> = {},
  ) {
    this.#process = new Deno.Command(command[0], {
      args: [...command.slice(1), ...args],
      env,
      stdout: "piped",
      stderr: "piped",
      cwd: ROOT,
    }).spawn();
    this.#process.status.then(() => this.exited = true);
    this.#done = Promise.all([
      this.#collect(this.#process.stdout, this.stdout),
      this.#collect(this.#process.stderr),
    ]).then(() => {});
  }

  /** The process has ended (for whatever reason). */
  exited = false;

  get pid(): number {
    return this.#process.pid;
  }

  get status(): Promise<Deno.CommandStatus> {
    return this.#process.status;
  }

  /** Waits for a log line matching `pattern` (from line number `from` on), returns it. */
  async waitForLine(pattern: RegExp, timeoutMs = 10_000, from = 0): Promise<string> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const line = this.lines.slice(from).find((l) => pattern.test(l));
      if (line) return line;
      if (Date.now() > end) {
        throw new Error(`no log line ${pattern}; got:\n${this.lines.join("\n")}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  async stop(): Promise<Deno.CommandStatus> {
    try {
      this.#process.kill("SIGTERM");
    } catch { /* already gone */ }
    const status = await this.#process.status;
    await this.#done;
    return status;
  }

  async #collect(stream: ReadableStream<Uint8Array>, also: string[] = []): Promise<void> {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      this.lines.push(...parts);
      also.push(...parts);
      if (Deno.env.get("BRIDGE_LOG")) {
        for (const part of parts) console.error(`  bridge| ${part}`);
      }
    }
    if (rest) {
      this.lines.push(rest);
      also.push(rest);
    }
  }
}

export const ROOT = new URL("../..", import.meta.url).pathname;

/** `run <permissions> main.ts` from the start task: what follows "deno". */
export function startCommand(): string[] {
  const config = JSON.parse(Deno.readTextFileSync(`${ROOT}/deno.json`));
  return (config.tasks.start as string).split(/\s+/).slice(1);
}
