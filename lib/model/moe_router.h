/*
 * Mixture-of-experts router of DeepSeek-V2/V3/R1 (internal), as a pure
 * function so it can be tested on its own (tests/test_router.c).
 *
 * Given one token's router logits (W_gate x, computed in f32 from f32
 * activations), it picks n_used experts and their weights:
 *
 *   1. scores s_e = sigmoid(logit_e) (gating 2) or softmax over all experts
 *      (gating 1);
 *   2. selection scores c_e = s_e + b_e, where b is the optional
 *      "exp_probs_b" correction bias: it only steers the choice and never
 *      enters a weight;
 *   3. group limit (n_group > 1): the experts are split into n_group
 *      consecutive groups, each group is scored by the sum of its two
 *      highest c_e (its single highest when a group holds one expert), the
 *      n_group_used best groups are kept and every expert of the others is
 *      excluded;
 *   4. the n_used experts with the highest c_e among those left;
 *   5. weights w = s_e (unbiased) of the chosen experts, divided by their sum
 *      when norm is set (the sum is clamped below at 6.103515625e-5 as
 *      llama.cpp does), then multiplied by scale.
 *
 * Ties: whenever two groups or two experts score exactly the same, the lower
 * index wins, so the choice is deterministic. Experts are returned in the
 * order they were chosen (best first).
 *
 * Any scores: -inf and NaN (NaN ranks below -inf) are ordered like the rest,
 * so the n_used experts returned are always distinct and in [0, n_expert),
 * whatever the logits and bias hold (tests/test_router.c, fuzz/fuzz_router.c).
 */
#ifndef DSRI_MOE_ROUTER_H
#define DSRI_MOE_ROUTER_H

#include <stdint.h>

typedef struct dsri_router_config {
    int n_expert;     /* experts in the layer */
    int n_used;       /* experts chosen per token */
    int n_group;      /* expert groups (1: no group limit) */
    int n_group_used; /* groups kept */
    int gating;       /* 1 softmax, 2 sigmoid */
    int norm;         /* normalise the chosen weights to sum 1 */
    float scale;      /* multiplies the weights */
} dsri_router_config;

/* 0 when the configuration is usable (n_group divides n_expert, enough
 * experts in the kept groups, ...), else -1. */
int dsri_router_check(const dsri_router_config *cfg);

/* Floats of work memory dsri_router_route needs. */
int64_t dsri_router_work_floats(const dsri_router_config *cfg);

/* Route one token. logits: n_expert values; bias: n_expert values or NULL;
 * work: dsri_router_work_floats() floats; ids / weights: n_used entries. */
void dsri_router_route(const dsri_router_config *cfg, const float *logits, const float *bias, float *work,
                       int32_t *ids, float *weights);

#endif
