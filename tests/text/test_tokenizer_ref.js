// test_tokenizer_ref.js: reference encodings for tests/text/test_tokenizer.c, from GPT-2's
// reference JS encoder (npm gpt-3-encoder) and Hugging Face's tokenizers (npm tokenizers).
// Usage: NODE_PATH=build/node/node_modules node test_tokenizer_ref.js gpt2 IN.json OUT.json
//        NODE_PATH=build/node/node_modules node test_tokenizer_ref.js hf IN.json OUT.json TOKENIZER.json
//        NODE_PATH=build/node/node_modules node test_tokenizer_ref.js resave - OUT.json TOKENIZER.json
// IN.json is a list of strings; OUT.json gets, for gpt2, a list of id lists; for hf, an object
// {"plain": ids without specials, "special": ids with the post-processor, "decoded": texts}.
// resave: HF loads TOKENIZER.json and writes it again, in its own format, to OUT.json.
'use strict';
const fs = require('fs');

async function main() {
  const [mode, inPath, outPath, tokPath] = process.argv.slice(2);
  if (mode === 'resave') {
    const { Tokenizer } = require('tokenizers');
    Tokenizer.fromFile(tokPath).save(outPath, true);
    return;
  }
  const texts = JSON.parse(fs.readFileSync(inPath, 'utf8'));
  let out;
  if (mode === 'gpt2') {
    const { encode } = require('gpt-3-encoder');
    out = texts.map((t) => encode(t));
  } else if (mode === 'hf') {
    const { Tokenizer } = require('tokenizers');
    const tok = Tokenizer.fromFile(tokPath);
    out = { plain: [], special: [], decoded: [] };
    for (const t of texts) {
      const plain = await tok.encode(t, null, { addSpecialTokens: false });
      const special = await tok.encode(t, null, { addSpecialTokens: true });
      out.plain.push(Array.from(plain.getIds()));
      out.special.push(Array.from(special.getIds()));
      out.decoded.push(await tok.decode(Array.from(plain.getIds()), false));
    }
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  fs.writeFileSync(outPath, JSON.stringify(out));
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
