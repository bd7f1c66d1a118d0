/*
 * libdsr1 - run DeepSeek-R1 and its distilled models inside your program.
 *
 * This header is the whole public interface and its documentation.
 *
 * Quick start
 * -----------
 *     dsr1_model *model;
 *     dsr1_model_params mp;
 *     dsr1_model_params_default(&mp, sizeof mp);
 *     if (dsr1_model_load("model.gguf", &mp, &model) != DSR1_OK) {
 *         fprintf(stderr, "%s\n", dsr1_last_error());
 *         return 1;
 *     }
 *     dsr1_context *ctx;
 *     dsr1_context_params cp;
 *     dsr1_context_params_default(&cp, sizeof cp);
 *     dsr1_context_new(model, &cp, &ctx);
 *     ... dsr1_eval() / dsr1_logits(), or the generation API below ...
 *     dsr1_context_free(ctx);
 *     dsr1_model_free(model);
 *
 * Conventions
 * -----------
 * - Every function that can fail returns a dsr1_status. On failure a message
 *   naming the precise cause is kept by the handle the function was called
 *   on (dsr1_context_errmsg() and the other *_errmsg functions) until the
 *   next call on that handle, and by the calling thread (dsr1_last_error())
 *   until the next failure on that thread; see "Status codes and errors".
 * - Handles are opaque. A dsr1_model is immutable after loading and may be
 *   shared by any number of threads. A dsr1_context, dsr1_sampler,
 *   dsr1_generation and dsr1_chat must be used by one thread at a time
 *   (dsr1_generation_cancel() is the one exception: any thread may call it).
 *   Which callbacks may call back into the library is stated in "Threads,
 *   callbacks and re-entrancy" below.
 * - Handles borrow the handles they are made from: a context and a decoder
 *   borrow their model; a generation and a chat borrow their context and
 *   sampler. Free the borrower first.
 * - Parameter structs begin with their own size. Always initialise them with
 *   the matching *_params_default(&p, sizeof p) function, then change the
 *   fields you care about. New fields are only ever appended, so a program
 *   built against an older header keeps working with a newer library. A
 *   program built against a newer header that sets a field this library
 *   does not know (a non-zero byte past the struct as the library knows it)
 *   gets DSR1_ERR_UNSUPPORTED naming the struct, never a silently ignored
 *   setting (doc/abi.md).
 * - Functions that fill a caller's buffer take its capacity and report the
 *   size needed; when the buffer is short they return
 *   DSR1_ERR_BUFFER_TOO_SMALL and store the needed size. Token buffers need
 *   exactly *n_tokens entries. Text buffers follow one rule everywhere:
 *   *n_bytes is the length without the NUL, the buffer needs *n_bytes + 1
 *   bytes, and on success the text is always NUL-terminated. Passing NULL
 *   with size 0 asks for the size.
 * - Pointers passed in are borrowed only for the duration of the call
 *   (strings in parameter structs, stop strings, prompts and messages are
 *   copied when they are needed later), with two exceptions: a model's log
 *   callback and its user_data must stay valid until dsr1_model_free(), and
 *   the buffer given to dsr1_model_load_from_memory() until then too.
 * - Enums are C enums (int-sized on every supported platform); fields that
 *   hold them in structs are declared with the enum type or int32_t.
 * - No function has variable arguments, every callback takes a
 *   void *user_data, and all structs are plain data: the API is usable from
 *   any FFI (see bindings/python).
 * - The library keeps no global mutable state: two contexts used from two
 *   threads never interfere.
 */
#ifndef DSR1_H
#define DSR1_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(DSR1_BUILD_SHARED)
#define DSR1_API __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#define DSR1_API __attribute__((visibility("default")))
#else
#define DSR1_API
#endif

/* ------------------------------------------------------------------------ */
/* Versions                                                                   */
/* ------------------------------------------------------------------------ */

#define DSR1_VERSION_MAJOR 0
#define DSR1_VERSION_MINOR 3
#define DSR1_VERSION_PATCH 0
/* Bumped only when the ABI changes incompatibly (see doc/abi.md). */
#define DSR1_ABI_VERSION 0

/* "MAJOR.MINOR.PATCH" of the library actually loaded. */
DSR1_API const char *dsr1_version(void);
/* DSR1_ABI_VERSION of the library actually loaded; compare it with the
 * macro to detect a mismatched shared library at run time. */
DSR1_API int dsr1_abi_version(void);

/* ------------------------------------------------------------------------ */
/* Threads, callbacks and re-entrancy                                         */
/* ------------------------------------------------------------------------ */
/*
 * Handles:
 * - dsr1_model: immutable once loaded; any number of threads may call the
 *   functions that take a const dsr1_model * at the same time, including
 *   from inside any callback. Free it last, from one thread.
 * - dsr1_context, dsr1_sampler, dsr1_decoder, dsr1_generation, dsr1_chat:
 *   one thread at a time. A call on one of them while another call on it
 *   is running (from that call's callback, or from another thread) is
 *   refused with DSR1_ERR_STATE (void functions do nothing and set
 *   dsr1_last_error()), never corrupts it. While a dsr1_generation_step
 *   (or _run, dsr1_generate, dsr1_chat_ask) runs, its context and sampler
 *   count as in use too. Read-only getters (dsr1_context_n_past,
 *   dsr1_context_n_ctx, dsr1_generation_get_stats, the *_errmsg functions)
 *   are always allowed from the handle's own callbacks.
 * - dsr1_generation_cancel() may be called from any thread and any
 *   callback, as long as the generation has not been freed: freeing must
 *   happen after every thread is done cancelling (the library cannot tell
 *   a freed handle from a live one).
 * Callbacks (all run on the thread that made the library call):
 * - dsr1_log_fn: may call functions on the model; not on the context or
 *   generation that is logging.
 * - dsr1_progress_fn: may call any function; the model being loaded does
 *   not exist yet.
 * - dsr1_abort_fn: polled once per layer: keep it cheap; may call
 *   dsr1_generation_cancel() and functions on the model; calls on its
 *   context are refused (DSR1_ERR_STATE).
 * - dsr1_event_fn: may call dsr1_generation_cancel(), the getters above,
 *   functions on the model, and any function on handles unrelated to the
 *   generation; calls that would change the generation, its context or its
 *   sampler (step, run, free, dsr1_eval, dsr1_context_reset,
 *   dsr1_sampler_sample...) are refused with DSR1_ERR_STATE.
 *   dsr1_chat_free/_reset of the chat that began a stepped generation are
 *   allowed (it goes on alone).
 * - dsr1_step_fn (on_step): the same rules as dsr1_event_fn; the logits it
 *   is given may be changed, never the generation's handles.
 * A callback's own calls report to it as usual, but a failure among them
 * never replaces the outcome of the call that ran the callback: once that
 * call returns, its handle's message and dsr1_last_error() describe it
 * (a failed load that logs its error, a cancelled step that sends DONE).
 */

/* ------------------------------------------------------------------------ */
/* Status codes and errors                                                    */
/* ------------------------------------------------------------------------ */

typedef enum dsr1_status {
    DSR1_OK = 0,
    DSR1_ERR_INVALID_ARGUMENT = 1, /* a NULL handle, an out-of-range value */
    DSR1_ERR_IO = 2,               /* a file cannot be opened, read or mapped */
    DSR1_ERR_FORMAT = 3,           /* a model file or saved state is corrupt or inconsistent */
    DSR1_ERR_UNSUPPORTED = 4,      /* valid, but not supported (architecture, weight type, backend) */
    DSR1_ERR_OUT_OF_MEMORY = 5,
    DSR1_ERR_BUFFER_TOO_SMALL = 6, /* the needed size was stored */
    DSR1_ERR_CONTEXT_FULL = 7,     /* the tokens do not fit in n_ctx */
    DSR1_ERR_NUMERIC = 8,          /* NaN or infinite values where numbers were expected */
    DSR1_ERR_CANCELLED = 9,
    DSR1_ERR_STATE = 10,           /* the call is not valid in the object's current state */
    DSR1_ERR_INTERNAL = 11
} dsr1_status;

/* A constant English name for a status ("DSR1_ERR_FORMAT: ..."). Never NULL. */
DSR1_API const char *dsr1_status_string(dsr1_status status);

