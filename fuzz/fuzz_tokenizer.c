/* fuzz_tokenizer.c: tokenizer.json: loaded (ids bounded, merges checked), then used to
 * encode and decode a fixed text with special tokens in it. */
#include "fuzz_common.h"
#include "tutor/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size, "-tokenizer.json");
    Tokenizer *t = tokenizer_load(path);
    if (!t) return 0;
    static const char text[] = "Hello <s> world</s>  caf\xc3\xa9 \xe2\x82\xac 123 <mask>\n\ttabs";
    TokenizerEncodeOptions eo = {1, 1, 1};
    TokenIds ids = {0};
    if (!tokenizer_encode(t, text, sizeof text - 1, &eo, &ids, NULL)) {
        char *back = tokenizer_decode(t, ids.ids, ids.n, 0, NULL);
        free(back);
        back = tokenizer_decode(t, ids.ids, ids.n, 1, NULL);
        free(back);
    }
    token_ids_free(&ids);
    tokenizer_free(t);
    return 0;
}
