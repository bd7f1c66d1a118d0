/*
 * Layout of the device's IQ table buffer, in 32-bit words: the lattice grids
 * and the sign table of lib/quant/iq_tables.c (the one source of their
 * values), copied there once per device by memory.c (vk_iq_tables) and read
 * by dequant.glsl through the binding after a shader's own. This file is both
 * GLSL and C (memory.c includes it and checks every size against the C
 * tables). A 64-bit grid entry takes two words, its low half first; the
 * sign table packs four bytes to a word, the lowest first.
 */
#define IQT_KSIGNS 0u    /* dsri_ksigns_iq2xs: 128 bytes */
#define IQT_IQ2XXS 32u   /* dsri_iq2xxs_grid: 256 x 64 bits */
#define IQT_IQ2XS 544u   /* dsri_iq2xs_grid: 512 x 64 bits */
#define IQT_IQ2S 1568u   /* dsri_iq2s_grid: 1024 x 64 bits */
#define IQT_IQ3XXS 3616u /* dsri_iq3xxs_grid: 256 x 32 bits */
#define IQT_IQ3S 3872u   /* dsri_iq3s_grid: 512 x 32 bits */
#define IQT_IQ1S 4384u   /* dsri_iq1s_grid: 2048 x 64 bits */
#define IQT_WORDS 8480u