/* Error messages.
 *
 * Per handle: every function called on a dsr1_context, dsr1_sampler,
 * dsr1_generation, dsr1_chat or dsr1_decoder (the handle is its first
 * argument) records its outcome there: the message of its failure, or ""
 * once a call on that handle succeeded. Read it with the handle's *_errmsg
 * function below; it stays valid until the next call on that handle. A
 * call refused because the handle is busy (DSR1_ERR_STATE, see "Threads,
 * callbacks and re-entrancy") leaves the handle's message to the call that
 * is running and reports through dsr1_last_error() only.
 *
 * Per thread: calls without such a handle (loading, functions on the shared
 * dsr1_model, *_new functions whose handle does not exist yet) report
 * through dsr1_last_error(): the message of the most recent failure on this
 * thread ("" if none yet). Failures on handles are recorded there too. It
 * is not cleared by successful calls: read it right after a failure.
 *
 * DSR1_ERR_BUFFER_TOO_SMALL (a size query, or a buffer too short) is not a
 * failure: it stores the needed size and records no message anywhere, so a
 * size query never hides an earlier error. */
DSR1_API const char *dsr1_last_error(void);

/* ------------------------------------------------------------------------ */
/* Logging                                                                    */
/* ------------------------------------------------------------------------ */

typedef enum dsr1_log_level {
    DSR1_LOG_ERROR = 0,
    DSR1_LOG_WARN = 1,
    DSR1_LOG_INFO = 2,
    DSR1_LOG_DEBUG = 3
} dsr1_log_level;

/* Receives one complete line (no trailing newline). Called on the thread that
 * made the library call. The library is silent when no callback is set. */
typedef void (*dsr1_log_fn)(dsr1_log_level level, const char *message, void *user_data);

/* ------------------------------------------------------------------------ */
/* Tensor weight types (numbered as in GGUF / ggml)                           */
/* ------------------------------------------------------------------------ */

typedef enum dsr1_type {
    DSR1_TYPE_F32 = 0,
    DSR1_TYPE_F16 = 1,
    DSR1_TYPE_Q4_0 = 2,
    DSR1_TYPE_Q4_1 = 3,
    DSR1_TYPE_Q5_0 = 6,
    DSR1_TYPE_Q5_1 = 7,
    DSR1_TYPE_Q8_0 = 8,
    DSR1_TYPE_Q2_K = 10,
    DSR1_TYPE_Q3_K = 11,
    DSR1_TYPE_Q4_K = 12,
    DSR1_TYPE_Q5_K = 13,
    DSR1_TYPE_Q6_K = 14,
    DSR1_TYPE_IQ4_NL = 20,
    DSR1_TYPE_IQ4_XS = 23,
    DSR1_TYPE_BF16 = 30
} dsr1_type;

/* "q4_K", "f16", ...; "unknown" for ids the library does not know. */
DSR1_API const char *dsr1_type_name(uint32_t type);

/* ------------------------------------------------------------------------ */
/* Backends                                                                   */
/* ------------------------------------------------------------------------ */

/* Compute backends compiled into this library, best first. "scalar" (the
 * portable reference) is always present. A context picks one by name through
 * dsr1_context_params.backend or the DSR1_BACKEND environment variable. */
DSR1_API int dsr1_backend_count(void);
DSR1_API const char *dsr1_backend_name(int index); /* NULL when out of range */
/* 1 when the named backend is compiled in and usable on this machine. */
DSR1_API int dsr1_backend_available(const char *name);

/* Compute devices a model can offload to (n_gpu_layers): the GPUs the
 * Vulkan backend sees, and CPU-type Vulkan devices such as Mesa's lavapipe,
 * which are used only when chosen explicitly or when they are the only
 * device. Listing opens the Vulkan loader (libvulkan.so.1) at run time and
 * may take a few tens of milliseconds; a machine or build without Vulkan
 * has 0 devices. */
typedef struct dsr1_device_props {
    size_t size;         /* sizeof(dsr1_device_props), set by the caller */
    char name[128];      /* as the driver names it, e.g. "NVIDIA GeForce RTX 4090" */
    char backend[16];    /* "vulkan" */
    int32_t is_cpu;      /* 1: a CPU-type device (lavapipe) */
    uint64_t memory;     /* bytes of device memory (its largest device-local heap) */
} dsr1_device_props;

DSR1_API int32_t dsr1_device_count(void);
/* props->size must be set before the call; fields past it are not written.
 * DSR1_ERR_INVALID_ARGUMENT for an index out of range. */
DSR1_API dsr1_status dsr1_device_info(int32_t index, dsr1_device_props *props);

/* ------------------------------------------------------------------------ */
/* Models                                                                     */
/* ------------------------------------------------------------------------ */

typedef int32_t dsr1_token;
typedef struct dsr1_model dsr1_model;

/* Load progress. Loading validates every tensor (fast: the weights are
 * mapped, not read) and, with dsr1_model_params.preload, reads every weight
 * page (as slow as the disk). bytes count tensor data: validated, or read
 * with preload; the totals are the whole model's. The first report has
 * nothing done, the last everything. */
typedef struct dsr1_progress {
    size_t size;            /* sizeof(dsr1_progress) as the library filled it */
    uint64_t bytes_done;
    uint64_t bytes_total;
    int64_t tensors_done;
    int64_t tensors_total;
} dsr1_progress;

/* Return 0 to continue, non-zero to cancel: the load then fails with
 * DSR1_ERR_CANCELLED and frees everything. Called on the loading thread;
 * it may call any function that takes no handle of the model being loaded
 * (there is none yet). */
typedef int (*dsr1_progress_fn)(const dsr1_progress *progress, void *user_data);

typedef struct dsr1_model_params {
    size_t size;             /* sizeof(dsr1_model_params), set by the default function */
    int32_t vocab_only;      /* load only the tokenizer (files without weights) */
    dsr1_log_fn log_callback;/* NULL: silent */
    void *log_user_data;
    int32_t log_level;       /* dsr1_log_level: the most verbose level delivered */
    dsr1_progress_fn progress_callback; /* NULL: none. Called at least at the start and the end,
                                           and at most about every 1/256 of the model */
    void *progress_user_data;
    int32_t preload;         /* 1: read every weight page during the load, so the first
                                evaluation does not wait for the disk (progress counts the
                                bytes read); 0 (default): pages are read on first use */
    /* Offload (as llama.cpp's n_gpu_layers): the last n_gpu_layers layers
     * and the output head run on a GPU device, their weights copied into its
     * memory once at load and shared by every context; the other layers run
     * on the context's CPU backend. 0 (the default): CPU only; -1 or more
     * than the model has: every layer. Needs a build with a device backend
     * (Vulkan) and a device: else loading fails with DSR1_ERR_UNSUPPORTED. */
    int32_t n_gpu_layers;
    /* Which device (NULL: $DSR1_DEVICE, else the first GPU, or a CPU-type
     * Vulkan device such as lavapipe when it is the only one): an index as
     * listed by dsr1_device_info, or part of a backend or device name
     * ("vulkan", "llvmpipe", "RTX"). */
    const char *device;
    /* With n_gpu_layers on a mixture-of-experts model (DeepSeek-R1): 1
     * keeps the routed experts' weights (ffn_*_exps, most of R1's bytes) in
     * host memory, computed by the context's CPU backend, while attention,
     * the router, the shared expert and the output head of the offloaded
     * layers run on the device (llama.cpp's --cpu-moe). The device then
     * holds a small part of the model. Each offloaded MoE layer then moves
     * its normed input, the router's choice and the experts' sum between
     * the two memories.
     * 0 (default): offloaded layers keep their experts on the device.
     * No effect on dense models or without offload. */
    int32_t cpu_moe;
} dsr1_model_params;

/* Fill *params with defaults. struct_size is sizeof(*params) as the caller
 * compiled it. */
DSR1_API void dsr1_model_params_default(dsr1_model_params *params, size_t struct_size);

/* Map a GGUF file read-only and validate it completely (container, required
 * keys and tensors of the architecture, shapes, weight types). Weights are
 * used in place; nothing is copied, so loading takes the same time for any
 * file size. params may be NULL (defaults). */
DSR1_API dsr1_status dsr1_model_load(const char *path, const dsr1_model_params *params,
                                     dsr1_model **out_model);

/* The same from a buffer the caller owns; it must stay valid and unchanged
 * until dsr1_model_free(). */
DSR1_API dsr1_status dsr1_model_load_from_memory(const void *data, size_t size,
                                                 const dsr1_model_params *params,
                                                 dsr1_model **out_model);

DSR1_API void dsr1_model_free(dsr1_model *model); /* NULL is allowed */

