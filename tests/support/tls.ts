/** A broker on TLS under a private CA, for tests of the bridge's TLS. */
import { strictEqual } from "node:assert";
import { type Gx, type GxOptions, withGx } from "./gx.ts";

/** withGx with the broker on TLS; the bridge trusts its CA through -c. */
export async function withTlsGx(
  options: GxOptions,
  body: (gx: Gx) => Promise<void>,
): Promise<void> {
  const tls = await certificates();
  try {
    const args = ["-c", tls.ca, ...(options.args ?? [])];
    await withGx({ ...options, tls: { certFile: tls.cert, keyFile: tls.key }, args }, body);
  } finally {
    await Deno.remove(tls.dir, { recursive: true });
  }
}

/** A throw-away CA and a certificate for 127.0.0.1 signed by it. */
async function certificates(): Promise<
  { dir: string; ca: string; cert: string; key: string }
> {
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
