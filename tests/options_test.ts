import { deepStrictEqual, strictEqual, throws } from "node:assert";
import { type Options, OptionsError, parseAskOptions, parseOptions } from "../lib/options.ts";
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
  strictEqual(parse(["--mqtt", "wss://h:443/mqtt"]).mqttUrl, "wss://h:443/mqtt");
  strictEqual(parse([], { DBUS_MQTT_PASSWORD: "s3cret" }).mqttPassword, "s3cret");
  const login = parse(["--mqtt", "mqtt://me%40home:p%3Ass@h:1883"]);
  deepStrictEqual(
    [login.mqttUrl, login.mqttName, login.mqttUser, login.mqttPassword],
    ["mqtt://h:1883", "mqtt://me%40home:***@h:1883", "me@home", "p:ss"],
  );
  const both = parse(["--mqtt", "mqtt://me:url@h", "-u", "you", "-P", "option"]);
  deepStrictEqual([both.mqttUser, both.mqttPassword], ["you", "option"]);
  strictEqual(parse(["-k", "0"]).keepAliveSeconds, 0);
  strictEqual(parse(["-d"]).logLevel, "debug");
  strictEqual(parse(["--no-retain"]).retain, false);
});

Deno.test("bus addresses with keys the bridge does not need, as dbus-daemon prints them", () => {
  for (
    const address of [
      "unix:path=/tmp/dbus-x,guid=0123456789abcdef0123456789abcdef",
      "tcp:host=127.0.0.1,port=78,family=ipv4,guid=01;unix:path=/tmp/z",
    ]
  ) strictEqual(parse(["--dbus", address]).dbusAddress, address);
});

Deno.test("invalid options are one-line OptionsErrors", () => {
  throws(() => parse(["-k", "2147484"]), OptionsError, "beyond what a timer holds");
  strictEqual(parse(["-k", "2147483"]).keepAliveSeconds, 2147483);
  for (
    const args of [
      ["--nope"],
      ["-k", "soon"],
      ["-k", "-5"],
      ["--dbus", "abstract:x"],
      ["--dbus", "unix:abstract=/tmp/dbus-y"],
      ["--dbus", "unix:path="],
      ["--dbus", "unix:path=%zz"],
      ["--dbus", "tcp:host=h,port=0"],
      ["--dbus", "tcp:host=h,port=65536"],
      ["--dbus", "tcp:host=h,port=78x"],
      ["--dbus", "session"],
      ["--mqtt", "http://x"],
      ["--mqtt", "mqtt://me:p%zz@h"],
      ["-q", "a b"],
      ["--portal-id", "a/b"],
      ["--log-level", "loud"],
    ]
  ) {
    throws(() => parse(args), (e: Error) => e instanceof OptionsError && !e.message.includes("\n"));
  }
});

Deno.test("an invalid option says what is wrong with it", () => {
  const why = (args: string[], env: Record<string, string> = {}) => {
    try {
      parse(args, env);
    } catch (error) {
      return (error as Error).message;
    }
    throw new Error(`${args.join(" ")} was taken`);
  };
  strictEqual(
    why(["--dbus", "tcp:host=h,port=70000"]),
    "--dbus 'tcp:host=h,port=70000': port '70000' is no port from 1 to 65535",
  );
  strictEqual(
    why(["--dbus", "unix:abstract=/tmp/x"]),
    "--dbus 'unix:abstract=/tmp/x': an abstract socket (unix:abstract=) cannot be reached; " +
      "use unix:path=",
  );
  strictEqual(
    why(["--dbus", "launchd:env=X"]),
    "--dbus 'launchd:env=X': expected system, session, unix:path=<socket> or " +
      "tcp:host=<host>,port=<port>",
  );
  // From the environment too: a wrong address is an option error (exit 2), not a lost bus.
  strictEqual(
    why(["--dbus", "session"], { DBUS_SESSION_BUS_ADDRESS: "unix:abstract=/tmp/x,guid=1" }),
    "$DBUS_SESSION_BUS_ADDRESS 'unix:abstract=/tmp/x,guid=1': an abstract socket " +
      "(unix:abstract=) cannot be reached; use unix:path=",
  );
  strictEqual(
    why([], { DBUS_SYSTEM_BUS_ADDRESS: "launchd:env=X" }),
    "$DBUS_SYSTEM_BUS_ADDRESS 'launchd:env=X': expected unix:path=<socket> or " +
      "tcp:host=<host>,port=<port>",
  );
  strictEqual(why(["wach", "-q", "x"]), "unknown command 'wach' (watch, read or write)");
  strictEqual(
    why(["--keep-alve", "5"]),
    "unknown option '--keep-alve' (Did you mean --keep-alive?)",
  );
});