/* "qwen2", "qwen3", "llama", "deepseek2". */
DSR1_API const char *dsr1_model_arch(const dsr1_model *model);
DSR1_API int32_t dsr1_model_n_vocab(const dsr1_model *model);
DSR1_API int32_t dsr1_model_n_ctx_train(const dsr1_model *model);
DSR1_API int32_t dsr1_model_n_embd(const dsr1_model *model);
DSR1_API int32_t dsr1_model_n_layer(const dsr1_model *model);
DSR1_API int32_t dsr1_model_n_head(const dsr1_model *model);
DSR1_API int32_t dsr1_model_n_head_kv(const dsr1_model *model);
/* Number of weights and the bytes they take in the file. */
DSR1_API uint64_t dsr1_model_n_params(const dsr1_model *model);
DSR1_API uint64_t dsr1_model_size_bytes(const dsr1_model *model);

/* Metadata (the GGUF key/value pairs). Values are rendered as text: numbers
 * in decimal, strings as they are, arrays as "[a, b, ...]" (long arrays are
 * cut after 16 elements and end with ", ... (N items)]"). */
DSR1_API int64_t dsr1_model_meta_count(const dsr1_model *model);
DSR1_API dsr1_status dsr1_model_meta_key(const dsr1_model *model, int64_t index,
                                         char *buf, size_t buf_size, size_t *needed);
DSR1_API dsr1_status dsr1_model_meta_value(const dsr1_model *model, const char *key,
                                           char *buf, size_t buf_size, size_t *needed);

typedef struct dsr1_tensor_info {
    size_t size;          /* sizeof(dsr1_tensor_info), set by the caller */
    const char *name;     /* valid while the model lives */
    uint32_t type;        /* dsr1_type */
    uint32_t n_dims;
    int64_t ne[4];        /* ne[0] is the contiguous dimension; unused are 1 */
    uint64_t n_bytes;
} dsr1_tensor_info;

DSR1_API int64_t dsr1_model_tensor_count(const dsr1_model *model);
/* info->size must be set to sizeof(dsr1_tensor_info) before the call. */
DSR1_API dsr1_status dsr1_model_tensor_info(const dsr1_model *model, int64_t index,
                                            dsr1_tensor_info *info);

/* ------------------------------------------------------------------------ */
/* Contexts: KV cache, scratch memory, logits                                 */
/* ------------------------------------------------------------------------ */

typedef struct dsr1_context dsr1_context;

/* Element type of the KV cache. f16 (IEEE binary16, rounded to nearest
 * even when stored, read back exactly) halves the cache, as llama.cpp's
 * default does; keys and values are computed in f32 and only stored
 * rounded, and a row gets the same bits batched or alone. On the test
 * fixtures the logits move by at most 1.4e-3 against an f32 cache
 * (doc/models.md); f32 keeps the scalar backend within 1e-5 of the
 * reference logits. */
typedef enum dsr1_kv_type {
    DSR1_KV_DEFAULT = 0, /* the library's choice: DSR1_KV_F16 */
    DSR1_KV_F32 = 1,
    DSR1_KV_F16 = 2
} dsr1_kv_type;

typedef struct dsr1_threadpool dsr1_threadpool; /* see "Thread pools" below */

/* Polled by the thread running an evaluation of the context, between
 * layers and between n_batch chunks: return non-zero to stop it. The
 * evaluation then returns DSR1_ERR_CANCELLED, and the KV cache holds
 * exactly the tokens evaluated completely before (dsr1_context_n_past()
 * says how many); the next call continues from there. It must be cheap
 * (it runs once per layer) and must not call functions on this context
 * (they return DSR1_ERR_STATE); dsr1_generation_cancel() and functions on
 * the model are allowed. */
typedef int (*dsr1_abort_fn)(void *user_data);

typedef struct dsr1_context_params {
    size_t size;          /* sizeof(dsr1_context_params) */
    int32_t n_ctx;        /* tokens the KV cache holds; 0: min(4096, trained context) */
    int32_t n_batch;      /* most tokens evaluated in one internal step; 0: 512 */
    int32_t n_threads;    /* 0: all cores (with threadpool: all of its threads); the most
                             dsr1_context_set_threads can ask for later. Above 1024:
                             DSR1_ERR_INVALID_ARGUMENT; without a threadpool, more than
                             4 x the cores (at least 16) is clamped to that, with a
                             warning in the log */
    const char *backend;  /* NULL: $DSR1_BACKEND if set, else the best available */
    dsr1_kv_type kv_type; /* KV cache element type; DSR1_KV_DEFAULT (0): f16. Other values
                             are DSR1_ERR_INVALID_ARGUMENT. A caller built against a header
                             without it (a smaller size) gets the default */
    dsr1_threadpool *threadpool; /* NULL: the context starts n_threads - 1 threads of its own;
                                    else it runs on this pool's threads (it keeps the pool alive:
                                    dsr1_threadpool_free may come first) */
    dsr1_abort_fn abort_callback; /* NULL: none; see dsr1_abort_fn */
    void *abort_user_data;
} dsr1_context_params;

DSR1_API void dsr1_context_params_default(dsr1_context_params *params, size_t struct_size);

/* params may be NULL (defaults). The model must outlive the context. */
DSR1_API dsr1_status dsr1_context_new(const dsr1_model *model, const dsr1_context_params *params,
                                      dsr1_context **out_ctx);
DSR1_API void dsr1_context_free(dsr1_context *ctx); /* NULL is allowed */

DSR1_API const dsr1_model *dsr1_context_model(const dsr1_context *ctx);
DSR1_API int32_t dsr1_context_n_ctx(const dsr1_context *ctx);
/* The name of the backend that computes the logits (a static string):
 * "vulkan" when the model offloads layers (dsr1_model_params.n_gpu_layers),
 * else the CPU backend the context chose ("avx512", "avx2", "neon",
 * "scalar"). */
DSR1_API const char *dsr1_context_backend(const dsr1_context *ctx);
/* Number of positions currently held in the KV cache (the next position). */
DSR1_API int32_t dsr1_context_n_past(const dsr1_context *ctx);
/* Bytes of KV cache one token takes, over all layers (and the MTP layer of
 * deepseek2 files that have one), for the context's kv_type. */
DSR1_API uint64_t dsr1_context_kv_bytes_per_token(const dsr1_context *ctx);

/* Flags for dsr1_eval. */
#define DSR1_EVAL_LOGITS_ALL 1u /* keep the logits of every token of the batch, not only the last */

/* Evaluate n_tokens tokens at positions pos, pos+1, ... (prompt prefill when
 * n_tokens > 1, decoding when 1). pos must be in [0, n_past]: cache entries
 * at positions >= pos are dropped first, so a caller can rewind and
 * re-evaluate. Long batches are split internally by n_batch. A logit that
 * is not finite (weights that compute NaN or infinities) is
 * DSR1_ERR_NUMERIC, and the batch is dropped again (n_past becomes pos).
 * While a step-API generation (dsr1_generation_new) is unfinished on the
 * context, dsr1_eval, dsr1_context_truncate and a second generation on it
 * are DSR1_ERR_STATE. The abort callback (context params) stops it between
 * layers with DSR1_ERR_CANCELLED: n_past then counts the tokens evaluated
 * completely, and no logits are available. */
DSR1_API dsr1_status dsr1_eval(dsr1_context *ctx, const dsr1_token *tokens, int32_t n_tokens,
                               int32_t pos, uint32_t flags);

/* Logits (n_vocab floats) of token i of the last dsr1_eval batch; i = -1 means
 * the last token. Without DSR1_EVAL_LOGITS_ALL only the last is available.
 * NULL in exactly three cases, all caller errors: ctx is NULL, nothing was
 * evaluated since the context was created or reset, or row i was not kept
 * (dsr1_last_error() says which). Valid until the next eval. */
DSR1_API const float *dsr1_logits(dsr1_context *ctx, int32_t i);

/* Drop cache entries at positions >= pos (edit, regenerate). */
DSR1_API dsr1_status dsr1_context_truncate(dsr1_context *ctx, int32_t pos);
/* Context shift: make room without evaluating again. Drops the cached
 * tokens at positions [n_keep, n_keep + n_discard) and moves the ones
 * after them down by n_discard, re-rotating their keys for the new
 * positions (RoPE with its llama3 factors or YaRN; for deepseek2 the rope
 * part of the latent cache), so n_past becomes n_past - n_discard and the
 * next dsr1_eval continues at that position. The first n_keep tokens (a
 * system prompt) stay as they are. The moved entries keep what they
 * attended to when they were evaluated, the dropped tokens included (as
 * with any context shift): the continuation is close to, not equal to,
 * evaluating the kept tokens again. Rotating an f16 cache rounds the keys
 * once more (doc/api.md gives the measured effect). The logits of the
 * last evaluation are dropped (dsr1_logits has none until the next
 * dsr1_eval). Generations and chats do this by themselves with
 * dsr1_generate_params.ctx_policy DSR1_CTX_SHIFT.
 * DSR1_ERR_INVALID_ARGUMENT unless 0 <= n_keep <= n_past and
 * 1 <= n_discard <= n_past - n_keep; DSR1_ERR_STATE while a generation is
 * unfinished on the context. A device failure while moving leaves the
 * first n_keep tokens (n_past = n_keep) and returns its status. */
