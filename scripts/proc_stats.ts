/** What /proc tells about a process: CPU time and memory (Linux). */

/** user + system CPU time, in ms (clock ticks of 10 ms). */
export function cpuMs(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Resident memory now (VmRSS) or at its peak (VmHWM), in MB. */
export function rssMb(pid: number, which: "VmRSS" | "VmHWM" = "VmRSS"): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(new RegExp(`${which}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN) / 1024;
}

/**
 * How often each of the process's threads has gone to sleep (voluntary
 * context switches, by thread id): each is a wake-up later. Unlike CPU time
 * on a busy machine, this count does not depend on how fast the machine runs.
 */
export function sleeps(pid: number): Map<string, number> {
  const byThread = new Map<string, number>();
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const status = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/status`);
      byThread.set(task.name, Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(status)?.[1] ?? 0));
    } catch {
      // the thread ended meanwhile
    }
  }
  return byThread;
}

/**
 * Wake-ups since `before` (a `sleeps` reading): threads that ended meanwhile
 * take their counts with them, so each thread is counted from its own start.
 */
export function wakeUpsSince(pid: number, before: Map<string, number>): number {
  let total = 0;
  for (const [thread, count] of sleeps(pid)) total += count - (before.get(thread) ?? 0);
  return total;
}

/**
 * The process that does the work when `pid` only started it and waits (a
 * `deno task` or `sh -c` wrapper): the last of a chain of only children.
 */
export function workerPid(pid: number): number {
  for (;;) {
    let children: string[];
    try {
      children = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).trim().split(" ");
    } catch {
      return pid; // gone, or a kernel without the file
    }
    if (children.length !== 1 || children[0] === "") return pid;
    pid = Number(children[0]);
  }
}
