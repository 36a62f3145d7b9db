/**
 * D-Bus server addresses (the specification's "Server Addresses"): a
 * transport and its keys, e.g. `unix:path=/run/dbus/system_bus_socket,guid=...`;
 * of several, separated by `;`, the first. Keys the bridge does not need
 * (guid, family, ...) are passed over, as dbus-daemon prints them.
 */
import type net from "node:net";

/**
 * Where `unix:path=...` or `tcp:host=...,port=...` points. Not `unix:abstract=`:
 * neither Node's nor Deno's sockets reach an abstract name (ECONNREFUSED, tried).
 */
export function socketOptions(address: string): net.NetConnectOpts {
  const [transport, rest = ""] = address.split(";")[0].split(/:(.*)/s);
  const params = new Map(
    rest.split(",").filter(Boolean).map((pair) => {
      const [key, value = ""] = pair.split(/=(.*)/s);
      return [key, unescaped(value)];
    }),
  );
  const path = params.get("path");
  const port = params.get("port");
  if (transport === "unix" && path) return { path };
  if (transport === "unix" && params.has("abstract")) {
    throw new Error("an abstract socket (unix:abstract=) cannot be reached; use unix:path=");
  }
  if (transport === "tcp" && port !== undefined) {
    const number = Number(port);
    if (!/^\d+$/.test(port) || number < 1 || number > 65535) {
      throw new Error(`port '${port}' is no port from 1 to 65535`);
    }
    return { host: params.get("host") || "localhost", port: number };
  }
  if (transport === "tcp") throw new Error("a tcp: address needs port=<1-65535>");
  if (transport === "unix") throw new Error("a unix: address needs path=<socket>");
  throw new UnsupportedAddress(
    `unsupported D-Bus address '${address}' (unix:path= or tcp:host=,port=)`,
  );
}

/** A transport other than unix: and tcp:: what the bridge can use is worth listing. */
export class UnsupportedAddress extends Error {}

/** The specification's %-escapes (dbus-daemon prints `,` in a path as %2c). */
function unescaped(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    throw new Error(`'${value}' has a malformed %-escape`);
  }
}
