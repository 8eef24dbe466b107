// Products of Q8_0 weights packed once into int8 panels with int8-quantised activation rows:
// see ck_many_rows.h for the arithmetic.
//
// A panel holds 32 output rows r0 .. r0+31. For each block b of 32 values it is one record of
// CK_Q8_PANEL_BLOCK_BYTES (1088 = 17 cache lines, as many bytes as the 32 rows' Q8_0 blocks):
// - 8 steps s of 4 values: 32 lanes of 4 unsigned bytes, lane j = qw[r0 + j, 32b + 4s + t] + 128
//   (t < 4): exactly the operand vpdpbusd multiplies by 4 broadcast signed bytes of x;
// - the 32 rows' float16 scales d, as stored in the file.
// The +128 makes the weights the unsigned operand, so the correction 128 · Σ qx depends on x
// alone: it is computed once per row and block when x is quantised and starts the block's
// int32 sum, which then is Σ qw · qx exactly. The panel is read front to back, one stream.
#include "ckernels.h"
#include "ck_internal.h"
#include "ck_many_rows.h"
#include "panel_tile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define P CK_Q8_PANEL
#define STEP_BYTES (P * 4)                   // one step of 4 values for 32 lanes
#define QW_BYTES (8 * STEP_BYTES)            // the int8 part of one block record
#define RECORD_BYTES CK_Q8_PANEL_BLOCK_BYTES // QW_BYTES + 32 float16 scales

_Static_assert(RECORD_BYTES == QW_BYTES + P * 2, "panel record layout");
_Static_assert(RECORD_BYTES % 64 == 0, "records keep 64-byte alignment");

size_t ck_q8_panel_bytes(size_t cols) { return cols / CK_Q8_0_BLOCK_VALUES * RECORD_BYTES; }

size_t ck_q8_packed_bytes(size_t rows, size_t cols) {
    if (cols % CK_Q8_0_BLOCK_VALUES) return 0;
    return (rows + P - 1) / P * ck_q8_panel_bytes(cols);
}

// ---- Packing and unpacking ----------------------------------------------------------------------

int ck_q8_pack_panels(const void *w, size_t rows, size_t cols, void *packed, size_t panel_begin, size_t panel_end) {
    size_t rb = ck_row_bytes(CK_FORMAT_Q8_0, cols);
    if (rb == 0) return -1;
    size_t nb = cols / CK_Q8_0_BLOCK_VALUES, panel_bytes = ck_q8_panel_bytes(cols);
    for (size_t p = panel_begin; p < panel_end && p * P < rows; p++) {
        uint8_t *panel = (uint8_t *)packed + p * panel_bytes;
        for (size_t j = 0; j < P; j++) {
            size_t r = p * P + j;
            if (r >= rows) { // padding rows: weight 0 (stored as 128), scale 0
                for (size_t b = 0; b < nb; b++) {
                    uint8_t *rec = panel + b * RECORD_BYTES;
                    for (size_t s = 0; s < 8; s++) memset(rec + s * STEP_BYTES + j * 4, 0x80, 4);
                    memset(rec + QW_BYTES + 2 * j, 0, 2);
                }
                continue;
            }
            const uint8_t *row = (const uint8_t *)w + r * rb;
            for (size_t b = 0; b < nb; b++) {
                const uint8_t *blk = row + b * CK_Q8_0_BLOCK_BYTES;
                uint8_t *rec = panel + b * RECORD_BYTES;
                memcpy(rec + QW_BYTES + 2 * j, blk, 2);
                for (size_t s = 0; s < 8; s++) {
                    uint32_t four;
                    memcpy(&four, blk + 2 + 4 * s, 4);
                    four ^= 0x80808080u; // int8 q -> q + 128 as uint8, for every byte
                    memcpy(rec + s * STEP_BYTES + j * 4, &four, 4);
                }
            }
        }
    }
    return 0;
}

void ck_q8_packed_expand_rows(const void *packed, size_t cols, size_t row_begin, size_t row_end, float *dst) {
    size_t nb = cols / CK_Q8_0_BLOCK_VALUES, panel_bytes = ck_q8_panel_bytes(cols);
    for (size_t r = row_begin; r < row_end; r++) {
        const uint8_t *panel = (const uint8_t *)packed + (r / P) * panel_bytes;
        size_t j = r % P;
        float *out = dst + (r - row_begin) * cols;
        for (size_t b = 0; b < nb; b++) {
            const uint8_t *rec = panel + b * RECORD_BYTES;
            uint16_t dh;
            memcpy(&dh, rec + QW_BYTES + 2 * j, 2);
            float d = ck_f16_to_f32_scalar(dh);
            for (size_t s = 0; s < 8; s++)
                for (size_t t = 0; t < 4; t++)
                    out[b * 32 + 4 * s + t] = (float)((int)rec[s * STEP_BYTES + j * 4 + t] - 128) * d;
        }
    }
}

