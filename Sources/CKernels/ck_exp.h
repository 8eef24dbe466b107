// Internal to CKernels: the vectorised exponential shared by the attention kernels.
#pragma once
#include "ck_internal.h"

#if CK_X86
#include <immintrin.h>

// e^x for 16 lanes as Kernels.exp16 computes it in Swift (Cody-Waite reduction, Cephes' degree-6
// polynomial, 2^n through the exponent bits): within 2 ulp of expf on [-87.3, 88.3], 0 below. One copy
// for every kernel whose softmax must agree with the Swift one.
CK_T_AVX512 static inline __attribute__((always_inline)) __m512 ck_exp16_avx512(__m512 x) {
    __m512 c = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f));
    __m512 magic = _mm512_set1_ps(12582912.0f);
    __m512 shifted = _mm512_fmadd_ps(c, _mm512_set1_ps(1.44269504f), magic);
    __m512 n = _mm512_sub_ps(shifted, magic);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), c);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.1219444e-4f), r);
    __m512 p = _mm512_set1_ps(1.98756915e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.39819995e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.16657959e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.166666655f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.50000001f));
    __m512 er = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
    __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_sub_epi32(_mm512_castps_si512(shifted),
                                                                         _mm512_set1_epi32(0x4B400000)),
                                                        _mm512_set1_epi32(127)), 23);
    __m512 result = _mm512_mul_ps(er, _mm512_castsi512_ps(bits));
    __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_LT_OQ);
    return _mm512_maskz_mov_ps((__mmask16)~under, result);
}
#endif
