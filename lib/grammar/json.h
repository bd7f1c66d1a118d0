/*
 * A small JSON reader (internal): the whole document as a tree, for the
 * JSON-schema converter and the tests that validate structured answers.
 * Strict RFC 8259: no comments, no trailing commas; strings are decoded
 * to UTF-8 (\u escapes and surrogate pairs included); numbers keep their
 * text. Nesting is limited to DSRI_JSON_MAX_DEPTH, so hostile input
 * cannot exhaust the stack.
 */
#ifndef DSRI_JSON_H
#define DSRI_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "dsr1.h"

#define DSRI_JSON_MAX_DEPTH 64

typedef enum dsri_json_type {
    DSRI_JSON_NULL,
    DSRI_JSON_BOOL,
    DSRI_JSON_NUMBER,
    DSRI_JSON_STRING,
    DSRI_JSON_ARRAY,
    DSRI_JSON_OBJECT
} dsri_json_type;

typedef struct dsri_json dsri_json;
struct dsri_json {
    dsri_json_type type;
    int boolean;
    double number;
    char *text;      /* STRING: decoded UTF-8 (NUL-terminated); NUMBER: as written */
    size_t text_len;
    char **keys;     /* OBJECT: n keys, parallel to items */
    dsri_json **items; /* ARRAY and OBJECT */
    int32_t n;
};

/* Parse text[0..len) (one value, surrounded by whitespace only). Errors
 * are DSR1_ERR_FORMAT with the byte offset. */
dsr1_status dsri_json_parse(const char *text, size_t len, dsri_json **out);
void dsri_json_free(dsri_json *v);
/* The member called key of an object, or NULL. */
const dsri_json *dsri_json_get(const dsri_json *obj, const char *key);

#endif