// ---- Quantising x ------------------------------------------------------------------------------

// One row, per block of 32 values.
static void quantize_row_portable(const float *x, size_t cols, int8_t *q, float *scale, int32_t *offset) {
    for (size_t b = 0; b < cols / CK_Q8_0_BLOCK_VALUES; b++) {
        const float *xb = x + b * CK_Q8_0_BLOCK_VALUES;
        int8_t *qb = q + b * CK_Q8_0_BLOCK_VALUES;
        float amax = 0.0f;
        for (size_t k = 0; k < CK_Q8_0_BLOCK_VALUES; k++) amax = fabsf(xb[k]) > amax ? fabsf(xb[k]) : amax;
        float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        int32_t sum = 0;
        for (size_t k = 0; k < CK_Q8_0_BLOCK_VALUES; k++) {
            float v = nearbyintf(xb[k] * id);
            v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
            qb[k] = (int8_t)v;
            sum += (int32_t)v;
        }
        scale[b] = d;
        offset[b] = 128 * sum;
    }
}

#if CK_X86

// Lane j of the result = op over the 16 lanes of a[j] (16 horizontal reductions at ~2 operations
// each instead of ~10 for a lone one): pairs, quads within 128-bit lanes, then across lanes.
#define CK_LANES16(NAME, OP)                                                                                 \
    CK_T_AVX512 static inline __m512 NAME##_pair(__m512 a, __m512 b) {                                      \
        return OP(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));                                      \
    }                                                                                                        \
    CK_T_AVX512 static inline __m512 NAME##_quad(__m512 a, __m512 b, __m512 c, __m512 d) {                  \
        __m512d ab = _mm512_castps_pd(NAME##_pair(a, b)), cd = _mm512_castps_pd(NAME##_pair(c, d));         \
        return OP(_mm512_castpd_ps(_mm512_unpacklo_pd(ab, cd)), _mm512_castpd_ps(_mm512_unpackhi_pd(ab, cd))); \
    }                                                                                                        \
    CK_T_AVX512 static inline __m512 NAME(const __m512 a[16]) {                                             \
        __m512 q0 = NAME##_quad(a[0], a[1], a[2], a[3]), q1 = NAME##_quad(a[4], a[5], a[6], a[7]);         \
        __m512 q2 = NAME##_quad(a[8], a[9], a[10], a[11]), q3 = NAME##_quad(a[12], a[13], a[14], a[15]);   \
        __m512 s01 = OP(_mm512_shuffle_f32x4(q0, q1, _MM_SHUFFLE(1, 0, 1, 0)),                              \
                        _mm512_shuffle_f32x4(q0, q1, _MM_SHUFFLE(3, 2, 3, 2)));                             \
        __m512 s23 = OP(_mm512_shuffle_f32x4(q2, q3, _MM_SHUFFLE(1, 0, 1, 0)),                              \
                        _mm512_shuffle_f32x4(q2, q3, _MM_SHUFFLE(3, 2, 3, 2)));                             \
        return OP(_mm512_shuffle_f32x4(s01, s23, _MM_SHUFFLE(2, 0, 2, 0)),                                  \
                  _mm512_shuffle_f32x4(s01, s23, _MM_SHUFFLE(3, 1, 3, 1)));                                 \
    }
CK_LANES16(lanes16_max, _mm512_max_ps)
CK_LANES16(lanes16_sum, _mm512_add_ps)

// One block of a row: q = round(x · id) in -127..127 (id = 1 / d, d = max|x| / 127) stored to qb; returns the
// 16 lanes whose sum is Σ q (each |lane| <= 254).
CK_T_AVX512 static inline __m512i quantize_block_avx512(const float *xb, int8_t *qb, float id) {
    __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    __m512 vid = _mm512_set1_ps(id);
    // Rounds half to even under the default MXCSR mode, as nearbyintf does.
    __m512i v0 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb), vid));
    __m512i v1 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 16), vid));
    v0 = _mm512_min_epi32(_mm512_max_epi32(v0, lo), hi);
    v1 = _mm512_min_epi32(_mm512_max_epi32(v1, lo), hi);
    _mm_storeu_si128((__m128i *)qb, _mm512_cvtepi32_epi8(v0));
    _mm_storeu_si128((__m128i *)(qb + 16), _mm512_cvtepi32_epi8(v1));
    return _mm512_add_epi32(v0, v1);
}

