/*
 * DeepSeek-R1 chat format (internal), built in, no template engine: the
 * families of R1's official Jinja templates, byte for byte as they write
 * them. R1's and the distills':
 *
 *   <｜begin▁of▁sentence｜>{system}
 *   then per message in order:
 *     user:       <｜User｜>{content}
 *     assistant:  <｜Assistant｜>{answer}<｜end▁of▁sentence｜>
 *     tool:       <｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>{content}<｜tool▁output▁end｜>
 *                 (the first tool message of the conversation; later ones
 *                 "\n<｜tool▁output▁begin｜>{content}<｜tool▁output▁end｜>")
 *     assistant right after tool messages:
 *                 <｜tool▁outputs▁end｜>{content}<｜end▁of▁sentence｜>
 *   tool messages not followed by an assistant one end with <｜tool▁outputs▁end｜>;
 *   with DSR1_CHAT_ADD_GENERATION_PROMPT, unless the conversation ends with
 *   tool messages: <｜Assistant｜><think>\n (DSRI_CHAT_R1) or
 *   <｜Assistant｜> (DSRI_CHAT_R1_ORIGINAL).
 *
 * {system} is the contents of all system messages, wherever they appear,
 * joined with "\n\n" as R1's templates do (ns.system_prompt +
 * '\n\n' + ...), or with DSRI_CHAT_LAST_SYSTEM the last one alone, as the
 * distills' templates (ns.system_prompt = message['content']). {answer}: DSRI_CHAT_R1 (the updated template of R1
 * and the distills, the default) drops the reasoning as
 * content.split('</think>')[-1] does: everything up to and including the
 * last "</think>", keeping what follows it (the "\n\n" too);
 * DSRI_CHAT_R1_ORIGINAL (R1's first release, DeepSeek-V3's template, as the
 * HF fixtures ship it) writes the content as it is.
 *     assistant with tool calls and no content (dsr1_message only):
 *                 the first call of the conversation
 *                 <｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>{type}<｜tool▁sep｜>{name}\n```json\n{arguments}\n```<｜tool▁call▁end｜>,
 *                 every later one "\n<｜tool▁call▁begin｜>...<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>"
 *                 (the template's ns.is_first, like ns.is_output_first, is
 *                 never reset).
 *
 * DSRI_CHAT_OPENS_REPLY: R1-0528's template (and DeepSeek-V3-0324's, with
 * DSRI_CHAT_R1_ORIGINAL: contents verbatim), where a user turn opens the
 * reply itself and assistant messages carry no marker of their own:
 *     user:       <｜User｜>{content}<｜Assistant｜>
 *     assistant:  {answer}<｜end▁of▁sentence｜>, right after tool messages
 *                 <｜tool▁outputs▁end｜>{answer}<｜end▁of▁sentence｜>
 *     assistant with tool calls (after tool messages <｜tool▁outputs▁end｜> first):
 *                 {answer}<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>{type}<｜tool▁sep｜>{name}\n```json\n{arguments}\n```<｜tool▁call▁end｜>
 *                 then per later call "\n<｜tool▁call▁begin｜>...<｜tool▁call▁end｜>",
 *                 then <｜tool▁calls▁end｜><｜end▁of▁sentence｜> (content NULL
 *                 is written as "", where the template fails on None)
 *     tool:       as above, but "first output" starts again after every
 *                 assistant message with tool calls (ns.is_output_first)
 *   {answer} drops the thoughts of every assistant message, the replies to
 *   tool outputs and the calls' content too (unless DSRI_CHAT_R1_ORIGINAL);
 *   the generation prompt is <｜Assistant｜>, written only when the
 *   conversation ends with neither a user message (which opened the reply)
 *   nor tool messages.
 *
 * The family follows the GGUF's tokenizer.chat_template: an R1 template
 * (R1's turn markers) without "</think>" is the original one; any other, or
 * none, formats as DSRI_CHAT_R1. An R1 template that does not concatenate
 * system prompts ("ns.system_prompt +") has DSRI_CHAT_LAST_SYSTEM; one that
 * appends the Assistant marker to a turn ("+ '<｜Assistant｜>'")
 * DSRI_CHAT_OPENS_REPLY.
 *
 * The token form emits the markers as their ids (found by their exact
 * spelling in the vocabulary; a vocabulary without them is
 * DSR1_ERR_UNSUPPORTED: the tool markers only when a tool message needs
 * them) and tokenizes each content without special-token parsing, so
 * message text can never inject a marker.
 */
