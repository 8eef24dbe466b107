// Products of Q4_0 weights packed once into 4-bit panels with int8-quantised activation rows:
// the Q8_0 panels' arithmetic (ck_many_rows.h, gemm_q8.c) with half the bytes per weight.
//
// A panel holds 32 output rows r0 .. r0+31. For each block b of 32 values it is one record of
// CK_Q4_PANEL_BLOCK_BYTES (576 = 9 cache lines, as many bytes as the 32 rows' Q4_0 blocks):
// - 8 steps s of 4 values, 64 bytes each: byte 4j + t (j < 16, t < 4) holds in its low nibble
//   row r0+j's q at column 32b + 4s + t and in its high nibble row r0+j+16's (q = the file's
//   unsigned 4-bit value, weight + 8). `v & 0x0F` and `(v >> 4) & 0x0F` give the two halves'
//   vpdpbusd operands: 16 lanes of 4 unsigned bytes each;
// - the 32 rows' float16 scales d, as stored in the file.
// As the Q8_0 panels' +128, the +8 makes the correction 8 · Σ qx depend on x alone: it is the
// Q8_0 offset (128 · Σ qx) / 16, exactly, and starts the block's int32 sum, which then is
// Σ (q - 8) · qx exactly. The float operations per output are those of the Q8_0 panels.
#include "ckernels.h"
#include "ck_internal.h"
#include "ck_many_rows.h"

#include <math.h>
#include <string.h>

#define P CK_Q8_PANEL
#define STEP_BYTES 64                         // one step of 4 values for 32 rows, two per byte
#define QW_BYTES (8 * STEP_BYTES)             // the 4-bit part of one block record
#define RECORD_BYTES CK_Q4_PANEL_BLOCK_BYTES  // QW_BYTES + 32 float16 scales

_Static_assert(RECORD_BYTES == QW_BYTES + P * 2, "panel record layout");
_Static_assert(RECORD_BYTES % 64 == 0, "records keep 64-byte alignment");

size_t ck_q4_panel_bytes(size_t cols) { return cols / CK_Q8_0_BLOCK_VALUES * RECORD_BYTES; }

size_t ck_q4_packed_bytes(size_t rows, size_t cols) {
    if (cols % CK_Q8_0_BLOCK_VALUES) return 0;
    return (rows + P - 1) / P * ck_q4_panel_bytes(cols);
}

// ---- Packing and unpacking ----------------------------------------------------------------------

// Row j's q at column c of a block record (0..15, the stored unsigned value).
static inline unsigned record_q(const uint8_t *rec, size_t j, size_t c) {
    uint8_t v = rec[(c / 4) * STEP_BYTES + 4 * (j % 16) + c % 4];
    return j < 16 ? v & 0x0F : v >> 4;
}

int ck_q4_pack_panels(const void *w, size_t rows, size_t cols, void *packed, size_t panel_begin, size_t panel_end) {
    size_t rb = ck_row_bytes(CK_FORMAT_Q4_0, cols);
    if (rb == 0) return -1;
    size_t nb = cols / CK_Q8_0_BLOCK_VALUES, panel_bytes = ck_q4_panel_bytes(cols);
    for (size_t p = panel_begin; p < panel_end && p * P < rows; p++) {
        uint8_t *panel = (uint8_t *)packed + p * panel_bytes;
        for (size_t b = 0; b < nb; b++) {
            uint8_t *rec = panel + b * RECORD_BYTES;
            for (size_t lane = 0; lane < 16; lane++) {
                // Rows r0 + lane (low nibbles) and r0 + lane + 16 (high); padding rows hold
                // q = 8 (weight 0) and scale 0.
                const uint8_t *lo = NULL, *hi = NULL;
                size_t rlo = p * P + lane, rhi = rlo + 16;
                if (rlo < rows) lo = (const uint8_t *)w + rlo * rb + b * CK_Q4_0_BLOCK_BYTES;
                if (rhi < rows) hi = (const uint8_t *)w + rhi * rb + b * CK_Q4_0_BLOCK_BYTES;
                for (size_t c = 0; c < 32; c++) {
                    unsigned ql = lo ? (c < 16 ? lo[2 + c] & 0x0F : lo[2 + c - 16] >> 4) : 8;
                    unsigned qh = hi ? (c < 16 ? hi[2 + c] & 0x0F : hi[2 + c - 16] >> 4) : 8;
                    rec[(c / 4) * STEP_BYTES + 4 * lane + c % 4] = (uint8_t)(ql | (qh << 4));
                }
                if (lo) memcpy(rec + QW_BYTES + 2 * lane, lo, 2); else memset(rec + QW_BYTES + 2 * lane, 0, 2);
                if (hi) memcpy(rec + QW_BYTES + 2 * (lane + 16), hi, 2); else memset(rec + QW_BYTES + 2 * (lane + 16), 0, 2);
            }
        }
    }
    return 0;
}