// Sixteen blocks at a time: their maxima and sums reduced across lanes together (the single-block
// reductions were most of the time of quantising a decode step's rows). Same results as the
// portable definition: max, the IEEE divisions and the integer sums do not depend on the order.
CK_T_AVX512 static void quantize_row_avx512(const float *x, size_t cols, int8_t *q, float *scale, int32_t *offset) {
    const size_t nb = cols / CK_Q8_0_BLOCK_VALUES;
    size_t b = 0;
    for (; b + 16 <= nb; b += 16) {
        const float *xg = x + b * CK_Q8_0_BLOCK_VALUES;
        __m512 m[16];
        for (int u = 0; u < 16; u++)
            m[u] = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(xg + 32 * u)), _mm512_abs_ps(_mm512_loadu_ps(xg + 32 * u + 16)));
        __m512 d = _mm512_div_ps(lanes16_max(m), _mm512_set1_ps(127.0f));
        __mmask16 positive = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_GT_OQ);
        __m512 id = _mm512_maskz_div_ps(positive, _mm512_set1_ps(1.0f), d);
        _mm512_storeu_ps(scale + b, d);
        float ids[16];
        _mm512_storeu_ps(ids, id);
        __m512 sums[16];
        for (int u = 0; u < 16; u++)
            // |lane| <= 254: exact in float, and so are the sums of 16 (<= 4064).
            sums[u] = _mm512_cvtepi32_ps(quantize_block_avx512(xg + 32 * u, q + (b + u) * CK_Q8_0_BLOCK_VALUES, ids[u]));
        _mm512_storeu_si512(offset + b, _mm512_mullo_epi32(_mm512_cvtps_epi32(lanes16_sum(sums)), _mm512_set1_epi32(128)));
    }
    for (; b < nb; b++) {
        const float *xb = x + b * CK_Q8_0_BLOCK_VALUES;
        __m512 a = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(xb)), _mm512_abs_ps(_mm512_loadu_ps(xb + 16)));
        float amax = _mm512_reduce_max_ps(a);
        float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        scale[b] = d;
        offset[b] = 128 * _mm512_reduce_add_epi32(quantize_block_avx512(xb, q + b * CK_Q8_0_BLOCK_VALUES, id));
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

void ck_q8_quantize_rows(const float *x, size_t ldx, size_t m, size_t cols, int8_t *xq, float *scale,
                         int32_t *offset) {
    size_t nb = cols / CK_Q8_0_BLOCK_VALUES;
#if CK_X86
    if (ck_isa_best() >= CK_ISA_AVX512) {
        for (size_t i = 0; i < m; i++) quantize_row_avx512(x + i * ldx, cols, xq + i * cols, scale + i * nb, offset + i * nb);
        return;
    }
#endif
    for (size_t i = 0; i < m; i++) quantize_row_portable(x + i * ldx, cols, xq + i * cols, scale + i * nb, offset + i * nb);
}

// ---- Products ----------------------------------------------------------------------------------

// The definition, one output at a time, in the vector path's order of float operations:
// per block t = (float)(Σ qw · qx) · dw (one rounding), then f = fma(t, dx, f).
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
                for (size_t s = 0; s < 8; s++)
                    for (size_t t = 0; t < 4; t++)
                        acc += (int32_t)xr[b * 32 + 4 * s + t] * ((int32_t)rec[s * STEP_BYTES + j * 4 + t] - 128);
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
// Up to 6 x rows: 6 x 2 int32 and 6 x 2 float accumulators, the panel's two 16-row halves at once.
CK_T_VNNI CK_TILE_INLINE void tile_vnni(const int M, const int8_t *xq, size_t ldq, const float *scale,
                                        const int32_t *offset, const uint8_t *panel, size_t nb, const float *bias,
                                        float *y, size_t ldy, int accumulate, __mmask16 m0, __mmask16 m1,
                                        const uint8_t *prefetch_end) {
    ck_panel_tile(0, M, xq, ldq, scale, offset, panel, nb, bias, y, ldy, accumulate, m0, m1, prefetch_end);
}

