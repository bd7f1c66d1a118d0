/* Generation internals shared with chat sessions. */
#ifndef DSRI_GENERATION_H
#define DSRI_GENERATION_H

#include "dsr1.h"

/* Called once when the generation finishes (freeing = 0), and again from
 * dsr1_generation_free (freeing = 1) unless detached before. */
typedef void (*dsri_gen_owner_fn)(void *owner, dsr1_generation *gen, int freeing);

void dsri_generation_set_owner(dsr1_generation *gen, void *owner, dsri_gen_owner_fn fn);
/* See every event, hidden reasoning included (dsri_split_set_tap). */
void dsri_generation_set_tap(dsr1_generation *gen, dsr1_event_fn fn, void *user_data);
/* Whether the prompt opened the reasoning block (as given or detected). */
int dsri_generation_prompt_opened_reasoning(const dsr1_generation *gen);

/* Chat sessions: where the turns of the prompt start (the positions of
 * their first tokens, increasing; the last is the current question's), the
 * end of the system prompt (n_keep when the params' n_keep is -1) and of
 * the question. A context shift (ctx_policy DSR1_CTX_SHIFT) then drops
 * the oldest whole turns first and keeps the question in view. */
dsr1_status dsri_generation_set_turns(dsr1_generation *gen, int32_t system_end, const int32_t *starts, int32_t n,
                                      int32_t question_end);
/* How many of those turns (the oldest, from the first at or after n_keep)
 * shifts dropped whole. */
int32_t dsri_generation_turns_dropped(const dsr1_generation *gen);
/* The n_keep the generation resolved (after dsri_generation_set_turns). */
int32_t dsri_generation_n_keep(const dsr1_generation *gen);

/* Tests of speculative decoding: after the MTP head drafted (and its cache
 * was brought up to date as usual), fn may replace the draft. It gets the
 * head's draft and n_generated (the draft guesses generated token number
 * n_generated, counting from 0); it returns the draft to verify. A
 * random-weight head is rarely right, so this is how the accepted-draft
 * paths get exercised. */
typedef dsr1_token (*dsri_draft_fn)(void *user_data, dsr1_token draft, int32_t n_generated);
void dsri_generation_set_draft_override(dsr1_generation *gen, dsri_draft_fn fn, void *user_data);

#endif
