// Attention over whole sequences (vision encoder, prefill), one head per call.
//
// Keys are transposed once per call so that both products run as register-blocked outer
// products (broadcast one value, multiply a vector of 16 or 32): scores = q · Kᵀ for a block of
// rows, an in-place softmax, then out = P · V scaled by 1 / Σ. The scores stay in L2 (at most
// CK_ATTENTION_ROW_BLOCK rows), and no BLAS call, packing or thread hand-off happens per head.
#include "ckernels.h"
#include "ck_internal.h"
#include "ck_many_rows.h"
#include "ck_exp.h"

#include <math.h>
#include <string.h>

#define RB CK_ATTENTION_ROW_BLOCK

static inline size_t padded(size_t length) { return (length + 31) / 32 * 32; }

size_t ck_attention_scratch_floats(size_t length, size_t hd) {
    size_t lp = padded(length);
    return hd * lp + RB * lp + RB;
}

// Keys row t of this block may attend to (first_position < 0: all).
static inline size_t visible_keys(long first_position, size_t t, size_t length) {
    if (first_position < 0) return length;
    size_t v = (size_t)first_position + t + 1;
    return v < length ? v : length;
}

// kt[d * lp + j] = k[j * ldk + d], zero-padded to lp columns.
static void transpose_keys(const float *k, size_t ldk, size_t length, size_t hd, float *kt, size_t lp) {
    for (size_t d = 0; d < hd; d++) {
        float *row = kt + d * lp;
        for (size_t j = 0; j < length; j++) row[j] = k[j * ldk + d];
        for (size_t j = length; j < lp; j++) row[j] = 0.0f;
    }
}

// ---- Portable path (also compiled for AVX2: the inner loops are plain axpy forms) -------------

#define CK_ATT_PORTABLE_BODY                                                                        \
    size_t lp = padded(length);                                                                     \
    float *kt = scratch, *s = scratch + hd * lp, *inv = s + RB * lp;                                \
    transpose_keys(k, ldk, length, hd, kt, lp);                                                     \
    for (size_t t0 = 0; t0 < rows; t0 += RB) {                                                      \
        size_t nr = rows - t0 < RB ? rows - t0 : RB;                                                \
        for (size_t r = 0; r < nr; r++) {                                                           \
            size_t vis = visible_keys(first_position, t0 + r, length);                              \
            float *sr = s + r * lp;                                                                 \
            const float *qr = q + (t0 + r) * ldq;                                                   \
            for (size_t j = 0; j < vis; j++) sr[j] = 0.0f;                                          \
            for (size_t d = 0; d < hd; d++) {                                                       \
                float qd = qr[d] * scale;                                                           \
                const float *kd = kt + d * lp;                                                      \
                for (size_t j = 0; j < vis; j++) sr[j] += qd * kd[j];                               \
            }                                                                                       \
            float m = -INFINITY;                                                                    \
            for (size_t j = 0; j < vis; j++) m = sr[j] > m ? sr[j] : m;                             \
            float sum = 0.0f;                                                                       \
            for (size_t j = 0; j < vis; j++) { sr[j] = expf(sr[j] - m); sum += sr[j]; }             \
            inv[r] = vis ? 1.0f / sum : 0.0f;                                                       \
            float *o = out + (t0 + r) * ldo;                                                        \
            for (size_t c = 0; c < hd; c++) o[c] = 0.0f;                                            \
            for (size_t j = 0; j < vis; j++) {                                                      \
                float p = sr[j];                                                                    \
                const float *vj = v + j * ldv;                                                      \
                for (size_t c = 0; c < hd; c++) o[c] += p * vj[c];                                  \
            }                                                                                       \
            for (size_t c = 0; c < hd; c++) o[c] *= inv[r];                                         \
        }                                                                                           \
    }

static void head_portable(const float *q, size_t ldq, const float *k, size_t ldk, const float *v, size_t ldv,
                          float *out, size_t ldo, size_t rows, size_t length, size_t hd, float scale,
                          long first_position, float *scratch) {
    CK_ATT_PORTABLE_BODY
}

#if CK_X86
#include <immintrin.h>

CK_T_AVX2 static void head_avx2(const float *q, size_t ldq, const float *k, size_t ldk, const float *v,
                                size_t ldv, float *out, size_t ldo, size_t rows, size_t length, size_t hd,
                                float scale, long first_position, float *scratch) {
    CK_ATT_PORTABLE_BODY
}

// ---- AVX-512 -----------------------------------------------------------------------------------

#define CK_ALWAYS static inline __attribute__((always_inline))

#define SMR 8 // score rows per tile (x 32 keys: 16 accumulators)

