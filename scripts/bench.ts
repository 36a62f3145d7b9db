/**
 * `deno task bench`: how fast and lean the bridge is, on a private
 * dbus-daemon, Mosquitto (else aedes) and a simulated GX of S services x P
 * paths, with the bridge as its own process. Prints a table and one JSON line.
 *
 *   deno task bench                                  20 x 500 = 10,000 paths
 *   deno task bench -- --services 10 --paths 100 --seconds 2 --loads 2k,40k --tick 1
 *   deno task bench -- --bridge 'node dist/dbus-mqtt.js' --bridge 'python3 dbus_mqtt.py
 *       --dbus {dbus} -q {host}:{port}'
 *
 * A --bridge command gets `--dbus <address> --mqtt <url> --portal-id <id>`
 * appended unless it places {dbus}, {mqtt}, {host}, {port} or {portal} itself.
 * Phases, each timed from the subscriber's side:
 * - scanned: bridge spawned -> its startup line, printed when every service is scanned;
 * - start: bridge spawned -> a subscriber holds every value (keep-alives sent until then);
 * - full publish: keep-alive -> every value received again;
 * - sustained load: values change at fixed rates, as single-path
 *   PropertiesChanged and as 50-path ItemsChanged, each tick's share (every
 *   10 ms, --tick) sent at once; each value carries its send
 *   time, so a subscriber (in a thread of its own, scripts/bench_latency.ts)
 *   measures latency; every path's last value must
 *   arrive (dropping intermediate values is allowed and reported);
 * - steady load, the regime of a GX's bus: single-path changes spread evenly
 *   (--steady, per second), each its own D-Bus message sent as it becomes due,
 *   for --steady-seconds each, with one subscriber keeping the bridge alive;
 *   then, with a bridge started afresh that nobody keeps alive, asleep; idle
 *   (0/s) is measured after 10 s of quiet (see settle);
 * - the runtime floor, before the bridges and after: what a reader that does no
 *   work costs at the steady rates, i.e. where this machine's pace stood (see runtimeFloor);
 * - the bridge's CPU time (user+system, /proc) per 1,000
 *   changes (bursts) or per second (steady), its peak RSS and its RSS at the end (the peak
 *   comes from the start, where the first full publish meets the scan).
 */
import dbus from "dbus-next";
import mqtt from "mqtt";
import { GxSim, type ServiceSpec } from "../tests/support/victron_services.ts";
import { flag, flags } from "./args.ts";
import { cpuMs, rssMb, sleeps, wakeUpsSince, workerPid } from "./proc_stats.ts";
import { BridgeProcess } from "../tests/support/bridge.ts";
import { startBroker } from "../tests/support/broker.ts";
import { startDbusDaemon } from "../tests/support/dbus_daemon.ts";

const { Variant } = dbus;
const PORTAL_ID = "b0b0b0b0b0b0";
const BATCH = 50;

interface Load {
  name: string;
  /** Changed values per second. */
  rate: number;
  batch: boolean;
  /** Spread evenly, each change sent as it becomes due (else in ticks, see --tick). */
  steady?: boolean;
}

interface LoadResult {
  load: string;
  sent: number;
  sentPerS: number;
  received: number;
  lostPaths: number;
  p50Ms: number;
  p99Ms: number;
  cpuMsPer1k: number;
  cpuMsPerS: number;
  /** The bridge's threads waking up, per second (see `sleeps`). */
  wakeUpsPerS: number;
  /** The bridge's peak RSS so far (VmHWM), after this load: which load raised it. */
  peakRssMb: number;
}

/** CPU of a bridge nobody keeps alive, with nothing changing and at a steady rate. */
interface AsleepResult {
  rate: number;
  cpuMsPerS: number;
  wakeUpsPerS: number;
}

