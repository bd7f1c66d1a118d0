/* Helpers every subcommand shares: loading (with a progress bar), context parameters, errors, files. */
#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime, isatty, fileno */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static void log_to_stderr(dsr1_log_level level, const char *message, void *user_data)
{
    (void)user_data;
    static const char *const names[] = {"error", "warn", "info", "debug"};
    fprintf(stderr, "[%s] %s\n", names[level <= DSR1_LOG_DEBUG ? level : DSR1_LOG_DEBUG], message);
}

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Progress bars (loads, quantize): on a terminal only, and only once the
 * work has taken DSR1_PROGRESS_AFTER_MS milliseconds (200 by default), so
 * quick work prints nothing. */
void dsr1_cli_progress_init(dsr1_cli_progress *bar, const char *label)
{
    bar->label = label;
    bar->start = seconds_now();
    bar->after = 0.2;
    bar->drawn = 0;
    bar->width = 0;
    bar->enabled = isatty(fileno(stderr));
    const char *after = getenv("DSR1_PROGRESS_AFTER_MS");
    if (after && *after)
        bar->after = atof(after) / 1000.0;
}

#define BAR_WIDTH 30

void dsr1_cli_progress_draw(dsr1_cli_progress *bar, uint64_t done, uint64_t total, int bytes)
{
    int finished = done >= total;
    if (!bar->enabled || (!bar->drawn && (finished || seconds_now() - bar->start < bar->after)))
        return;
    double frac = total ? (double)done / (double)total : 1.0;
    char cells[BAR_WIDTH + 1];
    int full = (int)(frac * BAR_WIDTH + 0.5);
    for (int i = 0; i < BAR_WIDTH; i++)
        cells[i] = i < full ? '#' : '.';
    cells[BAR_WIDTH] = '\0';
    int n;
    if (bytes)
        n = fprintf(stderr, "\r%s [%s] %3.0f%%  %.1f/%.1f MiB  ", bar->label, cells, 100.0 * frac,
                    (double)done / 1048576.0, (double)total / 1048576.0);
    else
        n = fprintf(stderr, "\r%s [%s] %3.0f%%  %llu/%llu  ", bar->label, cells, 100.0 * frac,
                    (unsigned long long)done, (unsigned long long)total);
    if (finished)
        fputc('\n', stderr);
    fflush(stderr);
    bar->drawn = !finished;
    bar->width = n > 1 ? n - 1 : 0; /* without the \r */
}

void dsr1_cli_progress_clear(dsr1_cli_progress *bar)
{
    if (!bar->drawn)
        return;
    fprintf(stderr, "\r%*s\r", bar->width, ""); /* no escape sequences (TERM=dumb) */
    fflush(stderr);
}

void dsr1_cli_progress_end(dsr1_cli_progress *bar)
{
    if (bar->drawn)
        fputc('\n', stderr);
    bar->drawn = 0;
}

static int draw_load_progress(const dsr1_progress *p, void *user_data)
{
    if (p->bytes_total)
        dsr1_cli_progress_draw(user_data, p->bytes_done, p->bytes_total, 1);
    else
        dsr1_cli_progress_draw(user_data, (uint64_t)p->tensors_done, (uint64_t)p->tensors_total, 0);
    return 0;
}

/* `--backend vulkan`, as llama.cpp users write it, names a device backend:
 * the model offloads to that backend's device (every layer unless -ngl says
 * how many) and the context takes the usual host backend for the rest. */
static int names_device_backend(const char *name)
{
    if (!name)
        return 0;
    for (int32_t i = 0; i < dsr1_device_count(); i++) {
        dsr1_device_props dp = {.size = sizeof dp};
        if (dsr1_device_info(i, &dp) == DSR1_OK && strcmp(dp.backend, name) == 0)
            return 1;
    }
    return 0;
}

dsr1_model *dsr1_cli_load(const char *cmd, const dsr1_cli_opts *o, int vocab_only)
{
    if (!o->model_path) {
        fprintf(stderr, "dsr1 %s: -m MODEL is required\n(dsr1 %s --help lists the options)\n", cmd, cmd);
        exit(DSR1_EXIT_USAGE);
    }
    dsr1_model_params mp;
    dsr1_model_params_default(&mp, sizeof mp);
    mp.vocab_only = vocab_only;
    mp.n_gpu_layers = vocab_only ? 0 : o->n_gpu_layers;
    mp.device = o->device;
    mp.cpu_moe = o->cpu_moe;
    if (!vocab_only && names_device_backend(o->backend)) {
        if (!mp.n_gpu_layers)
            mp.n_gpu_layers = -1;
        if (!mp.device)
            mp.device = o->backend;
    }
    if (o->verbose) {
        mp.log_callback = log_to_stderr;
        mp.log_level = DSR1_LOG_DEBUG;
    }
    dsr1_cli_progress bar;
    dsr1_cli_progress_init(&bar, "loading");
    if (bar.enabled) {
        mp.progress_callback = draw_load_progress;
        mp.progress_user_data = &bar;
    }
    dsr1_model *model = NULL;
    dsr1_status st = dsr1_model_load(o->model_path, &mp, &model);
    if (st != DSR1_OK) {
        dsr1_cli_progress_end(&bar);
        fprintf(stderr, "dsr1 %s: cannot load '%s': %s\n", cmd, o->model_path, dsr1_last_error());
        return NULL;
    }
    return model;
}

void dsr1_cli_context_params(const dsr1_cli_opts *o, dsr1_context_params *cp)
{
    dsr1_context_params_default(cp, sizeof *cp);
    cp->n_ctx = o->n_ctx;
    cp->n_threads = o->n_threads;
    cp->backend = names_device_backend(o->backend) ? NULL : o->backend;
    cp->kv_type = dsr1_cli_kv_type(o);
}

int dsr1_cli_fail(const char *cmd, dsr1_status st)
{
    fprintf(stderr, "dsr1 %s: %s (%s)\n", cmd, dsr1_last_error(), dsr1_status_string(st));
    return DSR1_EXIT_ERROR;
}

char *dsr1_cli_read_file(const char *cmd, const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    size_t cap = 1 << 16, n = 0;
    char *buf = f ? malloc(cap + 1) : NULL;
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *b = realloc(buf, 2 * cap + 1);
        if (!b) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = b;
        cap *= 2;
    }
    if (buf && ferror(f)) {
        free(buf);
        buf = NULL;
    }
    if (f && f != stdin)
        fclose(f);
    if (!buf) {
        fprintf(stderr, "dsr1 %s: cannot read %s\n", cmd, strcmp(path, "-") ? path : "stdin");
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

char *dsr1_cli_read_message(const char *cmd, const char *path)
{
    size_t len = 0;
    char *text = dsr1_cli_read_file(cmd, path, &len);
    /* the newline that ends a file or an echo is not part of the message (as llama-cli's -f) */
    if (text && len > 0 && text[len - 1] == '\n')
        text[--len] = '\0';
    if (text && len > 0 && text[len - 1] == '\r')
        text[--len] = '\0';
    return text;
}

int dsr1_cli_color(FILE *f)
{
    const char *no_color = getenv("NO_COLOR"), *term = getenv("TERM");
    if (no_color && *no_color)
        return 0;
    if (term && !strcmp(term, "dumb"))
        return 0;
    return isatty(fileno(f));
}
