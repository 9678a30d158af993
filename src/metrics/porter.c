/* porter.c: the Porter stemmer exactly as NLTK's PorterStemmer in its default mode
 * (NLTK_EXTENSIONS), which rouge-score uses for ROUGE with use_stemmer=True. Written from
 * Porter (1980) and the NLTK departures: the irregular-forms table, no stemming of words
 * of 1-2 letters, 'ies'/'ied' on 4-letter words, the 2-letter *o case, y->i only after a
 * consonant, 'alli' retried through step 2, 'fulli' and the 'logi' rule. */
#include <string.h>

#include "tutor/metrics.h"

/* A word being stemmed: w[0..n). Rules only shorten it or replace a suffix by one no
 * longer than itself plus one letter after an equally long removal. */
typedef struct {
    char *w;
    size_t n;
} Word;

static int is_consonant(const char *w, size_t i) {
    switch (w[i]) {
    case 'a': case 'e': case 'i': case 'o': case 'u':
        return 0;
    case 'y':
        return i == 0 ? 1 : !is_consonant(w, i - 1);
    default:
        return 1;
    }
}

/* m: the number of vowel-consonant transitions in w[0..n). */
static int measure(const char *w, size_t n) {
    int m = 0;
    for (size_t i = 1; i < n; i++)
        if (!is_consonant(w, i - 1) && is_consonant(w, i)) m++;
    return m;
}

static int contains_vowel(const char *w, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!is_consonant(w, i)) return 1;
    return 0;
}

static int ends_double_consonant(const char *w, size_t n) {
    return n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1);
}

/* *o: ends consonant-vowel-consonant, the last not w, x or y; NLTK also accepts a
 * two-letter vowel-consonant word. */
static int ends_cvc(const char *w, size_t n) {
    if (n >= 3 && is_consonant(w, n - 3) && !is_consonant(w, n - 2) && is_consonant(w, n - 1) &&
        w[n - 1] != 'w' && w[n - 1] != 'x' && w[n - 1] != 'y')
        return 1;
    return n == 2 && !is_consonant(w, 0) && is_consonant(w, 1);
}

static int ends_with(const Word *x, const char *suffix) {
    size_t k = strlen(suffix);
    return k <= x->n && !memcmp(x->w + x->n - k, suffix, k);
}

/* Sets the word to w[0..stem_len) + repl. */
static void replace_tail(Word *x, size_t stem_len, const char *repl) {
    size_t k = strlen(repl);
    memcpy(x->w + stem_len, repl, k);
    x->n = stem_len + k;
}

typedef enum {
    COND_NONE,
    COND_M_GT0,        /* m(stem) > 0 */
    COND_M_GT1,        /* m(stem) > 1 */
    COND_ION,          /* m(stem) > 1 and stem ends in s or t */
    COND_LOGI,         /* m(word[:-3]) > 0: the 'l' of 'logi' stays with the stem */
    COND_NOT_LSZ,      /* *d rule: the doubled letter is not l, s or z */
    COND_M1_CVC,       /* m(stem) == 1 and *o */
    COND_Y_AFTER_CONS, /* stem longer than 1 and ending in a consonant */
    COND_LL,           /* m(word[:-1]) > 1 */
} RuleCond;

typedef struct {
    const char *suffix; /* "*d" means any doubled consonant */
    const char *repl;   /* NULL with "*d": the doubled letter, once */
    RuleCond cond;
} Rule;

static int rule_cond_holds(RuleCond c, const char *w, size_t word_n, size_t stem_n) {
    switch (c) {
    case COND_NONE: return 1;
    case COND_M_GT0: return measure(w, stem_n) > 0;
    case COND_M_GT1: return measure(w, stem_n) > 1;
    case COND_ION: return measure(w, stem_n) > 1 && (w[stem_n - 1] == 's' || w[stem_n - 1] == 't');
    case COND_LOGI: return measure(w, word_n - 3) > 0;
    case COND_NOT_LSZ: return w[word_n - 1] != 'l' && w[word_n - 1] != 's' && w[word_n - 1] != 'z';
    case COND_M1_CVC: return measure(w, stem_n) == 1 && ends_cvc(w, stem_n);
    case COND_Y_AFTER_CONS: return stem_n > 1 && is_consonant(w, stem_n - 1);
    case COND_LL: return measure(w, word_n - 1) > 1;
    }
    return 0;
}

