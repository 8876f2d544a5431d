/** The adversarial redaction corpus (test/corpora/redact-adversarial.json), shared by the unit test and the benchmark. */
export interface AdversarialCase {
  id: string;
  why: string;
  unit: string;
  unit2?: string;
  prefix?: string;
  suffix?: string;
}

/** A case as a string of about `size` characters: the unit (alternating with unit2) repeated, with prefix and suffix. */
export function adversarial(c: AdversarialCase, size: number): string {
  const body = c.unit2 === undefined ? c.unit : c.unit + c.unit2;
  return (c.prefix ?? '') + body.repeat(Math.ceil(size / body.length)) + (c.suffix ?? '');
}
