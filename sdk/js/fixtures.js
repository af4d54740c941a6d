// The fixtures format (docs/plugins/fixtures.md), read as the engine reads it
// (engine/sandbox/src/fixtures.rs): the same fields, as strictly (an unknown field is an error),
// and JSON values as serde_json holds them, so the harness's `runFixtures` passes and fails the
// cases the engine does. Used by testing.js; not part of the plugin-facing API.
//
// serde_json, as the engine builds it, tells integers from floats: `5` and `5.0` are different
// values, integers are exact up to 2^64 - 1, and objects are written with their keys sorted.
// So JSON values here are JavaScript values, except that an integer is a BigInt and a float a
// number (`parseJson`), and they are compared (`sameJson`) and written (`writeJson`) as
// serde_json does.

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

const I64_MIN = -(1n << 63n);
const U64_MAX = (1n << 64n) - 1n;

const WHITESPACE = /[ \t\n\r]*/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"/y;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** JSON text (or UTF-8 bytes) as serde_json reads it into a `Value`; a SyntaxError when it is not JSON. */
export function parseJson(input) {
  const text = typeof input === 'string' ? input : decoder.decode(input);
  let at = 0;
  const fail = (what) => {
    throw new SyntaxError(`${what} at character ${at}`);
  };
  const match = (re) => {
    re.lastIndex = at;
    const found = re.exec(text);
    if (found) at = re.lastIndex;
    return found;
  };
  const value = () => {
    match(WHITESPACE);
    const c = text[at];
    if (c === '{' || c === '[') {
      at += 1;
      const object = c === '{';
      const out = object ? Object.create(null) : [];
      match(WHITESPACE);
      if (text[at] === (object ? '}' : ']')) {
        at += 1;
        return out;
      }
      for (;;) {
        if (object) {
          match(WHITESPACE);
          if (text[at] !== '"') fail('expected a key');
          const key = value();
          match(WHITESPACE);
          if (text[at] !== ':') fail('expected `:`');
          at += 1;
          out[key] = value(); // a key given twice keeps its last value, as in serde_json
        } else {
          out.push(value());
        }
        match(WHITESPACE);
        if (text[at] === ',') {
          at += 1;
        } else if (text[at] === (object ? '}' : ']')) {
          at += 1;
          return out;
        } else {
          fail(`expected \`,\` or \`${object ? '}' : ']'}\``);
        }
      }
    }
    if (c === '"') {
      const token = match(STRING);
      if (!token) fail('invalid string');
      const decoded = JSON.parse(token[0]);
      if (LONE_SURROGATE.test(decoded)) fail('lone surrogate in a \\u escape');
      return decoded;
    }
    const number = match(NUMBER);
    if (number) {
      const [literal, fraction, exponent] = number;
      if (fraction === undefined && exponent === undefined && literal !== '-0') {
        const int = BigInt(literal);
        if (int >= I64_MIN && int <= U64_MAX) return int;
      }
      const float = Number(literal);
      if (!Number.isFinite(float)) fail('number out of range');
      return float;
    }
    for (const [word, v] of [['true', true], ['false', false], ['null', null]]) {
      if (text.startsWith(word, at)) {
        at += word.length;
        return v;
      }
    }
    return fail(at < text.length ? 'expected a value' : 'unexpected end of input');
  };
  const result = value();
  match(WHITESPACE);
  if (at < text.length) fail('trailing characters');
  return result;
}

/** A value built in JavaScript (a parsed fixtures array) as `parseJson` would hold it: integral numbers as integers. */
export function fromJs(value) {
  if (typeof value === 'number') {
    return Number.isInteger(value) && value >= -(2 ** 63) && value < 2 ** 64 ? BigInt(value) : value;
  }
  if (Array.isArray(value)) return value.map(fromJs);
  if (value !== null && typeof value === 'object') {
    const out = Object.create(null);
    for (const [k, v] of Object.entries(value)) out[k] = fromJs(v);
    return out;
  }
  return value;
}

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Whether two values are equal as serde_json's `Value`s are: an integer never equals a float. */
export function sameJson(a, b) {
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((v, i) => sameJson(v, b[i]));
  }
  if (isObject(a)) {
    if (!isObject(b)) return false;
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length
      && keys.every((k) => Object.hasOwn(b, k) && sameJson(a[k], b[k]));
  }
  return typeof a === typeof b && a === b;
}

const utf8 = new TextEncoder();
/** Orders strings as Rust does (by their UTF-8 bytes), as a `BTreeMap` keeps its keys. */
export function byBytes(a, b) {
  const [x, y] = [utf8.encode(a), utf8.encode(b)];
  for (let i = 0; i < Math.min(x.length, y.length); i += 1) {
    if (x[i] !== y[i]) return x[i] - y[i];
  }
  return x.length - y.length;
}

/**
 * A float as serde_json writes it (the format of the `ryu` crate): the shortest digits that read
 * back the same, plain from 1e-5 to below 1e16 (`5.0`, `0.0725`), else with an exponent
 * (`1e16`, `1.5e-7`).
 */
function floatText(x) {
  if (Object.is(x, -0)) return '-0.0';
  const [mantissa, exponent] = x.toExponential().split('e');
  const sign = x < 0 ? '-' : '';
  const digits = mantissa.replace(/[-.]/g, '');
  const point = Number(exponent) + 1; // where the decimal point goes, counted in digits
  if (point >= digits.length && point <= 16) return `${sign}${digits}${'0'.repeat(point - digits.length)}.0`;
  if (point > 0 && point <= 16) return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
  if (point > -5 && point <= 0) return `${sign}0.${'0'.repeat(-point)}${digits}`;
  const rest = digits.length > 1 ? `.${digits.slice(1)}` : '';
  return `${sign}${digits[0]}${rest}e${point - 1}`;
}

