/**
 * Imported for its effect by both policy engines, before either loads a WASM module.
 *
 * Node 20's V8 (11.3) inlines JS-to-WASM calls into optimized JavaScript
 * (`--turbo-inline-js-wasm-calls`, on by default). When such a function later deoptimizes lazily,
 * V8 can abort the whole process ("Fatal error ... unreachable code" in
 * Deoptimizer::DoComputeBuiltinContinuation, SIGTRAP). We saw it in about one in ten runs of a test
 * that makes 13,000 decisions through opa-wasm and cedar-wasm, and never with the inlining off (0 in
 * 40 runs). A gateway makes that many decisions in seconds, so the inlining stays off: it saves
 * nanoseconds on calls that cost microseconds. The flag applies to code optimized after this line,
 * and nothing that calls into WASM is hot before it.
 */
import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--no-turbo-inline-js-wasm-calls');
