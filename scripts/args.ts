/** The measuring scripts' command-line flags: `--name value`, given once or repeated. */

/** The value after `--name`, else `fallback`. */
export function flag(name: string, fallback: string): string {
  const at = Deno.args.indexOf(`--${name}`);
  return at >= 0 ? Deno.args[at + 1] : fallback;
}

/** Every value given after `--name`, in order. */
export function flags(name: string): string[] {
  return Deno.args.flatMap((arg, i) => Deno.args[i - 1] === `--${name}` ? [arg] : []);
}
