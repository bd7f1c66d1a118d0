/* Test helper shared by the generation tests: is p[0..n) well-formed UTF-8
 * (no overlongs, no surrogates, nothing past U+10FFFF, nothing truncated)? */
#ifndef DSR1_TEST_UTF8_CHECK_H
#define DSR1_TEST_UTF8_CHECK_H

#include <stddef.h>

static int valid_utf8(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t need;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            lo = c == 0xE0 ? 0xA0 : 0x80;
            hi = c == 0xED ? 0x9F : 0xBF;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            lo = c == 0xF0 ? 0x90 : 0x80;
            hi = c == 0xF4 ? 0x8F : 0xBF;
        } else {
            return 0;
        }
        if (i + need >= n)
            return 0;
        for (size_t j = 1; j <= need; j++) {
            unsigned b = p[i + j];
            if (b < lo || b > hi)
                return 0;
            lo = 0x80, hi = 0xBF;
        }
        i += need + 1;
    }
    return 1;
}

#endif