#ifndef DSRI_CHAT_H
#define DSRI_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "dsr1.h"
#include "tokenizer/vocab.h"

/* The format of a template: DSRI_CHAT_R1 or DSRI_CHAT_R1_ORIGINAL, with
 * DSRI_CHAT_LAST_SYSTEM or'ed in for the templates that keep only the
 * last system message, DSRI_CHAT_OPENS_REPLY for R1-0528's. */
typedef unsigned dsri_chat_family;
#define DSRI_CHAT_R1 0u          /* thoughts dropped, generation prompt opens <think> */
#define DSRI_CHAT_R1_ORIGINAL 1u /* contents verbatim, generation prompt <｜Assistant｜> */
#define DSRI_CHAT_LAST_SYSTEM 2u /* {system}: the last system message alone (the distills' templates) */
#define DSRI_CHAT_OPENS_REPLY 4u /* R1-0528's: the user turn opens the reply, no <think> in the prompt */

/* The family of a tokenizer.chat_template text (NULL: none), and of a model's. */
dsri_chat_family dsri_chat_family_of(const char *text, size_t len);
dsri_chat_family dsri_chat_family_of_model(const dsr1_model *model);

/* A conversation in either public form: an array of dsr1_chat_message
 * (stride 0) or of dsr1_message (stride: the first element's size). */
typedef struct dsri_chat_msgs {
    const void *base;
    size_t stride;
    int32_t n;
} dsri_chat_msgs;

dsri_chat_msgs dsri_chat_msgs_v1(const dsr1_chat_message *messages, int32_t n_messages);
dsri_chat_msgs dsri_chat_msgs_sized(const dsr1_message *messages, int32_t n_messages);

typedef enum dsri_chat_role {
    DSRI_ROLE_SYSTEM, DSRI_ROLE_USER, DSRI_ROLE_ASSISTANT, DSRI_ROLE_TOOL, DSRI_ROLE_INVALID
} dsri_chat_role;

/* One message as the formatter reads it. */
typedef struct dsri_chat_msg {
    dsri_chat_role role;
    const char *content;            /* NULL: an assistant message that only calls tools */
    const dsr1_tool_call *calls;    /* n_calls, dsr1_tool_call elements of calls[0].size bytes */
    int32_t n_calls;
} dsri_chat_msg;

/* Check messages / flags for a family's template (only
 * DSRI_CHAT_OPENS_REPLY writes tool calls that have a content); fn names
 * the public function in messages. */
dsr1_status dsri_chat_validate(const dsri_chat_msgs *msgs, dsri_chat_family family, uint32_t flags, const char *fn);

/* Message i and its call j of a validated conversation (they cannot fail
 * then). */
dsri_chat_msg dsri_chat_msg_at(const dsri_chat_msgs *msgs, int32_t i);
dsr1_tool_call dsri_chat_call_at(const dsri_chat_msg *m, int32_t j);

/* The conversation as tokens (messages already validated): stores at most
 * capacity ids, *n_tokens gets the count produced or needed
 * (DSR1_ERR_BUFFER_TOO_SMALL). */
dsr1_status dsri_chat_tokenize_vocab(const dsri_vocab *v, dsri_chat_family family, const dsri_chat_msgs *msgs,
                                     uint32_t flags, dsr1_token *tokens, int32_t capacity, int32_t *n_tokens);

/* The conversation as text (messages already validated): writes up to
 * buf_size bytes (no NUL) and returns the full length. */
size_t dsri_chat_format_text(dsri_chat_family family, const dsri_chat_msgs *msgs, uint32_t flags, char *buf,
                             size_t buf_size);

/* Whether a GGUF tokenizer.chat_template is one of DeepSeek-R1's (its
 * releases and the distills'), the only format this library writes: they all
 * spell R1's turn markers literally. A model with another template still
 * loads; the loader warns that chat formatting falls back to R1's. */
int dsri_chat_template_is_r1(const char *text, size_t len);

#endif
