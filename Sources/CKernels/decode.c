// The per-token work of decoding, where a step is ~60 products of 1-16 rows and attention over
// the caches: the cost is reading weights, and per-job overhead (waking threads) once per product
// adds up. So products sharing an input run as one pool job, and attention is one job over all
// (query row, KV head) pairs.
#include "ck_decode.h"
#include "ck_internal.h"
#include "ck_exp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if CK_X86
#include <immintrin.h>
#endif

// ---- Several products, one job ----------------------------------------------------------------

typedef struct {
    const ck_product *product;
    size_t r0, r1;
} product_task;

typedef struct {
    int isa;
    size_t cols, ldx, m;
    const float *x;
    const product_task *tasks;
} many_job;

static void many_task(void *context, size_t task, size_t ntasks) {
    (void)ntasks;
    const many_job *j = context;
    const product_task *t = &j->tasks[task];
    ck_matmul_rows(j->isa, t->product->format, t->product->w, j->cols, j->x, j->ldx, j->m,
                   t->product->y, t->product->ldy, t->r0, t->r1);
}

int ck_matmul_many(ck_pool *pool, int isa, const ck_product *products, size_t count, size_t cols,
                   const float *x, size_t ldx, size_t m) {
    size_t total_bytes = 0;
    for (size_t p = 0; p < count; p++) {
        size_t rb = ck_row_bytes(products[p].format, cols);
        if (rb == 0 && cols != 0) return -1;
        total_bytes += rb * products[p].rows;
    }
    if (m == 0 || count == 0) return 0;
    int threads = pool ? ck_pool_threads(pool) : 1;
    // Below ~64 KiB of weights (per group of 4 x-rows), waking the other thread costs more than
    // it saves.
    if (threads <= 1 || total_bytes * (m < 4 ? 1 : m / 4) < 65536) {
        for (size_t p = 0; p < count; p++)
            ck_matmul_rows(isa, products[p].format, products[p].w, cols, x, ldx, m, products[p].y,
                           products[p].ldy, 0, products[p].rows);
        return 0;
    }
    // A few chunks per thread, so that a thread delayed by another process is covered by the
    // rest; chunks are whole tiles of 4 rows and of similar bytes across products.
    size_t target = total_bytes / ((size_t)threads * 4) + 1;
    size_t ntasks = 0;
    for (size_t p = 0; p < count; p++) {
        size_t bytes = ck_row_bytes(products[p].format, cols) * products[p].rows;
        ntasks += (bytes + target - 1) / target + 1;
    }
    product_task stack_tasks[64];
    product_task *tasks = ntasks <= 64 ? stack_tasks : malloc(ntasks * sizeof *tasks);
    if (!tasks) return -1;
    size_t n = 0;
    for (size_t p = 0; p < count; p++) {
        size_t rows = products[p].rows;
        size_t bytes = ck_row_bytes(products[p].format, cols) * rows;
        size_t pieces = (bytes + target - 1) / target;
        if (pieces == 0) pieces = 1;
        size_t chunk = (rows + pieces - 1) / pieces;
        chunk = (chunk + 3) / 4 * 4;
        if (chunk == 0) chunk = 4;
        for (size_t r0 = 0; r0 < rows; r0 += chunk)
            tasks[n++] = (product_task){&products[p], r0, r0 + chunk < rows ? r0 + chunk : rows};
    }
    many_job job = {isa, cols, ldx, m, x, tasks};
    ck_pool_run(pool, many_task, &job, n);
    if (tasks != stack_tasks) free(tasks);
    return 0;
}

// ---- Decode attention -------------------------------------------------------------------------

typedef struct {
    const ck_attention_query *queries;
    size_t heads, kv_heads, head_dim;
    float scale;
    int path;
    int kv_format; // CK_FORMAT_F32, CK_FORMAT_F16 or CK_FORMAT_I8
} attention_job;

#define CK_ATT_MAX_HEAD_DIM 128 // the int8 query rows kept on the stack

