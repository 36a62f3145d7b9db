/**
 * A client connection to a D-Bus daemon: the address, authentication, Hello,
 * then messages both ways. It reads with one listener for all bytes and cuts
 * messages out of them itself (see dbus_wire.ts for why).
 */
import process from "node:process";
import { Buffer } from "node:buffer";
import { socketOptions } from "./bus_address.ts";
import { type BusSocket, connectBusSocket } from "./bus_socket.ts";
import { ReadPacer } from "./read_pacer.ts";
import {
  decodeMessage,
  encodeMessage,
  FramingError,
  type Message,
  MessageFramer,
  type OutgoingMessage,
} from "./dbus_wire.ts";

/** How long connecting and authenticating may take. */
const AUTH_TIMEOUT_MS = 10_000;

export interface ConnectionHandlers {
  message(message: Message): void;
  /** A message that could not be read; the stream goes on with the next. */
  malformed(error: Error): void;
  /** The connection ended or broke; nothing more comes. */
  closed(error: Error): void;
  /** Calls wait for their answers: the bus is read at once (see ReadPacer). */
  awaitingAnswers(): boolean;
}

export class DbusConnection {
  #serial = 0;
  #closed = false;
  #pacer: ReadPacer | undefined;

  private constructor(private readonly socket: BusSocket) {}

  /**
   * Connects and authenticates with EXTERNAL: the daemon checks who we say we
   * are against the socket's credentials. Over TCP the daemon sees those of
   * whatever forwards the connection (socat on a GX, running as root), not
   * ours: then ANONYMOUS, then EXTERNAL without an identity (the daemon takes
   * the one it sees). In that order: a daemon that listens on TCP itself and
   * allows ANONYMOUS says OK to an empty EXTERNAL, then drops the connection
   * (measured with dbus-daemon 1.14).
   */
  static async open(
    address: string,
    handlers: ConnectionHandlers,
    maxDelayMs = 0,
  ): Promise<DbusConnection> {
    const tcp = address.startsWith("tcp:");
    const socket = connectBusSocket(socketOptions(address));
    const lines = lineReader(socket);
    const timer = setTimeout(
      () => socket.destroy(new Error(`no answer within ${AUTH_TIMEOUT_MS / 1000} s`)),
      AUTH_TIMEOUT_MS,
    );
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("error", reject);
      });
      socket.write("\0");
      const uid = String(process.getuid?.() ?? 0);
      const mechanisms = [
        `EXTERNAL ${hex(uid)}`,
        ...(tcp ? [`ANONYMOUS ${hex("dbus-mqtt")}`, "EXTERNAL"] : []),
      ];
      let answer = "";
      for (const mechanism of mechanisms) {
        socket.write(`AUTH ${mechanism}\r\n`);
        answer = await lines.next();
        // Without an initial response the daemon asks for one: an empty one.
        if (answer === "DATA" || answer.startsWith("DATA ")) {
          socket.write("DATA\r\n");
          answer = await lines.next();
        }
        if (answer.startsWith("OK ")) break;
      }
      if (!answer.startsWith("OK ")) throw new Error(`the bus refused us: ${answer}`);
      socket.write("BEGIN\r\n");
    } catch (error) {
      socket.destroy();
      throw error;
    } finally {
      clearTimeout(timer);
    }
    const connection = new DbusConnection(socket);
    connection.#receive(lines.stop(), handlers, maxDelayMs);
    return connection;
  }

  /** Sends a method call; returns its serial, which the reply will name. */
  call(call: Omit<OutgoingMessage, "serial" | "type">): number {
    const serial = ++this.#serial;
    if (!this.#closed) this.socket.write(encodeMessage({ ...call, serial }));
    this.#pacer?.wake();
    return serial;
  }

  close(): void {
    this.#closed = true;
    this.socket.destroy();
  }

  #receive(first: Buffer, handlers: ConnectionHandlers, maxDelayMs: number): void {
    const framer = new MessageFramer();
    const pacer = maxDelayMs > 0
      ? new ReadPacer(this.socket, maxDelayMs, handlers.awaitingAnswers)
      : undefined;
    this.#pacer = pacer;
    const closed = (error: Error) => {
      if (this.#closed) return;
      this.#closed = true;
      this.socket.destroy();
      handlers.closed(error);
    };
    const take = (chunk: Uint8Array) => {
      let messages;
      try {
        messages = framer.push(chunk);
      } catch (error) {
        return closed(error as FramingError);
      }
      for (const bytes of messages) {
        let message;
        try {
          message = decodeMessage(bytes);
        } catch (error) {
          handlers.malformed(error as Error);
          continue;
        }
        handlers.message(message);
      }
      pacer?.afterRead(chunk.length, messages);
    };
    this.socket.on("data", take);
    this.socket.on("end", () => closed(new Error("connection closed by the bus")));
    this.socket.on("close", () => closed(new Error("connection closed")));
    this.socket.on("error", (error) => closed(error));
    if (first.length) take(first);
  }
}

const hex = (text: string) => Buffer.from(text).toString("hex");

/** Reads the authentication's text lines; `stop` hands over the bytes after them. */
function lineReader(socket: BusSocket) {
  let buffered = Buffer.alloc(0);
  let waiting: ((line: string) => void) | undefined;
  let failed: ((error: Error) => void) | undefined;
  const deliver = () => {
    const end = buffered.indexOf("\r\n");
    if (end < 0 || !waiting) return;
    const line = buffered.subarray(0, end).toString("latin1");
    buffered = buffered.subarray(end + 2);
    const resolve = waiting;
    waiting = failed = undefined;
    resolve(line);
  };
  const onData = (chunk: Uint8Array) => {
    buffered = Buffer.concat([buffered, chunk]);
    deliver();
  };
  const onEnd = () => failed?.(new Error("the bus closed the connection while authenticating"));
  const onError = (error: Error) => failed?.(error);
  socket.on("data", onData);
  socket.on("end", onEnd);
  socket.on("error", onError);
  return {
    next(): Promise<string> {
      return new Promise((resolve, reject) => {
        waiting = resolve;
        failed = reject;
        deliver();
      });
    },
    stop(): Buffer {
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("error", onError);
      return buffered;
    },
  };
}
