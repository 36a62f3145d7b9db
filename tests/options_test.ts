import { strictEqual, throws } from "node:assert";
import { type Options, OptionsError, parseOptions } from "../lib/options.ts";
import { macToPortalId } from "../lib/portal_id.ts";

const parse = (args: string[], env: Record<string, string> = {}) =>
  parseOptions(args, env, () => {}) as Options;

Deno.test("defaults: system bus, local broker, 60 s keep-alive", () => {
  const o = parse([]);
  strictEqual(o.dbusAddress, "unix:path=/var/run/dbus/system_bus_socket");
  strictEqual(o.mqttUrl, "mqtt://127.0.0.1:1883");
  strictEqual(o.keepAliveSeconds, 60);
  strictEqual(o.retain, true);
  strictEqual(o.logLevel, "info");
  strictEqual(o.portalId, undefined);
});

Deno.test("bus addresses, broker forms, password from the environment", () => {
  strictEqual(parse(["-b", "tcp:host=10.0.0.2,port=78"]).dbusAddress, "tcp:host=10.0.0.2,port=78");
  strictEqual(
    parse(["--dbus", "session"], { DBUS_SESSION_BUS_ADDRESS: "unix:path=/x" }).dbusAddress,
    "unix:path=/x",
  );
  strictEqual(parse([], { DBUS_SYSTEM_BUS_ADDRESS: "unix:path=/y" }).dbusAddress, "unix:path=/y");
  strictEqual(parse(["-q", "venus.local:1884"]).mqttUrl, "mqtt://venus.local:1884");
  strictEqual(parse(["-q", "venus.local", "-c", "ca.crt"]).mqttUrl, "mqtts://venus.local:8883");
  strictEqual(parse(["--mqtt", "wss://h:443/mqtt"]).mqttUrl, "wss://h:443/mqtt");
  strictEqual(parse([], { DBUS_MQTT_PASSWORD: "s3cret" }).mqttPassword, "s3cret");
  strictEqual(parse(["-k", "0"]).keepAliveSeconds, 0);
  strictEqual(parse(["-d"]).logLevel, "debug");
  strictEqual(parse(["--no-retain"]).retain, false);
});

Deno.test("invalid options are one-line OptionsErrors", () => {
  for (
    const args of [
      ["--nope"],
      ["-k", "soon"],
      ["-k", "-5"],
      ["--dbus", "abstract:x"],
      ["--dbus", "session"],
      ["--mqtt", "http://x"],
      ["-q", "a b"],
      ["--portal-id", "a/b"],
      ["--log-level", "loud"],
    ]
  ) {
    throws(() => parse(args), (e: Error) => e instanceof OptionsError && !e.message.includes("\n"));
  }
});

Deno.test("portal id from a MAC address", () => {
  strictEqual(macToPortalId("E0:FF:50:A0:97:C0\n"), "e0ff50a097c0");
  strictEqual(macToPortalId("00:00:00:00:00:00"), undefined);
  strictEqual(macToPortalId("garbage"), undefined);
});