// Scores -> probabilities in place over `n` values (float32, max-subtracted as PyTorch does).
static void softmax_portable(float *s, size_t n) {
    float mx = -INFINITY;
    for (size_t t = 0; t < n; t++) mx = s[t] > mx ? s[t] : mx;
    float sum = 0.0f;
    for (size_t t = 0; t < n; t++) { s[t] = expf(s[t] - mx); sum += s[t]; }
    float inv = 1.0f / sum;
    for (size_t t = 0; t < n; t++) s[t] *= inv;
}

// Element d of cache row t (keys or values) of KV head kvh, as float32.
static inline float kv_at(const attention_job *j, const ck_attention_query *q, const void *rows, const float *scales,
                          size_t t, size_t kvh, size_t d) {
    size_t i = t * q->row_stride + kvh * q->head_stride + d;
    switch (j->kv_format) {
    case CK_FORMAT_F16: return ck_f16_to_f32_scalar(((const uint16_t *)rows)[i]);
    case CK_FORMAT_I8: return scales[t * j->kv_heads + kvh] * (float)((const int8_t *)rows)[i];
    default: return ((const float *)rows)[i];
    }
}

#if CK_X86
// quantize_head for head_dim a multiple of 16: cvtps rounds half to even under the default MXCSR
// mode, as nearbyintf does, so both give the same bytes.
CK_T_AVX512 static float quantize_head_avx512(const float *x, size_t hd, int8_t *q) {
    __m512 vmax = _mm512_setzero_ps();
    for (size_t d = 0; d < hd; d += 16) vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_loadu_ps(x + d)));
    float amax = _mm512_reduce_max_ps(vmax);
    __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
    for (size_t d = 0; d < hd; d += 16)
        _mm_storeu_si128((__m128i *)(q + d), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + d), inv))));
    return amax / 127.0f;
}
#endif

// One head's row of an int8 cache (keys, values) or a query head for the integer key scores,
// rounded to int8: q = round(x / s) with s = max|x| / 127 (0 for an all-zero row); returns s.
// Runs for every new row of every layer, so never a libm call per value where vectors apply.
static float quantize_head(const float *x, size_t hd, int8_t *q) {
#if CK_X86
    if (hd % 16 == 0 && ck_isa_best() >= CK_ISA_AVX512) return quantize_head_avx512(x, hd, q);
#endif
    float amax = 0.0f;
    for (size_t d = 0; d < hd; d++) amax = fmaxf(amax, fabsf(x[d]));
    float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (size_t d = 0; d < hd; d++) q[d] = (int8_t)nearbyintf(x[d] * inv);
    return amax / 127.0f;
}

// Byte of key d of position t, KV head h in an int8 key-block cache (ck_decode.h).
static inline size_t key_block_index(size_t t, size_t h, size_t d, size_t kv_heads, size_t hd) {
    return ((t / 16 * kv_heads + h) * (hd / 4) + d / 4) * 64 + t % 16 * 4 + d % 4;
}

static void attend_portable(const attention_job *j, const ck_attention_query *q, size_t kvh, float *scores) {
    size_t group = j->heads / j->kv_heads, hd = j->head_dim, n = q->length;
    for (size_t g = 0; g < group; g++) {
        size_t h = kvh * group + g;
        const float *qh = q->q + h * hd;
        float *s = scores + g * n;
        if (j->kv_format == CK_FORMAT_I8) {
            int8_t q8[CK_ATT_MAX_HEAD_DIM];
            float qs = quantize_head(qh, hd, q8);
            const uint8_t *blocks = q->keys;
            for (size_t t = 0; t < n; t++) {
                int32_t dot = 0;
                for (size_t d = 0; d < hd; d++)
                    dot += (int32_t)q8[d] * ((int32_t)blocks[key_block_index(t, kvh, d, j->kv_heads, hd)] - 128);
                s[t] = (float)dot * (q->key_scales[t * j->kv_heads + kvh] * (qs * j->scale));
            }
        } else {
            for (size_t t = 0; t < n; t++) {
                float dot = 0.0f;
                for (size_t d = 0; d < hd; d++) dot += qh[d] * kv_at(j, q, q->keys, q->key_scales, t, kvh, d);
                s[t] = dot * j->scale;
            }
        }
        softmax_portable(s, n);
        float *o = q->out + h * hd;
        for (size_t d = 0; d < hd; d++) o[d] = 0.0f;
        for (size_t t = 0; t < n; t++)
            for (size_t d = 0; d < hd; d++) o[d] += s[t] * kv_at(j, q, q->values, q->value_scales, t, kvh, d);
    }
}

