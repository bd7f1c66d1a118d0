// llama.cpp's tokenizer throughput on a text file (vocabulary-only load), for
// comparison with build/tests/bench_tokenizer. Setup as in llama_cpp_bench.mjs.
// Run: node /tmp/lcpp/llama_cpp_tokenize.mjs MODEL.gguf TEXT_FILE
import {getLlama} from "node-llama-cpp";
import fs from "fs";

const [,, modelPath, textPath] = process.argv;
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath, vocabOnly: true});
const text = fs.readFileSync(textPath, "utf8");
model.tokenize(text, false); // first call warms up
const t0 = performance.now();
const toks = model.tokenize(text, false);
const t1 = performance.now();
const mb = Buffer.byteLength(text) / 1e6;
console.log(`llama.cpp: ${toks.length} tokens, ${mb.toFixed(2)} MB in ${((t1 - t0) / 1000).toFixed(3)} s = ` +
            `${(mb / ((t1 - t0) / 1000)).toFixed(1)} MB/s`);
