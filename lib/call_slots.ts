/**
 * dbus-daemon keeps at most 128 method calls of one connection waiting for
 * their replies (max_replies_per_connection, its default, also on a GX) and
 * refuses every further call, to any service. It counts a call until its
 * reply comes or the called service leaves the bus, however long ago the
 * caller gave up on it: a hung service's calls hold their places for good.
 *
 * CallSlots keeps the bridge below that limit: a call may go to the daemon
 * while fewer than `total` of ours wait there, and fewer than `perService`
 * to its service, so that a hung service holds at most `perService` places
 * and the others keep theirs. Calls that may not go yet wait in the bridge
 * (see VictronBus), in order.
 */
export class CallSlots {
  /** Our calls the daemon holds, by serial: the service each went to. */
  readonly #atDaemon = new Map<number, string>();
  readonly #byService = new Map<string, number>();

  constructor(readonly total: number, readonly perService: number) {}

  /** May a call to `service` go to the daemon now? */
  free(service: string): boolean {
    return this.#atDaemon.size < this.total &&
      (this.#byService.get(service) ?? 0) < this.perService;
  }

  /** How many of our calls to `service` the daemon holds. */
  held(service: string): number {
    return this.#byService.get(service) ?? 0;
  }

  sent(serial: number, service: string): void {
    this.#atDaemon.set(serial, service);
    this.#byService.set(service, this.held(service) + 1);
  }

  /** The reply (or error) to `serial` came, in time or late: its place is free. */
  answered(serial: number): void {
    const service = this.#atDaemon.get(serial);
    if (service === undefined) return;
    this.#atDaemon.delete(serial);
    this.#release(service, 1);
  }

  /** The service left the bus: the daemon forgot our calls to it. */
  left(service: string): void {
    const held = this.held(service);
    if (held === 0) return;
    for (const [serial, to] of this.#atDaemon) if (to === service) this.#atDaemon.delete(serial);
    this.#release(service, held);
  }

  #release(service: string, count: number): void {
    const held = this.held(service) - count;
    if (held > 0) this.#byService.set(service, held);
    else this.#byService.delete(service);
  }
}