void ck_q4_packed_expand_rows(const void *packed, size_t cols, size_t row_begin, size_t row_end, float *dst) {
    size_t nb = cols / CK_Q8_0_BLOCK_VALUES, panel_bytes = ck_q4_panel_bytes(cols);
    for (size_t r = row_begin; r < row_end; r++) {
        const uint8_t *panel = (const uint8_t *)packed + (r / P) * panel_bytes;
        size_t j = r % P;
        float *out = dst + (r - row_begin) * cols;
        for (size_t b = 0; b < nb; b++) {
            const uint8_t *rec = panel + b * RECORD_BYTES;
            uint16_t dh;
            memcpy(&dh, rec + QW_BYTES + 2 * j, 2);
            float d = ck_f16_to_f32_scalar(dh);
            for (size_t c = 0; c < 32; c++) out[b * 32 + c] = (float)((int)record_q(rec, j, c) - 8) * d;
        }
    }
}

// ---- Products ----------------------------------------------------------------------------------

// The definition, one output at a time, in the vector path's order of float operations:
// per block t = (float)(Σ (q - 8) · qx) · dw (one rounding), then f = fma(t, dx, f).
static void panel_portable(const int8_t *xq, size_t cols, const float *scale, size_t m, const uint8_t *panel,
                           size_t nb, const float *bias, float *y, size_t ldy, int accumulate, size_t ncols) {
    for (size_t i = 0; i < m; i++) {
        const int8_t *xr = xq + i * cols;
        const float *sr = scale + i * nb;
        for (size_t j = 0; j < ncols; j++) {
            float f = 0.0f;
            for (size_t b = 0; b < nb; b++) {
                const uint8_t *rec = panel + b * RECORD_BYTES;
                int32_t acc = 0;
                for (size_t c = 0; c < 32; c++) acc += (int32_t)xr[b * 32 + c] * ((int32_t)record_q(rec, j, c) - 8);
                uint16_t dh;
                memcpy(&dh, rec + QW_BYTES + 2 * j, 2);
                float t = (float)acc * ck_f16_to_f32_scalar(dh);
                f = fmaf(t, sr[b], f);
            }
            float v = bias ? f + bias[j] : f;
            y[i * ldy + j] = accumulate ? y[i * ldy + j] + v : v;
        }
    }
}

#if CK_X86
#include <immintrin.h>
#define CK_T_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define QMR 6 // x rows per tile: 6 x 2 int32 and 6 x 2 float accumulators
// As the Q8_0 panels: four records ahead (here 4 x 576 bytes).
#define PF_DIST (4 * RECORD_BYTES)