/* NLTK's _apply_rule_list: the first rule whose suffix matches decides; if its condition
 * fails the word is left as it is. */
static void apply_rules(Word *x, const Rule *rules, size_t n_rules) {
    for (size_t r = 0; r < n_rules; r++) {
        const Rule *rule = &rules[r];
        if (!strcmp(rule->suffix, "*d")) {
            if (!ends_double_consonant(x->w, x->n)) continue;
            if (rule_cond_holds(rule->cond, x->w, x->n, x->n - 2)) {
                char doubled[2] = {x->w[x->n - 1], 0};
                replace_tail(x, x->n - 2, doubled);
            }
            return;
        }
        if (!ends_with(x, rule->suffix)) continue;
        size_t stem_n = x->n - strlen(rule->suffix);
        if (rule_cond_holds(rule->cond, x->w, x->n, stem_n)) replace_tail(x, stem_n, rule->repl);
        return;
    }
}

#define N_RULES(a) (sizeof(a) / sizeof((a)[0]))

static void step1a(Word *x) {
    if (ends_with(x, "ies") && x->n == 4) {
        replace_tail(x, 1, "ie");
        return;
    }
    static const Rule rules[] = {
        {"sses", "ss", COND_NONE}, {"ies", "i", COND_NONE}, {"ss", "ss", COND_NONE}, {"s", "", COND_NONE},
    };
    apply_rules(x, rules, N_RULES(rules));
}

static void step1b(Word *x) {
    if (ends_with(x, "ied")) {
        replace_tail(x, x->n - 3, x->n == 4 ? "ie" : "i");
        return;
    }
    if (ends_with(x, "eed")) {
        if (measure(x->w, x->n - 3) > 0) replace_tail(x, x->n - 3, "ee");
        return;
    }
    size_t stem_n = 0;
    int stripped = 0;
    if (ends_with(x, "ed") && contains_vowel(x->w, x->n - 2)) {
        stem_n = x->n - 2;
        stripped = 1;
    } else if (ends_with(x, "ing") && contains_vowel(x->w, x->n - 3)) {
        stem_n = x->n - 3;
        stripped = 1;
    }
    if (!stripped) return;
    x->n = stem_n;
    static const Rule rules[] = {
        {"at", "ate", COND_NONE}, {"bl", "ble", COND_NONE}, {"iz", "ize", COND_NONE},
        {"*d", NULL, COND_NOT_LSZ}, {"", "e", COND_M1_CVC},
    };
    apply_rules(x, rules, N_RULES(rules));
}

static void step1c(Word *x) {
    static const Rule rules[] = {{"y", "i", COND_Y_AFTER_CONS}};
    apply_rules(x, rules, N_RULES(rules));
}

static void step2(Word *x) {
    if (ends_with(x, "alli") && measure(x->w, x->n - 4) > 0) {
        replace_tail(x, x->n - 4, "al");
        step2(x);
        return;
    }
    static const Rule rules[] = {
        {"ational", "ate", COND_M_GT0}, {"tional", "tion", COND_M_GT0}, {"enci", "ence", COND_M_GT0},
        {"anci", "ance", COND_M_GT0},   {"izer", "ize", COND_M_GT0},    {"bli", "ble", COND_M_GT0},
        {"alli", "al", COND_M_GT0},     {"entli", "ent", COND_M_GT0},   {"eli", "e", COND_M_GT0},
        {"ousli", "ous", COND_M_GT0},   {"ization", "ize", COND_M_GT0}, {"ation", "ate", COND_M_GT0},
        {"ator", "ate", COND_M_GT0},    {"alism", "al", COND_M_GT0},    {"iveness", "ive", COND_M_GT0},
        {"fulness", "ful", COND_M_GT0}, {"ousness", "ous", COND_M_GT0}, {"aliti", "al", COND_M_GT0},
        {"iviti", "ive", COND_M_GT0},   {"biliti", "ble", COND_M_GT0},  {"fulli", "ful", COND_M_GT0},
        {"logi", "log", COND_LOGI},
    };
    apply_rules(x, rules, N_RULES(rules));
}

