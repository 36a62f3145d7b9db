/**
 * A private dbus-daemon for one test: its own config, a unix socket in a temp
 * dir and a TCP listener on a free loopback port, torn down with the test.
 */
export interface DbusDaemon {
  /** unix:path=... address of the bus. */
  address: string;
  /** Its addresses as dbus-daemon prints them (unix and tcp, `;`-separated, with guids). */
  printed: string;
  /** tcp:host=127.0.0.1,port=... address of the same bus. */
  tcpAddress: string;
  stop(): Promise<void>;
}

export async function startDbusDaemon(): Promise<DbusDaemon> {
  const dir = await Deno.makeTempDir({ prefix: "dbus-mqtt-bus-" });
  const socket = `${dir}/bus`;
  const config = `${dir}/bus.conf`;
  await Deno.writeTextFile(
    config,
    `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=${socket}</listen>
  <listen>tcp:host=127.0.0.1,bind=127.0.0.1,port=0</listen>
  <auth>EXTERNAL</auth>
  <auth>ANONYMOUS</auth>
  <allow_anonymous/>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
`,
  );
  const process = new Deno.Command("dbus-daemon", {
    args: [`--config-file=${config}`, "--nofork", "--print-address"],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = process.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let printed = "";
  while (!printed.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("dbus-daemon exited before printing its address");
    printed += value;
  }
  reader.releaseLock();
  process.stdout.cancel().catch(() => {});
  // The daemon prints one address per listener, separated by ';'.
  const addresses = printed.trim().split(";");
  const tcp = addresses.find((a) => a.startsWith("tcp:")) ?? "";
  const host = /host=([^,]+)/.exec(tcp)?.[1];
  const port = /port=(\d+)/.exec(tcp)?.[1];
  return {
    address: `unix:path=${socket}`,
    printed: printed.trim(),
    tcpAddress: `tcp:host=${host},port=${port}`,
    async stop() {
      try {
        process.kill("SIGTERM");
      } catch { /* already gone */ }
      await process.status;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