// Seven or eight rows (a decode step of 8 sequences) in one pass over the panel: 8 x 2 int32 and
// 8 x 2 float accumulators do not fit the 32 registers, so each block is taken in its two halves
// of 16 output rows (one int32 accumulator per x row, reused); the block's 1 KiB record stays in
// L1 between the halves, and the panel streams from memory once instead of once per tile of 6.
// Same float operations per output as tile_vnni, so the results are identical.
CK_T_VNNI CK_TILE_INLINE void tile_vnni_halves(const int M, const int8_t *xq, size_t ldq, const float *scale,
                                               const int32_t *offset, const uint8_t *panel, size_t nb,
                                               const float *bias, float *y, size_t ldy, int accumulate,
                                               __mmask16 m0, __mmask16 m1, const uint8_t *prefetch_end) {
    __m512 f[8][2];
    for (int i = 0; i < M; i++) f[i][0] = f[i][1] = _mm512_setzero_ps();
    for (size_t b = 0; b < nb; b++) {
        const uint8_t *rec = panel + b * RECORD_BYTES;
        const int8_t *xb = xq + b * CK_Q8_0_BLOCK_VALUES;
        ck_panel_prefetch(rec, RECORD_BYTES, prefetch_end);
        for (int h = 0; h < 2; h++) {
            __m512i a[8];
            for (int i = 0; i < M; i++) a[i] = _mm512_set1_epi32(-offset[i * nb + b]);
            for (int s = 0; s < 8; s++) {
                __m512i w = _mm512_load_si512((const void *)(rec + s * STEP_BYTES + 64 * h));
                for (int i = 0; i < M; i++) a[i] = _mm512_dpbusd_epi32(a[i], w, ck_panel_x4(xb, ldq, i, s));
            }
            ck_panel_scale_half(M, f, a, h, rec + QW_BYTES, scale, nb, b);
        }
    }
    ck_panel_store(M, f, bias, y, ldy, accumulate, m0, m1);
}

CK_T_VNNI static void panel_vnni(const int8_t *xq, size_t cols, const float *scale, const int32_t *offset, size_t m,
                                 const uint8_t *panel, size_t nb, const float *bias, float *y, size_t ldy,
                                 int accumulate, size_t ncols, const uint8_t *prefetch_end) {
    CK_PANEL_MASKS(ncols, m0, m1);
    CK_PANEL_TILES(tile_vnni_halves, tile_vnni, xq, cols, scale, offset, m, panel, nb, bias, y, ldy, accumulate, m0, m1,
                   prefetch_end);
}
#endif

static int use_vnni(int isa) {
#if CK_X86
    return ck_isa_clamp(isa) >= CK_ISA_AVX512 && ck_cpu_has_avx512vnni();
#else
    (void)isa;
    return 0;
#endif
}

static void q8_panel(int fast, const int8_t *xq, size_t cols, const float *scale, const int32_t *offset, size_t m,
                     const uint8_t *panel, size_t nb, const float *bias, float *y, size_t ldy, int accumulate,
                     size_t ncols, const uint8_t *prefetch_end) {
#if CK_X86
    if (fast) {
        panel_vnni(xq, cols, scale, offset, m, panel, nb, bias, y, ldy, accumulate, ncols, prefetch_end);
        return;
    }
#else
    (void)fast;
    (void)prefetch_end;
#endif
    (void)offset; // the portable path sums qw · qx directly: no offset to cancel
    panel_portable(xq, cols, scale, m, panel, nb, bias, y, ldy, accumulate, ncols);
}

static void run_panels(int fast, int format, const void *packed, size_t rows, size_t cols, const int8_t *xq,
                       const float *scale, const int32_t *offset, size_t m, const float *bias, float *y, size_t ldy,
                       int accumulate, size_t panel_begin, size_t panel_end) {
    int q4 = format == CK_FORMAT_Q4_0;
    ck_panel_fn run = q4 ? ck_q4_panel : q8_panel;
    size_t nb = cols / CK_Q8_0_BLOCK_VALUES, panel_bytes = q4 ? ck_q4_panel_bytes(cols) : ck_q8_panel_bytes(cols);
    const uint8_t *prefetch_end = (const uint8_t *)packed + panel_end * panel_bytes;
    for (size_t p = panel_begin; p < panel_end; p++) {
        size_t r0 = p * P;
        if (r0 >= rows) break;
        size_t ncols = rows - r0 < P ? rows - r0 : P;
        run(fast, xq, cols, scale, offset, m, (const uint8_t *)packed + p * panel_bytes, nb, bias ? bias + r0 : NULL,
            y + r0, ldy, accumulate, ncols, prefetch_end);
    }
}

