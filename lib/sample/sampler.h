/* Sampler internals other modules need (internal). */
#ifndef DSRI_SAMPLER_H
#define DSRI_SAMPLER_H

#include "dsr1.h"

/* The vocabulary size the sampler was made for. */
int32_t dsri_sampler_n_vocab(const dsr1_sampler *smp);

#endif
