/*
 * Unicode support for the tokenizer (internal): UTF-8 decoding that never
 * fails, and the character classes the pre-tokenizer regexes use.
 */
#ifndef DSRI_TOKENIZER_UNICODE_H
#define DSRI_TOKENIZER_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Character class flags (general-category groups and White_Space). */
#define DSRI_UC_L 1u  /* \p{L} letters */
#define DSRI_UC_N 2u  /* \p{N} numbers */
#define DSRI_UC_M 4u  /* \p{M} marks */
#define DSRI_UC_P 8u  /* \p{P} punctuation */
#define DSRI_UC_S 16u /* \p{S} symbols */
#define DSRI_UC_W 32u /* \s (White_Space) */

/* Pseudo code point given to each byte of invalid UTF-8: it classifies like
 * U+FFFD (a symbol) but keeps the original byte, so tokenizing is lossless. */
#define DSRI_UC_INVALID 0x110000u

/* Generated tables (unicode_tables.c). */
extern const uint8_t dsri_ucd_latin1[256];
extern const uint32_t dsri_ucd_ranges[][2];
extern const size_t dsri_ucd_n_ranges;

/* Flags of a code point (DSRI_UC_INVALID counts as a symbol). */
unsigned dsri_uc_flags(uint32_t cp);

/* Decode one character of s[0..n) (n >= 1). Returns its byte length (1..4)
 * and stores the code point, or DSRI_UC_INVALID with length 1 for a byte
 * that does not start a well-formed sequence (overlongs, surrogates and
 * values above U+10FFFF are invalid). */
size_t dsri_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);

/* Encode cp (<= U+10FFFF) into out (4 bytes); returns the length. */
size_t dsri_utf8_encode(uint32_t cp, uint8_t *out);

/* For streaming: classify the start of s[0..n). Returns the length of a
 * complete well-formed character (> 0), 0 when s is a proper prefix of a
 * well-formed character that more bytes could complete, or -k when the
 * first k bytes (k >= 1, the maximal ill-formed subpart) can never start a
 * character and should be replaced by one U+FFFD. */
int dsri_utf8_check(const uint8_t *s, size_t n);

#endif