#if CK_X86
CK_T_AVX512 static void softmax_avx512(float *s, size_t n) {
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    size_t t = 0;
    for (; t + 16 <= n; t += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(s + t));
    if (t < n) vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), (__mmask16)((1u << (n - t)) - 1), s + t));
    __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
    __m512 vsum = _mm512_setzero_ps();
    for (t = 0; t + 16 <= n; t += 16) {
        __m512 e = ck_exp16_avx512(_mm512_sub_ps(_mm512_loadu_ps(s + t), mx));
        _mm512_storeu_ps(s + t, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    if (t < n) {
        __mmask16 mask = (__mmask16)((1u << (n - t)) - 1);
        __m512 e = ck_exp16_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, s + t), mx));
        e = _mm512_maskz_mov_ps(mask, e);
        _mm512_mask_storeu_ps(s + t, mask, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
    for (t = 0; t + 16 <= n; t += 16) _mm512_storeu_ps(s + t, _mm512_mul_ps(_mm512_loadu_ps(s + t), inv));
    if (t < n) {
        __mmask16 mask = (__mmask16)((1u << (n - t)) - 1);
        _mm512_mask_storeu_ps(s + t, mask, _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, s + t), inv));
    }
}

#define CK_ATT_MAX_CHUNKS 8 // head_dim up to 128 in registers

// The 16 horizontal sums of a[0..15] as one vector (lane j = sum of a[j]): pairs, quads within
// 128-bit lanes, then across lanes; ~2 operations per sum instead of ~10 for a lone reduction.
CK_T_AVX512 static inline __m512 sum_pair16(__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
}
CK_T_AVX512 static inline __m512 sum_quad16(__m512 a, __m512 b, __m512 c, __m512 d) {
    __m512d ab = _mm512_castps_pd(sum_pair16(a, b)), cd = _mm512_castps_pd(sum_pair16(c, d));
    return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(ab, cd)), _mm512_castpd_ps(_mm512_unpackhi_pd(ab, cd)));
}
CK_T_AVX512 static inline __m512 reduce16x16(const __m512 a[16]) {
    __m512 q0 = sum_quad16(a[0], a[1], a[2], a[3]), q1 = sum_quad16(a[4], a[5], a[6], a[7]);
    __m512 q2 = sum_quad16(a[8], a[9], a[10], a[11]), q3 = sum_quad16(a[12], a[13], a[14], a[15]);
    __m512 s01 = _mm512_add_ps(_mm512_shuffle_f32x4(q0, q1, _MM_SHUFFLE(1, 0, 1, 0)),
                               _mm512_shuffle_f32x4(q0, q1, _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 s23 = _mm512_add_ps(_mm512_shuffle_f32x4(q2, q3, _MM_SHUFFLE(1, 0, 1, 0)),
                               _mm512_shuffle_f32x4(q2, q3, _MM_SHUFFLE(3, 2, 3, 2)));
    return _mm512_add_ps(_mm512_shuffle_f32x4(s01, s23, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(s01, s23, _MM_SHUFFLE(3, 1, 3, 1)));
}

// How the AVX-512 attention reads a cache: the format is a constant after inlining.
enum { KV_F32 = 0, KV_F16 = 1, KV_I8 = 2 };

// Sixteen cache values from `p` (element index), widened to float32 in registers (int8 unscaled).
CK_T_AVX512 static inline __attribute__((always_inline)) __m512 kv_load16(const void *p, size_t i, const int kv) {
    if (kv == KV_F16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i)));
    if (kv == KV_I8) return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)((const int8_t *)p + i))));
    return _mm512_loadu_ps((const float *)p + i);
}

