/**
 * Secret and PII scanners that run in time linear in their input: hand-written single passes with
 * bounded look-around, no regular expression that can backtrack. They replaced regexes whose
 * e-mail and URL-userinfo patterns were quadratic (a 300 KB argument froze the gateway for 44 s).
 * Every scanner reports spans; `censorSpans` rewrites the text once. test/bench/redact.ts measures
 * the cost per MB and on adversarial input.
 */
import type { RedactCategory } from '../types.js';

/** One thing found: [start, end) in the text and its category. */
export interface Span {
  start: number;
  end: number;
  category: RedactCategory;
}

/** Largest input a scanner looks at; the rest of a longer string is censored whole (fail closed). */
export const SCAN_MAX_CHARS = 16 * 1024 * 1024;

const isDigit = (c: number): boolean => c >= 48 && c <= 57;
const isUpper = (c: number): boolean => c >= 65 && c <= 90;
const isLower = (c: number): boolean => c >= 97 && c <= 122;
const isAlnum = (c: number): boolean => isDigit(c) || isUpper(c) || isLower(c);
/** base64url and base64 characters, and the dot of a JWT. */
const isB64 = (c: number): boolean => isAlnum(c) || c === 45 || c === 95 || c === 43 || c === 47;
const isSpace = (c: number): boolean => c === 32 || c === 9 || c === 10 || c === 13 || c === 12 || c === 11;

// ---- e-mail ------------------------------------------------------------------------------------

const isLocal = (c: number): boolean => isAlnum(c) || c === 46 || c === 95 || c === 37 || c === 43 || c === 45;
const isDomain = (c: number): boolean => isAlnum(c) || c === 46 || c === 45;

/**
 * local@domain.tld around each '@'. The local part is looked for at most 64 characters back, the
 * domain at most 253 forward, and the scan resumes after what it consumed: each character is
 * visited a bounded number of times.
 */
function scanEmail(s: string, out: Span[]): void {
  let from = 0;
  for (;;) {
    const at = s.indexOf('@', from);
    if (at < 0) return;
    let a = at;
    while (a > 0 && at - a < 64 && isLocal(s.charCodeAt(a - 1))) a--;
    let b = at + 1;
    while (b < s.length && b - at <= 253 && isDomain(s.charCodeAt(b))) b++;
    // Trim trailing dots and hyphens, then require a dot and a top-level label of 2+ letters.
    while (b > at + 1 && (s.charCodeAt(b - 1) === 46 || s.charCodeAt(b - 1) === 45)) b--;
    let lastDot = -1;
    for (let k = b - 1; k > at + 1; k--)
      if (s.charCodeAt(k) === 46) {
        lastDot = k;
        break;
      }
    let ok = a < at && lastDot > at + 1 && b - lastDot - 1 >= 2;
    if (ok) for (let i = lastDot + 1; i < b; i++) if (!isUpper(s.charCodeAt(i)) && !isLower(s.charCodeAt(i))) ok = false;
    if (ok) {
      out.push({ start: a, end: b, category: 'email' });
      from = b;
    } else from = at + 1;
  }
}

// ---- digits: cards (Luhn) and phone numbers ----------------------------------------------------