static void step3(Word *x) {
    static const Rule rules[] = {
        {"icate", "ic", COND_M_GT0}, {"ative", "", COND_M_GT0}, {"alize", "al", COND_M_GT0},
        {"iciti", "ic", COND_M_GT0}, {"ical", "ic", COND_M_GT0}, {"ful", "", COND_M_GT0},
        {"ness", "", COND_M_GT0},
    };
    apply_rules(x, rules, N_RULES(rules));
}

static void step4(Word *x) {
    static const Rule rules[] = {
        {"al", "", COND_M_GT1},   {"ance", "", COND_M_GT1}, {"ence", "", COND_M_GT1},
        {"er", "", COND_M_GT1},   {"ic", "", COND_M_GT1},   {"able", "", COND_M_GT1},
        {"ible", "", COND_M_GT1}, {"ant", "", COND_M_GT1},  {"ement", "", COND_M_GT1},
        {"ment", "", COND_M_GT1}, {"ent", "", COND_M_GT1},  {"ion", "", COND_ION},
        {"ou", "", COND_M_GT1},   {"ism", "", COND_M_GT1},  {"ate", "", COND_M_GT1},
        {"iti", "", COND_M_GT1},  {"ous", "", COND_M_GT1},  {"ive", "", COND_M_GT1},
        {"ize", "", COND_M_GT1},
    };
    apply_rules(x, rules, N_RULES(rules));
}

static void step5a(Word *x) {
    /* Both rules are tried here (unlike the rule lists): m > 1, or m == 1 and not *o. */
    if (!ends_with(x, "e")) return;
    int m = measure(x->w, x->n - 1);
    if (m > 1 || (m == 1 && !ends_cvc(x->w, x->n - 1))) x->n--;
}

static void step5b(Word *x) {
    static const Rule rules[] = {{"ll", "l", COND_LL}};
    apply_rules(x, rules, N_RULES(rules));
}

/* NLTK's table of irregular forms, looked up before any rule. */
static const char *const irregular[][2] = {
    {"sky", "sky"},         {"skies", "sky"},     {"dying", "die"},     {"lying", "lie"},
    {"tying", "tie"},       {"news", "news"},     {"innings", "inning"}, {"inning", "inning"},
    {"outings", "outing"},  {"outing", "outing"}, {"cannings", "canning"}, {"canning", "canning"},
    {"howe", "howe"},       {"proceed", "proceed"}, {"exceed", "exceed"}, {"succeed", "succeed"},
};

size_t porter_stem(const char *word, size_t len, char *out) {
    for (size_t i = 0; i < len; i++) {
        char c = word[i];
        out[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    out[len] = 0;
    for (size_t k = 0; k < N_RULES(irregular); k++) {
        /* NLTK looks the word up before lowercasing it. */
        if (strlen(irregular[k][0]) == len && !memcmp(irregular[k][0], word, len)) {
            size_t n = strlen(irregular[k][1]);
            memcpy(out, irregular[k][1], n + 1);
            return n;
        }
    }
    if (len <= 2) return len;
    Word x = {out, len};
    step1a(&x);
    step1b(&x);
    step1c(&x);
    step2(&x);
    step3(&x);
    step4(&x);
    step5a(&x);
    step5b(&x);
    out[x.n] = 0;
    return x.n;
}