// out[g] += Σ_t p[g][t] v_t for GN query heads of one KV head: GN x CH accumulators stay in
// registers (CH and GN are constants after inlining), each value row is loaded once for them.
CK_T_AVX512 static inline __attribute__((always_inline)) void
weigh_values(const void *values, const float *scales, size_t kv_heads, size_t row_stride, size_t n, const float *p,
             size_t pn, float *out, size_t hd, const int CH, const int GN, const int kv) {
    __m512 acc[4][CK_ATT_MAX_CHUNKS];
    for (int g = 0; g < GN; g++)
        for (int c = 0; c < CH; c++) acc[g][c] = _mm512_setzero_ps();
    const size_t elem = kv == KV_I8 ? 1 : kv == KV_F16 ? 2 : 4, row_bytes = (size_t)CH * 16 * elem;
    for (size_t t = 0; t < n; t++) {
        const size_t at = t * row_stride;
        // Values stream from memory once a batch's caches outgrow the L3 cache: ask ahead.
        for (size_t l = 0; l < row_bytes; l += 64)
            _mm_prefetch((const char *)values + (at + 16 * row_stride) * elem + l, _MM_HINT_T0);
        __m512 w[4];
        // An int8 row's scale folds into its weights.
        const float rs = kv == KV_I8 ? scales[t * kv_heads] : 1.0f;
        for (int g = 0; g < GN; g++) w[g] = _mm512_set1_ps(p[g * pn + t] * rs);
        for (int c = 0; c < CH; c++) {
            __m512 v = kv_load16(values, at + 16 * (size_t)c, kv);
            for (int g = 0; g < GN; g++) acc[g][c] = _mm512_fmadd_ps(w[g], v, acc[g][c]);
        }
    }
    for (int g = 0; g < GN; g++)
        for (int c = 0; c < CH; c++) _mm512_storeu_ps(out + g * hd + 16 * c, acc[g][c]);
}

// Scores of an int8 cache's keys for the `group` query heads of KV head kvh: each query head rounded
// to int8, then per block of 16 positions head_dim / 4 dot products of 4 bytes x 16 positions
// (vpdpbusd: keys as unsigned k + 128, the query's 128 * sum(q8) taken off after), one int32
// accumulator holding the 16 scores: no widening and no reduction across lanes.
CK_T_AVX512VNNI __attribute__((noinline)) static void
key_scores_i8_vnni(const attention_job *j, const ck_attention_query *q, size_t kvh, float *scores) {
    const size_t group = j->heads / j->kv_heads, hd = j->head_dim, n = q->length, nq = hd / 4;
    int8_t q8[16][CK_ATT_MAX_HEAD_DIM] __attribute__((aligned(64)));   // group <= 16: checked by the caller
    float qs[16];
    int32_t qsum[16];
    for (size_t g = 0; g < group; g++) {
        qs[g] = quantize_head(q->q + (kvh * group + g) * hd, hd, q8[g]) * j->scale;
        int32_t sum = 0;
        for (size_t d = 0; d < hd; d++) sum += q8[g][d];
        qsum[g] = 128 * sum;
    }
    const uint8_t *head_blocks = (const uint8_t *)q->keys + kvh * hd * 16;
    const size_t block_stride = j->kv_heads * hd * 16;
    for (size_t t = 0; t < n; t += 16) {
        const uint8_t *block = head_blocks + t / 16 * block_stride;
        for (size_t l = 0; l < hd * 16; l += 64) _mm_prefetch((const char *)(block + block_stride) + l, _MM_HINT_T0);
        const size_t live = n - t < 16 ? n - t : 16;
        const __mmask16 mask = (__mmask16)((1u << live) - 1);
        float ks[16] = {0};
        for (size_t u = 0; u < live; u++) ks[u] = q->key_scales[(t + u) * j->kv_heads + kvh];
        const __m512 key_scale = _mm512_loadu_ps(ks);
        for (size_t g = 0; g < group; g++) {
            const int32_t *qd = (const int32_t *)q8[g];
            __m512i acc = _mm512_setzero_si512();
            for (size_t c = 0; c < nq; c++)
                acc = _mm512_dpbusd_epi32(acc, _mm512_loadu_si512(block + c * 64), _mm512_set1_epi32(qd[c]));
            __m512 dots = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, _mm512_set1_epi32(qsum[g])));
            _mm512_mask_storeu_ps(scores + g * n + t, mask, _mm512_mul_ps(dots, _mm512_mul_ps(key_scale, _mm512_set1_ps(qs[g]))));
        }
    }
}

