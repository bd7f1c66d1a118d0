// llama.cpp's speed on a GGUF file, measured like `dsr1 bench`: pp = one batch
// of P prompt tokens, tg = N tokens one at a time after it (greedy); best of R.
//
// Setup (no build: node-llama-cpp ships prebuilt llama.cpp binaries and loads
// the best CPU variant, e.g. zen4 with AVX-512):
//   mkdir /tmp/lcpp && cd /tmp/lcpp && npm install --ignore-scripts node-llama-cpp@3.21.1
//   cp .../tests/bench/llama_cpp_bench.mjs /tmp/lcpp/   (ES modules resolve packages next to the script)
// Run: node /tmp/lcpp/llama_cpp_bench.mjs MODEL.gguf [P=128] [N=64] [THREADS=2] [R=3]
import {getLlama} from "node-llama-cpp";

const [,, modelPath, P = "128", N = "64", T = "2", R = "3"] = process.argv;
const p = +P, n = +N, threads = +T, reps = +R;
const llama = await getLlama({gpu: false, build: "never", logLevel: "error", maxThreads: threads});
const model = await llama.loadModel({modelPath});
const ctx = await model.createContext({contextSize: p + n + 16, batchSize: Math.max(p, 1), threads: {ideal: threads, min: threads},
                                       flashAttention: false});
const seq = ctx.getSequence();
let s = 12345;
const rnd = () => (s = (s * 1103515245 + 12345) % 2147483648) % 300;  // low ids exist in every vocabulary
let bestPP = 0, bestTG = 0;
for (let r = 0; r < reps; r++) {
    await seq.clearHistory();
    const toks = Array.from({length: p}, rnd);
    let t0 = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(toks);
    let t1 = performance.now();
    bestPP = Math.max(bestPP, p / ((t1 - t0) / 1000));
    let got = 0;
    t0 = performance.now();
    for await (const tok of seq.evaluate([rnd()], {temperature: 0})) {
        if (++got >= n) break;
    }
    t1 = performance.now();
    bestTG = Math.max(bestTG, got / ((t1 - t0) / 1000));
}
console.log(`| ${modelPath.split("/").pop()} | llama.cpp | ${threads} | pp${p} | ${bestPP.toFixed(2)} |`);
console.log(`| ${modelPath.split("/").pop()} | llama.cpp | ${threads} | tg${n} | ${bestTG.toFixed(2)} |`);
await ctx.dispose(); await model.dispose(); await llama.dispose();