DSR1_API dsr1_status dsr1_context_shift(dsr1_context *ctx, int32_t n_keep, int32_t n_discard);
/* Empty the cache. While a step-API generation is unfinished on the
 * context it does nothing (the generation continues from the cache) and
 * records DSR1_ERR_STATE's message in dsr1_context_errmsg() and
 * dsr1_last_error(); free or finish the generation first. */
DSR1_API void dsr1_context_reset(dsr1_context *ctx);

/* dsr1_logits with a status: *out_logits receives the row (NULL on
 * failure). DSR1_ERR_STATE when nothing was evaluated since the context was
 * created or reset (or the last evaluation failed or was cancelled),
 * DSR1_ERR_INVALID_ARGUMENT when row i was not kept. */
DSR1_API dsr1_status dsr1_context_logits(dsr1_context *ctx, int32_t i, const float **out_logits);

/* The message of the last call on ctx ("" after a success; "" for NULL). */
DSR1_API const char *dsr1_context_errmsg(const dsr1_context *ctx);

/* What a model and a context will cost, from the file's header alone (the
 * weights are neither read nor mapped beyond their headers; the vocabulary
 * is not loaded). Bytes as this library would use them. */
typedef struct dsr1_memory_estimate {
    size_t size;                 /* sizeof(dsr1_memory_estimate), set by the caller */
    uint64_t weight_bytes;       /* tensor data mapped from the file (read on first use, or
                                    during the load with preload) */
    uint64_t file_bytes;         /* the whole file, as mapped */
    uint64_t kv_bytes_per_token; /* KV cache per token, all layers, for the kv_type */
    uint64_t kv_bytes;           /* the KV cache for n_ctx tokens */
    uint64_t scratch_bytes;      /* activations, logits, positions and token history a
                                    context allocates besides its cache (the backend's
                                    per-thread buffers and the logits of LOGITS_ALL
                                    evaluations come on top) */
    int32_t n_ctx;               /* the n_ctx the context params resolve to */
    int32_t n_batch;             /* the n_batch they resolve to */
} dsr1_memory_estimate;

/* model_params and ctx_params may be NULL (defaults); only the fields that
 * change the sizes matter (vocab_only gives zero weights and no context;
 * n_ctx, n_batch, kv_type). Fails as dsr1_model_load or dsr1_context_new
 * would for a file or parameters they refuse. */
DSR1_API dsr1_status dsr1_model_estimate_memory(const char *path, const dsr1_model_params *model_params,
                                                const dsr1_context_params *ctx_params,
                                                dsr1_memory_estimate *out);

/* ------------------------------------------------------------------------ */
/* Tokenizer                                                                  */
/* ------------------------------------------------------------------------ */

/* Flags for dsr1_tokenize. */
#define DSR1_TOKENIZE_ADD_BOS 1u       /* prepend BOS (when the vocabulary has one) */
#define DSR1_TOKENIZE_PARSE_SPECIAL 2u /* recognise special/added token spellings in the text;
                                          without it they are plain text, so user content can
                                          never inject a control token */

/* Tokenize text[0..text_len). Stores at most capacity ids; *n_tokens receives
 * the number produced (or needed, with DSR1_ERR_BUFFER_TOO_SMALL). Invalid
 * UTF-8 is tokenized byte by byte, never rejected. */
DSR1_API dsr1_status dsr1_tokenize(const dsr1_model *model, const char *text, size_t text_len,
                                   dsr1_token *tokens, int32_t capacity, int32_t *n_tokens,
                                   uint32_t flags);

/* Flags for dsr1_token_to_piece / dsr1_detokenize / the stream decoder. */
#define DSR1_PIECE_RENDER_CONTROL 1u /* render control tokens (BOS, EOS, <｜User｜>...) as their
                                        spelling; without it they render as nothing */

/* The bytes of one token (may be part of a UTF-8 character). */
DSR1_API dsr1_status dsr1_token_to_piece(const dsr1_model *model, dsr1_token token, char *buf,
                                         size_t buf_size, size_t *n_bytes, uint32_t flags);

/* The text of a token sequence. buf is NUL-terminated when it fits
 * (buf_size > *n_bytes); *n_bytes excludes the NUL. */
DSR1_API dsr1_status dsr1_detokenize(const dsr1_model *model, const dsr1_token *tokens,
                                     int32_t n_tokens, char *buf, size_t buf_size,
                                     size_t *n_bytes, uint32_t flags);

/* Streaming decoder: feed tokens one at a time, receive only whole UTF-8
 * characters (bytes of an incomplete character are held back until it
 * completes; bytes that can never complete are emitted as U+FFFD). */
typedef struct dsr1_decoder dsr1_decoder;
DSR1_API dsr1_status dsr1_decoder_new(const dsr1_model *model, uint32_t flags, dsr1_decoder **out);
DSR1_API void dsr1_decoder_free(dsr1_decoder *dec);
/* Writes the text this token completes to buf (from buf[0], NUL-terminated;
 * often empty while a character is incomplete); on
 * DSR1_ERR_BUFFER_TOO_SMALL nothing is consumed and *n_bytes is the need.
 * The decoder borrows the model: free it first. */
DSR1_API dsr1_status dsr1_decoder_push(dsr1_decoder *dec, dsr1_token token, char *buf,
                                       size_t buf_size, size_t *n_bytes);
/* Emit what is held back (incomplete characters as U+FFFD) and reset. */
DSR1_API dsr1_status dsr1_decoder_flush(dsr1_decoder *dec, char *buf, size_t buf_size,
                                        size_t *n_bytes);
/* The message of the last call on dec ("" after a success; "" for NULL). */
DSR1_API const char *dsr1_decoder_errmsg(const dsr1_decoder *dec);

/* Special tokens by role; -1 when the vocabulary has none. */
typedef enum dsr1_special {
    DSR1_SPECIAL_BOS = 0,
    DSR1_SPECIAL_EOS = 1,
    DSR1_SPECIAL_PAD = 2,
    DSR1_SPECIAL_USER = 3,        /* <｜User｜> */
    DSR1_SPECIAL_ASSISTANT = 4,   /* <｜Assistant｜> */
    DSR1_SPECIAL_THINK_BEGIN = 5, /* <think> */
    DSR1_SPECIAL_THINK_END = 6    /* </think> */
} dsr1_special;
DSR1_API dsr1_token dsr1_token_special(const dsr1_model *model, dsr1_special which);

/* Token attributes (the GGUF token types). */
typedef enum dsr1_token_attr {
    DSR1_TOKEN_UNDEFINED = 0,
    DSR1_TOKEN_NORMAL = 1,
    DSR1_TOKEN_UNKNOWN = 2,
    DSR1_TOKEN_CONTROL = 3,
    DSR1_TOKEN_USER_DEFINED = 4,
    DSR1_TOKEN_UNUSED = 5,
    DSR1_TOKEN_BYTE = 6
} dsr1_token_attr;
DSR1_API dsr1_token_attr dsr1_token_get_attr(const dsr1_model *model, dsr1_token token);
/* 1 for tokens that end generation (EOS and end-of-turn tokens). */
DSR1_API int dsr1_token_is_eog(const dsr1_model *model, dsr1_token token);

/* ------------------------------------------------------------------------ */
/* Chat format (DeepSeek-R1's, built in)                                      */
/* ------------------------------------------------------------------------ */

/* role: "system", "user", "assistant" or "tool" (a tool's output, as R1's
 * template writes it). Assistant contents may include a "<think>...</think>"
 * part; it is dropped when formatting (everything up to the last "</think>",
 * as R1's template does), as DeepSeek recommends for earlier turns. The
 * format follows the model's tokenizer.chat_template byte for byte: R1's
 * first template (no "</think>" in it: DeepSeek-V3's) keeps assistant
 * contents as they are and its generation prompt is "<｜Assistant｜>"; the
 * updated one, any other template, or none, drops the thoughts and opens
 * "<think>\n". System messages are all written, joined with "\n\n", except
 * under the distills' templates, which keep the last one alone. Assistant
 * tool calls need dsr1_message (below). */
