/*
 * The reasoning / answer splitter (internal, pure: no model needed).
 *
 * Fed the generated tokens one at a time (each as its rendered bytes, or as a
 * <think> / </think> special token), it delivers dsr1_event's:
 *
 * - REASONING_BEGIN when the block opens (at the start when the prompt opened
 *   it), REASONING_TEXT / ANSWER_TEXT pieces, REASONING_END when </think>
 *   appears, DONE at the end.
 * - Markers are recognised as their special tokens or as text spread over any
 *   number of tokens; text that might be the start of a marker is held back
 *   until it is decided. At most one reasoning block: "<think>" opens it only
 *   while no block has been opened; "</think>" closes it only while open.
 *   Otherwise a marker is ordinary text, spelled as it is (special tokens
 *   too: their spelling joins the text around them, so a stop string can
 *   span it).
 * - Text is kept verbatim: the concatenated REASONING_TEXT is exactly the
 *   generated text between the markers (so a "\n" the model writes after
 *   <think> and before </think> is included), the concatenated ANSWER_TEXT
 *   exactly the rest (including the "\n\n" after </think>). Only whole UTF-8
 *   characters are delivered; incomplete sequences are held until they
 *   complete, and bytes that can never complete become U+FFFD.
 * - Stop strings are matched in the answer text only (across token
 *   boundaries, held back while they might still match, and across a
 *   spelled-out marker; a marker that opens or closes the block ends the
 *   text before it); the text before a match is delivered, the match and
 *   everything after it is not. Of overlapping stop strings and a text
 *   <think>, the one whose last byte comes first acts (then the longest),
 *   so the result never depends on how the text was split into tokens.
 * - Each event carries the ids of the tokens whose last byte it consumed
 *   (special tokens: the event they caused; tokens of hidden reasoning and of
 *   discarded text: the next event delivered, at the latest DONE).
 * - After finish (EOS, a stop string, ...) further input is ignored.
 */
#ifndef DSRI_THINK_SPLIT_H
#define DSRI_THINK_SPLIT_H

#include <stddef.h>

#include "dsr1.h"

typedef struct dsri_split dsri_split;

typedef struct dsri_split_config {
    int starts_in_reasoning; /* 1: the prompt opened <think> */
    int hide_reasoning;      /* deliver no REASONING_TEXT events */
    const char *const *stop_strings; /* copied; empty strings are ignored */
    int32_t n_stop_strings;
    dsr1_event_fn on_event; /* may be NULL */
    void *user_data;
} dsri_split_config;

/* Kinds of pushed tokens. */
typedef enum dsri_split_kind {
    DSRI_SPLIT_TEXT = 0,        /* rendered bytes */
    DSRI_SPLIT_THINK_BEGIN = 1, /* the <think> special token */
    DSRI_SPLIT_THINK_END = 2    /* the </think> special token */
} dsri_split_kind;

dsr1_status dsri_split_new(const dsri_split_config *cfg, dsri_split **out);
void dsri_split_free(dsri_split *s);

/* Push one token. forced: injected by the library (not counted as a
 * reasoning token). Only allocation can fail. */
dsr1_status dsri_split_push(dsri_split *s, dsr1_token token, dsri_split_kind kind, const char *piece,
                            size_t len, int forced);

/* End: deliver what is held back (unless a stop string matched: then it is
 * dropped), then DONE with the reason, covering the extra tokens (e.g. EOS)
 * and every token not yet delivered. Later calls do nothing. */
dsr1_status dsri_split_finish(dsri_split *s, dsr1_stop_reason reason, const dsr1_token *extra, int32_t n_extra);

/* A second receiver of every event, hidden reasoning text included (without
 * tokens); its return value is ignored. NULL removes it. */
void dsri_split_set_tap(dsri_split *s, dsr1_event_fn tap, void *user_data);

int dsri_split_in_reasoning(const dsri_split *s);   /* inside an open block now */
int dsri_split_stop_matched(const dsri_split *s);   /* a stop string appeared */
int dsri_split_cancel_requested(const dsri_split *s); /* a callback returned non-zero */
int dsri_split_finished(const dsri_split *s);
/* Tokens pushed (not forced) while inside the block. */
int32_t dsri_split_n_reasoning(const dsri_split *s);

#endif
