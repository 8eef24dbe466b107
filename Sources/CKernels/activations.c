// Element-wise activations of the vision MLP and the LLM feed-forward, in place. Each is
// x · σ(a·x) or a tanh form of it: e^x by ck_exp16_avx512 (as the Swift kernels compute it) and the
// reciprocal by vrcp14ps plus one Newton step (relative error ~2^-28, under float32's rounding)
// instead of a division, whose 512-bit throughput made it the slowest instruction in these loops.
#include "ckernels.h"
#include "ck_internal.h"
#include "ck_exp.h"
#include <math.h>

static float scalar(int kind, float v) {
    switch (kind) {
    case CK_ACT_QUICK_GELU: return v / (1.0f + expf(-1.702f * v));
    case CK_ACT_GELU_TANH: {
        float y = 0.79788456080286536f * (v + 0.044715f * v * v * v);
        return v - v / (expf(2.0f * y) + 1.0f);
    }
    default: return v / (1.0f + expf(-v));
    }
}

#if CK_X86
// 1 / d for d >= 1 (or +inf): the estimate refined by one Newton step.
CK_T_AVX512 static inline __attribute__((always_inline)) __m512 reciprocal16(__m512 d) {
    __m512 r = _mm512_rcp14_ps(d);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}

CK_T_AVX512 static inline __attribute__((always_inline)) __m512 activate16(int kind, __m512 v) {
    const __m512 one = _mm512_set1_ps(1.0f);
    switch (kind) {
    case CK_ACT_QUICK_GELU:
        return _mm512_mul_ps(v, reciprocal16(_mm512_add_ps(one, ck_exp16_avx512(_mm512_mul_ps(v, _mm512_set1_ps(-1.702f))))));
    case CK_ACT_GELU_TANH: {
        // 0.5 v (1 + tanh y) = v - v / (e^{2y} + 1)
        __m512 v3 = _mm512_mul_ps(_mm512_mul_ps(v, v), v);
        __m512 y = _mm512_mul_ps(_mm512_set1_ps(0.79788456080286536f), _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), v3, v));
        __m512 e = ck_exp16_avx512(_mm512_add_ps(y, y));
        return _mm512_fnmadd_ps(v, reciprocal16(_mm512_add_ps(e, one)), v);
    }
    default:
        return _mm512_mul_ps(v, reciprocal16(_mm512_add_ps(one, ck_exp16_avx512(_mm512_sub_ps(_mm512_setzero_ps(), v)))));
    }
}

CK_T_AVX512 static void activate_avx512(int kind, float *x, const float *multiplier, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 a = activate16(kind, _mm512_loadu_ps(x + i));
        if (multiplier) a = _mm512_mul_ps(a, _mm512_loadu_ps(multiplier + i));
        _mm512_storeu_ps(x + i, a);
    }
    if (i < n) {
        __mmask16 tail = (__mmask16)((1u << (n - i)) - 1);
        __m512 a = activate16(kind, _mm512_maskz_loadu_ps(tail, x + i));
        if (multiplier) a = _mm512_mul_ps(a, _mm512_maskz_loadu_ps(tail, multiplier + i));
        _mm512_mask_storeu_ps(x + i, tail, a);
    }
}
#endif

void ck_activate(int kind, float *x, const float *multiplier, size_t n) {
#if CK_X86
    if (ck_isa_best() >= CK_ISA_AVX512) {
        activate_avx512(kind, x, multiplier, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) x[i] = scalar(kind, x[i]) * (multiplier ? multiplier[i] : 1.0f);
}