/** Luhn check, so that ordinary long numbers (ids, timestamps) are not taken for card numbers. */
export function luhn(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/**
 * Maximal runs of digits joined by single separators (space, hyphen, dot, parentheses, a leading
 * +). A run of 13-19 digits passing Luhn is a card; a run of 10-15 digits written like a phone
 * number (a leading + or separators between groups) is a phone number. One pass.
 */
function scanDigits(s: string, cards: boolean, phones: boolean, out: Span[]): void {
  const n = s.length;
  let i = 0;
  while (i < n) {
    const c = s.charCodeAt(i);
    const plus = c === 43 && i + 1 < n && isDigit(s.charCodeAt(i + 1));
    const paren = c === 40 && i + 1 < n && isDigit(s.charCodeAt(i + 1));
    if (!isDigit(c) && !plus && !paren) {
      i++;
      continue;
    }
    // A run must not continue a word or a number (e.g. the digits inside an id like ab12345...).
    const prev = i > 0 ? s.charCodeAt(i - 1) : 0;
    const glued = isAlnum(prev) || prev === 46 || prev === 95;
    let j = i + (plus || paren ? 1 : 0);
    let digits = '';
    let seps = 0;
    let lastDigit = j;
    while (j < n) {
      const d = s.charCodeAt(j);
      if (isDigit(d)) {
        digits += s[j];
        lastDigit = j;
        j++;
        if (digits.length > 19) break;
        continue;
      }
      // One separator between digits ("4111 1111", "555-0100", "(555) 010"), never two in a row.
      const sep = d === 32 || d === 45 || d === 46 || d === 41 || d === 40;
      const next = j + 1 < n ? s.charCodeAt(j + 1) : 0;
      if (sep && (isDigit(next) || (d === 41 && next === 32 && j + 2 < n && isDigit(s.charCodeAt(j + 2))))) {
        seps++;
        j += d === 41 && next === 32 ? 2 : 1;
        continue;
      }
      break;
    }
    const end = lastDigit + 1;
    const after = end < n ? s.charCodeAt(end) : 0;
    const trailingGlue = isAlnum(after) || after === 95;
    if (!glued && !trailingGlue && digits.length <= 19) {
      if (cards && digits.length >= 13 && luhn(digits)) out.push({ start: i, end, category: 'card' });
      else if (phones && digits.length >= 10 && digits.length <= 15 && (plus || paren || seps >= 2)) out.push({ start: i, end, category: 'phone' });
    }
    // Skip the whole run (and any digits glued to it) so each character is looked at once.
    let k = Math.max(end, i + 1);
    while (k < n && isDigit(s.charCodeAt(k))) k++;
    i = k;
  }
}

// ---- secrets: keys, tokens, key blocks -----------------------------------------------------------

const PK_BEGIN = '-----BEGIN ';
const PK_END = '-----END ';

/** PEM private key blocks, to their END line (or to the end of the text when cut off). */
function scanPrivateKeys(s: string, out: Span[]): void {
  let from = 0;
  for (;;) {
    const b = s.indexOf(PK_BEGIN, from);
    if (b < 0) return;
    const eol = s.indexOf('-----', b + PK_BEGIN.length);
    const label = eol < 0 ? '' : s.slice(b + PK_BEGIN.length, Math.min(eol, b + PK_BEGIN.length + 40));
    if (eol < 0 || !label.endsWith('PRIVATE KEY')) {
      from = b + PK_BEGIN.length;
      continue;
    }
    const e = s.indexOf(PK_END, eol + 5);
    let end = s.length;
    if (e >= 0) {
      const close = s.indexOf('-----', e + PK_END.length);
      end = close < 0 ? s.length : close + 5;
    }
    out.push({ start: b, end, category: 'secrets' });
    from = end;
  }
}

/** Length of the run of chars satisfying `ok` starting at i (capped at `max`). */
function runLength(s: string, i: number, ok: (c: number) => boolean, max = Number.MAX_SAFE_INTEGER): number {
  let j = i;
  while (j < s.length && j - i < max && ok(s.charCodeAt(j))) j++;
  return j - i;
}

const isTokenChar = (c: number): boolean => isB64(c) || c === 46 || c === 126 || c === 61;
const isWordStart = (s: string, i: number): boolean => i === 0 || !isAlnum(s.charCodeAt(i - 1));

/** Prefixed token formats: the prefix, the token alphabet after it, and its minimum length. */
const TOKEN_PREFIXES: readonly { p: string; min: number; ok: (c: number) => boolean; exact?: number }[] = [
  { p: 'AKIA', min: 16, exact: 16, ok: (c) => isDigit(c) || isUpper(c) },
  { p: 'ASIA', min: 16, exact: 16, ok: (c) => isDigit(c) || isUpper(c) },
  { p: 'ghp_', min: 20, ok: isAlnum },
  { p: 'gho_', min: 20, ok: isAlnum },
  { p: 'ghu_', min: 20, ok: isAlnum },
  { p: 'ghs_', min: 20, ok: isAlnum },
  { p: 'ghr_', min: 20, ok: isAlnum },
  { p: 'github_pat_', min: 20, ok: (c) => isAlnum(c) || c === 95 },
  { p: 'xoxb-', min: 10, ok: (c) => isAlnum(c) || c === 45 },
  { p: 'xoxp-', min: 10, ok: (c) => isAlnum(c) || c === 45 },
  { p: 'xoxa-', min: 10, ok: (c) => isAlnum(c) || c === 45 },
  { p: 'sk-', min: 16, ok: (c) => isAlnum(c) || c === 45 || c === 95 },
  { p: 'sk_live_', min: 10, ok: isAlnum },
  { p: 'sk_test_', min: 10, ok: isAlnum },
  { p: 'rk_live_', min: 10, ok: isAlnum },
  { p: 'AIza', min: 35, exact: 35, ok: (c) => isAlnum(c) || c === 45 || c === 95 },
  { p: 'glpat-', min: 20, ok: (c) => isAlnum(c) || c === 45 || c === 95 },
];

const AUTH_SCHEMES = ['bearer', 'basic', 'token', 'digest'];

// The character classes of the token scanner, allocated once (a closure per word cost ~30% of the scan).
const isB64Url = (x: number): boolean => isAlnum(x) || x === 45 || x === 95;
const isLetter = (x: number): boolean => isUpper(x) || isLower(x);
const isSchemeChar = (x: number): boolean => isAlnum(x) || x === 43 || x === 46 || x === 45;
const isBlank = (x: number): boolean => x === 32 || x === 9;
const isUserinfo = (x: number): boolean => !(isSpace(x) || x === 47 || x === 63 || x === 35 || x === 64);
/** First letters of the authorization schemes (b, t, d; either case): most words are not one. */
const isSchemeInitial = (x: number): boolean => x === 98 || x === 66 || x === 116 || x === 84 || x === 100 || x === 68;

/**
 * Tokens in free text: JWTs (eyJ.x.y), prefixed keys (AWS, GitHub, Slack, Stripe, OpenAI, Google,
 * GitLab) and `Bearer|Basic|Token|Digest <credential>`. One left-to-right pass; after a match the
 * scan resumes past it.
 */
function scanTokens(s: string, out: Span[]): void {
  const n = s.length;
  let i = 0;
  // A failed JWT attempt fails the same way from any later start inside the same run: skip those.
  let jwtTried = 0;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (!isWordStart(s, i) || !(isAlnum(c) || c === 58)) {
      i++;
      continue;
    }
    // JWT: three base64url segments, the first starting eyJ (a JSON object).
    if (c === 101 && i >= jwtTried && s.startsWith('eyJ', i)) {
      const a = runLength(s, i, isB64Url);
      jwtTried = i + a;
      if (a >= 7 && s.charCodeAt(i + a) === 46) {
        const b = runLength(s, i + a + 1, isB64Url);
        if (b >= 4 && s.charCodeAt(i + a + 1 + b) === 46) {
          const sig = runLength(s, i + a + 2 + b, isB64Url);
          const end = i + a + 2 + b + sig;
          out.push({ start: i, end, category: 'secrets' });
          i = end;
          continue;
        }
      }
    }
    let matched = false;
    for (const t of TOKEN_PREFIXES) {
      if (c !== t.p.charCodeAt(0) || !s.startsWith(t.p, i)) continue;
      // Capped for fixed-length formats: a long run that fails must not be rescanned from each start.
      const len = runLength(s, i + t.p.length, t.ok, t.exact === undefined ? undefined : t.exact + 1);
      if (len >= t.min && (t.exact === undefined || len === t.exact)) {
        out.push({ start: i, end: i + t.p.length + len, category: 'secrets' });
        i += t.p.length + len;
        matched = true;
      }
      break;
    }
    if (matched) continue;
    // Authorization schemes: the credential after the scheme word and one or more spaces.
    if (isLetter(c)) {
      const w = runLength(s, i, isLetter, 7);
      if (isSchemeInitial(c) && w >= 5 && w <= 6 && AUTH_SCHEMES.includes(s.slice(i, i + w).toLowerCase()) && !isAlnum(s.charCodeAt(i + w))) {
        const sp = runLength(s, i + w, isBlank, 16);
        if (sp > 0) {
          const start = i + w + sp;
          const len = runLength(s, start, isTokenChar);
          if (len >= 8) {
            out.push({ start, end: start + len, category: 'secrets' });
            i = start + len;
            continue;
          }
        }
      }
      i += w;
      continue;
    }
    i++;
  }
}

