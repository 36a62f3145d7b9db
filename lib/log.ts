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

/**
 * Characters that could forge a log line or steer a terminal: C0 and C1
 * controls (newline, ESC, NUL, ...), bidi controls (U+202E turns text around),
 * line separators, and halves of UTF-16 pairs.
 */
export const UNSAFE = /[\p{Cc}\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]|\p{Cs}/gu;
const ESCAPES: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };
/** How much of one outside value a log line shows. */
const MAX_SHOWN = 200;
/** A line's cut, whatever it holds: the rate limit counts lines, this bounds their bytes. */
const MAX_LINE = 1000;

/** `text` with every unsafe character written as an escape (`\n`, `\x1b`, `\u202e`). */
export function escapeUnsafe(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.codePointAt(0)!;
    return ESCAPES[c] ?? (code < 0x100 ? "\\x" : "\\u") +
        code.toString(16).padStart(code < 0x100 ? 2 : 4, "0");
  });
}

/**
 * Text from outside (a topic, a payload, a service's error) as a log line
 * shows it: escaped, and cut at `max` characters with a note of its length.
 */
export function shown(text: string, max = MAX_SHOWN): string {
  if (text.length <= max) return escapeUnsafe(text);
  return `${escapeUnsafe(text.slice(0, max))}... (${text.length} characters)`;
}

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
    logger[name] = rank > threshold ? () => {} : (context, text) => {
      // Callers show outside values with shown(); this is the net under them.
      const message = shown(text, MAX_LINE);
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
