/**
 * Log lines with a level and a short context: `ERROR [write] ...`. Quiet in
 * the steady state at the default level: nothing is logged per value. A
 * flood of bad requests cannot flood the log: each level and context may
 * write a burst of lines, then a few per second, and the next line that
 * passes says how many were left out.
 */
export const LOG_LEVELS = ["error", "warn", "info", "debug"] as const;
export type LogLevel = typeof LOG_LEVELS[number];

export type Logger = Record<LogLevel, (context: string, message: string) => void>;

/** Lines per level and context: a burst, refilled at a rate per second. */
export const LOG_BURST = 50;
export const LOG_PER_SECOND = 10;

export function createLogger(
  level: LogLevel,
  write: (line: string) => void = (line) => console.error(line),
  now: () => number = Date.now,
): Logger {
  const threshold = LOG_LEVELS.indexOf(level);
  const buckets = new Map<string, { tokens: number; at: number; skipped: number }>();
  const logger = {} as Logger;
  for (const [rank, name] of LOG_LEVELS.entries()) {
    const tag = name.toUpperCase().padEnd(5);
    logger[name] = rank > threshold ? () => {} : (context, message) => {
      // --debug asks for every line.
      if (name === "debug") return write(`${tag} [${context}] ${message}`);
      const key = `${name} ${context}`;
      const t = now();
      let bucket = buckets.get(key);
      if (!bucket) buckets.set(key, bucket = { tokens: LOG_BURST, at: t, skipped: 0 });
      bucket.tokens = Math.min(
        LOG_BURST,
        bucket.tokens + ((t - bucket.at) / 1000) * LOG_PER_SECOND,
      );
      bucket.at = t;
      if (bucket.tokens < 1) {
        bucket.skipped++;
        return;
      }
      bucket.tokens--;
      const left = bucket.skipped ? ` (${bucket.skipped} similar lines left out)` : "";
      bucket.skipped = 0;
      write(`${tag} [${context}] ${message}${left}`);
    };
  }
  return logger;
}
