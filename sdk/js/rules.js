// The rules a plugin's output must follow, as the engine applies them when a plugin runs (the
// engine's own definition is the Rust crate `hms-sync-rules`). The test harness applies them
// so a plugin that breaks one fails its own tests with the error code the engine would record.
// `sdk/rules/cases.json` holds cases every SDK's rules are tested against, so they cannot drift.

export const MAX_NAME_LEN = 1024;
export const MAX_EVENT_TYPE_LEN = 128;
export const DEFAULT_OUTPUT_LIMIT = 1 << 20;
export const DEFAULT_ACTION_LIMIT = 256;
export const ACTION_OVERHEAD = 64;
export const MAX_LOG_LINE = 4096;
export const MAX_LOG_LINES = 256;
export const RESERVED_HEADERS = [
  'host', 'content-length', 'content-type', 'transfer-encoding', 'connection', 'keep-alive', 'te',
  'trailer', 'upgrade', 'authorization', 'proxy-authorization', 'cookie', 'idempotency-key',
  'user-agent',
];
export const RESERVED_PREFIXES = ['webhook-', 'hms-'];

const encoder = new TextEncoder();
const byteLength = (s) => encoder.encode(s).length;

// Rust's `escape_debug`, which the engine's messages use: quotes, backslashes and characters
// that do not print escaped (controls, and the invisible separators and format characters of
// the Basic Multilingual Plane). No Unicode property classes: the SpiderMonkey ComponentizeJS
// builds plugins with refuses them.
const ESCAPES = { '\0': '\\0', '\t': '\\t', '\r': '\\r', '\n': '\\n', '\\': '\\\\', "'": "\\'", '"': '\\"' };
const UNPRINTABLE = /^[\u0000-\u001f\u007f-\u00a0\u00ad\u061c\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ud800-\udfff\ufeff]$/;
const escapeChar = (c) => ESCAPES[c]
  ?? (UNPRINTABLE.test(c) ? `\\u{${c.codePointAt(0).toString(16)}}` : c);
const escape = (s) => [...s].map(escapeChar).join('');
/** A character as Rust's `{c:?}` writes it: `'/'`. */
const debugChar = (c) => `'${c === '"' ? c : escapeChar(c)}'`;

// Rust's `str::trim`: the Unicode White_Space characters (JavaScript's `trim` also removes
// U+FEFF and keeps U+0085, so it would judge some content types differently).
const WHITE_SPACE = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const TRIM = new RegExp(`^[${WHITE_SPACE}]+|[${WHITE_SPACE}]+$`, 'g');
const trim = (s) => s.replace(TRIM, '');

// Rust's `to_ascii_lowercase` (JavaScript's `toLowerCase` also maps some non-ASCII letters to
// ASCII ones, such as the Kelvin sign to `k`).
const asciiLower = (s) => s.replace(/[A-Z]+/g, (upper) => upper.toLowerCase());

/** Why the engine refuses a plugin's output: `code` is what it records. */
export class Refusal extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'Refusal';
    this.code = code;
  }
}

/** Checks an event type: dot-separated segments of ASCII letters, digits, `_` and `-`, at most 128 bytes. */
export function checkEventType(eventType) {
  if (eventType.length === 0) return 'the event type is empty';
  const len = byteLength(eventType);
  if (len > MAX_EVENT_TYPE_LEN) {
    return `the event type is ${len} bytes long; the limit is ${MAX_EVENT_TYPE_LEN}`;
  }
  const bad = [...eventType].find((c) => !/^[A-Za-z0-9._-]$/.test(c));
  if (bad !== undefined) {
    return `the event type \`${escape(eventType)}\` contains ${debugChar(bad)}; only ASCII letters, digits, \`.\`, \`_\` and \`-\` are allowed`;
  }
  if (eventType.split('.').some((s) => s.length === 0)) {
    return `the event type \`${eventType}\` has an empty segment: dots separate names, as in \`tax.rate.updated\`, and cannot start or end it or stand next to each other`;
  }
  return null;
}

/** Checks a destination name or entity key (`what` names it): 1 to 1024 bytes, no control characters. */
export function checkName(what, value) {
  if (value.length === 0) return `the ${what} is empty`;
  const len = byteLength(value);
  if (len > MAX_NAME_LEN) return `the ${what} is ${len} bytes long; the limit is ${MAX_NAME_LEN}`;
  if (/[\u0000-\u001f\u007f-\u009f]/.test(value)) {
    return `the ${what} \`${escape(value)}\` contains a control character`;
  }
  return null;
}

/** Checks a version: the engine keeps versions as signed 64-bit integers, so at most 2^63 - 1. */
export function checkVersion(version) {
  if (version !== undefined && version !== null && BigInt(version) > 0x7fffffffffffffffn) {
    return `the version ${version} is over the largest the engine keeps (2^63 - 1)`;
  }
  return null;
}