int ck_packed_panels(int isa, int format, const void *packed, size_t rows, size_t cols, const int8_t *xq,
                     const float *scale, const int32_t *offset, size_t m, const float *bias, float *y, size_t ldy,
                     int accumulate, size_t panel_begin, size_t panel_end) {
    if (cols == 0 || cols % CK_Q8_0_BLOCK_VALUES) return -1;
    if (format != CK_FORMAT_Q8_0 && format != CK_FORMAT_Q4_0) return -1;
    run_panels(use_vnni(isa), format, packed, rows, cols, xq, scale, offset, m, bias, y, ldy, accumulate, panel_begin,
               panel_end);
    return 0;
}

// ---- Several products with few rows, one job ------------------------------------------------------

typedef struct {
    const ck_q8_packed_product *product;
    size_t p0, p1;
} packed_task;

typedef struct {
    int fast;
    size_t cols, m;
    const int8_t *xq;
    const float *scale;
    const int32_t *offset;
    const packed_task *tasks;
} packed_job;

static void packed_task_run(void *context, size_t task, size_t ntasks) {
    (void)ntasks;
    const packed_job *j = context;
    const packed_task *t = &j->tasks[task];
    const ck_q8_packed_product *p = t->product;
    run_panels(j->fast, p->format, p->packed, p->rows, j->cols, j->xq, j->scale, j->offset, j->m, p->bias, p->y, p->ldy,
               p->accumulate, t->p0, t->p1);
}

int ck_q8_packed_many(ck_pool *pool, int isa, const ck_q8_packed_product *products, size_t count, size_t cols,
                      const float *x, size_t ldx, size_t m) {
    if (cols == 0 || cols % CK_Q8_0_BLOCK_VALUES) return -1;
    if (m == 0 || count == 0) return 0;
    size_t nb = cols / CK_Q8_0_BLOCK_VALUES;
    // x quantised once for every product (a few KiB for decode's rows).
    int8_t *xq = malloc(m * cols);
    float *scale = malloc(m * nb * sizeof(float));
    int32_t *offset = malloc(m * nb * sizeof(int32_t));
    if (!xq || !scale || !offset) {
        free(xq); free(scale); free(offset);
        return -1;
    }
    ck_q8_quantize_rows(x, ldx, m, cols, xq, scale, offset);

    size_t total_panels = 0, total_bytes = 0;
    for (size_t p = 0; p < count; p++) {
        size_t panels = (products[p].rows + P - 1) / P;
        total_panels += panels;
        total_bytes += panels * (products[p].format == CK_FORMAT_Q4_0 ? ck_q4_panel_bytes(cols) : ck_q8_panel_bytes(cols));
    }
    int threads = pool ? ck_pool_threads(pool) : 1;
    // As ck_matmul_many: below ~64 KiB of weights (per group of 4 x-rows) one thread is faster.
    int alone = threads <= 1 || total_bytes * (m < 4 ? 1 : m / 4) < 65536;
    // A few chunks per thread, so that a thread delayed by another process is covered by the rest.
    size_t target = alone ? total_panels : total_panels / ((size_t)threads * 4) + 1;
    size_t ntasks = 0;
    for (size_t p = 0; p < count; p++) ntasks += ((products[p].rows + P - 1) / P + target - 1) / target;
    packed_task stack_tasks[64];
    packed_task *tasks = ntasks <= 64 ? stack_tasks : malloc(ntasks * sizeof *tasks);
    int rc = 0;
    if (!tasks) {
        rc = -1;
    } else {
        size_t n = 0;
        for (size_t p = 0; p < count; p++) {
            size_t panels = (products[p].rows + P - 1) / P;
            for (size_t p0 = 0; p0 < panels; p0 += target)
                tasks[n++] = (packed_task){&products[p], p0, p0 + target < panels ? p0 + target : panels};
        }
        packed_job job = {use_vnni(isa), cols, m, xq, scale, offset, tasks};
        ck_pool_run(alone ? NULL : pool, packed_task_run, &job, n);
        if (tasks != stack_tasks) free(tasks);
    }
    free(xq); free(scale); free(offset);
    return rc;
}