interface BridgeResult {
  bridge: string;
  /** Spawned -> its startup line (every service scanned); NaN when it prints none. */
  scanS: number;
  startS: number;
  fullPublishS: number;
  loads: LoadResult[];
  steady: LoadResult[];
  asleep: AsleepResult[];
  peakRssMb: number;
  endRssMb: number;
}

// ------------------------------------------------------------------ options

const services = Number(flag("services", "20"));
const pathsPer = Number(flag("paths", "500"));
const seconds = Number(flag("seconds", "3"));
/** The simulator sends each tick's share of a load at once, as bursts: --tick 1 spreads them. */
const tickMs = Number(flag("tick", "10"));
const bridges = flags("bridge");
const ROOT = new URL("..", import.meta.url).pathname;
if (bridges.length === 0) bridges.push(defaultBridge());

const LOADS: Load[] = [
  { name: "1k/s single", rate: 1000, batch: false },
  { name: "2k/s single", rate: 2000, batch: false },
  { name: "10k/s single", rate: 10_000, batch: false },
  { name: "20k/s single", rate: 20_000, batch: false },
  { name: "10k/s in batches of 50", rate: 10_000, batch: true },
  { name: "40k/s in batches of 50", rate: 40_000, batch: true },
];

const only = flag("loads", "").split(",").filter(Boolean);
const chosenLoads = only.length
  ? LOADS.filter((l) => only.some((o) => l.name.startsWith(o)))
  : LOADS;
/** Steady rates (changes per second; 0 = alive but idle) and how long each runs. */
const steadyRates = flag("steady", "0,50,200,500,2000").split(",").filter(Boolean).map(Number);
const steadySeconds = Number(flag("steady-seconds", "10"));
/** The steady rates the runtime floor is measured at (see runtimeFloor). */
const floorRates = steadyRates.filter((rate) => rate > 0);
const STEADY: Load[] = steadyRates.map((rate) => ({
  name: `${rate}/s steady`,
  rate,
  batch: false,
  steady: true,
}));
/** Quiet before idle is measured (see settle). */
const SETTLE_MS = 10_000;
/** Asleep: nothing changing, and this rate. */
const ASLEEP_RATES = [0, 200];

/** `deno run <the start task's permissions> main.ts`. */
function defaultBridge(): string {
  const config = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  return `${Deno.execPath()} ${(config.tasks.start as string).replace(/^deno /, "")}`;
}

// ------------------------------------------------------------------ the world

const bus = await startDbusDaemon();
const broker = await startBroker();
const specs: ServiceSpec[] = [];
for (let s = 0; s < services; s++) {
  const items: ServiceSpec["items"] = { "/DeviceInstance": s };
  for (let p = 0; p < pathsPer; p++) items[`/Bench/Value${p}`] = new Variant("d", 0);
  specs.push({ name: `com.victronenergy.battery.bench${s}`, items });
}
const sim = await GxSim.start(bus.address, specs);
for (const service of sim.services.values()) {
  service.cacheGetItems = true;
  service.fastSignals = true;
}
// In the order of the specs: service s is device instance s (the map is in start-up order).
const simServices = specs.map((spec) => sim.services.get(spec.name)!);
const total = services * (pathsPer + 1);
const topicOf = (s: number, p: number) => `N/${PORTAL_ID}/battery/${s}/Bench/Value${p}`;
/** The next path changeOne changes. */
let cursor = 0;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The subscriber: latest payload per topic, and a hook per message. */
const subscriber = await mqtt.connectAsync(broker.url, { clientId: "bench-subscriber" });
const latest = new Map<string, string>();
let onMessage: (topic: string, payload: string) => void = () => {};
subscriber.on("message", (topic, payload) => {
  const text = payload.toString();
  if (text === "") latest.delete(topic);
  else latest.set(topic, text);
  onMessage(topic, text);
});
await subscriber.subscribeAsync(`N/${PORTAL_ID}/#`);
const probe = new Worker(new URL("./bench_latency.ts", import.meta.url), { type: "module" });
await ask(probe, { connect: broker.url });
const probeTopic = `N/${PORTAL_ID}/battery/+/Bench/#`;
const keepAlive = (options = "") => subscriber.publishAsync(`R/${PORTAL_ID}/keepalive`, options);