// s[r][j0 .. j0+32) = scale · q_r · kt[:, j0 .. j0+32) for r < M.
CK_T_AVX512 CK_ALWAYS void score_tile(const int M, const float *q, size_t ldq, const float *kt, size_t lp,
                                      size_t hd, size_t j0, float *s, float scale) {
    __m512 acc[SMR][2];
    for (int r = 0; r < M; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (size_t d = 0; d < hd; d++) {
        __m512 k0 = _mm512_loadu_ps(kt + d * lp + j0), k1 = _mm512_loadu_ps(kt + d * lp + j0 + 16);
        for (int r = 0; r < M; r++) {
            __m512 b = _mm512_set1_ps(q[r * ldq + d]);
            acc[r][0] = _mm512_fmadd_ps(b, k0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(b, k1, acc[r][1]);
        }
    }
    __m512 sc = _mm512_set1_ps(scale);
    for (int r = 0; r < M; r++) {
        _mm512_storeu_ps(s + r * lp + j0, _mm512_mul_ps(acc[r][0], sc));
        _mm512_storeu_ps(s + r * lp + j0 + 16, _mm512_mul_ps(acc[r][1], sc));
    }
}

#define PMR 4 // output rows per tile (x up to 4 vectors of 16 values: 16 accumulators)

// out_r[c0 .. c0 + 16·NV) = inv_r · Σ_j p_r[j] v[j][...] for r < M, j < keys; the last vector
// masked by `tail`.
CK_T_AVX512 CK_ALWAYS void value_tile(const int M, const int NV, const float *p, size_t lp, const float *v,
                                      size_t ldv, size_t keys, const float *inv, float *out, size_t ldo,
                                      __mmask16 tail) {
    __m512 acc[PMR][4];
    for (int r = 0; r < M; r++)
        for (int c = 0; c < NV; c++) acc[r][c] = _mm512_setzero_ps();
    for (size_t j = 0; j < keys; j++) {
        const float *vj = v + j * ldv;
        __m512 vv[4];
        for (int c = 0; c < NV - 1; c++) vv[c] = _mm512_loadu_ps(vj + 16 * c);
        vv[NV - 1] = _mm512_maskz_loadu_ps(tail, vj + 16 * (NV - 1));
        for (int r = 0; r < M; r++) {
            __m512 b = _mm512_set1_ps(p[r * lp + j]);
            for (int c = 0; c < NV; c++) acc[r][c] = _mm512_fmadd_ps(b, vv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < M; r++) {
        __m512 sc = _mm512_set1_ps(inv[r]);
        for (int c = 0; c < NV - 1; c++) _mm512_storeu_ps(out + r * ldo + 16 * c, _mm512_mul_ps(acc[r][c], sc));
        _mm512_mask_storeu_ps(out + r * ldo + 16 * (NV - 1), tail, _mm512_mul_ps(acc[r][NV - 1], sc));
    }
}

// exp(s - max) over the first `vis` values in place, zeros from vis to `upto`; returns 1 / Σ.
CK_T_AVX512 static float softmax_row(float *s, size_t vis, size_t upto) {
    __m512 mv = _mm512_set1_ps(-INFINITY);
    size_t j = 0;
    for (; j + 16 <= vis; j += 16) mv = _mm512_max_ps(mv, _mm512_loadu_ps(s + j));
    __mmask16 tail = (__mmask16)((1u << (vis - j)) - 1);
    if (tail) mv = _mm512_max_ps(mv, _mm512_mask_loadu_ps(mv, tail, s + j));
    float m = _mm512_reduce_max_ps(mv);
    if (vis == 0 || m == -INFINITY) { // nothing visible: zeros rather than NaN
        memset(s, 0, upto * sizeof(float));
        return 0.0f;
    }
    __m512 mm = _mm512_set1_ps(m), sum = _mm512_setzero_ps();
    for (j = 0; j + 16 <= vis; j += 16) {
        __m512 e = ck_exp16_avx512(_mm512_sub_ps(_mm512_loadu_ps(s + j), mm));
        _mm512_storeu_ps(s + j, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (tail) {
        __m512 e = _mm512_maskz_mov_ps(tail, ck_exp16_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, s + j), mm)));
        _mm512_mask_storeu_ps(s + j, tail, e);
        sum = _mm512_add_ps(sum, e);
    }
    for (j = vis; j < upto; j++) s[j] = 0.0f;
    return 1.0f / _mm512_reduce_add_ps(sum);
}

CK_T_AVX512 static void head_avx512(const float *q, size_t ldq, const float *k, size_t ldk, const float *v,
                                    size_t ldv, float *out, size_t ldo, size_t rows, size_t length,
                                    size_t hd, float scale, long first_position, float *scratch) {
    size_t lp = padded(length);
    float *kt = scratch, *s = scratch + hd * lp, *inv = s + RB * lp;
    transpose_keys(k, ldk, length, hd, kt, lp);
    for (size_t t0 = 0; t0 < rows; t0 += RB) {
        size_t nr = rows - t0 < RB ? rows - t0 : RB;
        // Scores, in tiles of SMR rows; a tile computes up to its last (longest) row's keys.
        for (size_t r0 = 0; r0 < nr; r0 += SMR) {
            size_t m = nr - r0 < SMR ? nr - r0 : SMR;
            size_t keys = padded(visible_keys(first_position, t0 + r0 + m - 1, length));
            const float *qr = q + (t0 + r0) * ldq;
            float *sr = s + r0 * lp;
            for (size_t j0 = 0; j0 < keys; j0 += 32) {
                switch (m) {
                case 1: score_tile(1, qr, ldq, kt, lp, hd, j0, sr, scale); break;
                case 2: score_tile(2, qr, ldq, kt, lp, hd, j0, sr, scale); break;
                case 3: score_tile(3, qr, ldq, kt, lp, hd, j0, sr, scale); break;
                case 4: score_tile(4, qr, ldq, kt, lp, hd, j0, sr, scale); break;
                case 5: score_tile(5, qr, ldq, kt, lp, hd, j0, sr, scale); break;
                case 6: score_tile(6, qr, ldq, kt, lp, hd, j0, sr, scale); break;
                case 7: score_tile(7, qr, ldq, kt, lp, hd, j0, sr, scale); break;
                default: score_tile(SMR, qr, ldq, kt, lp, hd, j0, sr, scale); break;
                }
            }
        }
        // Softmax; each row's probabilities zero-filled up to its tile's longest row.
        for (size_t r0 = 0; r0 < nr; r0 += PMR) {
            size_t m = nr - r0 < PMR ? nr - r0 : PMR;
            size_t keys = visible_keys(first_position, t0 + r0 + m - 1, length);
            for (size_t r = r0; r < r0 + m; r++)
                inv[r] = softmax_row(s + r * lp, visible_keys(first_position, t0 + r, length), keys);
        }
        // Values.
        for (size_t r0 = 0; r0 < nr; r0 += PMR) {
            size_t m = nr - r0 < PMR ? nr - r0 : PMR;
            size_t keys = visible_keys(first_position, t0 + r0 + m - 1, length);
            for (size_t c0 = 0; c0 < hd; c0 += 64) {
                size_t width = hd - c0 < 64 ? hd - c0 : 64;
                int nv = (int)((width + 15) / 16);
                size_t last = width - 16 * (size_t)(nv - 1);
                __mmask16 tail = (__mmask16)(last == 16 ? 0xffffu : ((1u << last) - 1));
                const float *p = s + r0 * lp, *vc = v + c0;
                const float *ir = inv + r0;
                float *o = out + (t0 + r0) * ldo + c0;
#define CK_VALUE_CASE(MM)                                                                   \
    switch (nv) {                                                                           \
    case 1: value_tile(MM, 1, p, lp, vc, ldv, keys, ir, o, ldo, tail); break;               \
    case 2: value_tile(MM, 2, p, lp, vc, ldv, keys, ir, o, ldo, tail); break;               \
    case 3: value_tile(MM, 3, p, lp, vc, ldv, keys, ir, o, ldo, tail); break;               \
    default: value_tile(MM, 4, p, lp, vc, ldv, keys, ir, o, ldo, tail); break;              \
    }
                switch (m) {
                case 1: CK_VALUE_CASE(1) break;
                case 2: CK_VALUE_CASE(2) break;
                case 3: CK_VALUE_CASE(3) break;
                default: CK_VALUE_CASE(PMR) break;
                }
#undef CK_VALUE_CASE
            }
        }
    }
}
#endif

void ck_attention_head(int isa, const float *q, size_t ldq, const float *k, size_t ldk, const float *v,
                       size_t ldv, float *out, size_t ldo, size_t rows, size_t length, size_t hd,
                       float scale, long first_position, float *scratch) {
    if (rows == 0 || hd == 0) return;
    switch (ck_isa_clamp(isa)) {
#if CK_X86
    case CK_ISA_AVX512_BF16:
    case CK_ISA_AVX512:
        head_avx512(q, ldq, k, ldk, v, ldv, out, ldo, rows, length, hd, scale, first_position, scratch);
        break;
    case CK_ISA_AVX2:
        head_avx2(q, ldq, k, ldk, v, ldv, out, ldo, rows, length, hd, scale, first_position, scratch);
        break;
#endif
    default:
        head_portable(q, ldq, k, ldk, v, ldv, out, ldo, rows, length, hd, scale, first_position, scratch);
        break;
    }
}
