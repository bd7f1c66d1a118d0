/*
 * Reading and writing the public size-prefixed structs (internal): the one
 * implementation of the ABI-growth rules in doc/abi.md.
 *
 * A caller passes a struct whose first field is its own size as the caller
 * compiled it. Older callers pass less: the library's defaults stand for the
 * rest. Newer callers may pass more: the bytes past what this library knows
 * must be zero (the *_params_default functions zero them), otherwise the
 * caller set a field this library does not support and the call fails with
 * DSR1_ERR_UNSUPPORTED naming the struct, instead of silently ignoring it.
 */
#ifndef DSRI_PARAMS_H
#define DSRI_PARAMS_H

#include <stddef.h>

#include "dsr1.h"

/* The bytes of type up to the end of its last field: a field appended into
 * the tail padding of an older layout still counts as unknown. */
#define DSRI_KNOWN_SIZE(type, last_field) (offsetof(type, last_field) + sizeof(((type *)0)->last_field))

/* Largest size field accepted (catches uninitialised structs). */
#define DSRI_MAX_STRUCT_SIZE 4096

/* The body of every *_params_default(params, struct_size): copy the
 * library's defaults (lib_size bytes) into the caller's struct_size bytes,
 * zero the rest, and set the size field to struct_size. */
void dsri_params_default(void *params, size_t struct_size, const void *defaults, size_t lib_size);

/* Overlay the caller's struct `in` (may be NULL: defaults) on `out`, which
 * holds the library's defaults (lib_size bytes, of which `known` are fields).
 * name is the struct's C name for messages. out's size field becomes
 * lib_size. */
dsr1_status dsri_params_read(const void *in, void *out, size_t lib_size, size_t known, const char *name);

/* Write the library's filled output struct src (lib_size bytes) into the
 * caller's out, whose size field says how many bytes it has; bytes past
 * lib_size are zeroed (fields this library does not know read as 0).
 * DSR1_ERR_INVALID_ARGUMENT when the size field is not set. */
dsr1_status dsri_struct_write(void *out, const void *src, size_t lib_size, const char *name);

#endif