/**
 * URL userinfo (`scheme://user:password@`): found from each "://" (indexOf), the userinfo scanned
 * forward at most 256 characters to its "@". Each "://" is looked at once.
 */
function scanUserinfo(s: string, out: Span[]): void {
  let from = 0;
  for (;;) {
    const p = s.indexOf('://', from);
    if (p < 0) return;
    const u0 = p + 3;
    const u = runLength(s, u0, isUserinfo, 256);
    const at = u0 + u;
    if (p > 0 && isSchemeChar(s.charCodeAt(p - 1)) && s.charCodeAt(at) === 64 && s.slice(u0, at).includes(':')) {
      out.push({ start: u0, end: at, category: 'secrets' });
      from = at + 1;
    } else from = u0;
  }
}

// ---- secret-looking keys, after folding confusables ---------------------------------------------

/**
 * Letters that look like Latin ones (Cyrillic, Greek, a few IPA), folded before a key is compared:
 * "pаssword" with a Cyrillic а is still a password. Fullwidth forms fold by NFKC first.
 */
const CONFUSABLES: Readonly<Record<string, string>> = {
  а: 'a',
  е: 'e',
  о: 'o',
  р: 'p',
  с: 'c',
  у: 'y',
  х: 'x',
  і: 'i',
  ј: 'j',
  ѕ: 's',
  ԁ: 'd',
  ԛ: 'q',
  ԝ: 'w',
  һ: 'h',
  ӏ: 'l',
  к: 'k',
  м: 'm',
  т: 't',
  в: 'b',
  н: 'h',
  А: 'a',
  Е: 'e',
  О: 'o',
  Р: 'p',
  С: 'c',
  У: 'y',
  Х: 'x',
  І: 'i',
  Ј: 'j',
  Ѕ: 's',
  К: 'k',
  М: 'm',
  Т: 't',
  В: 'b',
  Н: 'h',
  α: 'a',
  ε: 'e',
  ο: 'o',
  ρ: 'p',
  ι: 'i',
  κ: 'k',
  ν: 'v',
  τ: 't',
  υ: 'u',
  χ: 'x',
  ω: 'w',
  Α: 'a',
  Β: 'b',
  Ε: 'e',
  Ζ: 'z',
  Η: 'h',
  Ι: 'i',
  Κ: 'k',
  Μ: 'm',
  Ν: 'n',
  Ο: 'o',
  Ρ: 'p',
  Τ: 't',
  Υ: 'y',
  Χ: 'x',
  ɑ: 'a',
  ɡ: 'g',
  ɩ: 'i',
  ʀ: 'r',
  ı: 'i',
  ſ: 's',
};

