/**
 * Imported for its effect by both policy engines, before either loads a WASM module: V8's settings
 * for the two WASM engines.
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

/*
 * One background thread compiles WASM instead of one per V8 worker. Optimizing cedar-wasm's large
 * functions takes tens of MiB of compiler memory per thread at start-up; glibc keeps what a thread's
 * arena freed, so every compiling thread left its peak in the idle gateway's RSS for good. Measured
 * here: V8's malloc peak 30-76 MiB -> 20-29 MiB, idle RSS 130-174 MiB -> 117-128 MiB, the same
 * decision latency (the hot functions are optimized a little later) and the same start-up time.
 * Measured again with the launcher's 32 KiB mmap threshold (bin/micro-mcp), which returns those
 * blocks anyway: settled RSS the same either way (~93 MiB), but without this flag RSS at ready was
 * 6-11 MiB higher and a start that compiles the policy set took 1.4-1.5 s instead of 0.8-1.0 s
 * (alternated starts, 2 cores: the compiling threads compete with the services' own start).
 */
setFlagsFromString('--wasm-num-compilation-tasks=1');