// Scores of float keys for the `group` query heads of KV head kvh, head_dim = 16 CH: 16 positions at
// a time, one accumulator each, summed across lanes together. The keys of 16 positions are read (a
// float16 cache's widened) once into an L1 tile that every head of the group scores from: widening
// each key once per head made the float16 step compute-bound.
CK_T_AVX512 static inline __attribute__((always_inline)) void
key_scores_avx512(const attention_job *j, const ck_attention_query *q, size_t kvh, float *scores, const int CH,
                  const int kv) {
    const size_t group = j->heads / j->kv_heads, hd = j->head_dim, rs = q->row_stride, n = q->length;
    const size_t elem = kv == KV_F16 ? 2 : 4, row_bytes = hd * elem;
    const size_t base = kvh * q->head_stride;
    const __m512 scale = _mm512_set1_ps(j->scale);
    __m512 tile[16][CK_ATT_MAX_CHUNKS];
    size_t t = 0;
    for (; t + 16 <= n; t += 16) {
        // The keys stream from memory: ask a tile ahead.
        for (int u = 0; u < 16; u++)
            for (size_t l = 0; l < row_bytes; l += 64)
                _mm_prefetch((const char *)q->keys + (base + (t + 16 + u) * rs) * elem + l, _MM_HINT_T0);
        for (int u = 0; u < 16; u++)
            for (int c = 0; c < CH; c++) tile[u][c] = kv_load16(q->keys, base + (t + u) * rs + 16 * (size_t)c, kv);
        for (size_t g = 0; g < group; g++) {
            const float *qg = q->q + (kvh * group + g) * hd;
            __m512 acc[16];
            for (int u = 0; u < 16; u++) {
                __m512 a = _mm512_mul_ps(_mm512_loadu_ps(qg), tile[u][0]);
                for (int c = 1; c < CH; c++) a = _mm512_fmadd_ps(_mm512_loadu_ps(qg + 16 * c), tile[u][c], a);
                acc[u] = a;
            }
            _mm512_storeu_ps(scores + g * n + t, _mm512_mul_ps(reduce16x16(acc), scale));
        }
    }
    for (; t < n; t++) {
        const size_t at = base + t * rs;
        for (size_t g = 0; g < group; g++) {
            const float *qg = q->q + (kvh * group + g) * hd;
            __m512 a = _mm512_mul_ps(_mm512_loadu_ps(qg), kv_load16(q->keys, at, kv));
            for (int c = 1; c < CH; c++)
                a = _mm512_fmadd_ps(_mm512_loadu_ps(qg + 16 * c), kv_load16(q->keys, at + 16 * (size_t)c, kv), a);
            scores[g * n + t] = _mm512_reduce_add_ps(a) * j->scale;
        }
    }
}

