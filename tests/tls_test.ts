/**
 * Integration: TLS to the broker checks its certificate: a private CA given
 * with -c is trusted, an unknown one is refused, --insecure connects anyway
 * and says so.
 */
import { deepStrictEqual, strictEqual } from "node:assert";
import { BridgeProcess } from "./support/bridge.ts";
import { PORTAL_ID, pvInverter } from "./support/gx.ts";
import { withTlsGx } from "./support/tls.ts";

Deno.test("TLS: a private CA with -c works, an unknown certificate is refused, --insecure warns", async () => {
  await withTlsGx({ services: [pvInverter(100)] }, async (gx) => {
    await gx.wake(gx.topic("pvinverter", 20, "/Ac/Power")); // trusted through -c

    const serialOf = (id: string) => `N/${id}/system/0/Serial`;
    await gx.client.client.subscribeAsync("N/+/system/0/Serial");
    const untrusted = new BridgeProcess([
      "--dbus",
      gx.bus.address,
      "--mqtt",
      gx.broker.tlsUrl!,
      "--portal-id",
      "untrusted",
    ]);
    const insecure = new BridgeProcess([
      "--dbus",
      gx.bus.address,
      "--mqtt",
      gx.broker.tlsUrl!,
      "--portal-id",
      "insecure",
      "--insecure",
    ]);
    try {
      await untrusted.waitForLine(/WARN {2}\[mqtt\] .*(self[- ]signed|certificate|verify)/i);
      await insecure.waitForLine(
        /WARN {2}\[mqtt\] --insecure: the broker's certificate is NOT checked/,
      );
      await gx.client.waitFor(
        "the insecure bridge's Serial",
        () => gx.client.topics.has(serialOf("insecure")),
      );
      strictEqual(gx.client.topics.has(serialOf("untrusted")), false);
      strictEqual(gx.client.value(serialOf(PORTAL_ID)), PORTAL_ID);
      // A stop over TLS says nothing more (an empty last write failed with EPERM).
      await insecure.stop();
      deepStrictEqual(
        insecure.lines.filter((l) => l.startsWith("WARN") && !l.includes("--insecure")),
        [],
      );
    } finally {
      await untrusted.stop();
      await insecure.stop();
    }
  });
});
