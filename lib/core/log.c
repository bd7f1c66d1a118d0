#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>

void dsri_log(const dsri_logger *lg, dsr1_log_level level, const char *fmt, ...)
{
    if (!lg || !lg->fn || (int)level > lg->level)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    dsri_error_saved saved;
    dsri_error_save(&saved);
    lg->fn(level, line, lg->user_data);
    dsri_error_restore(&saved);
}
