/**
 * `deno task soak -- --minutes N`: a busy simulated GX (the real capture)
 * and the bridge for N minutes: values change all the time, a device leaves
 * and comes back every 30 s, clients keep it alive, read and write. At the
 * end it reports memory growth, errors and lost updates (paths whose last
 * value on D-Bus is not what a subscriber holds), as a table and a JSON line.
 */
import dbus from "dbus-next";
import mqtt from "mqtt";
import { loadCapture, type ServiceSpec } from "../tests/support/victron_services.ts";
import { flag } from "./args.ts";
import { rssMb } from "./proc_stats.ts";
import { startSimulatedGx } from "./gx_with_bridge.ts";
import { isBlocked } from "../lib/topics.ts";

const { Variant } = dbus;
const PORTAL_ID = "c0847dba509e";
const minutes = Number(flag("minutes", "10"));
const CHANGES_PER_TICK = 20;
const TICK_MS = 100;
const COME_AND_GO_MS = 30_000;

const specs = loadCapture();
const { broker, sim, bridge, stop: stopGx } = await startSimulatedGx(specs, PORTAL_ID);

/** Numeric items, the ones a busy system changes, as [service, path]. */
const numeric: [string, string][] = [];
for (const spec of specs) {
  for (const [path, value] of Object.entries(spec.items)) {
    const signature = (value as InstanceType<typeof Variant>).signature;
    const type = spec.name.split(".")[2];
    if (
      (signature === "d" || signature === "i") && path !== "/DeviceInstance" &&
      !isBlocked(type, path)
    ) {
      numeric.push([spec.name, path]);
    }
  }
}
const instances = new Map(specs.map((s) => [s.name, instanceOf(s)]));

// The subscriber, as an app: keeps alive, asks for everything once a minute.
const app = await mqtt.connectAsync(broker.url, { clientId: "soak-app" });
const latest = new Map<string, string>();
let received = 0;
app.on("message", (topic, payload) => {
  received++;
  if (payload.length === 0) latest.delete(topic);
  else latest.set(topic, payload.toString());
});
await app.subscribeAsync(`N/${PORTAL_ID}/#`);
await app.publishAsync(`R/${PORTAL_ID}/keepalive`, "");

let sent = 0;
let tick = 0;
const timers = [
  setInterval(() => {
    tick++;
    for (let i = 0; i < CHANGES_PER_TICK; i++) {
      const [name, path] = numeric[Math.floor(Math.random() * numeric.length)];
      const service = sim.services.get(name);
      if (!service) continue; // away right now
      const old = service.items.get(path)!;
      service.set(
        path,
        old.signature === "d" ? new Variant("d", Math.random() * 1000) : new Variant("i", tick),
      );
      sent++;
    }
  }, TICK_MS),
  setInterval(
    () => app.publish(`R/${PORTAL_ID}/keepalive`, '{"keepalive-options": ["suppress-republish"]}'),
    20_000,
  ),
  setInterval(() => app.publish(`R/${PORTAL_ID}/keepalive`, ""), 60_000),
  setInterval(() => {
    const [name, path] = numeric[Math.floor(Math.random() * numeric.length)];
    app.publish(`R/${PORTAL_ID}/${name.split(".")[2]}/${instances.get(name)}${path}`, "");
  }, 100),
  setInterval(() => {
    app.publish(
      `W/${PORTAL_ID}/settings/0/Settings/CGwacs/AcPowerSetPoint`,
      `{"value": ${tick % 100}}`,
    );
  }, 1000),
  setInterval(async () => {
    const spec = specs.find((s) => s.name.includes("solarcharger"))!;
    sim.remove(spec.name);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    await sim.add(spec);
  }, COME_AND_GO_MS),
];

const samples: { minute: number; rssMb: number }[] = [];
const started = Date.now();
const sample = () =>
  samples.push({ minute: (Date.now() - started) / 60_000, rssMb: rssMb(bridge.pid) });
sample();
timers.push(setInterval(sample, 10_000));
console.error(
  `soak: ${minutes} min, ${numeric.length} numeric paths changing, ${specs.length} services`,
);
await new Promise((resolve) => setTimeout(resolve, minutes * 60_000));
timers.forEach(clearInterval);

// Settle, then compare every numeric path with what D-Bus holds now.
await new Promise((resolve) => setTimeout(resolve, 3000));
const lost = numeric.filter(([name, path]) => {
  const service = sim.services.get(name);
  if (!service) return false;
  const topic = `N/${PORTAL_ID}/${name.split(".")[2]}/${instances.get(name)}${path}`;
  const held = latest.get(topic);
  return held === undefined ||
    JSON.parse(held).value !== Number(service.items.get(path)!.value);
});
const afterWarmUp = samples.find((s) => s.minute >= Math.min(1, minutes / 2)) ?? samples[0];
const result = {
  minutes,
  changesSent: sent,
  messagesReceived: received,
  rssStartMb: Number(afterWarmUp.rssMb.toFixed(1)),
  rssEndMb: Number(samples.at(-1)!.rssMb.toFixed(1)),
  rssPeakMb: Number(rssMb(bridge.pid, "VmHWM").toFixed(1)),
  rssByMinuteMb: samples.filter((_, i) => i % 6 === 0).map((x) => Number(x.rssMb.toFixed(1))),
  errors: bridge.lines.filter((l) => l.startsWith("ERROR")).length,
  warnings: bridge.lines.filter((l) => l.startsWith("WARN")).length,
  lostPaths: lost.length,
  bridgeAlive: !bridge.exited,
};
console.log(
  `soak: ${minutes} min, ${sent} changes sent, ${received} messages received\n` +
    `  bridge RSS ${result.rssStartMb} MB after warm-up -> ${result.rssEndMb} MB at the end ` +
    `(peak ${result.rssPeakMb} MB)\n` +
    `  ${result.errors} errors, ${result.warnings} warnings, ${result.lostPaths} paths lost, ` +
    `bridge ${result.bridgeAlive ? "alive" : "DEAD"}`,
);
const perMinute = samples.filter((_, i) => i % 6 === 0).map((x) => x.rssMb.toFixed(0));
console.log(`  RSS by minute (MB): ${perMinute.join(" ")}`);
for (const line of bridge.lines.filter((l) => /^(ERROR|WARN)/.test(l)).slice(0, 10)) {
  console.log(`  ${line}`);
}
console.log(JSON.stringify(result));
await app.endAsync();
await stopGx();
Deno.exit(result.lostPaths === 0 && result.errors === 0 && result.bridgeAlive ? 0 : 1);

function instanceOf(spec: ServiceSpec): number {
  const value = spec.items["/DeviceInstance"] as InstanceType<typeof Variant> | undefined;
  return value ? Number(value.value) : 0;
}
