// Products of Q8_0 weights with many int8-quantised activation rows (vision encoder, projector,
// prefill): see ck_many_rows.h for the arithmetic.
//
// Layout of a packed panel (32 output rows r0 .. r0+31, all blocks): for block b and step s
// (4 values), 32 lanes of 4 signed bytes, lane j = qw[r0 + j, 32b + 4s .. 32b + 4s + 3] — exactly
// the operand vpdpbusd multiplies by 4 broadcast bytes of x. Then dw[b][32] and cw[b][32] =
// 128 · dw · Σ qw, which removes the +128 offset of the unsigned x bytes from each block's sum.
#include "ckernels.h"
#include "ck_internal.h"
#include "ck_many_rows.h"

#include <math.h>
#include <string.h>

#define P CK_Q8_PANEL
#define STEP_BYTES (P * 4)                       // one step of 4 values for 32 lanes
#define BLOCK_BYTES (8 * STEP_BYTES)             // one block of 32 values

size_t ck_q8_panel_scratch_bytes(size_t cols) {
    size_t nb = cols / CK_Q8_0_BLOCK_VALUES;
    return nb * BLOCK_BYTES + 2 * nb * P * sizeof(float) + 128;
}

// One row, per block of 32 values.
static void quantize_row_portable(const float *x, size_t cols, uint8_t *q, float *scale) {
    for (size_t b = 0; b < cols / CK_Q8_0_BLOCK_VALUES; b++) {
        const float *xb = x + b * CK_Q8_0_BLOCK_VALUES;
        uint8_t *qb = q + b * CK_Q8_0_BLOCK_VALUES;
        float amax = 0.0f;
        for (size_t k = 0; k < CK_Q8_0_BLOCK_VALUES; k++) amax = fabsf(xb[k]) > amax ? fabsf(xb[k]) : amax;
        float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        for (size_t k = 0; k < CK_Q8_0_BLOCK_VALUES; k++) {
            float v = nearbyintf(xb[k] * id);
            v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
            qb[k] = (uint8_t)((int)v + 128);
        }
        scale[b] = d;
    }
}

#if CK_X86
#include <immintrin.h>
#define CK_T_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))

CK_T_AVX512 static void quantize_row_avx512(const float *x, size_t cols, uint8_t *q, float *scale) {
    __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127), off = _mm512_set1_epi32(128);
    for (size_t b = 0; b < cols / CK_Q8_0_BLOCK_VALUES; b++) {
        const float *xb = x + b * CK_Q8_0_BLOCK_VALUES;
        __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
        float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        __m512 vid = _mm512_set1_ps(id);
        // Rounds half to even under the default MXCSR mode, as nearbyintf does.
        __m512i v0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, vid)), v1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, vid));
        v0 = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(v0, lo), hi), off);
        v1 = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(v1, lo), hi), off);
        _mm_storeu_si128((__m128i *)(q + b * CK_Q8_0_BLOCK_VALUES), _mm512_cvtepi32_epi8(v0));
        _mm_storeu_si128((__m128i *)(q + b * CK_Q8_0_BLOCK_VALUES + 16), _mm512_cvtepi32_epi8(v1));
        scale[b] = d;
    }
}
#endif

int ck_q8_gemm_fast(void) {
#if CK_X86
    return ck_isa_best() >= CK_ISA_AVX512 && ck_cpu_has_avx512vnni();
#else
    return 0;
#endif
}

void ck_q8_quantize_rows(const float *x, size_t ldx, size_t m, size_t cols, uint8_t *xq, float *scale) {
#if CK_X86
    if (ck_isa_best() >= CK_ISA_AVX512) {
        for (size_t i = 0; i < m; i++) quantize_row_avx512(x + i * ldx, cols, xq + i * cols, scale + i * (cols / 32));
        return;
    }
#endif
    for (size_t i = 0; i < m; i++) quantize_row_portable(x + i * ldx, cols, xq + i * cols, scale + i * (cols / 32));
}

