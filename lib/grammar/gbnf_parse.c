/*
 * GBNF text -> compiled grammar (grammar.h), llama.cpp's syntax:
 *
 *   name ::= alternative | alternative ...     (a rule; one per line)
 *   "literal" [a-z0-9_] [^"\\] . ( group ) name  (elements)
 *   x* x+ x? x{m} x{m,} x{m,n}                   (repetitions)
 *   # comment to the end of the line
 *
 * Escapes in literals and classes: \n \r \t \\ \" \[ \] \- \^ \xHH \uHHHH
 * \UHHHHHHHH. A rule ends at a newline unless inside parentheses; an
 * alternative may continue on the next line after '|' (as in llama.cpp).
 * Every limit of grammar.h is enforced here with an error naming the
 * line and column, so hostile text costs time linear in its size.
 */
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "grammar/grammar.h"

#define INF_REPEAT (-1)

typedef struct elist {
    dsri_gelem *v;
    int32_t n, cap;
} elist;

typedef struct parser {
    const char *begin, *s, *end;
    dsri_gbnf *g;
    int32_t cap_elems, cap_alts, cap_rules, cap_classes, cap_ranges, cap_names, n_names;
    int32_t *defined; /* per rule: the offset of its definition in the text + 1, or 0 */
    int32_t cap_defined;
    int32_t *hash; /* open addressing over named rules: rule index + 1, or 0 */
    int32_t hash_cap;
    int32_t n_named;
    int32_t budget; /* element appends left (temporary lists included) */
    int depth;
    dsr1_status st;
} parser;

/* ---- errors and growth ---- */

