/**
 * The command line: definition, environment fallbacks and validation, turned
 * into one typed Options object. Invalid input is an OptionsError with a
 * one-line reason (the caller exits with code 2).
 */
import {
  Command,
  InvalidArgumentError,
  Option,
  type OptionValues,
} from "@commander-js/extra-typings";
import { readFileSync } from "node:fs";
import { socketOptions, UnsupportedAddress } from "./bus_address.ts";
import { isPortalId, isValidFilter, parseRequest } from "./topics.ts";
import { topicProblem } from "./mqtt_packets.ts";
import { LOG_LEVELS, type LogLevel, shown } from "./log.ts";
import { VERSION } from "./version.ts";

/** How to reach the broker; the bridge and `watch` share these options. */
export interface BrokerOptions {
  mqttUrl: string;
  /** The URL as logs show it: without a password. */
  mqttName: string;
  mqttUser?: string;
  mqttPassword?: string;
  /** The broker's CA certificate (PEM), from -c's file. */
  mqttCa?: string;
  /** Accept any broker certificate (never the default). */
  insecure: boolean;
}

export interface Options extends BrokerOptions {
  /** D-Bus address: `unix:path=...` or `tcp:host=...,port=...`. */
  dbusAddress: string;
  /** Human-readable name of the bus for the startup line. */
  dbusName: string;
  keepAliveSeconds: number;
  /**
   * How long a change may wait in the bridge to travel with others (ms): the
   * bus is read, and the broker written, at most once per this while busy.
   */
  maxDelayMs: number;
  /** Publish values retained (the Serial always is). */
  retain: boolean;
  /** Never call SetValue. */
  readOnly: boolean;
  /** MQTT patterns on `<type>/<instance>/<path>` a write must match; none = all. */
  allowWrite: string[];
  /** More secrets to publish as "******", as `<type>/<path>`. */
  masked: string[];
  clientId?: string;
  portalId?: string;
  logLevel: LogLevel;
}

/** `dbus-mqtt watch`: a terminal client of the bridge. */
export interface WatchOptions extends BrokerOptions {
  portalId?: string;
  /** MQTT-style patterns on `<type>/<instance>/<path>`; none = everything. */
  filters: string[];
  json: boolean;
  /** Seconds between keep-alives. */
  keepAliveSeconds: number;
}

/** `dbus-mqtt read` and `dbus-mqtt write`: one request, its answer printed (MQTT 5). */
export interface AskOptions extends BrokerOptions {
  kind: "read" | "write";
  portalId?: string;
  /** `<type>/<instance>/<path>`. */
  item: string;
  /** A write's payload, `{"value": <the JSON as given>}`. */
  payload: string;
  timeoutSeconds: number;
}

export class OptionsError extends Error {}

const PASSWORD_ENV = "DBUS_MQTT_PASSWORD";
const SYSTEM_BUS_SOCKET = "unix:path=/var/run/dbus/system_bus_socket";

/** Timers hold at most 2^31 - 1 ms: about 24.8 days. */
const MAX_SECONDS = 2_147_483;

function seconds(text: string): number {
  const value = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || !(value <= MAX_SECONDS)) {
    throw new InvalidArgumentError(`expected a number of seconds up to ${MAX_SECONDS}, e.g. 60`);
  }
  return value;
}

function milliseconds(text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value > 10_000) {
    throw new InvalidArgumentError("expected whole milliseconds from 0 to 10000, e.g. 50");
  }
  return value;
}

/** The default latency budget; see README "Performance" for the measured curve. */
const DEFAULT_MAX_DELAY_MS = 100;