const ASCII = /^[\x20-\x7e]*$/;

/** Zero-width and soft-hyphen characters that hide inside a key name. */
const INVISIBLE = /[\u00AD\u200B-\u200F\u2060\uFEFF]/g;

/** A key name reduced for comparison: NFKC, confusables folded, lower case, letters and digits only. */
export function foldKey(k: string): string {
  const nfkc = k.length > 256 ? k.slice(0, 256) : k;
  if (ASCII.test(nfkc)) {
    // Most keys: nothing to normalise or fold.
    let out = '';
    for (let i = 0; i < nfkc.length; i++) {
      const c = nfkc.charCodeAt(i);
      if (isDigit(c) || isLower(c)) out += nfkc[i];
      else if (isUpper(c)) out += String.fromCharCode(c + 32);
    }
    return out;
  }
  let out = '';
  for (const ch of nfkc.normalize('NFKC').replace(INVISIBLE, '')) {
    const f = CONFUSABLES[ch] ?? ch.toLowerCase();
    const c = f.charCodeAt(0);
    if (f.length === 1 && (isDigit(c) || isLower(c))) out += f;
  }
  return out;
}

/** Folded key names whose value is a secret wherever they appear. */
const SECRET_KEYS = new Set([
  'authorization',
  'proxyauthorization',
  'auth',
  'cookie',
  'setcookie',
  'token',
  'jwt',
  'assertion',
  'password',
  'passwd',
  'pass',
  'pwd',
  'passphrase',
  'pin',
  'secret',
  'creds',
  'credential',
  'credentials',
  'apikey',
  'xapikey',
  'privatekey',
  'sessionid',
  'connectionstring',
  'dsn',
]);
/** Parts of a folded key name that make it secret-looking (`aws_secret_access_key`, `github_token`). */
const SECRET_PARTS = ['password', 'passwd', 'secret', 'token', 'apikey', 'privatekey', 'credential', 'accesskey', 'passphrase'];
/** Endings (`db_pass`, `db_pwd`, `basic_auth`, `my_creds`). */
const SECRET_ENDINGS = ['pass', 'pwd', 'auth', 'creds', 'cred', 'key'];
/** Key names that merely count or name tokens: not secrets. */
const NOT_SECRET = new Set([
  'maxtokens',
  'tokensused',
  'totaltokens',
  'inputtokens',
  'outputtokens',
  'tokencount',
  'tokentype',
  'sortkey',
  'primarykey',
  'keyid',
  'publickey',
  'key',
]);