// Writes M rows of the panel's 32 (or ncols) outputs: f + bias (+ y).
CK_T_VNNI static inline __attribute__((always_inline)) void
store_rows(const int M, __m512 f[][2], const float *bias, float *y, size_t ldy, int accumulate, __mmask16 m0,
           __mmask16 m1) {
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

CK_T_VNNI static inline __attribute__((always_inline)) void
tile_vnni(const int M, const int8_t *xq, size_t ldq, const float *scale, const int32_t *offset, const uint8_t *panel,
          size_t nb, const float *bias, float *y, size_t ldy, int accumulate, __mmask16 m0, __mmask16 m1,
          const uint8_t *prefetch_end) {
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    __m512 f[QMR][2];
    for (int i = 0; i < M; i++) f[i][0] = f[i][1] = _mm512_setzero_ps();
    for (size_t b = 0; b < nb; b++) {
        const uint8_t *rec = panel + b * RECORD_BYTES;
        const int8_t *xb = xq + b * CK_Q8_0_BLOCK_VALUES;
        if (rec + PF_DIST < prefetch_end)
            for (int l = 0; l < RECORD_BYTES / 64; l++) _mm_prefetch((const char *)rec + PF_DIST + 64 * l, _MM_HINT_T0);
        __m512i a[QMR][2];
        for (int i = 0; i < M; i++) a[i][0] = a[i][1] = _mm512_set1_epi32(-(offset[i * nb + b] / 16));
        for (int s = 0; s < 8; s++) {
            __m512i v = _mm512_load_si512((const void *)(rec + s * STEP_BYTES));
            __m512i w0 = _mm512_and_si512(v, nibble);
            __m512i w1 = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
            for (int i = 0; i < M; i++) {
                int32_t four;
                memcpy(&four, xb + i * ldq + 4 * s, 4);
                __m512i xv = _mm512_set1_epi32(four);
                a[i][0] = _mm512_dpbusd_epi32(a[i][0], w0, xv);
                a[i][1] = _mm512_dpbusd_epi32(a[i][1], w1, xv);
            }
        }
        __m512 d0 = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(rec + QW_BYTES)));
        __m512 d1 = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(rec + QW_BYTES + 32)));
        for (int i = 0; i < M; i++) {
            __m512 s = _mm512_set1_ps(scale[i * nb + b]);
            f[i][0] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a[i][0]), d0), s, f[i][0]);
            f[i][1] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a[i][1]), d1), s, f[i][1]);
        }
    }
    store_rows(M, f, bias, y, ldy, accumulate, m0, m1);
}

// Seven or eight rows (a decode step of 8 sequences) in one pass over the panel, both halves of
// each step at once: the 8 x 2 int32 accumulators stay in registers, the float accumulators
// (touched once per block) may be kept in L1. Unlike the Q8_0 kernel's tile by half panels, each
// step's 64 bytes are unpacked and each x value broadcast once (measured the same or slightly
// faster at m = 8 on a loaded machine: 6.4-7.5 against 7.1-8.5 ms for MiniMind2-V's step).
// Same float operations per output as tile_vnni.
CK_T_VNNI static inline __attribute__((always_inline)) void
tile_vnni_wide(const int M, const int8_t *xq, size_t ldq, const float *scale, const int32_t *offset,
               const uint8_t *panel, size_t nb, const float *bias, float *y, size_t ldy, int accumulate,
               __mmask16 m0, __mmask16 m1, const uint8_t *prefetch_end) {
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    __m512 f[8][2];
    for (int i = 0; i < M; i++) f[i][0] = f[i][1] = _mm512_setzero_ps();
    for (size_t b = 0; b < nb; b++) {
        const uint8_t *rec = panel + b * RECORD_BYTES;
        const int8_t *xb = xq + b * CK_Q8_0_BLOCK_VALUES;
        if (rec + PF_DIST < prefetch_end)
            for (int l = 0; l < RECORD_BYTES / 64; l++) _mm_prefetch((const char *)rec + PF_DIST + 64 * l, _MM_HINT_T0);
        __m512i a[8][2];
        for (int i = 0; i < M; i++) a[i][0] = a[i][1] = _mm512_set1_epi32(-(offset[i * nb + b] / 16));
        for (int s = 0; s < 8; s++) {
            __m512i v = _mm512_load_si512((const void *)(rec + s * STEP_BYTES));
            __m512i w0 = _mm512_and_si512(v, nibble);
            __m512i w1 = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
            for (int i = 0; i < M; i++) {
                int32_t four;
                memcpy(&four, xb + i * ldq + 4 * s, 4);
                __m512i xv = _mm512_set1_epi32(four);
                a[i][0] = _mm512_dpbusd_epi32(a[i][0], w0, xv);
                a[i][1] = _mm512_dpbusd_epi32(a[i][1], w1, xv);
            }
        }
        __m512 d0 = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(rec + QW_BYTES)));
        __m512 d1 = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(rec + QW_BYTES + 32)));
        for (int i = 0; i < M; i++) {
            __m512 s = _mm512_set1_ps(scale[i * nb + b]);
            f[i][0] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a[i][0]), d0), s, f[i][0]);
            f[i][1] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a[i][1]), d1), s, f[i][1]);
        }
    }
    store_rows(M, f, bias, y, ldy, accumulate, m0, m1);
}

