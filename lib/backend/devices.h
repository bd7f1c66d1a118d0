/* Choosing the device a model offloads to (internal; lib/backend/devices.c). */
#ifndef DSRI_DEVICES_H
#define DSRI_DEVICES_H

#include "dsr1.h"

/* The device index (as dsr1_device_info lists them) for spec: an index, or
 * a case-insensitive part of a device or backend name ("llvmpipe", "RTX",
 * "vulkan"); NULL or "": $DSR1_DEVICE, else the first GPU, else the only
 * device when it is a CPU-type one. DSR1_ERR_UNSUPPORTED without devices,
 * DSR1_ERR_INVALID_ARGUMENT when nothing matches. */
dsr1_status dsri_device_choose(const char *spec, int *index);

/* The backend that owns device `index` (as listed above) and the device's
 * index within that backend; NULL when there is no such device. */
struct dsri_backend_ops;
const struct dsri_backend_ops *dsri_device_backend(int index, int *backend_index);

#endif