console.error(
  `bench: ${services} services x ${pathsPer} paths (${total} values), ${broker.kind}, ` +
    `${seconds} s per load, sent every ${tickMs} ms`,
);
const floorBefore = await runtimeFloor();
const results: BridgeResult[] = [];
for (const command of bridges) results.push(await measure(command));
print(results, { rates: floorRates, before: floorBefore, after: await runtimeFloor() });
await subscriber.endAsync();
probe.terminate();
sim.stop();
await broker.stop();
await bus.stop();

// ------------------------------------------------------------------ phases

/**
 * Where the machine stood: the CPU of a reader that does no work
 * (scripts/runtime_floor.ts: Deno.connect, a 100 ms budget) at the steady
 * rates, before the bridges and after. This machine's pace swings: the same
 * bridge measured up to twice as much in a busier phase, and the floor moved
 * with it (docs/performance.md). Figures of different runs compare through it;
 * it is a gauge of the machine, not a part of any bridge's figure to subtract.
 */
async function runtimeFloor(): Promise<number[]> {
  if (floorRates.length === 0) return [];
  const { stdout, success } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}scripts/runtime_floor.ts`, "--rates", floorRates.join(",")]
      .concat("--budgets", "100", "--transports", "Deno.connect", "--seconds", "5"),
    stderr: "inherit",
  }).output();
  if (!success) throw new Error("bench: scripts/runtime_floor.ts failed");
  const last = new TextDecoder().decode(stdout).trim().split("\n").at(-1)!;
  return (JSON.parse(last).figures as { cpuMsPerS: number }[]).map((f) => f.cpuMsPerS);
}

async function measure(command: string): Promise<BridgeResult> {
  await clearRetained();
  for (const service of simServices) service.prepareGetItems();
  const started = performance.now();
  const bridge = spawn(command);
  let pid = bridge.pid;
  let result: BridgeResult;
  const scanned = bridge.waitForLine(/\[start\]/, 60_000).then(
    () => (performance.now() - started) / 1000,
    () => NaN,
  );
  try {
    const valueTopics = () => [...latest.keys()].filter((t) => t.includes("/battery/")).length;
    // Keep-alives until the bridge is up (one sent before it subscribed is lost), then wait.
    const asking = setInterval(() => keepAlive(), 20);
    await until(() => valueTopics() > 0, 60_000, "the first value after start").finally(() =>
      clearInterval(asking)
    );
    // The bridge itself, when the command only starts it (`deno task start`).
    pid = workerPid(bridge.pid);
    await until(() => valueTopics() >= total, 60_000, "every value after start");
    const startS = (performance.now() - started) / 1000;
    await quiet();
    // The start's keep-alives used up the republishes the bridge allows a second.
    await new Promise((resolve) => setTimeout(resolve, 1000));

    const fullPublishS = await fullPublish();
    const renew = setInterval(
      () => keepAlive('{"keepalive-options": ["suppress-republish"]}'),
      5000,
    );
    const loads: LoadResult[] = [];
    const steady: LoadResult[] = [];
    await ask(probe, { subscribe: probeTopic });
    try {
      for (const load of chosenLoads) {
        await quiet();
        loads.push(await sustain(load, pid));
      }
      for (const load of STEADY) {
        await quiet();
        if (load.rate === 0) await settle();
        steady.push(await sustain(load, pid));
      }
    } finally {
      clearInterval(renew);
      await ask(probe, { unsubscribe: probeTopic });
    }
    const [peakRssMb, endRssMb] = [rssMb(pid, "VmHWM"), rssMb(pid, "VmRSS")];
    result = {
      bridge: command,
      scanS: await scanned,
      startS,
      fullPublishS,
      loads,
      steady,
      asleep: [],
      peakRssMb,
      endRssMb,
    };
  } finally {
    await stopAndReport(bridge);
  }
  // Another process of the same bridge: never two at once (one client id).
  if (STEADY.length) result.asleep = await measureAsleep(command);
  return result;
}

/** A bridge started afresh that nobody keeps alive: idle, then at a steady rate. */
async function measureAsleep(command: string): Promise<AsleepResult[]> {
  await clearRetained();
  const bridge = spawn(command);
  try {
    await bridge.waitForLine(/\[start\]/, 60_000);
    const pid = workerPid(bridge.pid);
    await sleep(1000);
    const results: AsleepResult[] = [];
    for (const rate of ASLEEP_RATES) {
      if (rate === 0) await settle();
      const [cpu0, sleeps0] = [cpuMs(pid), sleeps(pid)];
      const t0 = performance.now();
      await sendSteadily(
        rate,
        steadySeconds,
        () => changeOne(performance.timeOrigin + performance.now()),
      );
      const elapsed = (performance.now() - t0) / 1000;
      results.push({
        rate,
        cpuMsPerS: (cpuMs(pid) - cpu0) / elapsed,
        wakeUpsPerS: wakeUpsSince(pid, sleeps0) / elapsed,
      });
    }
    return results;
  } finally {
    await stopAndReport(bridge);
  }
}

/**
 * Before idle is measured: V8 collects the garbage of what came before (the
 * start, a full publish, bursts) in the first seconds of quiet, 5-8 ms/s over
 * the first 10 s under Node; a bridge that runs for days does not see that.
 */
async function settle(): Promise<void> {
  await sleep(SETTLE_MS);
}

async function stopAndReport(bridge: BridgeProcess): Promise<void> {
  await bridge.stop();
  const noted = bridge.lines.filter((l) => /^(WARN|ERROR)/.test(l));
  if (noted.length) {
    console.error(`bench: the bridge logged ${noted.length} warnings/errors, e.g.:`);
    for (const line of noted.slice(0, 5)) console.error(`  ${line}`);
  }
}

/** Calls `send` `rate` times a second, each as it becomes due, for `seconds`. */
async function sendSteadily(rate: number, seconds: number, send: () => void): Promise<void> {
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  const gap = 1000 / rate; // Infinity at 0/s
  for (let due = t0 + gap; performance.now() < end;) {
    while (performance.now() >= due && due < end) {
      send();
      due += gap;
    }
    await sleep(Math.max(0, Math.min(due, end) - performance.now()));
  }
}

async function fullPublish(): Promise<number> {
  const seen = new Set<string>();
  onMessage = (topic) => topic.includes("/battery/") && seen.add(topic);
  const t0 = performance.now();
  await keepAlive();
  await until(() => seen.size >= total, 30_000, "a full publish");
  onMessage = () => {};
  return (performance.now() - t0) / 1000;
}

async function sustain(load: Load, pid: number): Promise<LoadResult> {
  let received = 0;
  const epoch = performance.timeOrigin + performance.now();
  await ask(probe, { start: epoch });
  onMessage = (topic, payload) => {
    if (!topic.includes("/Bench/")) return;
    const sentAt = Number(payload.slice(10, -1)); // {"value": <ms>}
    if (sentAt >= epoch) received++; // else from before this load
  };
  const last = new Map<string, number>();
  let batchNo = 0;
  const [cpu0, sleeps0] = [cpuMs(pid), sleeps(pid)];
  const t0 = performance.now();
  let sent = 0;
  if (load.steady) {
    await sendSteadily(load.rate, steadySeconds, () => {
      const stamp = performance.timeOrigin + performance.now();
      last.set(changeOne(stamp), stamp);
      sent++;
    });
  }
  while (!load.steady && performance.now() - t0 < seconds * 1000) {
    const due = Math.floor(((performance.now() - t0) / 1000) * load.rate);
    while (sent < due) {
      const stamp = performance.timeOrigin + performance.now();
      if (load.batch) {
        const s = batchNo % services;
        const first = (Math.floor(batchNo / services) * BATCH) % pathsPer;
        batchNo++;
        const batch: Record<string, InstanceType<typeof Variant>> = {};
        for (let i = 0; i < BATCH; i++) {
          const p = (first + i) % pathsPer;
          batch[`/Bench/Value${p}`] = new Variant("d", stamp);
          last.set(topicOf(s, p), stamp);
        }
        simServices[s].setMany(batch);
        sent += BATCH;
      } else {
        last.set(changeOne(stamp), stamp);
        sent++;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, tickMs));
  }
  const elapsed = (performance.now() - t0) / 1000;
  // Numbers, not text: a whole stamp is published as "<n>.0".
  const holds = (topic: string, stamp: number) =>
    Number(latest.get(topic)?.slice(10, -1)) === stamp;
  const arrived = () => [...last].every(([topic, stamp]) => holds(topic, stamp));
  await until(arrived, 15_000, "").catch(() => {});
  const cpu = cpuMs(pid) - cpu0;
  const wakeUps = wakeUpsSince(pid, sleeps0);
  const cpuSeconds = (performance.now() - t0) / 1000;
  onMessage = () => {};
  const lost = [...last].filter(([topic, stamp]) => !holds(topic, stamp));
  for (const [topic, stamp] of lost.slice(0, 3)) {
    console.error(`bench: ${load.name}: ${topic} should hold ${stamp}, holds ${latest.get(topic)}`);
  }
  if (lost.length) {
    // Where were they lost? A full republish shows what the bridge itself holds.
    await fullPublish();
    const stale = lost.filter(([topic, stamp]) => !holds(topic, stamp)).length;
    console.error(
      `bench: ${load.name}: after a full republish ${stale} of ${lost.length} are still stale ` +
        `(${stale ? "the bridge never had them: D-Bus side" : "the bridge had them: MQTT side"})`,
    );
  }
  const lostPaths = lost.length;
  const { p50, p99 } = await ask(probe, { stop: true }) as { p50: number; p99: number };
  return {
    load: load.name,
    sent,
    sentPerS: Math.round(sent / elapsed),
    received,
    lostPaths,
    p50Ms: p50,
    p99Ms: p99,
    cpuMsPer1k: sent ? (cpu / sent) * 1000 : NaN,
    cpuMsPerS: cpu / cpuSeconds,
    wakeUpsPerS: wakeUps / cpuSeconds,
    peakRssMb: rssMb(pid, "VmHWM"),
  };
}

/** Changes the next path (round robin over services, then paths) to `stamp`; returns its topic. */
function changeOne(stamp: number): string {
  const s = cursor % services;
  const p = Math.floor(cursor / services) % pathsPer;
  cursor++;
  simServices[s].set(`/Bench/Value${p}`, new Variant("d", stamp));
  return topicOf(s, p);
}

// ------------------------------------------------------------------ helpers

function spawn(command: string): BridgeProcess {
  const values: Record<string, string> = {
    dbus: bus.address,
    mqtt: broker.url,
    host: "127.0.0.1",
    port: String(broker.port),
    portal: PORTAL_ID,
  };
  const words = command.split(/\s+/).filter(Boolean);
  const placed = words.some((w) => /\{(dbus|mqtt|host|port|portal)\}/.test(w));
  const args = placed
    ? words.map((w) => w.replace(/\{(\w+)\}/g, (_, k) => values[k] ?? `{${k}}`))
    : [...words, "--dbus", bus.address, "--mqtt", broker.url, "--portal-id", PORTAL_ID];
  return new BridgeProcess([], args);
}

/** Waits until nothing has arrived for 300 ms, so one phase does not spill into the next. */
async function quiet(): Promise<void> {
  let lastAt = performance.now();
  const previous = onMessage;
  onMessage = () => lastAt = performance.now();
  await until(() => performance.now() - lastAt > 300, 30_000, "a quiet broker");
  onMessage = previous;
}

/** Empties what a previous bridge left retained, so each starts from nothing. */
async function clearRetained(): Promise<void> {
  for (const topic of latest.keys()) await subscriber.publishAsync(topic, "", { retain: true });
  await until(() => latest.size === 0, 5000, "retained topics cleared").catch(() => {});
  latest.clear();
}

/** Sends `request` to the latency probe and waits for its answer. */
function ask(worker: Worker, request: unknown): Promise<unknown> {
  return new Promise((resolve) => {
    worker.addEventListener("message", (event) => resolve(event.data), { once: true });
    worker.postMessage(request);
  });
}

async function until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > end) throw new Error(`bench: timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