typedef struct dsr1_chat_message {
    const char *role;
    const char *content;
} dsr1_chat_message;

/* Flags for the chat functions. */
#define DSR1_CHAT_ADD_GENERATION_PROMPT 1u /* end with "<｜Assistant｜><think>\n" (see above; none
                                               after tool outputs, as R1's template) */

/* The conversation as text:
 *   <｜begin▁of▁sentence｜>{system}<｜User｜>{user}<｜Assistant｜>{answer}<｜end▁of▁sentence｜>...
 * tool outputs: <｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>{output}<｜tool▁output▁end｜>...
 * NUL-terminated when it fits; *n_bytes excludes the NUL. */
DSR1_API dsr1_status dsr1_chat_format(const dsr1_model *model, const dsr1_chat_message *messages,
                                      int32_t n_messages, uint32_t flags, char *buf,
                                      size_t buf_size, size_t *n_bytes);

/* The same directly as tokens: the markers become their special ids and
 * message contents are tokenized as plain text (no special parsing), so a
 * user cannot inject markers. A vocabulary without R1's marker tokens (a
 * plain Qwen2 or Llama 3 one) gets DSR1_ERR_UNSUPPORTED; dsr1_chat_format
 * still works for it. */
DSR1_API dsr1_status dsr1_chat_tokenize(const dsr1_model *model, const dsr1_chat_message *messages,
                                        int32_t n_messages, uint32_t flags, dsr1_token *tokens,
                                        int32_t capacity, int32_t *n_tokens);

/* The successor of dsr1_chat_message: size-prefixed, so it can grow
 * (doc/abi.md), and able to hold an assistant's tool calls. An array of
 * them is read with the stride of its first element's size field: every
 * element must have the same size (set it to sizeof(dsr1_message)). */
typedef struct dsr1_tool_call {
    size_t size;           /* sizeof(dsr1_tool_call); an array's elements all the same */
    const char *type;      /* NULL: "function" */
    const char *name;      /* the function's name */
    const char *arguments; /* its arguments as JSON text, written as given */
} dsr1_tool_call;

typedef struct dsr1_message {
    size_t size;                     /* sizeof(dsr1_message) */
    const char *role;                /* as in dsr1_chat_message */
    const char *content;             /* NULL only for an assistant message that calls tools */
    const dsr1_tool_call *tool_calls;/* an assistant's calls, with content NULL (R1's template
                                        writes calls only then: calls with a content are
                                        DSR1_ERR_UNSUPPORTED, except with R1-0528's template,
                                        which writes both; calls on other roles
                                        DSR1_ERR_INVALID_ARGUMENT) */
    int32_t n_tool_calls;
} dsr1_message;

/* dsr1_chat_format and dsr1_chat_tokenize for dsr1_message arrays. Tool
 * calls are written as R1's template writes them, byte for byte: the first
 * call of the conversation as
 *   <｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>{type}<｜tool▁sep｜>{name}
 *   ```json
 *   {arguments}
 *   ```<｜tool▁call▁end｜>
 * and every later one as "\n<｜tool▁call▁begin｜>...<｜tool▁call▁end｜>" followed by
 * <｜tool▁calls▁end｜><｜end▁of▁sentence｜> (the template keeps its "first
 * call" and "first output" states for the whole conversation). In the
 * token form the text between two markers is tokenized as one piece, as
 * a tokenizer would split the rendered text at the markers. */
DSR1_API dsr1_status dsr1_chat_format_messages(const dsr1_model *model, const dsr1_message *messages,
                                               int32_t n_messages, uint32_t flags, char *buf,
                                               size_t buf_size, size_t *n_bytes);
DSR1_API dsr1_status dsr1_chat_tokenize_messages(const dsr1_model *model, const dsr1_message *messages,
                                                 int32_t n_messages, uint32_t flags, dsr1_token *tokens,
                                                 int32_t capacity, int32_t *n_tokens);

/* ------------------------------------------------------------------------ */
/* Sampling                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct dsr1_sampler dsr1_sampler;

typedef struct dsr1_logit_bias {
    dsr1_token token;
    float bias; /* added to the logit; -INFINITY bans the token */
} dsr1_logit_bias;

/* The chain runs in this order: logit bias, penalties over the last
 * penalty_last_n tokens, temperature, top-k, top-p, min-p, then a seeded
 * random choice (or the argmax when temperature <= 0). Defaults are
 * DeepSeek's recommendation for R1: temperature 0.6, top-p 0.95. */
typedef struct dsr1_sampler_params {
    size_t size;               /* sizeof(dsr1_sampler_params) */
    float temperature;         /* 0.6; <= 0: greedy */
    int32_t top_k;             /* 0: off */
    float top_p;               /* 0.95; 1: off */
    float min_p;               /* 0: off */
    float repeat_penalty;      /* 1: off (divides positive logits, multiplies negative) */
    float frequency_penalty;   /* 0: off (minus count x penalty) */
    float presence_penalty;    /* 0: off (minus penalty if present) */
    int32_t penalty_last_n;    /* 64; 0: penalties off; at most DSR1_PENALTY_LAST_N_MAX
                                  (larger: DSR1_ERR_INVALID_ARGUMENT) */
    uint64_t seed;             /* the same seed and logits give the same tokens everywhere */
    const dsr1_logit_bias *logit_bias; /* copied by dsr1_sampler_new */
    int32_t n_logit_bias;
} dsr1_sampler_params;

/* The largest penalty window a sampler accepts (its history is allocated
 * whole: 4 bytes a token). Longer than any context worth penalising over. */
#define DSR1_PENALTY_LAST_N_MAX 1048576

DSR1_API void dsr1_sampler_params_default(dsr1_sampler_params *params, size_t struct_size);
/* n_vocab: the vocabulary size of the logits it will see. */
DSR1_API dsr1_status dsr1_sampler_new(int32_t n_vocab, const dsr1_sampler_params *params,
                                      dsr1_sampler **out);
DSR1_API void dsr1_sampler_free(dsr1_sampler *smp);
/* Choose a token from n_vocab logits (not modified). NaN logits, or all
 * -inf, are DSR1_ERR_NUMERIC. Does not record the token: call
 * dsr1_sampler_accept() with the token actually used. Ties go to the lower
 * token id; a +inf logit is chosen outright (the lowest such id). Never
 * allocates. The generation API accepts the tokens it samples (not the
 * prompt). */
DSR1_API dsr1_status dsr1_sampler_sample(dsr1_sampler *smp, const float *logits, int32_t n_vocab,
                                         dsr1_token *out);
/* A token and its log-probability (natural log). */
typedef struct dsr1_token_logprob {
    dsr1_token token;
    float logprob;
} dsr1_token_logprob;

/* dsr1_sampler_sample, and the log-probabilities of the distribution the
 * chain sampled from: the softmax of the logits after bias, penalties and
 * temperature (temperature 1 when greedy), over every token they leave
 * possible, before top-k / top-p / min-p cut the tail (so the
 * probabilities of all candidates sum to 1 and do not depend on the
 * truncation settings). *logprob (may be NULL) receives the chosen
 * token's; top (n_top entries, may be NULL when n_top is 0) the n_top
 * most likely, best first (ties: lower id first); entries beyond the
 * candidates are token -1 with -INFINITY. Costs one more pass over the
 * vocabulary (and O(n log n_top) for top). */
DSR1_API dsr1_status dsr1_sampler_sample_logprobs(dsr1_sampler *smp, const float *logits, int32_t n_vocab,
                                                  dsr1_token *out, float *logprob, dsr1_token_logprob *top,
                                                  int32_t n_top);
/* Record a token in the penalty history (prompt tokens too, if wanted). */
DSR1_API void dsr1_sampler_accept(dsr1_sampler *smp, dsr1_token token);
/* Forget the history and reseed. */
DSR1_API void dsr1_sampler_reset(dsr1_sampler *smp, uint64_t seed);
/* The sampler's state (random generator and penalty history) as a blob,
 * to continue exactly where it was (a save game, a session restore): a
 * sampler made with the same n_vocab and penalty_last_n that loads it
 * chooses the same tokens from the same logits as the saved one would
 * have. The blob is little-endian, versioned and checksummed (CRC-32).
 * Buffer rules as everywhere: *n_bytes receives the size; NULL with size
 * 0 asks for it. */
DSR1_API dsr1_status dsr1_sampler_state_save(const dsr1_sampler *smp, void *buf, size_t buf_size,
                                             size_t *n_bytes);
