/* Size-prefixed public structs: defaults, reading, writing (see params.h). */
#include "core/params.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"

void dsri_params_default(void *params, size_t struct_size, const void *defaults, size_t lib_size)
{
    if (!params || struct_size < sizeof(size_t))
        return;
    memset(params, 0, struct_size);
    memcpy(params, defaults, struct_size < lib_size ? struct_size : lib_size);
    memcpy(params, &struct_size, sizeof struct_size);
}

static dsr1_status check_size(size_t size, const char *name, const char *how)
{
    if (size < sizeof(size_t) || size > DSRI_MAX_STRUCT_SIZE)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s.size is %zu: %s", name, size, how);
    return DSR1_OK;
}

dsr1_status dsri_params_read(const void *in, void *out, size_t lib_size, size_t known, const char *name)
{
    memcpy(out, &lib_size, sizeof lib_size);
    if (!in)
        return DSR1_OK;
    size_t size;
    memcpy(&size, in, sizeof size);
    char how[96];
    snprintf(how, sizeof how, "initialise it with %.*s_default()", (int)(strlen(name) > 48 ? 48 : strlen(name)), name);
    dsr1_status st = check_size(size, name, how);
    if (st)
        return st;
    const unsigned char *bytes = in;
    for (size_t i = known; i < size; i++)
        if (bytes[i] != 0)
            return dsri_error(DSR1_ERR_UNSUPPORTED,
                              "%s: byte %zu of the caller's %zu-byte struct is set, but this library (%s) knows "
                              "only its first %zu bytes: a field it does not support was used (a newer header "
                              "than the library)", name, i, size, dsr1_version(), known);
    /* keep the default's padding and unknown tail; copy the caller's fields */
    memcpy((unsigned char *)out + sizeof size, bytes + sizeof size, (size < known ? size : known) - sizeof size);
    return DSR1_OK;
}

dsr1_status dsri_struct_write(void *out, const void *src, size_t lib_size, const char *name)
{
    size_t size;
    memcpy(&size, out, sizeof size);
    dsr1_status st = check_size(size, name, "set it to the struct's sizeof before the call");
    if (st)
        return st;
    size_t n = size < lib_size ? size : lib_size;
    memcpy((unsigned char *)out + sizeof size, (const unsigned char *)src + sizeof size, n - sizeof size);
    if (size > lib_size)
        memset((unsigned char *)out + lib_size, 0, size - lib_size);
    return DSR1_OK;
}
