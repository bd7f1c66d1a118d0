/*
 * UTF-8 decoding and character classes for the tokenizer (internal).
 */
#include "tokenizer/unicode.h"

unsigned dsri_uc_flags(uint32_t cp)
{
    if (cp < 256)
        return dsri_ucd_latin1[cp];
    if (cp == DSRI_UC_INVALID)
        return DSRI_UC_S;
    size_t lo = 0, hi = dsri_ucd_n_ranges;
    while (lo < hi) { /* first range whose start is > cp */
        size_t mid = lo + (hi - lo) / 2;
        if (dsri_ucd_ranges[mid][0] <= cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return 0;
    const uint32_t *r = dsri_ucd_ranges[lo - 1];
    return cp <= (r[1] >> 8) ? (r[1] & 0xffu) : 0u;
}

/* Bounds of the second byte of a sequence, by lead byte (Unicode table 3-7). */
static int second_range(uint8_t lead, uint8_t *lo, uint8_t *hi, int *len)
{
    *lo = 0x80;
    *hi = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) {
        *len = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        *len = 3;
        if (lead == 0xe0)
            *lo = 0xa0;
        else if (lead == 0xed)
            *hi = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        *len = 4;
        if (lead == 0xf0)
            *lo = 0x90;
        else if (lead == 0xf4)
            *hi = 0x8f;
    } else {
        return 0;
    }
    return 1;
}

int dsri_utf8_check(const uint8_t *s, size_t n)
{
    if (n == 0)
        return 0;
    if (s[0] < 0x80)
        return 1;
    uint8_t lo, hi;
    int len;
    if (!second_range(s[0], &lo, &hi, &len))
        return -1;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n)
            return 0; /* a valid prefix so far */
        uint8_t b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf))
            return -i;
    }
    return len;
}

size_t dsri_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp)
{
    int k = dsri_utf8_check(s, n);
    if (k <= 0) {
        *cp = DSRI_UC_INVALID;
        return 1;
    }
    uint32_t c;
    switch (k) {
    case 1: c = s[0]; break;
    case 2: c = ((uint32_t)(s[0] & 0x1f) << 6) | (s[1] & 0x3fu); break;
    case 3: c = ((uint32_t)(s[0] & 0x0f) << 12) | ((uint32_t)(s[1] & 0x3f) << 6) | (s[2] & 0x3fu); break;
    default:
        c = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3f) << 12) |
            ((uint32_t)(s[2] & 0x3f) << 6) | (s[3] & 0x3fu);
        break;
    }
    *cp = c;
    return (size_t)k;
}

size_t dsri_utf8_encode(uint32_t cp, uint8_t *out)
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xc0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xe0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (uint8_t)(0xf0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}
