/*
 * DeepSeek-R1 chat format (internal), built in, no template engine:
 *
 *   <｜begin▁of▁sentence｜>{system}
 *   then per message in order:
 *     user:       <｜User｜>{content}
 *     assistant:  <｜Assistant｜>{answer}<｜end▁of▁sentence｜>
 *   and with DSR1_CHAT_ADD_GENERATION_PROMPT:  <｜Assistant｜><think>\n
 *
 * {system} is the contents of all system messages, wherever they appear,
 * joined with "\n\n" (as R1's own template does). {answer} is an assistant
 * content without its reasoning: when it contains "</think>", everything up
 * to and including the last one is dropped, and so is the whitespace
 * (space, \t, \n, \v, \f, \r) right after it. This applies to every
 * assistant message, as R1's template does.
 *
 * The token form emits the markers as their ids (found by their exact
 * spelling in the vocabulary; a vocabulary without them is
 * DSR1_ERR_UNSUPPORTED) and tokenizes each content without special-token
 * parsing, so message text can never inject a marker.
 */
#ifndef DSRI_CHAT_H
#define DSRI_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "dsr1.h"
#include "tokenizer/vocab.h"

/* Check messages / flags; fn names the public function in messages. */
dsr1_status dsri_chat_validate(const dsr1_chat_message *messages, int32_t n_messages, uint32_t flags,
                               const char *fn);

/* The conversation as tokens (messages already validated): stores at most
 * capacity ids, *n_tokens gets the count produced or needed
 * (DSR1_ERR_BUFFER_TOO_SMALL). */
dsr1_status dsri_chat_tokenize_vocab(const dsri_vocab *v, const dsr1_chat_message *messages,
                                     int32_t n_messages, uint32_t flags, dsr1_token *tokens,
                                     int32_t capacity, int32_t *n_tokens);

/* The conversation as text (messages already validated): writes up to
 * buf_size bytes (no NUL) and returns the full length. */
size_t dsri_chat_format_text(const dsr1_chat_message *messages, int32_t n_messages, uint32_t flags,
                             char *buf, size_t buf_size);

/* Whether a GGUF tokenizer.chat_template is one of DeepSeek-R1's (its
 * releases and the distills'), the only format this library writes: they all
 * spell R1's turn markers literally. A model with another template still
 * loads; the loader warns that chat formatting falls back to R1's. */
int dsri_chat_template_is_r1(const char *text, size_t len);

#endif
