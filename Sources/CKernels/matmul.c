// Small-m products y[m, rows] = x[m, cols] · W^T with W in F32, F16, BF16, Q8_0 or Q4_0.
//
// Decode multiplies 1..16 activation rows by every weight matrix, so the time goes into reading
// W: the kernels stream each weight once per group of up to CK_TILE_M x-rows, widen it to float32
// in registers (exact for all three formats) and accumulate in float32 with FMA. The only
// difference from a float32 product of the expanded weights is the summation order.
#include "ckernels.h"
#include "ck_internal.h"

#include <string.h>

#include <stdlib.h>

#define CK_TILE_R 4 // largest R of a tile (accumulator array bound)
#define CK_TILE_M 4 // largest M of a tile

static inline float ck_weight_at(int fmt, const uint8_t *row, size_t k) {
    switch (fmt) {
    case CK_FORMAT_F32: { float v; memcpy(&v, row + 4 * k, 4); return v; }
    case CK_FORMAT_F16: { uint16_t h; memcpy(&h, row + 2 * k, 2); return ck_f16_to_f32_scalar(h); }
    case CK_FORMAT_BF16: { uint16_t h; memcpy(&h, row + 2 * k, 2); uint32_t u = (uint32_t)h << 16; float v; memcpy(&v, &u, 4); return v; }
    case CK_FORMAT_Q4_0: {
        const uint8_t *blk = row + (k / 32) * CK_Q4_0_BLOCK_BYTES;
        uint16_t dh; memcpy(&dh, blk, 2);
        uint8_t v = blk[2 + k % 16];
        return (float)((int)(k % 32 < 16 ? v & 0x0F : v >> 4) - 8) * ck_f16_to_f32_scalar(dh);
    }
    default: {
        const uint8_t *blk = row + (k / 32) * CK_Q8_0_BLOCK_BYTES;
        uint16_t dh; memcpy(&dh, blk, 2);
        return (float)(int8_t)blk[2 + k % 32] * ck_f16_to_f32_scalar(dh);
    }
    }
}

// ---- Portable path ---------------------------------------------------------------------------

static void rows_portable(int fmt, const uint8_t *w, size_t rb, size_t cols, const float *x,
                          size_t ldx, size_t m, float *y, size_t ldy, size_t r0, size_t r1) {
    float wrow[256];
    for (size_t r = r0; r < r1; r++) {
        const uint8_t *row = w + r * rb;
        float acc[16];
        for (size_t i0 = 0; i0 < m; i0 += 16) {
            size_t mg = m - i0 < 16 ? m - i0 : 16;
            for (size_t i = 0; i < mg; i++) acc[i] = 0.0f;
            // Expand a chunk of the row once, then use it for every x-row of the group.
            for (size_t k0 = 0; k0 < cols; k0 += 256) {
                size_t kc = cols - k0 < 256 ? cols - k0 : 256;
                for (size_t k = 0; k < kc; k++) wrow[k] = ck_weight_at(fmt, row, k0 + k);
                for (size_t i = 0; i < mg; i++) {
                    const float *xr = x + (i0 + i) * ldx + k0;
                    float s = 0.0f;
                    for (size_t k = 0; k < kc; k++) s += wrow[k] * xr[k];
                    acc[i] += s;
                }
            }
            for (size_t i = 0; i < mg; i++) y[(i0 + i) * ldy + r] = acc[i];
        }
    }
}

#if CK_X86
#include <immintrin.h>

// ---- AVX2 + FMA + F16C: 8 lanes ----------------------------------------------------------------
#define CK_T CK_T_AVX2
#define V __m256
#define VL 8
#define FN(name) name##_avx2
#define VZERO() _mm256_setzero_ps()
#define VSET1(f) _mm256_set1_ps(f)
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VLOAD_F32(p) _mm256_loadu_ps(p)
#define VLOAD_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define VLOAD_BF16(p) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
#define VLOAD_I8(p) _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p))))
CK_T static inline float reduce_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#define VREDUCE(v) reduce_avx2(v)
#include "matmul_tile.h"
#undef CK_T
#undef V
#undef VL
#undef FN
#undef VZERO
#undef VSET1
#undef VMUL
#undef VFMA
#undef VLOAD_F32
#undef VLOAD_F16
#undef VLOAD_BF16
#undef VLOAD_I8
#undef VREDUCE

