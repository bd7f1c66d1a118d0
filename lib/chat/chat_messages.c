/*
 * The chat formatter's input: dsr1_chat_message arrays (frozen, two
 * pointers) and dsr1_message arrays (size-prefixed, with tool calls) read
 * through one view, and validated once before formatting. See chat.h.
 */
#include <string.h>

#include "chat/chat.h"
#include "core/error.h"
#include "core/params.h"

dsri_chat_msgs dsri_chat_msgs_v1(const dsr1_chat_message *messages, int32_t n_messages)
{
    dsri_chat_msgs m = {messages, 0, n_messages};
    return m;
}

dsri_chat_msgs dsri_chat_msgs_sized(const dsr1_message *messages, int32_t n_messages)
{
    size_t stride = 0;
    if (messages && n_messages > 0)
        memcpy(&stride, messages, sizeof stride);
    dsri_chat_msgs m = {messages, stride, n_messages};
    return m;
}

static dsri_chat_role role_of(const char *r)
{
    static const char *const names[] = {"system", "user", "assistant", "tool"};
    for (int i = 0; i < 4; i++)
        if (strcmp(r, names[i]) == 0)
            return (dsri_chat_role)i;
    return DSRI_ROLE_INVALID;
}

/* Element i of a sized array, through the one reader of size-prefixed
 * structs: a caller's newer, larger struct is fine while the fields this
 * library does not know are zero. */
static dsr1_status read_sized(const void *base, size_t stride, int32_t i, void *out, size_t lib_size, size_t known,
                              const char *name)
{
    const unsigned char *p = (const unsigned char *)base + (size_t)i * stride;
    size_t size;
    memcpy(&size, p, sizeof size);
    memset(out, 0, lib_size);
    if (size < sizeof size || size > DSRI_MAX_STRUCT_SIZE)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s[%d].size is %zu: set it to sizeof(%s)", name, i, size, name);
    if (size != stride)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT,
                          "%s[%d].size is %zu but element 0's is %zu: the elements of an array must all have "
                          "the same size (sizeof(%s))", name, i, size, stride, name);
    return dsri_params_read(p, out, lib_size, known, name);
}

static dsr1_status read_msg(const dsri_chat_msgs *ms, int32_t i, const char **role, dsri_chat_msg *out)
{
    memset(out, 0, sizeof *out);
    if (!ms->stride) {
        const dsr1_chat_message *m = (const dsr1_chat_message *)ms->base + i;
        *role = m->role;
        out->content = m->content;
        return DSR1_OK;
    }
    dsr1_message m;
    dsr1_status st = read_sized(ms->base, ms->stride, i, &m, sizeof m, DSRI_KNOWN_SIZE(dsr1_message, n_tool_calls),
                                "dsr1_message");
    *role = m.role;
    out->content = m.content;
    out->calls = m.tool_calls;
    out->n_calls = m.n_tool_calls;
    return st;
}

static dsr1_status read_call(const dsri_chat_msg *m, int32_t j, dsr1_tool_call *out)
{
    size_t stride;
    memcpy(&stride, m->calls, sizeof stride);
    return read_sized(m->calls, stride, j, out, sizeof *out, DSRI_KNOWN_SIZE(dsr1_tool_call, arguments),
                      "dsr1_tool_call");
}

dsri_chat_msg dsri_chat_msg_at(const dsri_chat_msgs *msgs, int32_t i)
{
    const char *role;
    dsri_chat_msg m;
    (void)read_msg(msgs, i, &role, &m);
    m.role = role_of(role);
    return m;
}

dsr1_tool_call dsri_chat_call_at(const dsri_chat_msg *m, int32_t j)
{
    dsr1_tool_call c;
    (void)read_call(m, j, &c);
    if (!c.type)
        c.type = "function";
    return c;
}

static dsr1_status validate_calls(const dsri_chat_msg *m, int32_t i, dsri_chat_family family, const char *fn)
{
    if (m->n_calls < 0 || (m->n_calls > 0 && !m->calls))
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: messages[%d] has %d tool calls at %s", fn, i, m->n_calls,
                          m->calls ? "an address" : "NULL");
    if (m->n_calls == 0)
        return DSR1_OK;
    if (m->role != DSRI_ROLE_ASSISTANT)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: messages[%d] has tool calls but is not an assistant message",
                          fn, i);
    if (m->content && !(family & DSRI_CHAT_OPENS_REPLY))
        return dsri_error(DSR1_ERR_UNSUPPORTED,
                          "%s: messages[%d] has tool calls and a content: R1's template writes the calls of an "
                          "assistant message only when it has no content (content NULL; R1-0528's writes both)",
                          fn, i);
    for (int32_t j = 0; j < m->n_calls; j++) {
        dsr1_tool_call c;
        dsr1_status st = read_call(m, j, &c);
        if (st)
            return st;
        if (!c.name || !c.arguments)
            return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: messages[%d].tool_calls[%d].%s is NULL", fn, i, j,
                              c.name ? "arguments" : "name");
    }
    return DSR1_OK;
}

dsr1_status dsri_chat_validate(const dsri_chat_msgs *msgs, dsri_chat_family family, uint32_t flags, const char *fn)
{
    const int32_t n = msgs->n;
    if (n < 0)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: n_messages %d is negative", fn, n);
    if (!msgs->base && n)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: messages is NULL but n_messages is %d", fn, n);
    if (flags & ~(uint32_t)DSR1_CHAT_ADD_GENERATION_PROMPT)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: unknown flags 0x%x", fn,
                          flags & ~(uint32_t)DSR1_CHAT_ADD_GENERATION_PROMPT);
    for (int32_t i = 0; i < n; i++) {
        const char *role;
        dsri_chat_msg m;
        dsr1_status st = read_msg(msgs, i, &role, &m);
        if (st)
            return st;
        if (!role)
            return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: messages[%d].role is NULL", fn, i);
        m.role = role_of(role);
        if (m.role == DSRI_ROLE_INVALID)
            return dsri_error(DSR1_ERR_INVALID_ARGUMENT,
                              "%s: messages[%d].role '%.64s' is not \"system\", \"user\", \"assistant\" or \"tool\"",
                              fn, i, role);
        if (!m.content && (m.role != DSRI_ROLE_ASSISTANT || !msgs->stride))
            return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: messages[%d].content is NULL%s", fn, i,
                              msgs->stride ? " (only an assistant message that calls tools may have none)" : "");
        if ((st = validate_calls(&m, i, family, fn)))
            return st;
    }
    return DSR1_OK;
}