/** True when a key's name (after folding) says its value is a secret. */
export function isSecretKeyName(k: string, extra?: ReadonlySet<string>): boolean {
  const f = foldKey(k);
  if (f === '' || NOT_SECRET.has(f)) return false;
  if (SECRET_KEYS.has(f) || extra?.has(f)) return true;
  for (const p of SECRET_PARTS) if (f.includes(p)) return true;
  // An ending counts as a word of its own (db_pass, dbPass, basic-auth), not inside one (compass).
  const last = lastWord(k);
  return last !== f && SECRET_ENDINGS.includes(last);
}

/** The last word of a key name: split at separators and lower-to-upper case changes, then folded. */
function lastWord(k: string): string {
  const src = (k.length > 256 ? k.slice(0, 256) : k).normalize('NFKC').replace(INVISIBLE, '');
  let start = 0;
  let prevLower = false;
  let i = 0;
  for (const ch of src) {
    const f = CONFUSABLES[ch];
    const upper = f === undefined ? ch !== ch.toLowerCase() : ch !== ch.toLowerCase();
    const word = f !== undefined || /[\p{L}\p{N}]/u.test(ch);
    if (!word) start = i + ch.length;
    else if (upper && prevLower) start = i;
    prevLower = word && !upper;
    i += ch.length;
  }
  return foldKey(src.slice(start));
}

/** Query parameters that carry credentials (`?code=` of OAuth, signatures), censored only in a query. */
const QUERY_SECRET_KEYS = new Set(['code', 'sig', 'signature', 'key', 'idtoken', 'accesstoken', 'refreshtoken']);

/** A character that can be part of a key name in text (ASCII word characters and confusables). */
const isKeyChar = (s: string, i: number): boolean => {
  const c = s.charCodeAt(i);
  return isAlnum(c) || c === 95 || c === 45 || (c >= 0x370 && c <= 0x52f) || c === 0xad || (c >= 0x200b && c <= 0x200f) || c === 0xfeff;
};

/**
 * `key=value`, `key: value`, `"key": "value"` in free text where the key is secret-looking: the
 * value is censored. Each key-like word is looked at once; the value runs to whitespace, a quote or
 * a separator (at most 4096 characters).
 */
