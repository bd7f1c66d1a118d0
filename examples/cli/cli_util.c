#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void log_to_stderr(dsr1_log_level level, const char *message, void *user_data)
{
    (void)user_data;
    static const char *const names[] = {"error", "warn", "info", "debug"};
    fprintf(stderr, "[%s] %s\n", names[level <= DSR1_LOG_DEBUG ? level : DSR1_LOG_DEBUG], message);
}

dsr1_model *dsr1_cli_load(const char *path, int vocab_only, int verbose)
{
    if (!path) {
        fprintf(stderr, "dsr1: -m MODEL is required\n");
        return NULL;
    }
    dsr1_model_params mp;
    dsr1_model_params_default(&mp, sizeof mp);
    mp.vocab_only = vocab_only;
    if (verbose) {
        mp.log_callback = log_to_stderr;
        mp.log_level = DSR1_LOG_DEBUG;
    }
    dsr1_model *model = NULL;
    dsr1_status st = dsr1_model_load(path, &mp, &model);
    if (st != DSR1_OK) {
        fprintf(stderr, "dsr1: cannot load '%s': %s\n", path, dsr1_last_error());
        return NULL;
    }
    return model;
}

int dsr1_cli_fail(const char *cmd, dsr1_status st)
{
    fprintf(stderr, "dsr1 %s: %s (%s)\n", cmd, dsr1_last_error(), dsr1_status_string(st));
    return 1;
}

long dsr1_cli_parse_long(const char *cmd, const char *flag, const char *value, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = value ? strtol(value, &end, 10) : 0;
    if (!value || errno || *end || end == value || v < lo || v > hi) {
        fprintf(stderr, "dsr1 %s: %s needs an integer in [%ld, %ld], got '%s'\n", cmd, flag, lo, hi,
                value ? value : "(nothing)");
        exit(1);
    }
    return v;
}

dsr1_kv_type dsr1_cli_parse_kv_type(const char *cmd, const char *flag, const char *value)
{
    if (value && !strcmp(value, "f16"))
        return DSR1_KV_F16;
    if (value && !strcmp(value, "f32"))
        return DSR1_KV_F32;
    fprintf(stderr, "dsr1 %s: %s needs f16 or f32, got '%s'\n", cmd, flag, value ? value : "(nothing)");
    exit(1);
}

double dsr1_cli_parse_double(const char *cmd, const char *flag, const char *value, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = value ? strtod(value, &end) : 0;
    if (!value || errno || *end || end == value || !(v >= lo && v <= hi)) {
        fprintf(stderr, "dsr1 %s: %s needs a number in [%g, %g], got '%s'\n", cmd, flag, lo, hi,
                value ? value : "(nothing)");
        exit(1);
    }
    return v;
}