Deno.test("portal id from a MAC address", () => {
  strictEqual(macToPortalId("E0:FF:50:A0:97:C0\n"), "e0ff50a097c0");
  strictEqual(macToPortalId("00:00:00:00:00:00"), undefined);
  strictEqual(macToPortalId("garbage"), undefined);
});

Deno.test("who may write, secrets, client id, password file, TLS checks", () => {
  const o = parse([]);
  deepStrictEqual([o.readOnly, o.allowWrite, o.masked, o.clientId, o.insecure], [
    false,
    [],
    [],
    undefined,
    false,
  ]);
  const p = parse([
    "--read-only",
    "--allow-write",
    "settings/0/Settings/#",
    "--allow-write",
    "vebus/+/Hub4/L1/AcPowerSetpoint",
    "--mask",
    "settings/Settings/Vrm/Token",
    "--client-id",
    "gx-1",
    "--insecure",
  ]);
  deepStrictEqual([p.readOnly, p.allowWrite, p.masked, p.clientId, p.insecure], [
    true,
    ["settings/0/Settings/#", "vebus/+/Hub4/L1/AcPowerSetpoint"],
    ["settings/Settings/Vrm/Token"],
    "gx-1",
    true,
  ]);
  const file = Deno.makeTempFileSync();
  Deno.writeTextFileSync(file, "from-file\nignored\n");
  strictEqual(parse(["--mqtt-password-file", file]).mqttPassword, "from-file");
  strictEqual(parse(["-P", "option", "--mqtt-password-file", file]).mqttPassword, "option");
  // -c turns TLS on and is read at once.
  const tls = parse(["-q", "venus.local", "-c", file]);
  deepStrictEqual([tls.mqttUrl, tls.mqttCa], ["mqtts://venus.local:8883", "from-file\nignored\n"]);
  Deno.removeSync(file);
  for (
    const args of [
      ["--allow-write", "a/#/b"],
      ["--mask", "Settings"],
      ["--mask", "settings/+/x"],
      ["--client-id", "a/b"],
      ["--client-id", "a#"],
      ["--mqtt-password-file", "/nonexistent/file"],
      ["-c", "/nonexistent/ca.crt"],
    ]
  ) {
    throws(() => parse(args), (e: Error) => e instanceof OptionsError, args.join(" "));
  }
});

Deno.test("read and write: the item, the value's JSON as typed, negative values without --", () => {
  const ask = (kind: "read" | "write", args: string[]) => parseAskOptions(kind, args, {}, () => {});
  const item = "settings/0/Settings/CGwacs/AcPowerSetPoint";
  for (
    const args of [[item, "-200.0"], [item, "--", "-200.0"], ["-q", "gx", item, "-200.0"], [
      "-t",
      "3",
      item,
      "-200.0",
    ]]
  ) {
    const o = ask("write", args)!;
    deepStrictEqual([o.item, o.payload], [item, '{"value": -200.0}'], args.join(" "));
  }
  deepStrictEqual(ask("write", [item, '"text"'])!.payload, '{"value": "text"}');
  deepStrictEqual(ask("write", ["-t", "3", item, "[1, 2]"])!.timeoutSeconds, 3);
  deepStrictEqual(ask("read", [item])!.payload, "");
  for (
    const args of [[item], [item, "text"], ["settings/x/Y", "1"], ["battery/+/Soc", "1"], [
      "battery/0",
      "1",
    ]]
  ) {
    throws(() => ask("write", args), OptionsError, args.join(" "));
  }
  throws(() => ask("read", [item, "1"]), OptionsError, "a read takes no value");
  throws(() => ask("read", ["system/0/Dc\u0007"]), OptionsError, "a control character");
  for (const bad of ["keepalive", "battery/007/Soc", "battery/0//Soc", "battery/4294967296/Soc"]) {
    throws(() => ask("read", [bad]), OptionsError, bad);
  }
  strictEqual(ask("read", ["system/0/Serial"])!.item, "system/0/Serial");
  // What a user who knows the topics types: the error says what the item is.
  for (const bad of ["battery/512", "/battery/512/Soc", "N/02fc00000001/battery/512/Soc"]) {
    throws(() => ask("read", [bad]), /expected <type>\/<instance>\/<path>/, bad);
  }
  // A W payload pasted as the value would write a dict {"value": 5}.
  throws(() => ask("write", [item, '{"value": 5}']), /a W payload: give the value itself, e.g. 5/);
  strictEqual(
    ask("write", [item, '{"value": 5, "x": 1}'])!.payload,
    '{"value": {"value": 5, "x": 1}}',
  );
  throws(() => ask("read", ["-t", "0", item]), OptionsError, "no time to answer");
  throws(() => ask("read", ["-t", "3000000", item]), OptionsError, "beyond what a timer holds");
});