/** A value as compact JSON text, as serde_json writes it (keys sorted, floats with a `.0`). */
export function writeJson(value) {
  if (typeof value === 'bigint') return String(value);
  if (typeof value === 'number') return floatText(value);
  if (Array.isArray(value)) return `[${value.map(writeJson).join(',')}]`;
  if (isObject(value)) {
    const keys = Object.keys(value).sort(byBytes);
    return `{${keys.map((k) => `${JSON.stringify(k)}:${writeJson(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

// ---- The format, with the checks and messages of serde (`#[serde(deny_unknown_fields)]`).

function unexpected(value) {
  if (value === null) return 'null';
  if (typeof value === 'bigint') return `integer \`${value}\``;
  if (typeof value === 'number') return `floating point \`${writeJson(value)}\``;
  if (typeof value === 'string') return `string ${JSON.stringify(value)}`;
  if (typeof value === 'boolean') return `boolean \`${value}\``;
  return Array.isArray(value) ? 'sequence' : 'map';
}

class FormatError extends Error {
  constructor(path, message) {
    super(`the fixtures are not valid: at \`${path || '.'}\`: ${message}`);
    this.name = 'FormatError';
  }
}

const at = (path, key) => (typeof key === 'number' ? `${path}[${key}]` : path ? `${path}.${key}` : key);

function invalid(path, value, expected) {
  return new FormatError(path, `invalid type: ${unexpected(value)}, expected ${expected}`);
}

/** The fields of the object at `path`: `fields` maps each allowed one to its reader; `required` lists the ones it must have. */
function record(value, path, fields, required) {
  if (!isObject(value)) throw invalid(path, value, 'a map');
  const names = Object.keys(fields);
  for (const key of Object.keys(value)) {
    if (!names.includes(key)) {
      throw new FormatError(path, `unknown field \`${key}\`, expected one of ${names.map((n) => `\`${n}\``).join(', ')}`);
    }
  }
  const out = {};
  for (const name of names) {
    if (Object.hasOwn(value, name)) {
      out[name] = fields[name](value[name], at(path, name));
    } else if (required.includes(name)) {
      throw new FormatError(path, `missing field \`${name}\``);
    }
  }
  return out;
}

/** An externally tagged enum (`{"variant": value}`): `[variant, value]`. */
function variant(value, path, variants) {
  const names = Object.keys(variants);
  if (isObject(value) && Object.keys(value).length === 1) {
    const [name] = Object.keys(value);
    if (!names.includes(name)) {
      throw new FormatError(path, `unknown variant \`${name}\`, expected one of ${names.map((n) => `\`${n}\``).join(', ')}`);
    }
    return [name, variants[name](value[name], at(path, name))];
  }
  throw invalid(path, value, `an object with one key, one of ${names.map((n) => `\`${n}\``).join(', ')}`);
}

const any = (v) => v;
const string = (v, path) => {
  if (typeof v !== 'string') throw invalid(path, v, 'a string');
  return v;
};
const integer = (min, max, type) => (v, path) => {
  if (typeof v !== 'bigint') throw invalid(path, v, type);
  if (v < min || v > max) throw new FormatError(path, `invalid value: integer \`${v}\`, expected ${type}`);
  return v;
};
const u64 = integer(0n, U64_MAX, 'u64');
const i64 = integer(I64_MIN, (1n << 63n) - 1n, 'i64');
const option = (read) => (v, path) => (v === null ? undefined : read(v, path));
const list = (read) => (v, path) => {
  if (!Array.isArray(v)) throw invalid(path, v, 'a sequence');
  return v.map((item, i) => read(item, at(path, i)));
};
const stringMap = (v, path) => {
  if (!isObject(v)) throw invalid(path, v, 'a map');
  for (const [k, value] of Object.entries(v)) string(value, at(path, k));
  return v;
};

const fixtureEvent = (v, path) => record(v, path, {
  type: string,
  payload: any,
  origin: option(string),
  key: option(string),
  version: option(u64),
  timestamp: option(i64),
  headers: stringMap,
}, ['type', 'payload']);

const expectedAction = (v, path) => variant(v, path, {
  deliver: (d, p) => record(d, p, {
    destination: string,
    body: any,
    key: option(string),
    version: option(u64),
    content_type: option(string),
    headers: option(stringMap),
  }, ['destination', 'body']),
  emit: (e, p) => record(e, p, {
    type: string,
    payload: any,
    key: option(string),
    version: option(u64),
  }, ['type', 'payload']),
  drop: string,
});

const expectation = (v, path) => variant(v, path, {
  payload: any,
  actions: list(expectedAction),
  error: string,
});

const fixtureCase = (v, path) => record(v, path, {
  name: option(string),
  event: fixtureEvent,
  expect: expectation,
}, ['event', 'expect']);

/**
 * Reads fixtures: JSON text, or an array already parsed (its integral numbers are then taken as
 * integers). Each case is `{name, event, expect: [kind, expected]}`, with the JSON values as
 * `parseJson` holds them. Throws, naming the place, when the engine would refuse them.
 */
export function parseFixtures(input) {
  let value;
  if (typeof input === 'string') {
    try {
      value = parseJson(input);
    } catch (e) {
      throw new FormatError('', e.message);
    }
  } else {
    value = fromJs(input);
  }
  const cases = list(fixtureCase)(value, '');
  if (cases.length === 0) throw new Error('the fixtures hold no case');
  return cases;
}
