/**
 * The D-Bus connection's socket. Under Node (the bundle on 32-bit GX
 * devices) a `node:net` socket (see nodeSocket); under Deno, `Deno.connect` behind the few
 * `net.Socket` members the connection uses. Deno's `node:net` layer costs
 * more per read, and on a GX's bus every change is a read of its own:
 * scripts/runtime_floor.ts measured a reader that does no work at 10-14 ms/s
 * with Deno.connect against 14-22 with node:net at 50-500 messages/s (50 ms
 * budget). A paused Deno socket has no read pending, so messages that
 * arrive meanwhile wake no JavaScript.
 */
import { EventEmitter } from "node:events";
import net from "node:net";

/** What the D-Bus connection needs of a socket: net.Socket's names, so both fit. */
export interface BusSocket {
  write(data: string | Uint8Array): void;
  pause(): void;
  resume(): void;
  destroy(error?: Error): void;
  on(event: "data", listener: (chunk: Uint8Array) => void): this;
  on(event: "connect" | "end" | "close", listener: () => void): this;
  on(event: "error", listener: (error: Error) => void): this;
  once(event: "connect", listener: () => void): this;
  once(event: "error", listener: (error: Error) => void): this;
  off(event: "data", listener: (chunk: Uint8Array) => void): this;
  off(event: "end", listener: () => void): this;
  off(event: "error", listener: (error: Error) => void): this;
}

/** Connects to `net.NetConnectOpts`-style options (unix path or TCP). */
export function connectBusSocket(options: net.NetConnectOpts): BusSocket {
  return typeof Deno === "undefined" ? nodeSocket(options) : new DenoSocket(options);
}

/**
 * Under Node, reads go through `onread`: only then does pausing stop reading
 * from the kernel (readStop); a plain socket reads on into its buffer while
 * paused, a wake-up per message all the same. The pause is the read's answer
 * (false: readStop on the handle), not net.Socket.pause(), so that neither it
 * nor resume() runs the stream machinery (Readable's paused state, and a
 * nextTick and a flow() at each resume) ~30 times a second at 2,000 changes/s:
 * side by side, four pairs, 35.2-53.4 against 40.5-59.9 ms/s. The bridge
 * pauses only from a read's listener (ReadPacer.afterRead), so the pause takes
 * effect as that read ends.
 */
function nodeSocket(options: net.NetConnectOpts): BusSocket {
  let paused = false;
  const socket: net.Socket = net.createConnection({
    ...options,
    onread: {
      buffer: new Uint8Array(READ_BUFFER_BYTES),
      // A copy: the buffer is read into again while the messages cut from it are kept.
      callback: (n: number, buffer: Uint8Array) => {
        socket.emit("data", buffer.slice(0, n));
        return !paused;
      },
    },
  });
  socket.setNoDelay(true);
  return Object.assign(socket, {
    pause: () => {
      paused = true;
      return socket;
    },
    resume: () => {
      paused = false;
      return net.Socket.prototype.resume.call(socket);
    },
  });
}

/** What one read takes at most: node:net's reads are as large. */
export const READ_BUFFER_BYTES = 64 * 1024;
const encoder = new TextEncoder();

class DenoSocket extends EventEmitter implements BusSocket {
  #conn: Deno.Conn | undefined;
  #paused = false;
  #resumed: (() => void) | undefined;
  #destroyed = false;
  /** Writes in order, each whole (Deno's write may take part of its bytes). */
  #writing: Promise<void> = Promise.resolve();

  constructor(options: net.NetConnectOpts) {
    super();
    const connecting = "path" in options
      ? Deno.connect({ transport: "unix", path: options.path })
      : Deno.connect({ hostname: options.host ?? "localhost", port: Number(options.port) });
    connecting.then((conn) => {
      if (this.#destroyed) return conn.close();
      this.#conn = conn;
      if ("setNoDelay" in conn) conn.setNoDelay(true);
      this.emit("connect");
      this.#read(conn);
    }, (error) => this.destroy(error));
  }

  write(data: string | Uint8Array): void {
    const conn = this.#conn;
    if (!conn || this.#destroyed) return;
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    this.#writing = this.#writing.then(async () => {
      for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
    }).catch((error) => this.destroy(error));
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    this.#resumed?.();
    this.#resumed = undefined;
  }

  destroy(error?: Error): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.resume();
    try {
      this.#conn?.close();
    } catch { /* closed already */ }
    if (error) this.emit("error", error);
    this.emit("close");
  }

  async #read(conn: Deno.Conn): Promise<void> {
    const buffer = new Uint8Array(READ_BUFFER_BYTES);
    try {
      for (;;) {
        if (this.#paused) await new Promise<void>((resolve) => this.#resumed = resolve);
        if (this.#destroyed) return;
        const n = await conn.read(buffer);
        if (this.#destroyed) return;
        if (n === null) {
          this.emit("end");
          return this.destroy();
        }
        // A copy: the messages cut from it may be kept while the buffer is read into again.
        this.emit("data", buffer.slice(0, n));
      }
    } catch (error) {
      if (!this.#destroyed) this.destroy(error as Error);
    }
  }
}