CK_T_VNNI static void panel_vnni(const int8_t *xq, size_t cols, const float *scale, const int32_t *offset, size_t m,
                                 const uint8_t *panel, size_t nb, const float *bias, float *y, size_t ldy,
                                 int accumulate, size_t ncols, const uint8_t *prefetch_end) {
    __mmask16 m0 = (__mmask16)(ncols >= 16 ? 0xffffu : (1u << ncols) - 1);
    __mmask16 m1 = (__mmask16)(ncols >= 32 ? 0xffffu : ncols > 16 ? (1u << (ncols - 16)) - 1 : 0);
    // As the Q8_0 panels: decode batches (up to 16 rows) in tiles of 8 (or 7) rows, one pass each.
    size_t start = 0;
    while (m <= 16 && m - start >= 7) {
        const uint8_t *pf = start == 0 ? prefetch_end : panel;
        size_t mg = m - start >= 8 ? 8 : 7;
        if (mg == 8)
            tile_vnni_wide(8, xq + start * cols, cols, scale + start * nb, offset + start * nb, panel, nb, bias,
                           y + start * ldy, ldy, accumulate, m0, m1, pf);
        else
            tile_vnni_wide(7, xq + start * cols, cols, scale + start * nb, offset + start * nb, panel, nb, bias,
                           y + start * ldy, ldy, accumulate, m0, m1, pf);
        start += mg;
    }
    for (size_t i0 = start; i0 < m; i0 += QMR) {
        size_t mg = m - i0 < QMR ? m - i0 : QMR;
        const int8_t *xi = xq + i0 * cols;
        const float *si = scale + i0 * nb;
        const int32_t *oi = offset + i0 * nb;
        float *yi = y + i0 * ldy;
        const uint8_t *pf = i0 == 0 ? prefetch_end : panel;
        switch (mg) {
        case 1: tile_vnni(1, xi, cols, si, oi, panel, nb, bias, yi, ldy, accumulate, m0, m1, pf); break;
        case 2: tile_vnni(2, xi, cols, si, oi, panel, nb, bias, yi, ldy, accumulate, m0, m1, pf); break;
        case 3: tile_vnni(3, xi, cols, si, oi, panel, nb, bias, yi, ldy, accumulate, m0, m1, pf); break;
        case 4: tile_vnni(4, xi, cols, si, oi, panel, nb, bias, yi, ldy, accumulate, m0, m1, pf); break;
        case 5: tile_vnni(5, xi, cols, si, oi, panel, nb, bias, yi, ldy, accumulate, m0, m1, pf); break;
        default: tile_vnni(QMR, xi, cols, si, oi, panel, nb, bias, yi, ldy, accumulate, m0, m1, pf); break;
        }
    }
}
#endif

void ck_q4_run_panels(int fast, const void *packed, size_t rows, size_t cols, const int8_t *xq, const float *scale,
                      const int32_t *offset, size_t m, const float *bias, float *y, size_t ldy, int accumulate,
                      size_t panel_begin, size_t panel_end) {
    size_t nb = cols / CK_Q8_0_BLOCK_VALUES, panel_bytes = ck_q4_panel_bytes(cols);
    for (size_t p = panel_begin; p < panel_end; p++) {
        size_t r0 = p * P;
        if (r0 >= rows) break;
        size_t ncols = rows - r0 < P ? rows - r0 : P;
        const uint8_t *panel = (const uint8_t *)packed + p * panel_bytes;
        const float *bp = bias ? bias + r0 : NULL;
#if CK_X86
        if (fast) {
            panel_vnni(xq, cols, scale, offset, m, panel, nb, bp, y + r0, ldy, accumulate, ncols,
                       (const uint8_t *)packed + panel_end * panel_bytes);
            continue;
        }
#else
        (void)fast;
#endif
        (void)offset;
        panel_portable(xq, cols, scale, m, panel, nb, bp, y + r0, ldy, accumulate, ncols);
    }
}
