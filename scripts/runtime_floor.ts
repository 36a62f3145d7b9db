/**
 * What the runtime costs before the bridge does any work: a reader that only
 * takes messages off a unix socket (as the bridge takes D-Bus signals) and,
 * by the bridge's flush rule, writes 1,600 bytes to a TCP socket (as the
 * bridge writes to the broker), measured by its CPU time per 1,000 messages.
 *
 *   deno run -A scripts/runtime_floor.ts [--rate 2000] [--seconds 5]
 *
 * The messages (200 bytes, each written on its own, as dbus-daemon writes
 * them) come every 10 ms (the bench's default bursts) or every 1 ms (spread
 * out); the reader reads with `node:net` (what the bridge uses) or with
 * `Deno.connect`, as soon as data is there or paced (5 ms between reads).
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
  await compare(Number(flag("rate", "2000")), Number(flag("seconds", "5")));
}

/** The bridge's shape with no work: every read schedules a flush, at most one per FLUSH_MS. */
async function reader(transport: Transport, paceMs: number, path: string, port: number) {
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
  const pause = () => new Promise((resolve) => setTimeout(resolve, paceMs));
  if (transport === "node:net") {
    const sink = net.connect(port, "127.0.0.1").setNoDelay(true);
    write = (bytes) => sink.write(bytes);
    const source = net.createConnection({ path });
    source.on("data", () => {
      received();
      if (!paceMs) return;
      source.pause();
      pause().then(() => source.resume());
    });
  } else {
    const sink = await Deno.connect({ hostname: "127.0.0.1", port });
    sink.setNoDelay(true);
    write = (bytes) => void sink.write(bytes);
    const source = await Deno.connect({ transport: "unix", path });
    const buffer = new Uint8Array(65536);
    while (await source.read(buffer) !== null) {
      received();
      if (paceMs) await pause();
    }
  }
}

/** Runs each reader as a process of its own against each arrival pattern. */
async function compare(rate: number, seconds: number) {
  const dir = await Deno.makeTempDir({ prefix: "dbus-mqtt-floor-" });
  const path = `${dir}/socket`;
  const sources = Deno.listen({ transport: "unix", path });
  const sinks = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of sinks) conn.readable.pipeTo(new WritableStream()).catch(() => {});
  })();
  const sinkPort = String((sinks.addr as Deno.NetAddr).port);
  const row = (arrival: string, reader: string, pace: string, cpu: string) =>
    console.log(arrival.padEnd(15) + reader.padEnd(16) + pace.padEnd(7) + cpu.padStart(9));
  console.log(`${rate} messages/s of 200 bytes; CPU ms per 1,000 messages, ${seconds} s each`);
  row("arrival", "reader", "pace", "CPU ms/1k");
  for (const tickMs of [10, 1]) {
    for (const transport of ["node:net", "Deno.connect"] as const) {
      for (const paceMs of [0, FLUSH_MS]) {
        const child = new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", import.meta.filename!, "--reader", transport, String(paceMs)]
            .concat(path, sinkPort),
        }).spawn();
        const conn = await sources.accept();
        const sending = send(conn, rate, tickMs);
        await sleep(1000); // the reader's start and warm-up are not counted
        const cpu0 = cpuMs(child.pid);
        const sent0 = sending.sent();
        await sleep(seconds * 1000);
        const perK = (cpuMs(child.pid) - cpu0) / (sending.sent() - sent0) * 1000;
        sending.stop();
        child.kill();
        await child.status;
        conn.close();
        row(`every ${tickMs} ms`, transport, `${paceMs} ms`, perK.toFixed(1));
      }
    }
  }
  sources.close();
  sinks.close();
  await Deno.remove(dir, { recursive: true });
}

/** Every tick, the messages due by then, each in a write of its own. */
function send(conn: Deno.Conn, rate: number, tickMs: number) {
  const start = performance.now();
  let sent = 0;
  let busy = false;
  const timer = setInterval(async () => {
    if (busy) return;
    busy = true;
    const due = Math.floor((performance.now() - start) * rate / 1000);
    try {
      for (; sent < due; sent++) await conn.write(MESSAGE);
    } catch {
      clearInterval(timer); // the reader is gone
    }
    busy = false;
  }, tickMs);
  return { sent: () => sent, stop: () => clearInterval(timer) };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