function withBrokerOptions<Args extends unknown[], Opts extends OptionValues>(
  command: Command<Args, Opts>,
) {
  return command
    .option(
      "-q, --mqtt-server <host[:port]>",
      "MQTT broker host, e.g. 127.0.0.1:1883 (port 8883 with -c)",
      "127.0.0.1",
    )
    .option(
      "--mqtt <url>",
      "MQTT broker URL instead of -q: mqtt://, mqtts://, ws:// or wss://, " +
        "e.g. ws://venus.local:9001",
    )
    .option("-u, --mqtt-user <user>", "MQTT user name")
    .option(
      "-P, --mqtt-password <password>",
      `MQTT password; better from $${PASSWORD_ENV}, out of the process list`,
    )
    .option(
      "--mqtt-password-file <file>",
      "read the MQTT password from this file (first line)",
    )
    .option(
      "-c, --mqtt-certificate <file>",
      "CA certificate of the broker; turns TLS on, e.g. venus-ca.crt",
    )
    .option(
      "--insecure",
      "TLS without checking the broker's certificate (anyone in between can listen and write)",
    );
}

function brokerOptions(
  o: {
    mqttServer: string;
    mqtt?: string;
    mqttUser?: string;
    mqttPassword?: string;
    mqttPasswordFile?: string;
    mqttCertificate?: string;
    insecure?: boolean;
  },
  env: Record<string, string | undefined>,
): BrokerOptions {
  const mqttUrl = o.mqtt ? checkUrl(o.mqtt) : serverUrl(o.mqttServer, !!o.mqttCertificate);
  // A login in the URL counts as if given with -u and -P; those win when both are.
  const url = new URL(mqttUrl);
  const urlUser = unescapeLogin(url.username);
  const urlPassword = unescapeLogin(url.password);
  url.username = url.password = "";
  return {
    mqttUrl: urlUser || urlPassword ? url.href : mqttUrl,
    mqttName: withoutPassword(mqttUrl),
    mqttUser: o.mqttUser ?? urlUser,
    mqttPassword: o.mqttPassword ??
      (o.mqttPasswordFile ? passwordFromFile(o.mqttPasswordFile) : env[PASSWORD_ENV]) ??
      urlPassword,
    mqttCa: o.mqttCertificate === undefined
      ? undefined
      : readOptionFile("--mqtt-certificate", o.mqttCertificate),
    insecure: !!o.insecure,
  };
}

function passwordFromFile(file: string): string {
  return readOptionFile("--mqtt-password-file", file).split("\n")[0].trimEnd();
}

/** Read once, at the start: a file that is missing is an option error, not a crash later. */
function readOptionFile(option: string, file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    throw new OptionsError(`${option}: ${(error as Error).message}`);
  }
}

function bridgeCommand() {
  const command = new Command()
    .name("dbus-mqtt")
    .description(
      "Publishes the Victron D-Bus (com.victronenergy.*) on MQTT as " +
        "N/<portalId>/<type>/<instance>/<path> and serves R/W requests.",
    )
    .option(
      "-b, --dbus <address>",
      "D-Bus to scan: system, session, unix:path=<socket> or " +
        "tcp:host=<host>,port=<port> (e.g. tcp:host=192.168.1.5,port=7272)",
      "system",
    );
  return withBrokerOptions(command)
    .option(
      "-k, --keep-alive <seconds>",
      "stop publishing this long after the last R/W request; 0 = never stop",
      seconds,
      60,
    )
    .option(
      "--max-delay <ms>",
      "a change may wait this long in the bridge to travel with others, which saves " +
        "CPU on a busy bus; 0 = each at once",
      milliseconds,
      DEFAULT_MAX_DELAY_MS,
    )
    .option("--read-only", "never write to D-Bus: W requests are logged and dropped")
    .option(
      "--allow-write <pattern>",
      "only writes to <type>/<instance>/<path> matching this MQTT pattern, e.g. " +
        "settings/0/Settings/CGwacs/# or vebus/+/Hub4/# (repeatable)",
      (pattern: string, previous: string[]) => [...previous, checkFilter(pattern)],
      [] as string[],
    )
    .option(
      "--mask <type/path>",
      'publish this item as "******" too, e.g. settings/Settings/Vrm/Token (repeatable)',
      (item: string, previous: string[]) => [...previous, checkMaskedItem(item)],
      [] as string[],
    )
    .option("--client-id <id>", "MQTT client id (default dbus-mqtt_<portal id>)")
    .option(
      "--no-retain",
      "publish values without the retain flag (the Serial stays retained): " +
        "only live subscribers get them, nothing to clear on expiry",
    )
    .option(
      "--portal-id <id>",
      "portal id in the topics (default: /sbin/get-unique-id, else the MAC " +
        "of eth0 or $VRM_IFACE), e.g. e0ff50a097c0",
    )
    .option("-d, --debug", "log every request and D-Bus call")
    .addOption(
      new Option("--log-level <level>", "error, warn, info or debug")
        .choices(LOG_LEVELS).default("info" as LogLevel),
    )
    .addHelpText(
      "after",
      "\nExample:\n  dbus-mqtt --dbus tcp:host=192.168.1.5,port=7272 " +
        "-q 127.0.0.1 --portal-id e0ff50a097c0 -k 60\n" +
        "\nWatch the values a bridge publishes: dbus-mqtt watch --help" +
        "\nRead or write one item, its answer printed (MQTT 5): dbus-mqtt read|write --help",
    );
}

