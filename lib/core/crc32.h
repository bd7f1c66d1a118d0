/* CRC-32 (IEEE 802.3, the zlib one) of the blobs the library writes and
 * reads back (sampler and context states). */
#ifndef DSRI_CRC32_H
#define DSRI_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Continue crc (0 to start) over p[0..n): crc(a ++ b) =
 * dsri_crc32(dsri_crc32(0, a), b). */
uint32_t dsri_crc32(uint32_t crc, const void *p, size_t n);

#endif
