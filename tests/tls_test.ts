/**
 * Integration: TLS to the broker checks its certificate: a private CA given
 * with -c is trusted, an unknown one is refused, --insecure connects anyway
 * and says so.
 */
import { deepStrictEqual, strictEqual } from "node:assert";
import { BridgeProcess } from "./support/bridge.ts";
import { PORTAL_ID, pvInverter, withGx } from "./support/gx.ts";

/** A throw-away CA and a certificate for 127.0.0.1 signed by it. */
async function certificates(): Promise<{ dir: string; ca: string; cert: string; key: string }> {
  const dir = await Deno.makeTempDir({ prefix: "dbus-mqtt-tls-" });
  const run = async (...args: string[]) => {
    const out = await new Deno.Command("openssl", { args, cwd: dir, stderr: "piped" }).output();
    strictEqual(out.code, 0, new TextDecoder().decode(out.stderr));
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await run(
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-days",
    "1",
    "-subj",
    "/CN=Test CA",
  );
  await run("req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1");
  await Deno.writeTextFile(`${dir}/san.ext`, "subjectAltName=IP:127.0.0.1\n");
  await run(
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.crt",
    "-days",
    "1",
    "-extfile",
    "san.ext",
  );
  // Mosquitto started as root reads them as the user "mosquitto".
  await Deno.chmod(dir, 0o755);
  for (const file of ["ca.crt", "server.crt", "server.key"]) {
    await Deno.chmod(`${dir}/${file}`, 0o644);
  }
  return { dir, ca: `${dir}/ca.crt`, cert: `${dir}/server.crt`, key: `${dir}/server.key` };
}

Deno.test("TLS: a private CA with -c works, an unknown certificate is refused, --insecure warns", async () => {
  const tls = await certificates();
  try {
    await withGx({
      services: [pvInverter(100)],
      tls: { certFile: tls.cert, keyFile: tls.key },
      args: ["-c", tls.ca],
    }, async (gx) => {
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
  } finally {
    await Deno.remove(tls.dir, { recursive: true });
  }
});
