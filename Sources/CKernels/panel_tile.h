// Internal to CKernels: the parts of the int8 panel tiles that the Q8_0 (gemm_q8.c) and Q4_0
// (gemm_q4.c) layouts share: how a block's int32 sums become float, the prefetch ahead of the
// stream, and the tile's store. Both layouts end each block record with the 32 rows' float16
// scales, so only the integer part differs.
#pragma once
#include "ck_internal.h"
#include "ck_many_rows.h"

#if CK_X86
#include <immintrin.h>
#include <string.h>

#define CK_T_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define CK_TILE_INLINE static inline __attribute__((always_inline))

// Prefetch distance, measured on a decode step's products (Small-V shapes, 1 thread): 4 records
// ahead 2.65 -> 2.2 ms at 1 row, 4.06 -> 2.84 ms at 8 rows; 2 and 8 records ahead are slower.
#define CK_PANEL_PREFETCH_RECORDS 4

// The first pass over a panel streams it from memory: ask for the record a few records ahead
// (beyond the panel too, into the next one), more loads in flight than the hardware prefetcher keeps.
CK_T_VNNI CK_TILE_INLINE void ck_panel_prefetch(const uint8_t *rec, size_t record_bytes, const uint8_t *prefetch_end) {
    const uint8_t *ahead = rec + CK_PANEL_PREFETCH_RECORDS * record_bytes;
    if (ahead < prefetch_end)
        for (size_t l = 0; l < record_bytes / 64; l++) _mm_prefetch((const char *)ahead + 64 * l, _MM_HINT_T0);
}

// Per x row i: f[i][h] = fma(float(a[i]) · d_h, dx[i], f[i][h]) with d_h the 16 float16 scales of
// rows 16h .. 16h+15 at `scales`: the definition's t = float(Σ qw · qx) · dw, f = fma(t, dx, f).
CK_T_VNNI CK_TILE_INLINE void ck_panel_scale_half(const int M, __m512 f[][2], const __m512i *a, int h,
                                                  const uint8_t *scales, const float *scale, size_t nb, size_t b) {
    __m512 d = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(scales + 32 * h)));
    for (int i = 0; i < M; i++)
        f[i][h] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a[i]), d), _mm512_set1_ps(scale[i * nb + b]), f[i][h]);
}

// x row i's 4 int8 values of step s, broadcast to the 16 lanes.
CK_T_VNNI CK_TILE_INLINE __m512i ck_panel_x4(const int8_t *xb, size_t ldq, int i, int s) {
    int32_t four;
    memcpy(&four, xb + (size_t)i * ldq + 4 * (size_t)s, 4);
    return _mm512_set1_epi32(four);
}

// y[i, 0..32) (+)= f[i] + bias for the tile's M rows, the columns past the matrix masked off.
CK_T_VNNI CK_TILE_INLINE void ck_panel_store(const int M, __m512 f[][2], const float *bias, float *y, size_t ldy,
                                             int accumulate, __mmask16 m0, __mmask16 m1) {
    __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    __m512 b1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
    for (int i = 0; i < M; i++) {
        __m512 v0 = _mm512_add_ps(f[i][0], b0);
        __m512 v1 = _mm512_add_ps(f[i][1], b1);
        float *yr = y + (size_t)i * ldy;
        if (accumulate) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, yr));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, yr + 16));
        }
        _mm512_mask_storeu_ps(yr, m0, v0);
        _mm512_mask_storeu_ps(yr + 16, m1, v1);
    }
}

// Up to 8 x rows times one panel, both 16-row halves of each step at once (up to 6 rows every
// accumulator is a register; at 7-8 the float ones may live in L1). Q4 is a constant after
// inlining: the Q8_0 record's step is two 64-byte vectors of unsigned bytes (q + 128), the Q4_0
// record's one vector of nibbles (q + 8: low nibbles rows 0-15, high 16-31), whose correction is
// the Q8_0 offset / 16. Both records end with the 32 float16 scales.
CK_T_VNNI CK_TILE_INLINE void ck_panel_tile(const int Q4, const int M, const int8_t *xq, size_t ldq, const float *scale,
                                            const int32_t *offset, const uint8_t *panel, size_t nb, const float *bias,
                                            float *y, size_t ldy, int accumulate, __mmask16 m0, __mmask16 m1,
                                            const uint8_t *prefetch_end) {
    const size_t step_bytes = Q4 ? 64 : 128, record_bytes = Q4 ? CK_Q4_PANEL_BLOCK_BYTES : CK_Q8_PANEL_BLOCK_BYTES;
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    __m512 f[8][2];
    for (int i = 0; i < M; i++) f[i][0] = f[i][1] = _mm512_setzero_ps();
    for (size_t b = 0; b < nb; b++) {
        const uint8_t *rec = panel + b * record_bytes;
        const int8_t *xb = xq + b * 32;
        ck_panel_prefetch(rec, record_bytes, prefetch_end);
        __m512i a[2][8];
        for (int i = 0; i < M; i++) a[0][i] = a[1][i] = _mm512_set1_epi32(-(Q4 ? offset[i * nb + b] / 16 : offset[i * nb + b]));
        for (int s = 0; s < 8; s++) {
            __m512i w0, w1;
            if (Q4) {
                __m512i v = _mm512_load_si512((const void *)(rec + s * step_bytes));
                w0 = _mm512_and_si512(v, nibble);
                w1 = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
            } else {
                w0 = _mm512_load_si512((const void *)(rec + s * step_bytes));
                w1 = _mm512_load_si512((const void *)(rec + s * step_bytes + 64));
            }
            for (int i = 0; i < M; i++) {
                __m512i xv = ck_panel_x4(xb, ldq, i, s);
                a[0][i] = _mm512_dpbusd_epi32(a[0][i], w0, xv);
                a[1][i] = _mm512_dpbusd_epi32(a[1][i], w1, xv);
            }
        }
        ck_panel_scale_half(M, f, a[0], 0, rec + 8 * step_bytes, scale, nb, b);
        ck_panel_scale_half(M, f, a[1], 1, rec + 8 * step_bytes, scale, nb, b);
    }
    ck_panel_store(M, f, bias, y, ldy, accumulate, m0, m1);
}