// One KV head for its `group` query heads, head_dim = 16 CH: the scores (integer ones for int8
// keys), softmax, then the weighted values.
CK_T_AVX512 static inline __attribute__((always_inline)) void
attend_avx512(const attention_job *j, const ck_attention_query *q, size_t kvh, float *scores, const int CH,
              const int kv) {
    const size_t group = j->heads / j->kv_heads, hd = j->head_dim, rs = q->row_stride, n = q->length;
    const size_t elem = kv == KV_I8 ? 1 : kv == KV_F16 ? 2 : 4;
    const size_t base = kvh * q->head_stride;
    if (kv == KV_I8) key_scores_i8_vnni(j, q, kvh, scores);
    else key_scores_avx512(j, q, kvh, scores, CH, kv);
    for (size_t g = 0; g < group; g++) softmax_avx512(scores + g * n, n);
    // Up to 4 heads per pass over the values (2 when 4 x CH accumulators would not fit in registers).
    const size_t most = CH <= 6 ? 4 : 2;
    const void *values = (const char *)q->values + base * elem;
    const float *value_scales = kv == KV_I8 ? q->value_scales + kvh : NULL;
    for (size_t g0 = 0; g0 < group; g0 += most) {
        const size_t gn = group - g0 < most ? group - g0 : most;
        float *out = q->out + (kvh * group + g0) * hd;
        const float *p = scores + g0 * n;
        switch (gn) {
        case 1: weigh_values(values, value_scales, j->kv_heads, rs, n, p, n, out, hd, CH, 1, kv); break;
        case 2: weigh_values(values, value_scales, j->kv_heads, rs, n, p, n, out, hd, CH, 2, kv); break;
        case 3: weigh_values(values, value_scales, j->kv_heads, rs, n, p, n, out, hd, CH, 3, kv); break;
        default: weigh_values(values, value_scales, j->kv_heads, rs, n, p, n, out, hd, CH, 4, kv); break;
        }
    }
}

#define CK_ATTEND_VARIANTS(CH)                                                                                     \
    CK_T_AVX512 static void attend_avx512_##CH(const attention_job *j, const ck_attention_query *q, size_t kvh, \
                                               float *scores) {                                                 \
        if (j->kv_format == CK_FORMAT_F16) attend_avx512(j, q, kvh, scores, CH, KV_F16);                        \
        else if (j->kv_format == CK_FORMAT_I8) attend_avx512(j, q, kvh, scores, CH, KV_I8);                     \
        else attend_avx512(j, q, kvh, scores, CH, KV_F32);                                                     \
    }
CK_ATTEND_VARIANTS(1)
CK_ATTEND_VARIANTS(2)
CK_ATTEND_VARIANTS(3)
CK_ATTEND_VARIANTS(4)
CK_ATTEND_VARIANTS(5)
CK_ATTEND_VARIANTS(6)
CK_ATTEND_VARIANTS(7)
CK_ATTEND_VARIANTS(8)
#endif

static void attention_task(void *context, size_t task, size_t ntasks) {
    (void)ntasks;
    const attention_job *j = context;
    const ck_attention_query *q = &j->queries[task / j->kv_heads];
    size_t kvh = task % j->kv_heads, group = j->heads / j->kv_heads;
    float stack_scores[4096];
    size_t need = group * q->length;
    float *scores = need <= 4096 ? stack_scores : malloc(need * sizeof(float));
    if (!scores) return; // out of memory: leave the output as it was (cannot report from a task)
#if CK_X86
    if (j->path >= CK_ISA_AVX512) {
        switch (j->head_dim / 16) { // head_dim checked by ck_decode_attention: a multiple of 16, at most 128
        case 1: attend_avx512_1(j, q, kvh, scores); break;
        case 2: attend_avx512_2(j, q, kvh, scores); break;
        case 3: attend_avx512_3(j, q, kvh, scores); break;
        case 4: attend_avx512_4(j, q, kvh, scores); break;
        case 5: attend_avx512_5(j, q, kvh, scores); break;
        case 6: attend_avx512_6(j, q, kvh, scores); break;
        case 7: attend_avx512_7(j, q, kvh, scores); break;
        default: attend_avx512_8(j, q, kvh, scores); break;
        }
    } else
#endif
        attend_portable(j, q, kvh, scores);
    if (scores != stack_scores) free(scores);
}

