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
      return [key, decodeURIComponent(value)];
    }),
  );
  const path = params.get("path");
  const port = Number(params.get("port"));
  if (transport === "unix" && path) return { path };
  if (transport === "tcp" && Number.isInteger(port) && port >= 1 && port <= 65535) {
    return { host: params.get("host") || "localhost", port };
  }
  throw new Error(`unsupported D-Bus address '${address}' (unix:path= or tcp:host=,port=)`);
}