/* Load a blob from dsr1_sampler_state_save. A blob is input: a truncated,
 * damaged or foreign one (another vocabulary size or penalty window) is
 * DSR1_ERR_FORMAT or DSR1_ERR_INVALID_ARGUMENT with the sampler unchanged. */
DSR1_API dsr1_status dsr1_sampler_state_load(dsr1_sampler *smp, const void *data, size_t size);

/* ------------------------------------------------------------------------ */
/* Grammars: answers in a required shape                                      */
/* ------------------------------------------------------------------------ */

/* A grammar compiled for one model's vocabulary. It is immutable once made
 * and may be shared by any number of generations in any threads; it
 * borrows the model (free it first).
 *
 * The syntax is llama.cpp's GBNF, so existing grammars work:
 *     root   ::= "{" ws "\"move\":" ws move ws "}"
 *     move   ::= "\"" ("north" | "south") "\""
 *     ws     ::= [ \t\n]*       # comments run to the end of the line
 * Rules (one per line, or continued inside parentheses or after '|'),
 * alternatives, sequences, groups, x* x+ x? x{m} x{m,} x{m,n} (n <= 10000),
 * "literals", [classes] with ranges and [^negation], '.' for any
 * character, escapes \n \r \t \\ \" \[ \] \xHH \uHHHH \UHHHHHHHH. Text is
 * UTF-8 and the grammar matches Unicode characters. A grammar must not be
 * left-recursive (a rule reaching itself before matching a character);
 * that, an undefined rule, a missing start rule or a syntax error is
 * DSR1_ERR_FORMAT with the line and column. Grammars so ambiguous that
 * more than 1024 parses stay alive at once fail while generating with
 * DSR1_ERR_UNSUPPORTED.
 *
 * With a generation of an R1 model the grammar applies to the answer: the
 * reasoning stays free, and from </think> on every sampled token keeps
 * the answer a prefix of a sentence of the grammar (up to two whitespace
 * characters, R1's "\n\n", may come first). End-of-generation tokens are
 * allowed only once the answer is a complete sentence, so the answer
 * always parses unless max_new_tokens or the context cuts it short. When
 * the prompt did not open a reasoning block the grammar applies from the
 * first token, which may still be <think> to open one.
 *
 * Cost: choosing the allowed tokens walks a trie of the vocabulary's
 * bytes, visiting only prefixes the grammar allows, and the result is
 * cached per grammar state; tests/bench_grammar measures it on a 150k
 * vocabulary. */
typedef struct dsr1_grammar dsr1_grammar;

/* Compile GBNF text[0..len) (at most 1 MiB). root: the start rule's name;
 * NULL means "root". */
DSR1_API dsr1_status dsr1_grammar_new(const dsr1_model *model, const char *gbnf, size_t len, const char *root,
                                      dsr1_grammar **out);
/* A grammar for the JSON values a JSON schema describes (see
 * dsr1_json_schema_to_grammar for the subset). */
DSR1_API dsr1_status dsr1_grammar_from_json_schema(const dsr1_model *model, const char *schema, size_t len,
                                                   dsr1_grammar **out);
DSR1_API void dsr1_grammar_free(dsr1_grammar *grammar); /* NULL is allowed */

/* The GBNF text for a JSON schema (start rule "root"), to use or edit.
 * Supported: type (a name or a list), object with properties (written in
 * the order given) and required (no other keys), string with minLength /
 * maxLength, number, integer, boolean, null, enum, const, array with
 * items / minItems / maxItems, anyOf / oneOf, and {} for any value.
 * Annotations (title, description, default, format, examples) are
 * ignored; constraints a grammar would not enforce ($ref, pattern,
 * minimum, additionalProperties other than false, ...) are
 * DSR1_ERR_UNSUPPORTED rather than dropped silently. Invalid JSON is
 * DSR1_ERR_FORMAT. Buffer rules as everywhere (see Conventions). */
DSR1_API dsr1_status dsr1_json_schema_to_grammar(const char *schema, size_t len, char *buf, size_t buf_size,
                                                 size_t *n_bytes);

/* The message of the last call on smp ("" after a success; "" for NULL). */
DSR1_API const char *dsr1_sampler_errmsg(const dsr1_sampler *smp);

/* ------------------------------------------------------------------------ */
/* Generation with separate reasoning and answer streams                      */
/* ------------------------------------------------------------------------ */

typedef enum dsr1_event_type {
    DSR1_EVENT_REASONING_BEGIN = 0, /* the model entered <think> */
    DSR1_EVENT_REASONING_TEXT = 1,  /* a piece of the reasoning */
    DSR1_EVENT_REASONING_END = 2,   /* </think> was generated (or injected by the budget) */
    DSR1_EVENT_ANSWER_TEXT = 3,     /* a piece of the answer */
    DSR1_EVENT_DONE = 4             /* generation ended; see stop_reason */
} dsr1_event_type;

typedef enum dsr1_stop_reason {
    DSR1_STOP_NONE = 0,        /* still running */
    DSR1_STOP_EOS = 1,         /* the model ended its turn */
    DSR1_STOP_LENGTH = 2,      /* max_new_tokens reached */
    DSR1_STOP_STRING = 3,      /* a stop string appeared (it is not emitted) */
    DSR1_STOP_CANCELLED = 4,   /* a callback returned non-zero, or dsr1_generation_cancel() */
    DSR1_STOP_BUDGET = 5,      /* the thinking budget ran out with think_budget_action STOP */
    DSR1_STOP_CONTEXT_FULL = 6 /* the context window is full */
} dsr1_stop_reason;

/* One event. text holds whole UTF-8 characters only, NUL-terminated, and is
 * valid during the callback. tokens are the ids this event covers. The
 * concatenation of all REASONING_TEXT is exactly the text between <think>
 * and </think>; of all ANSWER_TEXT exactly the rest; the markers are in
 * neither.
 * Details:
 * - Text is verbatim: the "\n" the model writes before </think> is reasoning
 *   and the "\n\n" after it is answer. When the prompt opened the block
 *   (R1's "<think>\n"), that "\n" was in the prompt, so it is in neither, and
 *   REASONING_BEGIN comes first with no tokens.
 * - Markers count as special tokens or as text split over any tokens (text
 *   that may start one is held back until decided). One block at most:
 *   <think> opens it only before any block, </think> closes it only while
 *   open; elsewhere a marker is plain text (special tokens too: spelled).
 * - Bytes that can never form a UTF-8 character become U+FFFD.
 * - Every generated and injected token is covered by exactly one event (a
 *   token whose text spans two events goes with the later; tokens of hidden
 *   reasoning or of discarded text go with the next event sent; EOS with
 *   DONE). */
typedef struct dsr1_event {
    size_t size;               /* sizeof(dsr1_event) */
    dsr1_event_type type;
    const char *text;
    size_t text_len;
    const dsr1_token *tokens;
    int32_t n_tokens;
    dsr1_stop_reason stop_reason; /* for DSR1_EVENT_DONE */
    /* With dsr1_generate_params.n_logprobs > 0 (else NULL and 0): */
    const float *logprobs;        /* n_tokens entries: each token's log-probability as
                                     dsr1_sampler_sample_logprobs defines it; NaN for tokens the
                                     library injected (the thinking budget's) */
    const dsr1_token_logprob *top_logprobs; /* n_tokens rows of n_top_logprobs entries: the most
                                     likely alternatives at each token's step, best first */
    int32_t n_top_logprobs;
} dsr1_event;

/* Return 0 to continue, non-zero to cancel generation. */
typedef int (*dsr1_event_fn)(const dsr1_event *event, void *user_data);

/* The per-step hook (dsr1_generate_params.on_step): called before each
 * token is chosen, with a copy of the logits the host may change (tokens
 * the grammar forbids are already -INFINITY). Set token to a token id to
 * choose it yourself (the sampler is skipped; a token the grammar forbids
 * is DSR1_ERR_INVALID_ARGUMENT); leave it -1 to let the sampler choose
 * from the (changed) logits. Either way the token goes through the rest
 * of the generation as a sampled one: penalty history, grammar, events,
 * stop conditions. Return non-zero to cancel. */
typedef struct dsr1_step {
    size_t size;          /* sizeof(dsr1_step) of the library */
    float *logits;        /* n_vocab, writable, valid during the call */
    int32_t n_vocab;
    int32_t in_reasoning; /* 1 while inside the reasoning block */
    int32_t n_generated;  /* tokens generated before this one */
    dsr1_token token;     /* -1; set to choose the token */
} dsr1_step;
typedef int (*dsr1_step_fn)(dsr1_step *step, void *user_data);

