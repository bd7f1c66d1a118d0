/* JSON schema -> GBNF text (internal; json_schema.c lists the subset). */
#ifndef DSRI_JSON_SCHEMA_H
#define DSRI_JSON_SCHEMA_H

#include <stddef.h>

#include "dsr1.h"

/* *out: NUL-terminated GBNF (dsri_free it) whose start rule is "root". */
dsr1_status dsri_json_schema_to_gbnf(const char *schema, size_t len, char **out, size_t *out_len);

#endif
