/**
 * Log lines with a level and a short context: `ERROR [write] ...`. Quiet in
 * the steady state at the default level: nothing is logged per value.
 */
export const LOG_LEVELS = ["error", "warn", "info", "debug"] as const;
export type LogLevel = typeof LOG_LEVELS[number];

export type Logger = Record<LogLevel, (context: string, message: string) => void>;

export function createLogger(
  level: LogLevel,
  write: (line: string) => void = (line) => console.error(line),
): Logger {
  const threshold = LOG_LEVELS.indexOf(level);
  const logger = {} as Logger;
  for (const [rank, name] of LOG_LEVELS.entries()) {
    const tag = name.toUpperCase().padEnd(5);
    logger[name] = rank <= threshold
      ? (context, message) => write(`${tag} [${context}] ${message}`)
      : () => {};
  }
  return logger;
}