// Masks of a panel's first and second 16 output rows that exist (ncols of 32).
#define CK_PANEL_MASKS(ncols, m0, m1)                                                                   \
    __mmask16 m0 = (__mmask16)((ncols) >= 16 ? 0xffffu : (1u << (ncols)) - 1);                          \
    __mmask16 m1 = (__mmask16)((ncols) >= 32 ? 0xffffu : (ncols) > 16 ? (1u << ((ncols) - 16)) - 1 : 0)
#endif

#if CK_X86
// Runs the tiles over a panel's m rows of x: decode batches (up to 16 rows) in tiles of 8 (or 7)
// rows by EIGHT, everything else in tiles of up to 6 rows by SIX (always-inline tiles taking M
// first, then the arguments below). Only the first tile streams the panel from memory; later
// ones find it in cache, so they prefetch nothing (prefetch_end = panel).
#define CK_PANEL_TILES(EIGHT, SIX, xq, cols, scale, offset, m, panel, nb, bias, y, ldy, accumulate, m0, m1,         \
                       prefetch_end)                                                                                  \
    do {                                                                                                              \
        size_t start_ = 0;                                                                                            \
        while ((m) <= 16 && (m) - start_ >= 7) {                                                                      \
            const uint8_t *pf_ = start_ == 0 ? (prefetch_end) : (panel);                                              \
            size_t mg_ = (m) - start_ >= 8 ? 8 : 7;                                                                   \
            const int8_t *x_ = (xq) + start_ * (cols);                                                                \
            const float *s_ = (scale) + start_ * (nb);                                                                \
            const int32_t *o_ = (offset) + start_ * (nb);                                                             \
            float *y_ = (y) + start_ * (ldy);                                                                         \
            if (mg_ == 8) EIGHT(8, x_, cols, s_, o_, panel, nb, bias, y_, ldy, accumulate, m0, m1, pf_);              \
            else EIGHT(7, x_, cols, s_, o_, panel, nb, bias, y_, ldy, accumulate, m0, m1, pf_);                       \
            start_ += mg_;                                                                                            \
        }                                                                                                             \
        for (size_t i0_ = start_; i0_ < (m); i0_ += 6) {                                                              \
            size_t mg_ = (m) - i0_ < 6 ? (m) - i0_ : 6;                                                               \
            const int8_t *x_ = (xq) + i0_ * (cols);                                                                   \
            const float *s_ = (scale) + i0_ * (nb);                                                                   \
            const int32_t *o_ = (offset) + i0_ * (nb);                                                                \
            float *y_ = (y) + i0_ * (ldy);                                                                            \
            const uint8_t *pf_ = i0_ == 0 ? (prefetch_end) : (panel);                                                 \
            switch (mg_) {                                                                                            \
            case 1: SIX(1, x_, cols, s_, o_, panel, nb, bias, y_, ldy, accumulate, m0, m1, pf_); break;               \
            case 2: SIX(2, x_, cols, s_, o_, panel, nb, bias, y_, ldy, accumulate, m0, m1, pf_); break;               \
            case 3: SIX(3, x_, cols, s_, o_, panel, nb, bias, y_, ldy, accumulate, m0, m1, pf_); break;               \
            case 4: SIX(4, x_, cols, s_, o_, panel, nb, bias, y_, ldy, accumulate, m0, m1, pf_); break;               \
            case 5: SIX(5, x_, cols, s_, o_, panel, nb, bias, y_, ldy, accumulate, m0, m1, pf_); break;               \
            default: SIX(6, x_, cols, s_, o_, panel, nb, bias, y_, ldy, accumulate, m0, m1, pf_); break;              \
            }                                                                                                         \
        }                                                                                                             \
    } while (0)
#endif
