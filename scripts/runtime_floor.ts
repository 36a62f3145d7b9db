/**
 * What the runtime costs before the bridge does any work, in the regime of a
 * GX's bus: a reader that only takes messages off a unix socket (as the
 * bridge takes D-Bus signals) and, by the bridge's flush rule, writes 1,600
 * bytes to a TCP socket (as the bridge writes to the broker). Its CPU time
 * per second tells what the wake-ups alone cost.
 *
 *   deno run -A scripts/runtime_floor.ts [--rates 50,200,500,2000] [--budgets 0,5,10,25,50,100]
 *       [--transports node:net,Deno.connect] [--seconds 5]
 *
 * Prints a table and one JSON line (`deno task bench` prints the floor with its figures).
 *
 * The messages (200 bytes) come evenly spread, each written on its own as
 * it becomes due, as dbus-daemon passes on the changes of a GX's services.
 * The reader reads with `node:net` (what the bridge uses) or `Deno.connect`;
 * with a budget (the bridge's --max-delay) it rests that long after each
 * read, then takes everything queued: the first message after a quiet spell
 * is read at once.
 */
import net from "node:net";
import { flag } from "./args.ts";
import { cpuMs } from "./proc_stats.ts";

const FLUSH_MS = 5;
const MESSAGE = new Uint8Array(200).fill(0x41);
const FLUSH = new Uint8Array(1600).fill(0x42);

type Transport = "node:net" | "Deno.connect";

if (Deno.args[0] === "--reader") {
  await reader(Deno.args[1] as Transport, Number(Deno.args[2]), Deno.args[3], Number(Deno.args[4]));
} else {
  await compare(
    list("rates", "50,200,500,2000").map(Number),
    list("budgets", "0,50").map(Number),
    list("transports", "node:net,Deno.connect") as Transport[],
    Number(flag("seconds", "5")),
  );
}

function list(name: string, fallback: string): string[] {
  return flag(name, fallback).split(",").filter(Boolean);
}

/** The bridge's shape with no work: every read schedules a flush, at most one per FLUSH_MS. */
async function reader(transport: Transport, budgetMs: number, path: string, port: number) {
  let last = -Infinity;
  let scheduled = false;
  let write: (bytes: Uint8Array) => void;
  const flush = () => {
    scheduled = false;
    last = performance.now();
    write(FLUSH);
  };
  const received = () => {
    if (scheduled) return;
    scheduled = true;
    const wait = last + FLUSH_MS - performance.now();
    if (wait <= 0) setImmediate(flush);
    else setTimeout(flush, wait);
  };
  const rest = () => new Promise((resolve) => setTimeout(resolve, budgetMs));
  if (transport === "node:net") {
    const sink = net.connect(port, "127.0.0.1").setNoDelay(true);
    write = (bytes) => sink.write(bytes);
    const source = net.createConnection({ path });
    let resting = false;
    source.on("data", () => {
      received();
      if (!budgetMs || resting) return;
      resting = true; // as the bridge: after this turn, pause, then read again
      setImmediate(() => {
        source.pause();
        rest().then(() => {
          resting = false;
          source.resume();
        });
      });
    });
  } else {
    const sink = await Deno.connect({ hostname: "127.0.0.1", port });
    sink.setNoDelay(true);
    write = (bytes) => void sink.write(bytes);
    const source = await Deno.connect({ transport: "unix", path });
    const buffer = new Uint8Array(65536);
    while (await source.read(buffer) !== null) {
      received();
      if (budgetMs) await rest();
    }
  }
}

/** Runs each reader as a process of its own at each rate and budget. */
async function compare(
  rates: number[],
  budgets: number[],
  transports: Transport[],
  seconds: number,
) {
  const dir = await Deno.makeTempDir({ prefix: "dbus-mqtt-floor-" });
  const path = `${dir}/socket`;
  const sources = Deno.listen({ transport: "unix", path });
  const sinks = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of sinks) conn.readable.pipeTo(new WritableStream()).catch(() => {});
  })();
  const sinkPort = String((sinks.addr as Deno.NetAddr).port);
  const row = (...cells: string[]) =>
    console.log(cells.map((c, i) => i ? c.padStart(10) : c.padEnd(14)).join(""));
  console.log(
    `messages of 200 bytes spread evenly; the reader's CPU ms per second, ${seconds} s each`,
  );
  row("reader", "budget ms", ...rates.map((r) => `${r}/s`));
  const figures: { transport: Transport; budgetMs: number; rate: number; cpuMsPerS: number }[] = [];
  for (const transport of transports) {
    for (const budgetMs of budgets) {
      const cells: string[] = [];
      for (const rate of rates) {
        const child = new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", import.meta.filename!, "--reader", transport, String(budgetMs)]
            .concat(path, sinkPort),
        }).spawn();
        const conn = await sources.accept();
        const sending = send(conn, rate);
        await sleep(1000); // the reader's start and warm-up are not counted
        const cpu0 = cpuMs(child.pid);
        const t0 = performance.now();
        await sleep(seconds * 1000);
        const cpuMsPerS = (cpuMs(child.pid) - cpu0) / ((performance.now() - t0) / 1000);
        figures.push({ transport, budgetMs, rate, cpuMsPerS });
        cells.push(cpuMsPerS.toFixed(1));
        sending.stop();
        child.kill();
        await child.status;
        conn.close();
      }
      row(transport, String(budgetMs), ...cells);
    }
  }
  sources.close();
  sinks.close();
  await Deno.remove(dir, { recursive: true });
  console.log(JSON.stringify({ seconds, figures }));
}

/** Each message in a write of its own, as it becomes due. */
function send(conn: Deno.Conn, rate: number) {
  const gap = 1000 / rate;
  let due = performance.now();
  let stopped = false;
  (async () => {
    while (!stopped) {
      while (performance.now() >= due) {
        try {
          await conn.write(MESSAGE);
        } catch {
          return; // the reader is gone
        }
        due += gap;
      }
      await sleep(due - performance.now());
    }
  })();
  return { stop: () => stopped = true };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}