// ---- AVX-512: 16 lanes -----------------------------------------------------------------------
#define CK_T CK_T_AVX512
#define V __m512
#define VL 16
#define FN(name) name##_avx512
#define VZERO() _mm512_setzero_ps()
#define VSET1(f) _mm512_set1_ps(f)
#define VMUL(a, b) _mm512_mul_ps(a, b)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VLOAD_F32(p) _mm512_loadu_ps(p)
#define VLOAD_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define VLOAD_BF16(p) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#define VLOAD_I8(p) _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p))))
#define VREDUCE(v) _mm512_reduce_add_ps(v)

// Sums all 16 accumulators of a full 4x4 tile at once (45 shuffles/adds instead of 16 separate
// horizontal sums, ~20% of a 768-long tile's work): pairs, then quads within 128-bit lanes, then
// across lanes. Lane group i of the result holds the sums for x-row i, rows 0..3.
CK_T_AVX512 static inline __attribute__((always_inline)) __m512 sum_pair(__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
}
CK_T_AVX512 static inline __attribute__((always_inline)) __m512 sum_quad(__m512 a, __m512 b, __m512 c, __m512 d) {
    __m512d ab = _mm512_castps_pd(sum_pair(a, b)), cd = _mm512_castps_pd(sum_pair(c, d));
    return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(ab, cd)), _mm512_castpd_ps(_mm512_unpackhi_pd(ab, cd)));
}
CK_T_AVX512 static inline __attribute__((always_inline)) void reduce_4x4_avx512(__m512 acc[CK_TILE_R][CK_TILE_M],
                                                                               float *y, size_t ldy) {
    __m512 q[4];
    for (int i = 0; i < 4; i++) q[i] = sum_quad(acc[0][i], acc[1][i], acc[2][i], acc[3][i]);
    __m512 s01 = _mm512_add_ps(_mm512_shuffle_f32x4(q[0], q[1], _MM_SHUFFLE(1, 0, 1, 0)),
                               _mm512_shuffle_f32x4(q[0], q[1], _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 s23 = _mm512_add_ps(_mm512_shuffle_f32x4(q[2], q[3], _MM_SHUFFLE(1, 0, 1, 0)),
                               _mm512_shuffle_f32x4(q[2], q[3], _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 sums = _mm512_add_ps(_mm512_shuffle_f32x4(s01, s23, _MM_SHUFFLE(2, 0, 2, 0)),
                                _mm512_shuffle_f32x4(s01, s23, _MM_SHUFFLE(3, 1, 3, 1)));
    _mm_storeu_ps(y, _mm512_extractf32x4_ps(sums, 0));
    _mm_storeu_ps(y + ldy, _mm512_extractf32x4_ps(sums, 1));
    _mm_storeu_ps(y + 2 * ldy, _mm512_extractf32x4_ps(sums, 2));
    _mm_storeu_ps(y + 3 * ldy, _mm512_extractf32x4_ps(sums, 3));
}
#define CK_REDUCE_4X4(acc, y, ldy) reduce_4x4_avx512(acc, y, ldy)
#include "matmul_tile.h"
#undef CK_REDUCE_4X4
#undef CK_T
#undef V
#undef VL
#undef FN
#undef VZERO
#undef VSET1
#undef VMUL
#undef VFMA
#undef VLOAD_F32
#undef VLOAD_F16
#undef VLOAD_BF16
#undef VLOAD_I8
#undef VREDUCE
#endif

#if CK_X86
// ---- AVX512_BF16: W (bf16) against x rounded to bf16, 32 products per vdpbf16ps ----------------
// Adjacent k of a row-major BF16 row are exactly the pairs vdpbf16ps sums, so W needs no
// conversion at all and each instruction does twice the work of a float32 FMA.
CK_T_AVX512BF16 static inline __attribute__((always_inline)) void
tile_bf16dot(const int R, const int M, const uint16_t *w, size_t ldw, size_t cols, const uint16_t *xb,
             size_t ldxb, float *y, size_t ldy) {
    __m512 acc[CK_TILE_R][CK_TILE_M];
    for (int r = 0; r < R; r++)
        for (int i = 0; i < M; i++) acc[r][i] = _mm512_setzero_ps();
    size_t k = 0;
    for (; k + 32 <= cols; k += 32) {
        __m512bh wv[CK_TILE_R];
        for (int r = 0; r < R; r++) wv[r] = (__m512bh)_mm512_loadu_si512(w + r * ldw + k);
        for (int i = 0; i < M; i++) {
            __m512bh xv = (__m512bh)_mm512_loadu_si512(xb + i * ldxb + k);
            for (int r = 0; r < R; r++) acc[r][i] = _mm512_dpbf16_ps(acc[r][i], wv[r], xv);
        }
    }
    if (k < cols) { // zero-filled tail: zeros add nothing
        __mmask32 mask = (__mmask32)((1ull << (cols - k)) - 1);
        __m512bh wv[CK_TILE_R];
        for (int r = 0; r < R; r++) wv[r] = (__m512bh)_mm512_maskz_loadu_epi16(mask, w + r * ldw + k);
        for (int i = 0; i < M; i++) {
            __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(mask, xb + i * ldxb + k);
            for (int r = 0; r < R; r++) acc[r][i] = _mm512_dpbf16_ps(acc[r][i], wv[r], xv);
        }
    }
    for (int r = 0; r < R; r++)
        for (int i = 0; i < M; i++) y[i * ldy + r] = _mm512_reduce_add_ps(acc[r][i]);
}

#define CK_BF16DOT_CASES(RR)                                                                \
    switch (mg) {                                                                           \
    case 1: tile_bf16dot(RR, 1, wr, cols, cols, xi, cols, yi, ldy); break;                  \
    case 2: tile_bf16dot(RR, 2, wr, cols, cols, xi, cols, yi, ldy); break;                  \
    case 3: tile_bf16dot(RR, 3, wr, cols, cols, xi, cols, yi, ldy); break;                  \
    default: tile_bf16dot(RR, 4, wr, cols, cols, xi, cols, yi, ldy); break;                 \
    }

/// xb: m rows of `cols` bf16, densely packed.
CK_T_AVX512BF16 static void rows_bf16dot(const uint16_t *w, size_t cols, const uint16_t *xb, size_t m,
                                         float *y, size_t ldy, size_t r0, size_t r1) {
    size_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        const uint16_t *wr = w + r * cols;
        for (size_t i0 = 0; i0 < m; i0 += 4) {
            size_t mg = m - i0 < 4 ? m - i0 : 4;
            const uint16_t *xi = xb + i0 * cols;
            float *yi = y + i0 * ldy + r;
            CK_BF16DOT_CASES(4)
        }
    }
    for (; r < r1; r++) {
        const uint16_t *wr = w + r * cols;
        for (size_t i0 = 0; i0 < m; i0 += 4) {
            size_t mg = m - i0 < 4 ? m - i0 : 4;
            const uint16_t *xi = xb + i0 * cols;
            float *yi = y + i0 * ldy + r;
            CK_BF16DOT_CASES(1)
        }
    }
}
#undef CK_BF16DOT_CASES
#endif

/// x rounded to bf16, densely packed (m rows of cols), or NULL when out of memory.
static uint16_t *round_x_to_bf16(const float *x, size_t ldx, size_t m, size_t cols) {
    uint16_t *xb = malloc(m * cols * sizeof(uint16_t) + 64);
    if (!xb) return NULL;
    for (size_t i = 0; i < m; i++) ck_f32_to_bf16(x + i * ldx, xb + i * cols, cols);
    return xb;
}

int ck_matmul_rows(int isa, int format, const void *w, size_t cols, const float *x, size_t ldx,
                   size_t m, float *y, size_t ldy, size_t row_begin, size_t row_end) {
    size_t rb = ck_row_bytes(format, cols);
    if (rb == 0 && cols != 0) return -1;
    if (row_end <= row_begin || m == 0) return 0;
    if (cols == 0) {
        for (size_t i = 0; i < m; i++)
            for (size_t r = row_begin; r < row_end; r++) y[i * ldy + r] = 0.0f;
        return 0;
    }
    int path = ck_isa_clamp(isa);
#if CK_X86
    if (path == CK_ISA_AVX512_BF16 && format == CK_FORMAT_BF16) {
        uint16_t *xb = round_x_to_bf16(x, ldx, m, cols);
        if (xb) {
            rows_bf16dot(w, cols, xb, m, y, ldy, row_begin, row_end);
            free(xb);
            return 0;
        }
    }
#endif
    switch (path) {
#if CK_X86
    case CK_ISA_AVX512_BF16:
    case CK_ISA_AVX512: rows_avx512(format, w, rb, cols, x, ldx, m, y, ldy, row_begin, row_end); break;
    case CK_ISA_AVX2: rows_avx2(format, w, rb, cols, x, ldx, m, y, ldy, row_begin, row_end); break;
#endif
    default: rows_portable(format, w, rb, cols, x, ldx, m, y, ldy, row_begin, row_end); break;
    }
    return 0;
}

// ---- Threaded entry --------------------------------------------------------------------------

typedef struct {
    int isa, format;
    const void *w;
    size_t rows, cols, ldx, m, ldy, chunk;
    const float *x;
    float *y;
    const uint16_t *xb; // x rounded to bf16 once for all tasks (CK_ISA_AVX512_BF16 with BF16 W)
} matmul_job;

static void matmul_task(void *context, size_t task, size_t ntasks) {
    (void)ntasks;
    const matmul_job *j = context;
    size_t r0 = task * j->chunk;
    size_t r1 = r0 + j->chunk < j->rows ? r0 + j->chunk : j->rows;
#if CK_X86
    if (j->xb) { rows_bf16dot(j->w, j->cols, j->xb, j->m, j->y, j->ldy, r0, r1); return; }
#endif
    ck_matmul_rows(j->isa, j->format, j->w, j->cols, j->x, j->ldx, j->m, j->y, j->ldy, r0, r1);
}

int ck_matmul(ck_pool *pool, int isa, int format, const void *w, size_t rows, size_t cols,
              const float *x, size_t ldx, size_t m, float *y, size_t ldy) {
    if (ck_row_bytes(format, cols) == 0 && cols != 0) return -1;
    int threads = pool ? ck_pool_threads(pool) : 1;
    // Below ~64 KiB of weights, waking the other thread costs more than it saves.
    size_t bytes = rows * ck_row_bytes(format, cols) * (m < 4 ? 1 : m / 4);
    if (threads <= 1 || rows < 8 || bytes < 65536)
        return ck_matmul_rows(isa, format, w, cols, x, ldx, m, y, ldy, 0, rows);
    // A few tasks per thread so that a thread delayed by another process is covered by the rest.
    size_t ntasks = (size_t)threads * 4;
    size_t chunk = (rows + ntasks - 1) / ntasks;
    chunk = (chunk + 3) / 4 * 4; // whole tiles
    ntasks = (rows + chunk - 1) / chunk;
    matmul_job job = {isa, format, w, rows, cols, ldx, m, ldy, chunk, x, y, NULL};
    uint16_t *xb = NULL;
    if (format == CK_FORMAT_BF16 && ck_isa_clamp(isa) == CK_ISA_AVX512_BF16) job.xb = xb = round_x_to_bf16(x, ldx, m, cols);
    ck_pool_run(pool, matmul_task, &job, ntasks);
    free(xb);
    return 0;
}
