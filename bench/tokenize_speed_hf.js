// tokenize_speed_hf.js: the Hugging Face side of bench/tokenize-speed.c. Encodes the texts
// of a JSON list with HF tokenizers (npm `tokenizers`) on one thread, both one by one and
// with encodeBatch, best of `repeats` runs each; writes the ids of the first run as int32
// (per text: count, then ids) to OUT and prints {"one_by_one_s":..,"batch_s":..} on stdout.
// Usage: RAYON_NUM_THREADS=1 NODE_PATH=build/node/node_modules \
//        node tokenize_speed_hf.js TOKENIZER.json TEXTS.json OUT.bin [repeats]
'use strict';
const fs = require('fs');
const { Tokenizer } = require('tokenizers');

async function main() {
  const [tokPath, textsPath, outPath, repeatsArg] = process.argv.slice(2);
  const repeats = Number(repeatsArg || 3);
  const texts = JSON.parse(fs.readFileSync(textsPath, 'utf8'));
  const tok = Tokenizer.fromFile(tokPath);
  const opts = { addSpecialTokens: false };
  let oneByOne = Infinity, batch = Infinity, first = null;
  for (let r = 0; r < repeats; r++) {
    let t0 = process.hrtime.bigint();
    const encs = [];
    for (const t of texts) encs.push(await tok.encode(t, null, opts));
    oneByOne = Math.min(oneByOne, Number(process.hrtime.bigint() - t0) / 1e9);
    if (!first) first = encs.map((e) => e.getIds());
    t0 = process.hrtime.bigint();
    const b = await tok.encodeBatch(texts, opts);
    batch = Math.min(batch, Number(process.hrtime.bigint() - t0) / 1e9);
    if (b.length !== texts.length) throw new Error('encodeBatch lost texts');
  }
  let total = 0;
  for (const ids of first) total += 1 + ids.length;
  const buf = new Int32Array(total);
  let k = 0;
  for (const ids of first) {
    buf[k++] = ids.length;
    for (const id of ids) buf[k++] = id;
  }
  fs.writeFileSync(outPath, Buffer.from(buf.buffer));
  process.stdout.write(JSON.stringify({ one_by_one_s: oneByOne, batch_s: batch }) + '\n');
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