int ck_decode_attention(ck_pool *pool, const ck_attention_query *queries, size_t count, size_t heads,
                        size_t kv_heads, size_t head_dim, float scale, int kv_format) {
    if (kv_format != CK_FORMAT_F32 && kv_format != CK_FORMAT_F16 && kv_format != CK_FORMAT_I8) return -1;
    if (count == 0 || kv_heads == 0 || heads % kv_heads != 0) return 0;
    if (kv_format == CK_FORMAT_I8)
        for (size_t i = 0; i < count; i++)
            if (!queries[i].key_scales || !queries[i].value_scales) return -1;
    if (kv_format == CK_FORMAT_I8 && (head_dim % 4 != 0 || head_dim > CK_ATT_MAX_HEAD_DIM)) return -1;
    int path = ck_isa_best();
#if CK_X86
    if (head_dim % 16 != 0 || head_dim / 16 > CK_ATT_MAX_CHUNKS) path = CK_ISA_PORTABLE;
    // Integer key scores need VNNI and keep at most 16 query heads' int8 rows on the stack.
    if (kv_format == CK_FORMAT_I8 && (!ck_cpu_has_avx512vnni() || heads / kv_heads > 16)) path = CK_ISA_PORTABLE;
#endif
    attention_job job = {queries, heads, kv_heads, head_dim, scale, path, kv_format};
    size_t work = 0;
    for (size_t i = 0; i < count; i++) work += queries[i].length;
    // Short contexts: the whole job is a few microseconds, less than a wake-up.
    ck_pool_run(work * kv_heads * head_dim < 8192 ? NULL : pool, attention_task, &job, count * kv_heads);
    return 0;
}

// ---- int8 cache rows ----------------------------------------------------------------------------

void ck_kv_quantize_i8(const float *x, size_t rows, size_t heads, size_t head_dim, int8_t *q, float *scales) {
    for (size_t r = 0; r < rows * heads; r++) scales[r] = quantize_head(x + r * head_dim, head_dim, q + r * head_dim);
}

void ck_kv_dequantize_i8(const int8_t *q, const float *scales, size_t rows, size_t heads, size_t head_dim, float *x) {
    for (size_t r = 0; r < rows * heads; r++)
        for (size_t d = 0; d < head_dim; d++) x[r * head_dim + d] = scales[r] * (float)q[r * head_dim + d];
}

void ck_kv_store_i8_keys(const float *x, size_t rows, size_t first, size_t heads, size_t head_dim, uint8_t *blocks,
                         float *scales) {
    int8_t q[CK_ATT_MAX_HEAD_DIM];
    if (head_dim > CK_ATT_MAX_HEAD_DIM || head_dim % 4 != 0) return;   // rejected by ck_decode_attention too
    for (size_t r = 0; r < rows; r++) {
        const size_t t = first + r;
        for (size_t h = 0; h < heads; h++) {
            scales[t * heads + h] = quantize_head(x + (r * heads + h) * head_dim, head_dim, q);
            for (size_t d = 0; d < head_dim; d++)
                blocks[key_block_index(t, h, d, heads, head_dim)] = (uint8_t)((int32_t)q[d] + 128);
        }
    }
}

void ck_kv_load_i8_keys(const uint8_t *blocks, const float *scales, size_t rows, size_t heads, size_t head_dim,
                        float *x) {
    for (size_t t = 0; t < rows; t++)
        for (size_t h = 0; h < heads; h++)
            for (size_t d = 0; d < head_dim; d++)
                x[(t * heads + h) * head_dim + d] =
                    scales[t * heads + h] * (float)((int32_t)blocks[key_block_index(t, h, d, heads, head_dim)] - 128);
}