/* What a generation does when the context is full (ctx_policy). */
typedef enum dsr1_ctx_policy {
    DSR1_CTX_STOP = 0, /* stop with DSR1_STOP_CONTEXT_FULL */
    DSR1_CTX_SHIFT = 1 /* make room with context shifts (dsr1_context_shift) and go on */
} dsr1_ctx_policy;

/* What to do when the thinking budget runs out. */
typedef enum dsr1_budget_action {
    DSR1_BUDGET_CLOSE = 0, /* inject "\n</think>\n\n" and let the model answer */
    DSR1_BUDGET_STOP = 1   /* stop with DSR1_STOP_BUDGET */
} dsr1_budget_action;

typedef struct dsr1_generate_params {
    size_t size;                 /* sizeof(dsr1_generate_params) */
    int32_t max_new_tokens;      /* 0: until EOS or the context is full */
    int32_t think_budget;        /* reasoning tokens allowed; -1: unlimited. The step after the
                                    N-th evaluates "\n</think>\n\n" with its pending token and
                                    samples the next (its events carry the injected ids) */
    int32_t think_budget_action; /* dsr1_budget_action */
    int32_t hide_reasoning;      /* generate the reasoning but send no REASONING_TEXT events (the
                                    hidden tokens are reported on the next event sent) */
    const char *const *stop_strings; /* matched in the answer text (not the reasoning) across
                                        token boundaries (and across a marker spelled out as
                                        text); neither the match nor anything after it is
                                        emitted; copied */
    int32_t n_stop_strings;
    int32_t starts_in_reasoning; /* -1 (default): detect from the prompt's end (<think>\n);
                                    1: the prompt opened <think>; 0: it did not */
    dsr1_event_fn on_event;      /* may be NULL (use the step API's return values) */
    void *user_data;
    int32_t speculative_mtp;     /* 1: draft one token ahead with the model's multi-token-
                                    prediction head (deepseek2 files that have one) and verify
                                    it in the same batch as the current token. The tokens are
                                    exactly those of plain decoding; only the speed differs.
                                    The head keeps its own cache: a prefix the context holds
                                    from a generation without MTP is evaluated again (once).
                                    Ignored (0) for models without an MTP head. */
    float speculative_min_p;     /* a draft whose probability under the MTP head is below
                                    this is not verified (that step decodes plainly), since
                                    verifying costs a 2-token evaluation: on a memory-bound
                                    machine about half an evaluation more for R1 (the second
                                    token's experts), so a draft pays when the main model
                                    agrees more than about half the time. 0..1; default
                                    0.5; 0 verifies every draft. Tokens never depend on it. */
    const dsr1_grammar *grammar; /* NULL: none. The answer follows this grammar (see
                                    "Grammars"); made for the context's model; borrowed
                                    until dsr1_generation_free() */
    int32_t n_logprobs;          /* 0: off; 1..100: events carry their tokens' log-probabilities
                                    and the n_logprobs most likely alternatives (dsr1_event) */
    dsr1_step_fn on_step;        /* NULL: none (see dsr1_step) */
    void *step_user_data;
    int32_t max_prompt_per_step; /* most prompt tokens one dsr1_generation_step evaluates, so a
                                    host can bound the time of every step (a frame budget):
                                    steps that evaluate part of the prompt produce no token
                                    (*token -1, DSR1_STOP_NONE). 0 (default): the whole
                                    prompt in the first step. Tokens never depend on it. */
    int32_t ctx_policy;          /* dsr1_ctx_policy: DSR1_CTX_STOP (0, default) stops when the
                                    next token does not fit; DSR1_CTX_SHIFT makes room and goes
                                    on: the first n_keep tokens stay; a chat drops its oldest
                                    whole turns first (the fewest that free half of what
                                    follows them, else all before the question), then the
                                    oldest half of its reply, keeping the question; a plain
                                    generation drops half of what follows n_keep. The kept
                                    keys are re-rotated, not evaluated again (see
                                    dsr1_context_shift). When the kept tokens leave no room:
                                    DSR1_STOP_CONTEXT_FULL. A prompt longer than n_ctx is still
                                    DSR1_ERR_CONTEXT_FULL (a chat drops old turns first) */
    int32_t n_keep;              /* with DSR1_CTX_SHIFT: tokens at the start never dropped (at
                                    most the prompt's length); -1 (default): in a chat its
                                    system prompt, else the prompt's first token (its BOS) */
} dsr1_generate_params;

DSR1_API void dsr1_generate_params_default(dsr1_generate_params *params, size_t struct_size);

typedef struct dsr1_generation dsr1_generation;

/* Start generating after prompt (its tokens are evaluated from the first
 * position where they differ from what the context already holds, so a
 * shared prefix is reused). The context and sampler are borrowed until
 * dsr1_generation_free(). Nothing is evaluated until the first step. */
DSR1_API dsr1_status dsr1_generation_new(dsr1_context *ctx, dsr1_sampler *smp,
                                         const dsr1_token *prompt, int32_t n_prompt,
                                         const dsr1_generate_params *params,
                                         dsr1_generation **out);
DSR1_API void dsr1_generation_free(dsr1_generation *gen);

/* Produce at most one token (the first call also evaluates the prompt, or
 * its first max_prompt_per_step tokens) and deliver its events; a step that
 * finishes the generation (cancel noticed, budget STOP, context full), or
 * evaluates only part of the prompt, may produce none. A prompt longer than
 * the context is the status DSR1_ERR_CONTEXT_FULL, not a stop reason.
 * *token receives the token (-1 when none); returns DSR1_OK
 * while running, and DSR1_OK with *stop_reason set once finished (later
 * calls return DSR1_ERR_STATE). Either out pointer may be NULL. A callback
 * that returns non-zero ends the generation in the same step. An error
 * status (eval, sampling) also ends it, without a DONE event.
 * Interrupted evaluations: when dsr1_generation_cancel() stops the step's
 * evaluation midway, the step returns DSR1_ERR_CANCELLED with *stop_reason
 * DSR1_STOP_CANCELLED and the generation is finished (a DONE event is
 * sent). When the context's abort callback stops it, the step returns
 * DSR1_ERR_CANCELLED with DSR1_STOP_NONE and the generation is not
 * finished: the next step continues (the prompt from the first token not
 * yet in the cache). In both cases the context keeps what was evaluated
 * completely. */
DSR1_API dsr1_status dsr1_generation_step(dsr1_generation *gen, dsr1_token *token,
                                          dsr1_stop_reason *stop_reason);
/* Step until done; returns the reason in *stop_reason (may be NULL). */
DSR1_API dsr1_status dsr1_generation_run(dsr1_generation *gen, dsr1_stop_reason *stop_reason);
/* Ask a running generation to stop; safe from any thread and from callbacks
 * (but not after, nor concurrently with, dsr1_generation_free(): the caller
 * must know the handle is alive). An evaluation in progress stops at the
 * next layer (DSR1_ERR_CANCELLED, see dsr1_generation_step); otherwise the
 * next step ends with DSR1_STOP_CANCELLED. */
DSR1_API void dsr1_generation_cancel(dsr1_generation *gen);
/* The message of the last call on gen ("" after a success; "" for NULL). */
DSR1_API const char *dsr1_generation_errmsg(const dsr1_generation *gen);
/* Counters for reports: prompt tokens evaluated, tokens generated, of which
 * reasoning; and the seconds spent on each phase. */
typedef struct dsr1_generation_stats {
    size_t size;            /* sizeof(dsr1_generation_stats), set by the caller */
    int32_t n_prompt_eval;  /* prompt tokens actually evaluated (not reused) */
    int32_t n_generated;
    int32_t n_reasoning;
    double prompt_seconds;
    double generate_seconds;
    int32_t n_drafted;      /* speculative_mtp: drafts verified by the main model */
    int32_t n_accepted;     /* of which the main model confirmed */
    int32_t n_declined;     /* drafts below speculative_min_p, not verified */
    int32_t n_ctx_shifts;   /* context shifts made (ctx_policy DSR1_CTX_SHIFT) */
    int32_t n_ctx_dropped;  /* tokens they dropped from the context */
} dsr1_generation_stats;
DSR1_API dsr1_status dsr1_generation_get_stats(const dsr1_generation *gen, dsr1_generation_stats *stats);

/* One call: prompt -> completion, events through params->on_event. */
DSR1_API dsr1_status dsr1_generate(dsr1_context *ctx, dsr1_sampler *smp, const dsr1_token *prompt,
                                   int32_t n_prompt, const dsr1_generate_params *params,
                                   dsr1_stop_reason *stop_reason);