// Packs output rows r0 .. r0+31 (rows past `rows` as zeros).
static void pack_panel(const uint8_t *w, size_t rb, size_t rows, size_t nb, size_t r0, int8_t *packed,
                       float *dw, float *cw) {
    for (size_t j = 0; j < P; j++) {
        size_t r = r0 + j;
        if (r >= rows) {
            for (size_t b = 0; b < nb; b++) {
                for (size_t s = 0; s < 8; s++) memset(packed + b * BLOCK_BYTES + s * STEP_BYTES + j * 4, 0, 4);
                dw[b * P + j] = 0.0f;
                cw[b * P + j] = 0.0f;
            }
            continue;
        }
        const uint8_t *row = w + r * rb;
        for (size_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + b * CK_Q8_0_BLOCK_BYTES;
            uint16_t dh;
            memcpy(&dh, blk, 2);
            float d = ck_f16_to_f32_scalar(dh);
            dw[b * P + j] = d;
            int sum = 0;
            for (size_t s = 0; s < 8; s++) memcpy(packed + b * BLOCK_BYTES + s * STEP_BYTES + j * 4, blk + 2 + 4 * s, 4);
            for (size_t t = 0; t < CK_Q8_0_BLOCK_VALUES; t++) sum += (int8_t)blk[2 + t];
            cw[b * P + j] = 128.0f * d * (float)sum;   // exact: |sum| < 2^12
        }
    }
}

// The definition, one output at a time, in the vector path's order of float operations.
static void panel_portable(const uint8_t *xq, size_t cols, const float *scale, size_t m, const int8_t *packed,
                           const float *dw, const float *cw, size_t nb, const float *bias, float *y,
                           size_t ldy, int accumulate, size_t ncols) {
    for (size_t i = 0; i < m; i++) {
        const uint8_t *xr = xq + i * cols;
        const float *sr = scale + i * nb;
        for (size_t j = 0; j < ncols; j++) {
            float f = 0.0f;
            for (size_t b = 0; b < nb; b++) {
                int32_t acc = 0;
                for (size_t s = 0; s < 8; s++)
                    for (size_t t = 0; t < 4; t++)
                        acc += (int32_t)xr[b * 32 + 4 * s + t] * (int32_t)packed[b * BLOCK_BYTES + s * STEP_BYTES + j * 4 + t];
                f = fmaf(fmaf((float)acc, dw[b * P + j], -cw[b * P + j]), sr[b], f);
            }
            float v = bias ? f + bias[j] : f;
            y[i * ldy + j] = accumulate ? y[i * ldy + j] + v : v;
        }
    }
}

#if CK_X86
#define QMR 6 // x rows per tile: 6 x 2 int32 and 6 x 2 float accumulators

CK_T_VNNI static inline __attribute__((always_inline)) void
tile_vnni(const int M, const uint8_t *xq, size_t ldq, const float *scale, const int8_t *packed, const float *dw,
          const float *cw, size_t nb, const float *bias, float *y, size_t ldy, int accumulate, __mmask16 m0,
          __mmask16 m1) {
    __m512 f[QMR][2];
    for (int i = 0; i < M; i++) f[i][0] = f[i][1] = _mm512_setzero_ps();
    for (size_t b = 0; b < nb; b++) {
        __m512i a[QMR][2];
        for (int i = 0; i < M; i++) a[i][0] = a[i][1] = _mm512_setzero_si512();
        const int8_t *pb = packed + b * BLOCK_BYTES;
        const uint8_t *xb = xq + b * CK_Q8_0_BLOCK_VALUES;
        for (int s = 0; s < 8; s++) {
            __m512i w0 = _mm512_load_si512((const void *)(pb + s * STEP_BYTES));
            __m512i w1 = _mm512_load_si512((const void *)(pb + s * STEP_BYTES + 64));
            for (int i = 0; i < M; i++) {
                int32_t four;
                memcpy(&four, xb + i * ldq + 4 * s, 4);
                __m512i xv = _mm512_set1_epi32(four);
                a[i][0] = _mm512_dpbusd_epi32(a[i][0], xv, w0);
                a[i][1] = _mm512_dpbusd_epi32(a[i][1], xv, w1);
            }
        }
        __m512 d0 = _mm512_load_ps(dw + b * P), d1 = _mm512_load_ps(dw + b * P + 16);
        __m512 c0 = _mm512_load_ps(cw + b * P), c1 = _mm512_load_ps(cw + b * P + 16);
        for (int i = 0; i < M; i++) {
            __m512 s = _mm512_set1_ps(scale[i * nb + b]);
            f[i][0] = _mm512_fmadd_ps(_mm512_fmsub_ps(_mm512_cvtepi32_ps(a[i][0]), d0, c0), s, f[i][0]);
            f[i][1] = _mm512_fmadd_ps(_mm512_fmsub_ps(_mm512_cvtepi32_ps(a[i][1]), d1, c1), s, f[i][1]);
        }
    }
    __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    __m512 b1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
    for (int i = 0; i < M; i++) {
        __m512 v0 = _mm512_add_ps(f[i][0], b0);
        __m512 v1 = _mm512_add_ps(f[i][1], b1);
        float *yr = y + i * ldy;
        if (accumulate) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, yr));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, yr + 16));
        }
        _mm512_mask_storeu_ps(yr, m0, v0);
        _mm512_mask_storeu_ps(yr + 16, m1, v1);
    }
}