function watchCommand() {
  const command = new Command()
    .name("dbus-mqtt watch")
    .description(
      "Shows the live values a GX publishes: finds its portal id from the retained " +
        "N/+/system/0/Serial, keeps it alive, and prints every value as it changes " +
        "(a table on a terminal, one line per change when piped).",
    );
  return withBrokerOptions(command)
    .option("--portal-id <id>", "watch this GX when the broker serves several")
    .option(
      "-f, --filter <pattern>",
      "only <type>/<instance>/<path> matching this MQTT pattern, e.g. battery/+/Soc or " +
        "system/0/# (repeatable)",
      (pattern: string, previous: string[]) => [...previous, checkFilter(pattern)],
      [] as string[],
    )
    .option("--json", 'one JSON object per message: {"topic", "value"}')
    .option("-k, --keep-alive <seconds>", "seconds between keep-alives", seconds, 30)
    .addHelpText(
      "after",
      "\nExample:\n  dbus-mqtt watch -q venus.local --filter 'battery/+/#' --filter system/0/Dc/#",
    );
}

function askCommand(kind: "read" | "write") {
  const command = new Command()
    .name(`dbus-mqtt ${kind}`)
    .description(
      kind === "read"
        ? "Reads one item (or a sub-tree) afresh through a bridge and prints the answer: " +
          'e.g. {"status": "ok", "value": 100}. Exits 0 only when the status is ok. Needs MQTT 5.'
        : "Writes one item through a bridge and prints the answer: " +
          '{"status": "ok", "value": <as the service has it now>}, "refused" or "error". ' +
          "Exits 0 only when the status is ok. Needs MQTT 5.",
    )
    .argument(
      "<item>",
      "<type>/<instance>/<path>, e.g. settings/0/Settings/CGwacs/AcPowerSetPoint",
    );
  // Declared on the same command: parseAskOptions reads the values from `args`.
  if (kind === "write") {
    command.argument("[value]", `the value as JSON: -200 (int), -200.0 (double), '"text"'`);
  }
  return withBrokerOptions(command)
    .option("--portal-id <id>", "the GX to ask when the broker serves several")
    .option("-t, --timeout <seconds>", "how long to wait for the answer", seconds, 10)
    .addHelpText(
      "after",
      `\nExample:\n  dbus-mqtt ${kind} -q venus.local settings/0/Settings/CGwacs/AcPowerSetPoint` +
        (kind === "write" ? " -- -200" : ""),
    );
}