static dsr1_status fail_at(parser *p, const char *at, const char *what)
{
    if (p->st)
        return p->st;
    int line = 1, col = 1;
    for (const char *c = p->begin; c < at && c < p->end; c++) {
        if (*c == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    p->st = dsri_error(DSR1_ERR_FORMAT, "grammar: line %d column %d: %s", line, col, what);
    return p->st;
}

static dsr1_status oom(parser *p)
{
    if (!p->st)
        p->st = dsri_error(DSR1_ERR_OUT_OF_MEMORY, "grammar: out of memory");
    return p->st;
}

/* Make room for need elements of size sz in *arr (capacity *cap). */
static int grow(parser *p, void **arr, int32_t *cap, int64_t need, size_t sz)
{
    if (need <= *cap)
        return 1;
    if (need > DSRI_GBNF_MAX_ELEMS * 4) {
        fail_at(p, p->s, "the grammar is too large");
        return 0;
    }
    int64_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *n = dsri_realloc(*arr, (size_t)c * sz);
    if (!n) {
        oom(p);
        return 0;
    }
    *arr = n;
    *cap = (int32_t)c;
    return 1;
}

static int elist_push(parser *p, elist *l, int32_t type, int32_t value)
{
    if (--p->budget < 0) {
        fail_at(p, p->s, "the grammar is too large once its repetitions are expanded");
        return 0;
    }
    if (!grow(p, (void **)&l->v, &l->cap, (int64_t)l->n + 1, sizeof *l->v))
        return 0;
    l->v[l->n].type = type;
    l->v[l->n].value = value;
    l->n++;
    return 1;
}

static void elists_free(elist *alts, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        dsri_free(alts[i].v);
    dsri_free(alts);
}

/* ---- rules ---- */

static int32_t new_rule(parser *p, int32_t name)
{
    dsri_gbnf *g = p->g;
    if (!grow(p, (void **)&g->rules, &p->cap_rules, (int64_t)g->n_rules + 1, sizeof *g->rules) ||
        !grow(p, (void **)&p->defined, &p->cap_defined, (int64_t)g->n_rules + 1, sizeof *p->defined))
        return -1;
    g->rules[g->n_rules].first_alt = 0;
    g->rules[g->n_rules].n_alts = 0;
    g->rules[g->n_rules].name = name;
    p->defined[g->n_rules] = 0;
    return g->n_rules++;
}

static uint32_t hash_name(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static int rehash(parser *p)
{
    int32_t cap = p->hash_cap ? p->hash_cap * 2 : 64;
    int32_t *h = dsri_calloc((size_t)cap, sizeof *h);
    if (!h)
        return oom(p), 0;
    for (int32_t r = 0; r < p->g->n_rules; r++) {
        if (p->g->rules[r].name < 0)
            continue;
        const char *nm = p->g->names + p->g->rules[r].name;
        uint32_t i = hash_name(nm, strlen(nm)) & (uint32_t)(cap - 1);
        while (h[i])
            i = (i + 1) & (uint32_t)(cap - 1);
        h[i] = r + 1;
    }
    dsri_free(p->hash);
    p->hash = h;
    p->hash_cap = cap;
    return 1;
}

/* The rule called name[0..n), created (undefined) on first sight. */
static int32_t rule_by_name(parser *p, const char *name, size_t n, int create)
{
    dsri_gbnf *g = p->g;
    if (p->hash_cap) {
        uint32_t i = hash_name(name, n) & (uint32_t)(p->hash_cap - 1);
        for (; p->hash[i]; i = (i + 1) & (uint32_t)(p->hash_cap - 1)) {
            const char *nm = g->names + g->rules[p->hash[i] - 1].name;
            if (strlen(nm) == n && memcmp(nm, name, n) == 0)
                return p->hash[i] - 1;
        }
    }
    if (!create)
        return -1;
    if (!grow(p, (void **)&g->names, &p->cap_names, (int64_t)p->n_names + (int64_t)n + 1, 1))
        return -1;
    int32_t off = p->n_names;
    memcpy(g->names + off, name, n);
    g->names[off + (int32_t)n] = '\0';
    p->n_names += (int32_t)n + 1;
    int32_t r = new_rule(p, off);
    if (r < 0)
        return -1;
    p->n_named++;
    if (p->n_named * 2 > p->hash_cap) /* rehash inserts every named rule, this one too */
        return rehash(p) ? r : -1;
    uint32_t i = hash_name(name, n) & (uint32_t)(p->hash_cap - 1);
    while (p->hash[i])
        i = (i + 1) & (uint32_t)(p->hash_cap - 1);
    p->hash[i] = r + 1;
    return r;
}

/* Store the alternatives of rule r (each gets its END). */
static int set_rule(parser *p, int32_t r, const elist *alts, int32_t n_alts)
{
    dsri_gbnf *g = p->g;
    int64_t total = 0;
    for (int32_t i = 0; i < n_alts; i++)
        total += alts[i].n + 1;
    if ((int64_t)g->n_elems + total > DSRI_GBNF_MAX_ELEMS)
        return fail_at(p, p->s, "the grammar has too many elements"), 0;
    if (!grow(p, (void **)&g->elems, &p->cap_elems, g->n_elems + total, sizeof *g->elems) ||
        !grow(p, (void **)&g->alts, &p->cap_alts, (int64_t)g->n_alts + n_alts, sizeof *g->alts))
        return 0;
    g->rules[r].first_alt = g->n_alts;
    g->rules[r].n_alts = n_alts;
    for (int32_t i = 0; i < n_alts; i++) {
        g->alts[g->n_alts++] = g->n_elems;
        if (alts[i].n)
            memcpy(g->elems + g->n_elems, alts[i].v, (size_t)alts[i].n * sizeof *g->elems);
        g->n_elems += alts[i].n;
        g->elems[g->n_elems].type = DSRI_GE_END;
        g->elems[g->n_elems].value = 0;
        g->n_elems++;
    }
    return 1;
}

/* ---- character classes ---- */

static int32_t new_class(parser *p, int negated)
{
    dsri_gbnf *g = p->g;
    if (!grow(p, (void **)&g->classes, &p->cap_classes, (int64_t)g->n_classes + 1, sizeof *g->classes))
        return -1;
    dsri_cclass *c = &g->classes[g->n_classes];
    memset(c, 0, sizeof *c);
    c->first_range = g->n_ranges;
    c->negated = negated;
    return g->n_classes++;
}

static int class_add(parser *p, int32_t k, uint32_t lo, uint32_t hi)
{
    dsri_gbnf *g = p->g;
    if (--p->budget < 0)
        return fail_at(p, p->s, "the grammar is too large"), 0;
    if (!grow(p, (void **)&g->ranges, &p->cap_ranges, (int64_t)g->n_ranges + 1, sizeof *g->ranges))
        return 0;
    g->ranges[g->n_ranges].lo = lo;
    g->ranges[g->n_ranges].hi = hi;
    g->n_ranges++;
    g->classes[k].n_ranges++;
    return 1;
}

static int class_raw_has(const dsri_gbnf *g, const dsri_cclass *c, uint32_t cp)
{
    for (int32_t i = 0; i < c->n_ranges; i++) {
        const dsri_crange *r = &g->ranges[c->first_range + i];
        if (cp >= r->lo && cp <= r->hi)
            return 1;
    }
    return 0;
}

static void class_finish(dsri_gbnf *g, int32_t k)
{
    dsri_cclass *c = &g->classes[k];
    for (uint32_t cp = 0; cp < 128; cp++)
        if (class_raw_has(g, c, cp) != c->negated)
            c->ascii[cp >> 5] |= 1u << (cp & 31);
}

int dsri_gbnf_class_has(const dsri_gbnf *g, int32_t k, uint32_t cp)
{
    const dsri_cclass *c = &g->classes[k];
    if (cp < 128)
        return (int)((c->ascii[cp >> 5] >> (cp & 31)) & 1u);
    return class_raw_has(g, c, cp) != c->negated;
}

/* ---- lexing ---- */

static int is_word(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static void skip_space(parser *p, int newline_ok)
{
    while (p->s < p->end) {
        char c = *p->s;
        if (c == ' ' || c == '\t') {
            p->s++;
        } else if (c == '#') {
            while (p->s < p->end && *p->s != '\n' && *p->s != '\r')
                p->s++;
        } else if (newline_ok && (c == '\n' || c == '\r')) {
            p->s++;
        } else {
            break;
        }
    }
}

static int hex_digits(parser *p, int n, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < n; i++) {
        if (p->s >= p->end)
            return fail_at(p, p->s, "the escape ends early"), 0;
        char c = *p->s++;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return fail_at(p, p->s - 1, "a hexadecimal digit was expected"), 0;
        v = v * 16 + (uint32_t)d;
    }
    if (v > 0x10FFFF)
        return fail_at(p, p->s, "the code point is beyond U+10FFFF"), 0;
    *out = v;
    return 1;
}

/* One character of a literal or class: an escape or a UTF-8 sequence. */
static int parse_char(parser *p, uint32_t *cp)
{
    const uint8_t *s = (const uint8_t *)p->s;
    if (p->s >= p->end)
        return fail_at(p, p->s, "unexpected end of the grammar"), 0;
    if (*s == '\\') {
        p->s++;
        if (p->s >= p->end)
            return fail_at(p, p->s, "the escape ends early"), 0;
        char c = *p->s++;
        switch (c) {
        case 'n': *cp = '\n'; return 1;
        case 'r': *cp = '\r'; return 1;
        case 't': *cp = '\t'; return 1;
        case '\\': case '"': case '[': case ']': case '-': case '^': case '\'':
            *cp = (uint8_t)c;
            return 1;
        case 'x': return hex_digits(p, 2, cp);
        case 'u': return hex_digits(p, 4, cp);
        case 'U': return hex_digits(p, 8, cp);
        default: return fail_at(p, p->s - 1, "unknown escape"), 0;
        }
    }
    int n = *s < 0x80 ? 1 : (*s & 0xE0) == 0xC0 ? 2 : (*s & 0xF0) == 0xE0 ? 3 : (*s & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || p->end - p->s < n)
        return fail_at(p, p->s, "invalid UTF-8"), 0;
    uint32_t v = n == 1 ? s[0] : n == 2 ? s[0] & 0x1Fu : n == 3 ? s[0] & 0x0Fu : s[0] & 0x07u;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return fail_at(p, p->s, "invalid UTF-8"), 0;
        v = (v << 6) | (s[i] & 0x3Fu);
    }
    p->s += n;
    *cp = v;
    return 1;
}

static int parse_int(parser *p, int32_t *out)
{
    const char *start = p->s;
    int64_t v = 0;
    while (p->s < p->end && *p->s >= '0' && *p->s <= '9') {
        v = v * 10 + (*p->s++ - '0');
        if (v > DSRI_GBNF_MAX_REPEAT)
            return fail_at(p, start, "the repetition count is too large"), 0;
    }
    if (p->s == start)
        return fail_at(p, start, "a number was expected"), 0;
    *out = (int32_t)v;
    return 1;
}

/* ---- repetitions ---- */

static int append_copy(parser *p, elist *dst, const dsri_gelem *src, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        if (!elist_push(p, dst, src[i].type, src[i].value))
            return 0;
    return 1;
}

/* Replace out[start..] (the last item) by item{min,max} (max INF_REPEAT: unbounded). */
static int repeat_last(parser *p, elist *out, int32_t start, int32_t min, int32_t max)
{
    int32_t n = out->n - start;
    dsri_gelem *item = dsri_malloc((size_t)(n > 0 ? n : 1) * sizeof *item);
    if (!item)
        return oom(p), 0;
    if (n > 0)
        memcpy(item, out->v + start, (size_t)n * sizeof *item);
    out->n = start;
    int ok = 1;
    for (int32_t i = 0; ok && i < min; i++)
        ok = append_copy(p, out, item, n);
    if (ok && max == INF_REPEAT) { /* rec ::= item rec | "" */
        int32_t r = new_rule(p, -1);
        elist alts[2];
        memset(alts, 0, sizeof alts);
        ok = r >= 0 && append_copy(p, &alts[0], item, n) && elist_push(p, &alts[0], DSRI_GE_RULE, r) &&
             set_rule(p, r, alts, 2) && elist_push(p, out, DSRI_GE_RULE, r);
        dsri_free(alts[0].v);
    } else if (ok && max > min) { /* opt_k ::= item opt_{k-1} | "", innermost first */
        int32_t last = -1;
        for (int32_t k = 0; ok && k < max - min; k++) {
            int32_t r = new_rule(p, -1);
            elist alts[2];
            memset(alts, 0, sizeof alts);
            ok = r >= 0 && append_copy(p, &alts[0], item, n) &&
                 (last < 0 || elist_push(p, &alts[0], DSRI_GE_RULE, last)) && set_rule(p, r, alts, 2);
            dsri_free(alts[0].v);
            last = r;
        }
        ok = ok && elist_push(p, out, DSRI_GE_RULE, last);
    }
    dsri_free(item);
    return ok;
}

/* ---- sequences and alternatives ---- */

static int parse_alternates(parser *p, int32_t rule, int nested);

static int parse_sequence(parser *p, elist *out, int nested)
{
    int32_t last_start = -1; /* where the last item began, for repetitions */
    while (p->s < p->end && !p->st) {
        char c = *p->s;
        const char *at = p->s;
        if (c == '"') {
            p->s++;
            last_start = out->n;
            while (p->s < p->end && *p->s != '"') {
                uint32_t cp;
                if (!parse_char(p, &cp))
                    return 0;
                int32_t k = new_class(p, 0);
                if (k < 0 || !class_add(p, k, cp, cp))
                    return 0;
                class_finish(p->g, k);
                if (!elist_push(p, out, DSRI_GE_CHAR, k))
                    return 0;
            }
            if (p->s >= p->end)
                return fail_at(p, at, "the literal is not closed"), 0;
            p->s++;
        } else if (c == '[') {
            p->s++;
            int neg = p->s < p->end && *p->s == '^';
            if (neg)
                p->s++;
            int32_t k = new_class(p, neg);
            if (k < 0)
                return 0;
            while (p->s < p->end && *p->s != ']') {
                uint32_t lo, hi;
                if (!parse_char(p, &lo))
                    return 0;
                hi = lo;
                if (p->end - p->s >= 2 && p->s[0] == '-' && p->s[1] != ']') {
                    p->s++;
                    if (!parse_char(p, &hi))
                        return 0;
                    if (hi < lo)
                        return fail_at(p, at, "the range ends before it starts"), 0;
                }
                if (!class_add(p, k, lo, hi))
                    return 0;
            }
            if (p->s >= p->end)
                return fail_at(p, at, "the character class is not closed"), 0;
            p->s++;
            class_finish(p->g, k);
            last_start = out->n;
            if (!elist_push(p, out, DSRI_GE_CHAR, k))
                return 0;
        } else if (c == '.') {
            p->s++;
            int32_t k = new_class(p, 1); /* the empty set, negated: anything */
            if (k < 0)
                return 0;
            class_finish(p->g, k);
            last_start = out->n;
            if (!elist_push(p, out, DSRI_GE_CHAR, k))
                return 0;
        } else if (is_word(c)) {
            const char *name = p->s;
            while (p->s < p->end && is_word(*p->s))
                p->s++;
            int32_t r = rule_by_name(p, name, (size_t)(p->s - name), 1);
            last_start = out->n;
            if (r < 0 || !elist_push(p, out, DSRI_GE_RULE, r))
                return 0;
        } else if (c == '(') {
            p->s++;
            if (++p->depth > DSRI_GBNF_MAX_NESTING)
                return fail_at(p, at, "groups are nested too deeply"), 0;
            int32_t r = new_rule(p, -1);
            if (r < 0 || !parse_alternates(p, r, 1))
                return 0;
            p->depth--;
            if (p->s >= p->end || *p->s != ')')
                return fail_at(p, at, "the group is not closed"), 0;
            p->s++;
            last_start = out->n;
            if (!elist_push(p, out, DSRI_GE_RULE, r))
                return 0;
        } else if (c == '*' || c == '+' || c == '?' || c == '{') {
            if (last_start < 0)
                return fail_at(p, at, "a repetition needs an item before it"), 0;
            int32_t min = 0, max = INF_REPEAT;
            p->s++;
            if (c == '+') {
                min = 1;
            } else if (c == '?') {
                max = 1;
            } else if (c == '{') {
                skip_space(p, 0);
                if (!parse_int(p, &min))
                    return 0;
                skip_space(p, 0);
                max = min;
                if (p->s < p->end && *p->s == ',') {
                    p->s++;
                    skip_space(p, 0);
                    max = INF_REPEAT;
                    if (p->s < p->end && *p->s != '}' && !parse_int(p, &max))
                        return 0;
                    skip_space(p, 0);
                }
                if (p->s >= p->end || *p->s != '}')
                    return fail_at(p, at, "'}' was expected"), 0;
                p->s++;
                if (max != INF_REPEAT && max < min)
                    return fail_at(p, at, "the repetition's maximum is below its minimum"), 0;
            }
            if (!repeat_last(p, out, last_start, min, max))
                return 0;
            last_start = -1; /* x** is not an item */
        } else {
            break;
        }
        skip_space(p, nested);
    }
    return !p->st;
}

/* alternative ('|' alternative)* into rule; nested: inside parentheses. */
static int parse_alternates(parser *p, int32_t rule, int nested)
{
    elist *alts = NULL;
    int32_t n = 0, cap = 0;
    int ok = 1;
    skip_space(p, nested);
    for (;;) {
        if (!grow(p, (void **)&alts, &cap, (int64_t)n + 1, sizeof *alts)) {
            ok = 0;
            break;
        }
        memset(&alts[n], 0, sizeof alts[n]);
        n++;
        if (!parse_sequence(p, &alts[n - 1], nested)) {
            ok = 0;
            break;
        }
        if (p->s < p->end && *p->s == '|') {
            p->s++;
            skip_space(p, 1);
            continue;
        }
        break;
    }
    ok = ok && set_rule(p, rule, alts, n);
    elists_free(alts, n);
    return ok;
}

static int parse_rule(parser *p)
{
    const char *at = p->s;
    while (p->s < p->end && is_word(*p->s))
        p->s++;
    if (p->s == at)
        return fail_at(p, at, "a rule name was expected"), 0;
    int32_t r = rule_by_name(p, at, (size_t)(p->s - at), 1);
    if (r < 0)
        return 0;
    if (p->defined[r])
        return fail_at(p, at, "the rule is defined twice"), 0;
    p->defined[r] = (int32_t)(at - p->begin) + 1;
    skip_space(p, 0);
    if (p->end - p->s < 3 || memcmp(p->s, "::=", 3) != 0)
        return fail_at(p, p->s, "'::=' was expected"), 0;
    p->s += 3;
    skip_space(p, 1);
    if (!parse_alternates(p, r, 0))
        return 0;
    if (p->s < p->end && *p->s != '\n' && *p->s != '\r')
        return fail_at(p, p->s, "unexpected character (a newline was expected)"), 0;
    skip_space(p, 1);
    return 1;
}

/* ---- checks: undefined rules, left recursion ---- */

static const char *rule_name(const dsri_gbnf *g, int32_t r)
{
    return g->rules[r].name >= 0 ? g->names + g->rules[r].name : "(a group or repetition)";
}

/* Which rules can match the empty string: the linear worklist algorithm
 * (each alternative counts its elements not yet known to be nullable). */
static int compute_nullable(parser *p, uint8_t *nullable)
{
    const dsri_gbnf *g = p->g;
    int32_t *left = dsri_calloc((size_t)g->n_alts + 1, sizeof *left);
    int32_t *alt_rule = dsri_calloc((size_t)g->n_alts + 1, sizeof *alt_rule);
    int32_t *occ_first = dsri_calloc((size_t)g->n_rules + 1, sizeof *occ_first);
    int32_t *occ = dsri_calloc((size_t)g->n_elems + 1, sizeof *occ); /* alternatives by referenced rule */
    int32_t *work = dsri_calloc((size_t)g->n_rules + 1, sizeof *work);
    int ok = left && alt_rule && occ_first && occ && work;
    if (ok) {
        int32_t n_occ = 0;
        for (int32_t r = 0; r < g->n_rules; r++)
            for (int32_t a = 0; a < g->rules[r].n_alts; a++)
                alt_rule[g->rules[r].first_alt + a] = r;
        /* count references per rule, then bucket them (counting sort) */
        for (int32_t a = 0; a < g->n_alts; a++)
            for (int32_t e = g->alts[a]; g->elems[e].type != DSRI_GE_END; e++)
                if (g->elems[e].type == DSRI_GE_RULE)
                    occ_first[g->elems[e].value]++;
        for (int32_t r = 0, sum = 0; r <= g->n_rules; r++) {
            int32_t c = r < g->n_rules ? occ_first[r] : 0;
            occ_first[r] = sum;
            sum += c;
        }
        int32_t *fill = work; /* borrowed as per-rule fill counters */
        for (int32_t a = 0; a < g->n_alts; a++) {
            for (int32_t e = g->alts[a]; g->elems[e].type != DSRI_GE_END; e++) {
                if (g->elems[e].type == DSRI_GE_CHAR) {
                    left[a] = INT32_MAX / 2;
                } else if (left[a] < INT32_MAX / 2) {
                    left[a]++;
                }
                if (g->elems[e].type == DSRI_GE_RULE) {
                    int32_t r = g->elems[e].value;
                    occ[occ_first[r] + fill[r]++] = a;
                    n_occ++;
                }
            }
        }
        (void)n_occ;
        memset(work, 0, (size_t)g->n_rules * sizeof *work);
        int32_t n_work = 0;
        for (int32_t a = 0; a < g->n_alts; a++) {
            int32_t r = alt_rule[a];
            if (left[a] == 0 && !nullable[r]) {
                nullable[r] = 1;
                work[n_work++] = r;
            }
        }
        while (n_work > 0) {
            int32_t r = work[--n_work];
            for (int32_t i = occ_first[r]; i < occ_first[r + 1]; i++) {
                int32_t a = occ[i];
                if (left[a] < INT32_MAX / 2 && --left[a] == 0 && !nullable[alt_rule[a]]) {
                    nullable[alt_rule[a]] = 1;
                    work[n_work++] = alt_rule[a];
                }
            }
        }
    }
    dsri_free(left);
    dsri_free(alt_rule);
    dsri_free(occ_first);
    dsri_free(occ);
    dsri_free(work);
    if (!ok)
        oom(p);
    return ok;
}

/* A rule that can reach itself before consuming a character would make
 * the matcher expand forever: find such a cycle with an iterative DFS over
 * "may start with" edges. */
static int check_left_recursion(parser *p)
{
    const dsri_gbnf *g = p->g;
    uint8_t *nullable = dsri_calloc((size_t)g->n_rules + 1, 1);
    uint8_t *color = dsri_calloc((size_t)g->n_rules + 1, 1); /* 0 new, 1 on the path, 2 done */
    int32_t *st_rule = dsri_malloc(((size_t)g->n_rules + 1) * sizeof *st_rule);
    int32_t *st_alt = dsri_malloc(((size_t)g->n_rules + 1) * sizeof *st_alt);
    int32_t *st_elem = dsri_malloc(((size_t)g->n_rules + 1) * sizeof *st_elem);
    int ok = nullable && color && st_rule && st_alt && st_elem;
    if (!ok)
        oom(p);
    ok = ok && compute_nullable(p, nullable);
    for (int32_t r0 = 0; ok && r0 < g->n_rules; r0++) {
        if (color[r0])
            continue;
        int32_t sp = 0;
        st_rule[0] = r0;
        st_alt[0] = 0;
        st_elem[0] = -1;
        color[r0] = 1;
        while (ok && sp >= 0) {
            int32_t r = st_rule[sp];
            const dsri_grule *rule = &g->rules[r];
            /* the next rule this one may start with */
            int32_t next = -1;
            while (st_alt[sp] < rule->n_alts) {
                int32_t e = st_elem[sp] < 0 ? g->alts[rule->first_alt + st_alt[sp]] : st_elem[sp] + 1;
                int32_t prev = st_elem[sp];
                if (prev >= 0 && !(g->elems[prev].type == DSRI_GE_RULE && nullable[g->elems[prev].value]))
                    e = -1; /* the previous element consumes: this alternative is done */
                if (e >= 0 && g->elems[e].type == DSRI_GE_RULE) {
                    st_elem[sp] = e;
                    next = g->elems[e].value;
                    break;
                }
                st_alt[sp]++;
                st_elem[sp] = -1;
            }
            if (next < 0) {
                color[r] = 2;
                sp--;
                continue;
            }
            if (color[next] == 1) {
                dsri_error(DSR1_ERR_FORMAT, "grammar: left recursion through rule '%s' (a rule must match a "
                           "character before it can come back to itself)", rule_name(g, next));
                p->st = DSR1_ERR_FORMAT;
                ok = 0;
            } else if (color[next] == 0) {
                color[next] = 1;
                sp++;
                st_rule[sp] = next;
                st_alt[sp] = 0;
                st_elem[sp] = -1;
            }
        }
    }
    dsri_free(nullable);
    dsri_free(color);
    dsri_free(st_rule);
    dsri_free(st_alt);
    dsri_free(st_elem);
    return ok;
}

/* start ::= ws{0,lead_ws} root */
static int add_start(parser *p, int32_t lead_ws)
{
    dsri_gbnf *g = p->g;
    g->start = g->root;
    if (lead_ws <= 0)
        return 1;
    int32_t k = new_class(p, 0);
    if (k < 0 || !class_add(p, k, ' ', ' ') || !class_add(p, k, '\t', '\t') || !class_add(p, k, '\n', '\n') ||
        !class_add(p, k, '\r', '\r'))
        return 0;
    class_finish(g, k);
    elist seq;
    memset(&seq, 0, sizeof seq);
    int32_t r = new_rule(p, -1);
    int ok = r >= 0 && elist_push(p, &seq, DSRI_GE_CHAR, k) && repeat_last(p, &seq, 0, 0, lead_ws) &&
             elist_push(p, &seq, DSRI_GE_RULE, g->root) && set_rule(p, r, &seq, 1);
    dsri_free(seq.v);
    if (ok)
        g->start = r;
    return ok;
}

dsr1_status dsri_gbnf_parse(const char *text, size_t len, const char *root, int32_t lead_ws, dsri_gbnf **out)
{
    *out = NULL;
    if (!text && len)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "grammar: text is NULL");
    if (len > DSRI_GBNF_MAX_TEXT)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "grammar: the text is %zu bytes, more than the %u allowed", len,
                          DSRI_GBNF_MAX_TEXT);
    if (lead_ws < 0 || lead_ws > 64)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "grammar: lead_ws %d outside [0, 64]", lead_ws);
    parser p;
    memset(&p, 0, sizeof p);
    p.begin = p.s = text ? text : "";
    p.end = p.begin + len;
    p.budget = DSRI_GBNF_MAX_ELEMS * 2;
    p.g = dsri_calloc(1, sizeof *p.g);
    if (!p.g)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "grammar: out of memory");
    p.g->root = -1;
    skip_space(&p, 1);
    while (!p.st && p.s < p.end)
        parse_rule(&p);
    dsri_gbnf *g = p.g;
    for (int32_t r = 0; !p.st && r < g->n_rules; r++)
        if (g->rules[r].name >= 0 && !p.defined[r])
            p.st = dsri_error(DSR1_ERR_FORMAT, "grammar: rule '%s' is used but never defined", rule_name(g, r));
    if (!p.st) {
        const char *rn = root ? root : "root";
        g->root = rule_by_name(&p, rn, strlen(rn), 0);
        if (g->root < 0 && !p.st)
            p.st = dsri_error(DSR1_ERR_FORMAT, "grammar: there is no rule '%s' to start from", rn);
    }
    if (!p.st)
        check_left_recursion(&p);
    if (!p.st)
        add_start(&p, lead_ws);
    dsri_free(p.defined);
    dsri_free(p.hash);
    if (p.st) {
        dsri_gbnf_free(g);
        return p.st;
    }
    *out = g;
    return DSR1_OK;
}

void dsri_gbnf_free(dsri_gbnf *g)
{
    if (!g)
        return;
    dsri_free(g->elems);
    dsri_free(g->alts);
    dsri_free(g->rules);
    dsri_free(g->classes);
    dsri_free(g->ranges);
    dsri_free(g->names);
    dsri_free(g);
}