function scanKeyValues(s: string, extra: ReadonlySet<string> | undefined, out: Span[]): void {
  const n = s.length;
  let i = 0;
  while (i < n) {
    if (!isKeyChar(s, i)) {
      i++;
      continue;
    }
    let j = i;
    while (j < n && j - i < 128 && isKeyChar(s, j)) j++;
    const keyEnd = j;
    // Swallow a too-long word whole, so the scan stays linear.
    while (j < n && isKeyChar(s, j)) j++;
    const next = j;
    if (keyEnd - i >= 128) {
      i = next;
      continue;
    }
    let k = keyEnd;
    if (s.charCodeAt(k) === 34 || s.charCodeAt(k) === 39) k++;
    while (k < n && k - keyEnd < 8 && (s.charCodeAt(k) === 32 || s.charCodeAt(k) === 9)) k++;
    const op = s.charCodeAt(k);
    const inQuery = i > 0 && (s.charCodeAt(i - 1) === 63 || s.charCodeAt(i - 1) === 38 || s.charCodeAt(i - 1) === 59);
    const key = s.slice(i, keyEnd);
    if (
      (op === 61 || op === 58) &&
      keyEnd - i >= 3 && // the shortest secret-looking key is three letters (pwd, pin, jwt)
      s.charCodeAt(k + 1) !== 47 &&
      ((inQuery && op === 61 && QUERY_SECRET_KEYS.has(foldKey(key))) || isSecretKeyName(key, extra))
    ) {
      k++;
      while (k < n && k - keyEnd < 16 && (s.charCodeAt(k) === 32 || s.charCodeAt(k) === 9)) k++;
      const quote = s.charCodeAt(k) === 34 || s.charCodeAt(k) === 39 ? s.charCodeAt(k) : 0;
      if (quote) k++;
      const v0 = k;
      while (k < n && k - v0 < 4096) {
        const c = s.charCodeAt(k);
        if (quote ? c === quote : isSpace(c) || c === 34 || c === 39 || c === 44 || c === 59 || c === 38) break;
        k++;
      }
      if (k > v0) {
        out.push({ start: v0, end: k, category: 'secrets' });
        i = k;
        continue;
      }
    }
    i = next;
  }
}

// ---- the caller's own token, in the encodings the gateway can see ------------------------------

/** Shortest fragment of the caller's token that counts (a token split across two arguments). */
export const TOKEN_FRAGMENT = 16;