/** Parses `dbus-mqtt read|write` arguments (after the subcommand). */
export function parseAskOptions(
  kind: "read" | "write",
  args: string[],
  env: Record<string, string | undefined>,
  write: (text: string) => void,
): AskOptions | undefined {
  const command = askCommand(kind);
  // A negative value (-200) is the value, not an option: no option starts with a digit.
  const negative = (arg: string) => /^-[\d.]/.test(arg);
  const options = args.filter((arg) => !negative(arg) && arg !== "--");
  const o = parse(command, [...options, "--", ...args.filter(negative)], write);
  if (!o) return undefined;
  const [item, value] = command.args;
  const why = itemProblem(item);
  if (why) throw new OptionsError(`'${shown(item)}': ${why}`);
  if (o.timeout === 0) throw new OptionsError("--timeout 0: nothing could answer in no time");
  if (kind === "write") {
    if (value === undefined) throw new OptionsError("the value to write is missing");
    let json: unknown;
    try {
      json = JSON.parse(value);
    } catch {
      throw new OptionsError(
        `value '${shown(value)}' is not JSON (a string needs quotes: '"text"')`,
      );
    }
    // W's payload pasted whole would write a dict holding the value: never what was meant.
    if (isPayload(json)) {
      throw new OptionsError(
        `value '${shown(value)}' is a W payload: give the value itself, e.g. ` +
          `${shown(JSON.stringify(json.value))}`,
      );
    }
  }
  return {
    ...brokerOptions(o, env),
    kind,
    portalId: o.portalId === undefined ? undefined : checkPortalId(o.portalId),
    item,
    // As given, not re-serialised: -200 and -200.0 are different D-Bus types.
    payload: kind === "write" ? `{"value": ${value}}` : "",
    timeoutSeconds: o.timeout,
  };
}

const ITEM_FORM = "expected <type>/<instance>/<path>, e.g. battery/512/Soc";

/** Why `item` names no item: as the bridge will parse the request, and the broker the topic. */
function itemProblem(item: string): string | undefined {
  if (item.startsWith("/") || item.split("/").length < 3) return ITEM_FORM;
  const request = parseRequest(`R/id/${item}`, "id");
  if (typeof request !== "string") return topicProblem(item);
  // A topic pasted whole: N/<portal id>/battery/512/Soc.
  return /^[NRW]\//.test(item) ? `${ITEM_FORM}, without the topic's first two levels` : request;
}

function isPayload(json: unknown): json is { value: unknown } {
  return typeof json === "object" && json !== null && !Array.isArray(json) &&
    Object.keys(json).length === 1 && Object.hasOwn(json, "value");
}

/**
 * Parses the bridge's arguments (without the program name). Help and version
 * output are written by commander; they come back as `undefined`.
 */
export function parseOptions(
  args: string[],
  env: Record<string, string | undefined>,
  write: (text: string) => void,
): Options | undefined {
  // The bridge takes no arguments: a word before the options is a command misspelt.
  if (args.length && !args[0].startsWith("-")) {
    throw new OptionsError(`unknown command '${shown(args[0])}' (watch, read or write)`);
  }
  const o = parse(bridgeCommand(), args, write);
  if (!o) return undefined;
  const dbus = resolveBusAddress(o.dbus, env);
  return {
    dbusAddress: dbus,
    dbusName: o.dbus === "system" || o.dbus === "session" ? `${o.dbus} bus ${dbus}` : dbus,
    ...brokerOptions(o, env),
    keepAliveSeconds: o.keepAlive,
    maxDelayMs: o.maxDelay,
    retain: o.retain,
    readOnly: !!o.readOnly,
    allowWrite: o.allowWrite,
    masked: o.mask,
    clientId: o.clientId === undefined ? undefined : checkClientId(o.clientId),
    portalId: o.portalId === undefined ? undefined : checkPortalId(o.portalId),
    logLevel: o.debug ? "debug" : o.logLevel,
  };
}

/** Parses the arguments after `watch`. */
export function parseWatchOptions(
  args: string[],
  env: Record<string, string | undefined>,
  write: (text: string) => void,
): WatchOptions | undefined {
  const o = parse(watchCommand(), args, write);
  if (!o) return undefined;
  return {
    ...brokerOptions(o, env),
    portalId: o.portalId === undefined ? undefined : checkPortalId(o.portalId),
    filters: o.filter,
    json: !!o.json,
    keepAliveSeconds: Math.max(1, o.keepAlive),
  };
}

function parse<Opts extends OptionValues>(
  command: Command<unknown[], Opts>,
  args: string[],
  write: (text: string) => void,
): Opts | undefined {
  const program = command
    .version(VERSION, "-V, --version")
    .exitOverride()
    .configureOutput({ writeOut: write, writeErr: () => {} });
  try {
    program.parse(args, { from: "user" });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "commander.helpDisplayed" || code === "commander.version") {
      return undefined;
    }
    // One line, as the bridge's other errors: commander puts "(Did you mean ...?)" on a second.
    const message = (error as Error).message.replace(/^error: /, "").replace(/\s*\n\s*/g, " ");
    throw new OptionsError(message);
  }
  return program.opts();
}

