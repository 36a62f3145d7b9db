/**
 * `deno task demo`: a simulated GX (the real capture, 22 services and 2,306
 * paths) on a private D-Bus, a broker, and the bridge between them; then
 * `dbus-mqtt watch` shows the live values.
 *
 *   deno task demo                          run until Ctrl-C
 *   deno task demo --seconds 10             stop by itself
 *   deno task demo --filter 'system/0/#'    watch part of it
 */
import dbus from "dbus-next";
import { flag, flags } from "./args.ts";
import { loadCapture } from "../tests/support/victron_services.ts";
import { startSimulatedGx } from "./gx_with_bridge.ts";
import { processTerminal, watch } from "../lib/watch.ts";

const { Variant } = dbus;
const PORTAL_ID = "c0847dba509e"; // the captured GX's own
const seconds = Number(flag("seconds", "Infinity"));
const filters = flags("filter");

const { bus, broker, sim, startLine, stop: stopGx } = await startSimulatedGx(
  loadCapture(),
  PORTAL_ID,
);
console.log(startLine);

const host = `-h 127.0.0.1 -p ${broker.port}`;
console.log(`
Simulated GX on ${bus.address}, ${broker.kind} broker on ${broker.url}.
Drive it from another terminal (mosquitto-clients):
  mosquitto_sub ${host} -v -t 'N/${PORTAL_ID}/#'
  mosquitto_pub ${host} -t 'R/${PORTAL_ID}/keepalive' -n        # keep-alive: values start flowing
  mosquitto_pub ${host} -t 'R/${PORTAL_ID}/settings/0/Settings/CGwacs/AcPowerSetPoint' -n
  mosquitto_pub ${host} -t 'W/${PORTAL_ID}/settings/0/Settings/CGwacs/AcPowerSetPoint' -m '{"value": 50}'
`);

// `dbus-mqtt watch` shows it: a live table on a terminal, a line per change when piped.
const stopWatch = new AbortController();
const watching = watch(
  {
    mqttUrl: broker.url,
    mqttName: broker.url,
    insecure: false,
    portalId: PORTAL_ID,
    filters,
    json: false,
    keepAliveSeconds: 30,
  },
  processTerminal,
  stopWatch.signal,
);
const timers: ReturnType<typeof setInterval>[] = [];

// The sun moves and the battery charges, so something changes every second.
const solar = sim.get("com.victronenergy.solarcharger.ttyO2");
const system = sim.get("com.victronenergy.system");
let tick = 0;
timers.push(setInterval(() => {
  tick++;
  solar.set("/Yield/Power", new Variant("d", Math.round(2500 + 100 * Math.sin(tick / 3)) / 10));
  system.setMany({ "/Dc/Battery/Soc": new Variant("d", Math.round(582 + tick) / 10) });
}, 1000));

const stop = async () => {
  timers.forEach(clearInterval);
  stopWatch.abort();
  await watching;
  await stopGx();
  Deno.exit(0);
};
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
if (Number.isFinite(seconds)) setTimeout(stop, seconds * 1000);