/** The forms of a secret the gateway could see it in: raw, base64 and base64url (three alignments), URL-encoded. */
function encodings(secret: string): string[] {
  const forms = new Set<string>([secret, encodeURIComponent(secret)]);
  for (const pad of ['', 'x', 'xx']) {
    const b64 = Buffer.from(pad + secret).toString('base64');
    // Drop the characters that depend on the padding prefix or on what follows the secret.
    const inner = b64.slice(pad === '' ? 0 : pad.length + 2, b64.length - 4);
    if (inner.length >= TOKEN_FRAGMENT) {
      forms.add(inner);
      forms.add(inner.replace(/\+/g, '-').replace(/\//g, '_'));
    }
  }
  return [...forms].filter((f) => f.length >= TOKEN_FRAGMENT);
}

const HASH_BASE = 0x01000193;

/**
 * Finds any fragment of TOKEN_FRAGMENT or more characters of a secret (in any of its encodings) in
 * text: a rolling hash over the text (one pass, 32-bit integer arithmetic), a bitset of the hashes
 * of every window of the secret's forms to reject most positions with one load, and a map to
 * verify and extend a hit. Built once per secret.
 */
export class SecretFinder {
  readonly #forms: string[];
  readonly #windows = new Map<number, [number, number][]>();
  readonly #bits = new Uint8Array(1 << 13); // 65536 bits
  readonly #pow: number;

  constructor(secrets: readonly string[]) {
    this.#forms = secrets.filter((x) => x.length >= TOKEN_FRAGMENT).flatMap(encodings);
    let pow = 1;
    for (let i = 0; i < TOKEN_FRAGMENT; i++) pow = Math.imul(pow, HASH_BASE);
    this.#pow = pow;
    this.#forms.forEach((f, fi) => {
      let h = 0;
      for (let i = 0; i < f.length; i++) {
        h = (Math.imul(h, HASH_BASE) + f.charCodeAt(i)) | 0;
        if (i >= TOKEN_FRAGMENT) h = (h - Math.imul(f.charCodeAt(i - TOKEN_FRAGMENT), pow)) | 0;
        if (i >= TOKEN_FRAGMENT - 1) {
          const at = i - TOKEN_FRAGMENT + 1;
          const list = this.#windows.get(h);
          if (list) list.push([fi, at]);
          else this.#windows.set(h, [[fi, at]]);
          const b = h & 0xffff;
          this.#bits[b >>> 3] = (this.#bits[b >>> 3] as number) | (1 << (b & 7));
        }
      }
    });
  }

  get empty(): boolean {
    return this.#forms.length === 0;
  }

  scan(s: string, out: Span[]): void {
    if (this.#forms.length === 0 || s.length < TOKEN_FRAGMENT) return;
    const pow = this.#pow;
    const bits = this.#bits;
    let h = 0;
    let coveredTo = 0;
    for (let i = 0; i < s.length; i++) {
      h = (Math.imul(h, HASH_BASE) + s.charCodeAt(i)) | 0;
      if (i >= TOKEN_FRAGMENT) h = (h - Math.imul(s.charCodeAt(i - TOKEN_FRAGMENT), pow)) | 0;
      if (i < TOKEN_FRAGMENT - 1) continue;
      const b = h & 0xffff;
      if (((bits[b >>> 3] as number) & (1 << (b & 7))) === 0) continue;
      const start = i - TOKEN_FRAGMENT + 1;
      if (start < coveredTo) continue;
      const hits = this.#windows.get(h);
      if (!hits) continue;
      for (const [fi, at] of hits) {
        const f = this.#forms[fi] as string;
        if (s.startsWith(f.slice(at, at + TOKEN_FRAGMENT), start)) {
          // Extend to the right as far as text and form agree (bounded by the form's length).
          let e = start + TOKEN_FRAGMENT;
          let fe = at + TOKEN_FRAGMENT;
          while (e < s.length && fe < f.length && s.charCodeAt(e) === f.charCodeAt(fe)) {
            e++;
            fe++;
          }
          out.push({ start, end: e, category: 'secrets' });
          coveredTo = e;
          break;
        }
      }
    }
  }
}

// ---- all together -------------------------------------------------------------------------------

export interface ScanOptions {
  categories: ReadonlySet<RedactCategory>;
  /** Extra folded key names whose values are secrets. */
  keys?: ReadonlySet<string>;
  /** The caller's own credentials, found in any encoding (with category `secrets`). */
  secrets?: SecretFinder;
}

/** Every span of the requested categories in `s` (unsorted, possibly overlapping). */
export function scan(s: string, o: ScanOptions): Span[] {
  const out: Span[] = [];
  const c = o.categories;
  if (c.has('secrets')) {
    scanPrivateKeys(s, out);
    scanTokens(s, out);
    scanUserinfo(s, out);
    scanKeyValues(s, o.keys, out);
    o.secrets?.scan(s, out);
  }
  if (c.has('email')) scanEmail(s, out);
  if (c.has('card') || c.has('phone')) scanDigits(s, c.has('card'), c.has('phone'), out);
  return out;
}

/**
 * Replaces the spans (merged where they overlap) with `censor`, counting them per category; the
 * counts go to the audit, the values nowhere.
 */
export function censorSpans(s: string, spans: Span[], censor: string, counts: Partial<Record<RedactCategory, number>>): string {
  if (spans.length === 0) return s;
  spans.sort((a, b) => a.start - b.start || b.end - a.end);
  let out = '';
  let pos = 0;
  for (const sp of spans) {
    if (sp.end <= pos) continue; // inside one already censored
    if (sp.start < pos) {
      // Overlaps the one just censored: that censor covers it too.
      pos = sp.end;
      continue;
    }
    out += s.slice(pos, sp.start) + censor;
    pos = sp.end;
    counts[sp.category] = (counts[sp.category] ?? 0) + 1;
  }
  return out + s.slice(pos);
}