function resolveBusAddress(
  dbus: string,
  env: Record<string, string | undefined>,
): string {
  if (dbus === "system") {
    const address = env.DBUS_SYSTEM_BUS_ADDRESS;
    return address === undefined
      ? SYSTEM_BUS_SOCKET
      : checkAddress(address, "DBUS_SYSTEM_BUS_ADDRESS");
  }
  if (dbus === "session") {
    const address = env.DBUS_SESSION_BUS_ADDRESS;
    if (!address) throw new OptionsError("--dbus session: DBUS_SESSION_BUS_ADDRESS is not set");
    return checkAddress(address, "DBUS_SESSION_BUS_ADDRESS");
  }
  return checkAddress(dbus);
}

/**
 * An address the connection can use, checked here so that a wrong one is an
 * option error (exit 2), not a lost bus (exit 1, which a supervisor retries).
 * `variable`: the environment variable it came from.
 */
function checkAddress(address: string, variable?: string): string {
  try {
    socketOptions(address);
    return address;
  } catch (error) {
    const where = variable ? `$${variable}` : "--dbus";
    const expected = (variable ? "" : "system, session, ") +
      "unix:path=<socket> or tcp:host=<host>,port=<port>";
    throw new OptionsError(
      `${where} '${shown(address)}': ` +
        (error instanceof UnsupportedAddress
          ? `expected ${expected}`
          : shown((error as Error).message)),
    );
  }
}

function serverUrl(server: string, tls: boolean): string {
  const match = /^([^:/\s]+|\[[0-9a-fA-F:]+\])(?::(\d{1,5}))?$/.exec(server);
  if (!match || Number(match[2] ?? 0) > 65535) {
    throw new OptionsError(`--mqtt-server '${server}': expected host or host:port`);
  }
  return `${tls ? "mqtts" : "mqtt"}://${match[1]}:${match[2] ?? (tls ? 8883 : 1883)}`;
}

function checkUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new OptionsError(`--mqtt '${url}': not a URL, e.g. mqtt://127.0.0.1:1883`);
  }
  if (!["mqtt:", "mqtts:", "ws:", "wss:"].includes(parsed.protocol)) {
    throw new OptionsError(`--mqtt '${url}': use mqtt://, mqtts://, ws:// or wss://`);
  }
  return url;
}

function checkMaskedItem(item: string): string {
  if (!/^[A-Za-z0-9_]+\/[^/+#]/.test(item) || /[+#]/.test(item)) {
    throw new InvalidArgumentError("expected <type>/<path>, e.g. settings/Settings/Vrm/Token");
  }
  return item;
}

/** A client id with +, # or / breaks brokers' ACL patterns and topic tricks. */
function checkClientId(id: string): string {
  if (!/^[^+#/\s]{1,128}$/.test(id)) {
    throw new OptionsError(`--client-id '${id}': no '+', '#', '/' or spaces, 1 to 128 characters`);
  }
  return id;
}

function checkFilter(pattern: string): string {
  if (!isValidFilter(pattern)) {
    throw new InvalidArgumentError("expected an MQTT pattern such as battery/+/Soc or system/0/#");
  }
  return pattern;
}

/** A user name or password from a URL, %-escapes undone; undefined when empty. */
function unescapeLogin(text: string): string | undefined {
  try {
    return decodeURIComponent(text) || undefined;
  } catch {
    throw new OptionsError("--mqtt: the login in the URL has a broken %-escape");
  }
}

/** Secrets never reach a log line, not even one given inside the URL. */
function withoutPassword(url: string): string {
  const parsed = new URL(url);
  if (!parsed.password) return url;
  parsed.password = "***";
  return parsed.href;
}

function checkPortalId(id: string): string {
  if (!isPortalId(id)) {
    throw new OptionsError(
      `--portal-id '${id}': up to 64 letters, digits, '-' and '_' fit in a topic level`,
    );
  }
  return id;
}
