/* dsr1 info -m MODEL: metadata and the tensor table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void print_meta(const dsr1_model *model)
{
    int64_t n = dsr1_model_meta_count(model);
    printf("metadata (%lld keys):\n", (long long)n);
    for (int64_t i = 0; i < n; i++) {
        char key[256], value[512];
        size_t need;
        if (dsr1_model_meta_key(model, i, key, sizeof key, &need) != DSR1_OK)
            snprintf(key, sizeof key, "(key of %zu bytes)", need);
        dsr1_status st = dsr1_model_meta_value(model, key, value, sizeof value, &need);
        if (st == DSR1_ERR_BUFFER_TOO_SMALL)
            strcpy(value + sizeof value - 5, " ...");
        else if (st != DSR1_OK)
            value[0] = '\0';
        printf("  %-44s = %s\n", key, value);
    }
}

static void print_tensors(const dsr1_model *model)
{
    int64_t n = dsr1_model_tensor_count(model);
    printf("tensors (%lld):\n", (long long)n);
    printf("  %-36s %-7s %-24s %12s\n", "name", "type", "shape", "bytes");
    for (int64_t i = 0; i < n; i++) {
        dsr1_tensor_info ti;
        ti.size = sizeof ti;
        if (dsr1_model_tensor_info(model, i, &ti) != DSR1_OK)
            continue;
        char shape[64];
        int len = 0;
        for (uint32_t d = 0; d < ti.n_dims; d++)
            len += snprintf(shape + len, sizeof shape - (size_t)len, "%s%lld", d ? " x " : "",
                            (long long)ti.ne[d]);
        printf("  %-36s %-7s %-24s %12llu\n", ti.name, dsr1_type_name(ti.type), shape,
               (unsigned long long)ti.n_bytes);
    }
}

int dsr1_cli_info(const dsr1_cli_command *cmd, dsr1_cli_opts *o)
{
    const char *path = o->model_path;
    dsr1_model *model = dsr1_cli_load(cmd->name, o, 0);
    if (!model) {
        /* a vocabulary-only file still has metadata worth showing */
        fprintf(stderr, "dsr1 %s: trying it as a vocabulary-only file\n", cmd->name);
        if (!(model = dsr1_cli_load(cmd->name, o, 1)))
            return DSR1_EXIT_ERROR;
    }
    printf("file: %s\n", path);
    printf("architecture: %s\n", dsr1_model_arch(model));
    printf("n_vocab %d, n_ctx_train %d, n_embd %d, n_layer %d, n_head %d, n_head_kv %d\n",
           dsr1_model_n_vocab(model), dsr1_model_n_ctx_train(model), dsr1_model_n_embd(model),
           dsr1_model_n_layer(model), dsr1_model_n_head(model), dsr1_model_n_head_kv(model));
    printf("parameters: %llu (%.2f MiB)\n", (unsigned long long)dsr1_model_n_params(model),
           (double)dsr1_model_size_bytes(model) / 1048576.0);
    print_meta(model);
    print_tensors(model);
    dsr1_model_free(model);
    return 0;
}