// `http::HeaderValue::from_str`: any byte but controls other than tab, and DEL (so any
// non-ASCII character, whose UTF-8 bytes are all over 0x7F). `http::HeaderName::from_bytes`:
// an HTTP token of at most 65535 bytes.
const validHeaderValue = (value) => !/[\u0000-\u0008\u000a-\u001f\u007f]/.test(value);
const validHeaderName = (name) => /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name) && name.length < 65536;

/** Checks a content type: a valid header value of the form `type/subtype`, parameters allowed. */
export function checkContentType(value) {
  const essence = trim(value.split(';')[0]);
  const slash = essence.indexOf('/');
  const valid = validHeaderValue(value) && slash > 0 && slash < essence.length - 1;
  return valid ? null : `the content type \`${escape(value)}\` is not a media type such as \`application/json\``;
}

/** Whether the engine sets a header itself; `name` is compared in any (ASCII) case. */
export function isReservedHeader(name) {
  const lower = asciiLower(name);
  return RESERVED_HEADERS.includes(lower) || RESERVED_PREFIXES.some((p) => lower.startsWith(p));
}

/** Checks a header a plugin sets: a valid HTTP name and value, and not one the engine sets. */
export function checkHeader(name, value) {
  if (!validHeaderName(name)) return `the header name \`${escape(name)}\` is not a valid HTTP header name`;
  if (isReservedHeader(name)) {
    return `the header \`${asciiLower(name)}\` is set by the engine and cannot be set by a plugin`;
  }
  if (!validHeaderValue(value)) {
    return `the value of header \`${asciiLower(name)}\` is not a valid HTTP header value: \`${escape(value)}\``;
  }
  return null;
}

/** What one action (a WIT `action`: `{tag, val}`) counts against the output limit. */
export function actionSize(action) {
  const opt = (s) => (s === undefined || s === null ? 0 : byteLength(s));
  const v = action.val;
  switch (action.tag) {
    case 'deliver':
      return ACTION_OVERHEAD + byteLength(v.destination) + v.body.length + opt(v.contentType) + opt(v.key)
        + v.headers.reduce((n, h) => n + byteLength(h.name) + byteLength(h.value), 0);
    case 'emit':
      return ACTION_OVERHEAD + byteLength(v.eventType) + v.payload.length + opt(v.contentType) + opt(v.key);
    case 'drop':
      return ACTION_OVERHEAD + byteLength(v);
    default:
      throw new Refusal('malformed-output', `the plugin returned a malformed result: \`${action.tag}\` is not an action`);
  }
}

/** The first rule `action` breaks, or null. */
export function checkAction(action) {
  const v = action.val;
  switch (action.tag) {
    case 'deliver':
      return checkName('destination', v.destination) ?? checkVersion(v.version)
        ?? (v.key != null ? checkName('key', v.key) : null)
        ?? (v.contentType != null ? checkContentType(v.contentType) : null)
        ?? v.headers.map((h) => checkHeader(h.name, h.value)).find((e) => e) ?? null;
    case 'emit':
      return checkEventType(v.eventType) ?? checkVersion(v.version)
        ?? (v.key != null ? checkName('key', v.key) : null)
        ?? (v.contentType != null ? checkContentType(v.contentType) : null);
    case 'drop': {
      const len = byteLength(v);
      return len > MAX_NAME_LEN ? `the drop reason is ${len} bytes long; the limit is ${MAX_NAME_LEN}` : null;
    }
    default:
      return `\`${action.tag}\` is not an action`;
  }
}

/** Checks a payload's size against `limit`. */
export function checkSize(size, limit) {
  if (size > limit) {
    throw new Refusal('output-too-large', `the plugin returned ${size} bytes of output, over its limit of ${limit} bytes`);
  }
}

/** Checks a handler's actions: their count, their total size, then each action. */
export function checkActions(actions, limit = DEFAULT_OUTPUT_LIMIT, maxActions = DEFAULT_ACTION_LIMIT) {
  if (actions.length > maxActions) {
    throw new Refusal('output-too-large', `the plugin returned ${actions.length} actions, over its limit of ${maxActions} per event`);
  }
  checkSize(actions.reduce((n, a) => n + actionSize(a), 0), limit);
  actions.forEach((action, i) => {
    const reason = checkAction(action);
    if (reason) throw new Refusal('malformed-output', `the plugin returned a malformed result: action ${i}: ${reason}`);
  });
}

/** Cuts a log line to `MAX_LOG_LINE` bytes, saying how much was cut (as the engine does). */
export function truncateLogLine(line) {
  const bytes = encoder.encode(line);
  if (bytes.length <= MAX_LOG_LINE) return line;
  let end = MAX_LOG_LINE;
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end -= 1;
  return `${new TextDecoder().decode(bytes.subarray(0, end))}… (${bytes.length - end} bytes cut)`;
}