/* ------------------------------------------------------------------------ */
/* Chat sessions                                                              */
/* ------------------------------------------------------------------------ */

/* A conversation that keeps its messages, formats them with the R1 chat
 * format (earlier thoughts dropped) and reuses the KV cache for the prefix
 * that did not change. Borrows ctx and smp until dsr1_chat_free().
 * Message 0 is the system prompt when one was given. A reply is recorded
 * as "<think>\n{reasoning}</think>{answer}" (the block closed even when the
 * model did not close it; hide_reasoning hides events only), or as the
 * answer when there was no reasoning. A turn that generated no token (an
 * error, or freed before its first step) is dropped with its question.
 * With dsr1_generate_params.ctx_policy DSR1_CTX_SHIFT a conversation never
 * fills its context: the chat forgets its oldest whole turns (the system
 * prompt stays), before formatting a prompt that would not fit and while a
 * reply fills the context, shifting the cache the same way so the turns it
 * keeps are not evaluated again. */
typedef struct dsr1_chat dsr1_chat;

DSR1_API dsr1_status dsr1_chat_new(dsr1_context *ctx, dsr1_sampler *smp, const char *system_prompt,
                                   dsr1_chat **out);
DSR1_API void dsr1_chat_free(dsr1_chat *chat);
/* Add a user message and answer it (events through params->on_event). The
 * assistant's reply (reasoning and answer) is recorded in the conversation. */
DSR1_API dsr1_status dsr1_chat_ask(dsr1_chat *chat, const char *user_message,
                                   const dsr1_generate_params *params, dsr1_stop_reason *stop_reason);
/* The same for hosts that own the loop: returns a generation to step; the
 * reply is recorded when it finishes or is freed. Only one at a time
 * (DSR1_ERR_STATE otherwise). Freeing or resetting the chat first lets the
 * generation go on alone (not recorded; events go to the host directly). */
DSR1_API dsr1_status dsr1_chat_begin(dsr1_chat *chat, const char *user_message,
                                     const dsr1_generate_params *params, dsr1_generation **out);
/* Forget the conversation (keeps the system prompt). */
DSR1_API void dsr1_chat_reset(dsr1_chat *chat);
/* Number of messages and one of them (pointers valid until the next change). */
DSR1_API int32_t dsr1_chat_n_messages(const dsr1_chat *chat);
DSR1_API dsr1_status dsr1_chat_message_at(const dsr1_chat *chat, int32_t index, dsr1_chat_message *out);
/* The message of the last call on chat ("" after a success; "" for NULL). */
DSR1_API const char *dsr1_chat_errmsg(const dsr1_chat *chat);

/* ------------------------------------------------------------------------ */
/* Saved state (a save game, a session restore)                               */
/* ------------------------------------------------------------------------ */

/* A context's state as one blob: the tokens it holds and their KV cache,
 * the logits of its last evaluated token, and optionally a sampler's
 * state (random generator and penalty window, dsr1_sampler_state_save)
 * and a chat's messages. Loaded into a context of the same model (any
 * context of it with the same kv_type and an n_ctx that holds the tokens,
 * on any backend and placement), the conversation continues with the
 * same logits, bit for bit, and so the same tokens, as if never
 * interrupted. The MTP draft head's cache is not saved: a restored context
 * drafts again after its next evaluation (tokens never depend on it).
 *
 * Format (doc/api.md, "Saved state"): versioned, little-endian, with the
 * model's identity (a hash of its hyper-parameters and tensor table) and a
 * CRC-32 of the whole. A blob is input: a truncated, damaged or
 * unversioned one, or one of another model, is DSR1_ERR_FORMAT with a
 * message; one of this model that the context cannot hold (another
 * kv_type, more tokens than n_ctx) or whose sampler part does not fit the
 * sampler given (another vocabulary or penalty window) is
 * DSR1_ERR_INVALID_ARGUMENT. A refused load changes nothing; a load that
 * fails while copying into device memory leaves the context empty.
 * While a generation (or a chat turn) is unfinished on the context, saving
 * and loading are DSR1_ERR_STATE. */

/* Save into buf[0..buf_size). smp may be NULL (no sampler state). The
 * size is exact: *n_bytes receives it, and with a short buffer (NULL and 0
 * ask for the size) DSR1_ERR_BUFFER_TOO_SMALL. */
DSR1_API dsr1_status dsr1_context_state_save(dsr1_context *ctx, const dsr1_sampler *smp, void *buf,
                                             size_t buf_size, size_t *n_bytes);
/* Load a blob of dsr1_context_state_save or dsr1_chat_state_save (its
 * chat part is checked and skipped). smp may be NULL (the blob's sampler
 * part is checked and skipped); a sampler given for a blob saved without
 * one is DSR1_ERR_INVALID_ARGUMENT. */
DSR1_API dsr1_status dsr1_context_state_load(dsr1_context *ctx, dsr1_sampler *smp, const void *data,
                                             size_t size);
/* The same through a file (written whole, or DSR1_ERR_IO). */
DSR1_API dsr1_status dsr1_context_state_save_file(dsr1_context *ctx, const dsr1_sampler *smp, const char *path);
DSR1_API dsr1_status dsr1_context_state_load_file(dsr1_context *ctx, dsr1_sampler *smp, const char *path);

/* A chat's state: its context and sampler (as above) and its messages. A
 * loaded chat replaces its messages (system prompt included) with the
 * blob's, and its next turn reuses the restored cache. Loading a blob
 * without messages (dsr1_context_state_save) is DSR1_ERR_INVALID_ARGUMENT.
 * During a turn (dsr1_chat_begin until its generation is freed):
 * DSR1_ERR_STATE. */
DSR1_API dsr1_status dsr1_chat_state_save(dsr1_chat *chat, void *buf, size_t buf_size, size_t *n_bytes);
DSR1_API dsr1_status dsr1_chat_state_load(dsr1_chat *chat, const void *data, size_t size);
DSR1_API dsr1_status dsr1_chat_state_save_file(dsr1_chat *chat, const char *path);
DSR1_API dsr1_status dsr1_chat_state_load_file(dsr1_chat *chat, const char *path);

/* ------------------------------------------------------------------------ */
/* Thread pools                                                               */
/* ------------------------------------------------------------------------ */

/* The threads that evaluate a context. By default each context starts its
 * own (n_threads - 1 of them: the calling thread is one). Contexts of one
 * process can instead share a pool (dsr1_context_params.threadpool), so
 * that two contexts do not start two threads per core. A pool runs one
 * evaluation step at a time: a context whose step finds the pool busy with
 * another context's runs that step on its calling thread alone (it never
 * waits for the other context). Pool threads wait busily for the next step
 * for at most spin_us microseconds, then sleep: an idle pool takes no CPU.
 * Any thread may create, use and free a pool. */
typedef struct dsr1_threadpool_params {
    size_t size;       /* sizeof(dsr1_threadpool_params) */
    int32_t n_threads; /* threads, counting the caller of each evaluation; 0: all cores */
    int32_t spin_us;   /* busy wait before sleeping, 0..1000000 microseconds; the default (100)
                          spans the gaps between a forward pass's steps (a 2-thread decode loses
                          up to a quarter of its speed without it) and costs a game's frame loop
                          0.1 ms of a core per token; 0: sleep at once */
} dsr1_threadpool_params;

DSR1_API void dsr1_threadpool_params_default(dsr1_threadpool_params *params, size_t struct_size);
/* params may be NULL (defaults). Fewer threads than asked when the system
 * refuses some (dsr1_threadpool_n_threads says how many). */
DSR1_API dsr1_status dsr1_threadpool_new(const dsr1_threadpool_params *params, dsr1_threadpool **out);
/* Drops the caller's reference: the threads stop once no context uses the
 * pool either. NULL is allowed. */
DSR1_API void dsr1_threadpool_free(dsr1_threadpool *pool);
DSR1_API int32_t dsr1_threadpool_n_threads(const dsr1_threadpool *pool);

/* Threads the context's next evaluations use: 1 up to the n_threads it was
 * created with (with a pool: up to the pool's size). Between evaluations
 * only (not from another thread during one); results are the same bits for
 * any thread count. */
DSR1_API dsr1_status dsr1_context_set_threads(dsr1_context *ctx, int32_t n_threads);
DSR1_API int32_t dsr1_context_n_threads(const dsr1_context *ctx);

#ifdef __cplusplus
}
#endif

#endif /* DSR1_H */
