/* Host-provided logging (internal). Silent unless the host set a callback. */
#ifndef DSRI_LOG_H
#define DSRI_LOG_H

#include "core/error.h"
#include "dsr1.h"

typedef struct dsri_logger {
    dsr1_log_fn fn;
    void *user_data;
    int level; /* most verbose level delivered */
} dsri_logger;

void dsri_log(const dsri_logger *lg, dsr1_log_level level, const char *fmt, ...) DSRI_PRINTF(3, 4);

#endif