interface RuntimeFloor {
  rates: number[];
  /** CPU ms/s at each rate, before the bridges and after. */
  before: number[];
  after: number[];
}

function print(results: BridgeResult[], floor: RuntimeFloor): void {
  const n = (x: number, digits = 1) => Number.isFinite(x) ? x.toFixed(digits) : "-";
  if (floor.rates.length) {
    const list = (xs: number[]) => xs.map((x) => n(x)).join(" / ");
    console.log(
      `\nruntime floor (a reader that does no work, Deno.connect, 100 ms budget), CPU ms/s at ` +
        `${floor.rates.join(" / ")} changes/s: before ${list(floor.before)}, ` +
        `after ${list(floor.after)}`,
    );
  }
  const row = (cells: (string | number)[], widths: number[]) =>
    "  " +
    cells.map((c, i) => i === 0 ? String(c).padEnd(widths[0]) : String(c).padStart(widths[i]))
      .join(" ");
  for (const r of results) {
    console.log(`\n${r.bridge}`);
    console.log(
      `  scanned: ${n(r.scanS, 2)} s   start -> all ${total} values: ${n(r.startS, 2)} s` +
        `   full publish: ${n(r.fullPublishS, 2)} s   RSS: peak ${n(r.peakRssMb)}, ` +
        `end ${n(r.endRssMb)} MB`,
    );
    const widths = [24, 7, 9, 7, 7, 7, 10, 11, 10];
    if (r.loads.length) {
      console.log(
        row(["load", "sent/s", "received", "lost", "p50 ms", "p99 ms", "CPU ms/1k"], widths),
      );
    }
    for (const l of r.loads) {
      console.log(
        row(
          [l.load, l.sentPerS, l.received, l.lostPaths, n(l.p50Ms), n(l.p99Ms), n(l.cpuMsPer1k)],
          widths,
        ),
      );
    }
    if (r.steady.length) {
      console.log(
        row(
          [
            "steady, alive",
            "sent/s",
            "received",
            "lost",
            "p50 ms",
            "p99 ms",
            "CPU ms/s",
            "wake-ups/s",
            "peak MB",
          ],
          widths,
        ),
      );
    }
    for (const l of r.steady) {
      console.log(
        row(
          [
            l.load,
            l.sentPerS,
            l.received,
            l.lostPaths,
            n(l.p50Ms),
            n(l.p99Ms),
            n(l.cpuMsPerS),
            n(l.wakeUpsPerS),
            n(l.peakRssMb),
          ],
          widths,
        ),
      );
    }
    for (const a of r.asleep) {
      console.log(
        row(
          [`${a.rate}/s steady, asleep`, "", "", "", "", "", n(a.cpuMsPerS), n(a.wakeUpsPerS)],
          widths,
        ),
      );
    }
  }
  console.log(
    JSON.stringify({
      services,
      paths: pathsPer,
      seconds,
      steadySeconds,
      tickMs,
      broker: broker.kind,
      floor,
      results,
    }),
  );
}