CK_T_VNNI static void panel_vnni(const uint8_t *xq, size_t cols, const float *scale, size_t m, const int8_t *packed,
                                 const float *dw, const float *cw, size_t nb, const float *bias, float *y,
                                 size_t ldy, int accumulate, size_t ncols) {
    __mmask16 m0 = (__mmask16)(ncols >= 16 ? 0xffffu : (1u << ncols) - 1);
    __mmask16 m1 = (__mmask16)(ncols >= 32 ? 0xffffu : ncols > 16 ? (1u << (ncols - 16)) - 1 : 0);
    for (size_t i0 = 0; i0 < m; i0 += QMR) {
        size_t mg = m - i0 < QMR ? m - i0 : QMR;
        const uint8_t *xi = xq + i0 * cols;
        const float *si = scale + i0 * nb;
        float *yi = y + i0 * ldy;
        switch (mg) {
        case 1: tile_vnni(1, xi, cols, si, packed, dw, cw, nb, bias, yi, ldy, accumulate, m0, m1); break;
        case 2: tile_vnni(2, xi, cols, si, packed, dw, cw, nb, bias, yi, ldy, accumulate, m0, m1); break;
        case 3: tile_vnni(3, xi, cols, si, packed, dw, cw, nb, bias, yi, ldy, accumulate, m0, m1); break;
        case 4: tile_vnni(4, xi, cols, si, packed, dw, cw, nb, bias, yi, ldy, accumulate, m0, m1); break;
        case 5: tile_vnni(5, xi, cols, si, packed, dw, cw, nb, bias, yi, ldy, accumulate, m0, m1); break;
        default: tile_vnni(QMR, xi, cols, si, packed, dw, cw, nb, bias, yi, ldy, accumulate, m0, m1); break;
        }
    }
}
#endif

int ck_q8_gemm_panels(int isa, const void *w, size_t rows, size_t cols, const uint8_t *xq,
                      const float *scale, size_t m, const float *bias, float *y, size_t ldy,
                      int accumulate, size_t panel_begin, size_t panel_end, void *scratch) {
    size_t rb = ck_row_bytes(CK_FORMAT_Q8_0, cols);
    if (rb == 0) return -1;
    size_t nb = cols / CK_Q8_0_BLOCK_VALUES;
    uint8_t *base = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    int8_t *packed = (int8_t *)base;
    float *dw = (float *)(base + nb * BLOCK_BYTES);
    float *cw = dw + nb * P;
    int fast = 0;
#if CK_X86
    fast = ck_isa_clamp(isa) >= CK_ISA_AVX512 && ck_cpu_has_avx512vnni();
#else
    (void)isa;
#endif
    for (size_t p = panel_begin; p < panel_end; p++) {
        size_t r0 = p * P;
        if (r0 >= rows) break;
        size_t ncols = rows - r0 < P ? rows - r0 : P;
        pack_panel(w, rb, rows, nb, r0, packed, dw, cw);
        const float *bp = bias ? bias + r0 : NULL;
#if CK_X86
        if (fast) {
            panel_vnni(xq, cols, scale, m, packed, dw, cw, nb, bp, y + r0, ldy, accumulate, ncols);
            continue;
        }
#endif
        panel_portable(xq, cols, scale, m, packed, dw, cw, nb, bp, y + r0, ldy, accumulate, ncols);
    }
    return 0;
}
