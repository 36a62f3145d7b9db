/**
 * Finds the portal id the way a GX device does: the output of
 * /sbin/get-unique-id, else the MAC address of eth0 (or $VRM_IFACE), lower
 * case without colons. The MAC comes from sysfs, else (under Deno, which reads
 * /sys/devices only with --allow-all) from the interface's addresses.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { isPortalId } from "./topics.ts";

/** The interface whose MAC names the GX. */
export function portalInterface(env: Record<string, string | undefined>): string {
  return env.VRM_IFACE || "eth0";
}

export function discoverPortalId(
  env: Record<string, string | undefined>,
): string | undefined {
  try {
    const id = execFileSync("/sbin/get-unique-id", { encoding: "utf8", timeout: 5000 })
      .trim();
    if (isPortalId(id)) return id;
  } catch {
    // not a GX device: fall back to the MAC address
  }
  const iface = portalInterface(env);
  // A name as Linux gives them: never a path.
  if (!/^[\w.:@-]{1,15}$/.test(iface)) return undefined;
  return sysfsMac(iface) ?? addressedMac(iface);
}

/** Any interface, up or not. */
function sysfsMac(iface: string): string | undefined {
  try {
    return macToPortalId(readFileSync(`/sys/class/net/${iface}/address`, "utf8"));
  } catch {
    return undefined;
  }
}

/** Only an interface with an address; under Deno needs --allow-sys=networkInterfaces. */
function addressedMac(iface: string): string | undefined {
  try {
    const interfaces = networkInterfaces();
    if (!Object.hasOwn(interfaces, iface)) return undefined;
    const mac = interfaces[iface]?.find((address) => !address.internal)?.mac;
    return mac === undefined ? undefined : macToPortalId(mac);
  } catch {
    return undefined;
  }
}

export function macToPortalId(mac: string): string | undefined {
  const id = mac.trim().toLowerCase().replaceAll(":", "");
  return /^[0-9a-f]{12}$/.test(id) && id !== "000000000000" ? id : undefined;
}
