/**
 * D-Bus type signatures ("a{sv}", "(iis)"), parsed once and cached, within
 * the specification's limits; the codec (dbus_wire.ts) reads and writes by
 * them.
 */

/** A parsed D-Bus type: its code and, for containers, the element types. */
export interface SignatureType {
  code: string;
  children: SignatureType[];
}

const signatureCache = new Map<string, SignatureType[]>();

/** The specification's limits on a signature: its length, and nesting of each kind. */
const MAX_SIGNATURE_LENGTH = 255;
const MAX_ARRAY_NESTING = 32;
const MAX_STRUCT_NESTING = 32;

/** Parses one complete D-Bus type ("a{sv}", "(iis)", ...); cached. */
export function parseSignature(signature: string): SignatureType {
  const types = parseSignatures(signature);
  if (types.length !== 1) throw new Error(`not a single D-Bus type: ${signature}`);
  return types[0];
}

/** Parses a message body's signature: complete types one after the other ("sss"); cached. */
export function parseSignatures(signature: string): SignatureType[] {
  let parsed = signatureCache.get(signature);
  if (!parsed) {
    if (signature.length > MAX_SIGNATURE_LENGTH) {
      throw new Error(`D-Bus signature over ${MAX_SIGNATURE_LENGTH} characters`);
    }
    parsed = [];
    for (let at = 0; at < signature.length;) {
      const [type, end] = parseType(signature, at, 0, 0);
      parsed.push(type);
      at = end;
    }
    if (signatureCache.size < 1024) signatureCache.set(signature, parsed);
  }
  return parsed;
}

function parseType(
  sig: string,
  at: number,
  arrays: number,
  structs: number,
): [SignatureType, number] {
  const code = sig[at];
  if (code === undefined) throw new Error(`truncated D-Bus signature: ${sig}`);
  if (code === "a") {
    if (arrays === MAX_ARRAY_NESTING) throw new Error(`arrays nested too deeply: ${sig}`);
    const [child, end] = parseType(sig, at + 1, arrays + 1, structs);
    return [{ code, children: [child] }, end];
  }
  if (code === "(" || code === "{") {
    if (structs === MAX_STRUCT_NESTING) throw new Error(`structs nested too deeply: ${sig}`);
    const close = code === "(" ? ")" : "}";
    const children: SignatureType[] = [];
    let i = at + 1;
    while (sig[i] !== close) {
      const [child, end] = parseType(sig, i, arrays, structs + 1);
      children.push(child);
      i = end;
    }
    if (children.length === 0) throw new Error(`empty struct in D-Bus signature: ${sig}`);
    const [key] = children;
    if (code === "{" && (children.length !== 2 || key.children.length > 0 || key.code === "v")) {
      throw new Error(`a dict entry needs a basic key and one value: ${sig}`);
    }
    return [{ code, children }, i + 1];
  }
  if ("ybnqiuxtdsogvh".includes(code)) return [{ code, children: [] }, at + 1];
  throw new Error(`unknown D-Bus type code '${code}' in ${sig}`);
}
