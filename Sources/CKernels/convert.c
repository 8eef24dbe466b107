// Format conversions. The scalar code is the definition (bit-exact with numpy / gguf-py);
// the vector paths only speed up the expansions to float32, which are exact in every path.
#include "ckernels.h"
#include "ck_internal.h"

#include <math.h>
#include <string.h>

// ---- CPU detection ---------------------------------------------------------------------------

#if CK_X86
static int detect_isa(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma"))
        return CK_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        return CK_ISA_AVX2;
    return CK_ISA_PORTABLE;
}
int ck_cpu_has_avx512bf16(void) { __builtin_cpu_init(); return __builtin_cpu_supports("avx512bf16") != 0; }
int ck_cpu_has_avx512vnni(void) { __builtin_cpu_init(); return __builtin_cpu_supports("avx512vnni") != 0; }
#else
static int detect_isa(void) { return CK_ISA_PORTABLE; }
int ck_cpu_has_avx512bf16(void) { return 0; }
int ck_cpu_has_avx512vnni(void) { return 0; }
#endif

int ck_isa_best(void) {
    // Racing first calls compute the same value, so a plain cache is enough.
    static volatile int cached = -1;
    int v = cached;
    if (v < 0) { v = detect_isa(); cached = v; }
    return v;
}

int ck_isa_clamp(int isa) {
    int best = ck_isa_best();
    if (isa == CK_ISA_AVX512_BF16 && best == CK_ISA_AVX512 && ck_cpu_has_avx512bf16()) return isa;
    return (isa < 0 || isa > best) ? best : isa;
}

size_t ck_row_bytes(int format, size_t cols) {
    switch (format) {
    case CK_FORMAT_F32: return cols * 4;
    case CK_FORMAT_F16:
    case CK_FORMAT_BF16: return cols * 2;
    case CK_FORMAT_Q8_0: return (cols % CK_Q8_0_BLOCK_VALUES) ? 0 : cols / CK_Q8_0_BLOCK_VALUES * CK_Q8_0_BLOCK_BYTES;
    case CK_FORMAT_Q4_0: return (cols % CK_Q8_0_BLOCK_VALUES) ? 0 : cols / CK_Q8_0_BLOCK_VALUES * CK_Q4_0_BLOCK_BYTES;
    default: return 0;
    }
}

// ---- Scalar definitions ----------------------------------------------------------------------

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

uint16_t ck_f32_to_f16_scalar(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) {
        if (ax == 0x7f800000u) return sign | 0x7c00;
        return sign | 0x7e00 | (uint16_t)((ax >> 13) & 0x3ff); // quiet NaN, as F16C does
    }
    if (ax >= 0x477ff000u) return sign | 0x7c00; // >= 65520 rounds to inf
    if (ax >= 0x38800000u) { // normal half
        uint32_t h = (ax - 0x38000000u) >> 13;
        uint32_t rem = ax & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
        return sign | (uint16_t)h;
    }
    if (ax <= 0x33000000u) return sign; // <= 2^-25: ties to even give zero
    // Subnormal half: value = m * 2^(e - 150), unit 2^-24, so h = m >> (126 - e), rounded.
    uint32_t e = ax >> 23;
    uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e;
    uint32_t h = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) h++;
    return sign | (uint16_t)h;
}

float ck_f16_to_f32_scalar(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1f;
    uint32_t m = h & 0x3ff;
    if (e == 0x1f) return bits_f32(sign | 0x7f800000u | (m << 13));
    if (e != 0) return bits_f32(sign | ((e + 112) << 23) | (m << 13));
    // zero or subnormal: m * 2^-24 is exact in float32
    float v = (float)m * 0x1p-24f;
    return sign ? -v : v;
}

static inline uint16_t f32_to_bf16_scalar(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) x = (x & 0xffff0000u) | 0x00400000u; // quiet NaN
    return (uint16_t)(((uint64_t)x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

static void f32_to_f16_portable(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = ck_f32_to_f16_scalar(src[i]);
}
static void f16_to_f32_portable(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = ck_f16_to_f32_scalar(src[i]);
}

void ck_f32_to_bf16(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_bf16_scalar(src[i]); // vectorised by -O3
}

void ck_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = bits_f32((uint32_t)src[i] << 16);
}

void ck_f32_to_q8_0(const float *src, void *dst, size_t n) {
    uint8_t *out = dst;
    for (size_t b = 0; b < n / CK_Q8_0_BLOCK_VALUES; b++) {
        const float *x = src + b * CK_Q8_0_BLOCK_VALUES;
        uint8_t *blk = out + b * CK_Q8_0_BLOCK_BYTES;
        float amax = 0.0f;
        for (int j = 0; j < CK_Q8_0_BLOCK_VALUES; j++) {
            float a = fabsf(x[j]);
            if (a > amax) amax = a;
        }
        // Same operation order as ggml/gguf-py: q uses the float32 d, the stored d is its half.
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = ck_f32_to_f16_scalar(d);
        memcpy(blk, &dh, 2);
        for (int j = 0; j < CK_Q8_0_BLOCK_VALUES; j++) {
            blk[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
        }
    }
}

void ck_f32_to_q4_0(const float *src, void *dst, size_t n) {
    uint8_t *out = dst;
    for (size_t b = 0; b < n / CK_Q8_0_BLOCK_VALUES; b++) {
        const float *x = src + b * CK_Q8_0_BLOCK_VALUES;
        uint8_t *blk = out + b * CK_Q4_0_BLOCK_BYTES;
        // The first value of largest magnitude keeps its sign: q = 0 holds it exactly.
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < CK_Q8_0_BLOCK_VALUES; j++) {
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = ck_f32_to_f16_scalar(d);
        memcpy(blk, &dh, 2);
        for (int j = 0; j < 16; j++) {
            uint8_t q[2];
            for (int h = 0; h < 2; h++) {
                // Two statements: the product is rounded before the sum (no contraction to FMA).
                float v = x[j + 16 * h] * id;
                v = v + 8.5f;
                q[h] = v >= 15.0f ? 15 : (v >= 0.0f ? (uint8_t)v : 0);
            }
            blk[2 + j] = (uint8_t)(q[0] | (q[1] << 4));
        }
    }
}

void ck_q4_0_to_f32(const void *src, float *dst, size_t n) {
    const uint8_t *in = src;
    for (size_t b = 0; b < n / CK_Q8_0_BLOCK_VALUES; b++) {
        const uint8_t *blk = in + b * CK_Q4_0_BLOCK_BYTES;
        uint16_t dh; memcpy(&dh, blk, 2);
        float d = ck_f16_to_f32_scalar(dh);
        for (int j = 0; j < 16; j++) {
            dst[b * 32 + j] = (float)((int)(blk[2 + j] & 0x0F) - 8) * d;
            dst[b * 32 + j + 16] = (float)((int)(blk[2 + j] >> 4) - 8) * d;
        }
    }
}

static void q8_0_to_f32_portable(const uint8_t *src, float *dst, size_t nblocks) {
    for (size_t b = 0; b < nblocks; b++) {
        const uint8_t *blk = src + b * CK_Q8_0_BLOCK_BYTES;
        uint16_t dh; memcpy(&dh, blk, 2);
        float d = ck_f16_to_f32_scalar(dh);
        for (int j = 0; j < CK_Q8_0_BLOCK_VALUES; j++) dst[b * 32 + j] = (float)(int8_t)blk[2 + j] * d;
    }
}

// ---- Vector paths (F16C for halves) ---------------------------------------------------------

#if CK_X86
#include <immintrin.h>

CK_T_AVX2 static void f32_to_f16_f16c(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = ck_f32_to_f16_scalar(src[i]);
}

CK_T_AVX2 static void f16_to_f32_f16c(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = ck_f16_to_f32_scalar(src[i]);
}

CK_T_AVX2 static void q8_0_to_f32_avx2(const uint8_t *src, float *dst, size_t nblocks) {
    for (size_t b = 0; b < nblocks; b++) {
        const uint8_t *blk = src + b * CK_Q8_0_BLOCK_BYTES;
        uint16_t dh; memcpy(&dh, blk, 2);
        __m256 d = _mm256_set1_ps(_cvtsh_ss(dh));
        for (int j = 0; j < 32; j += 8) {
            __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(blk + 2 + j)));
            _mm256_storeu_ps(dst + b * 32 + j, _mm256_mul_ps(_mm256_cvtepi32_ps(q), d));
        }
    }
}
#endif

void ck_f32_to_f16(const float *src, uint16_t *dst, size_t n) {
#if CK_X86
    if (ck_isa_best() >= CK_ISA_AVX2) { f32_to_f16_f16c(src, dst, n); return; }
#endif
    f32_to_f16_portable(src, dst, n);
}

void ck_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
#if CK_X86
    if (ck_isa_best() >= CK_ISA_AVX2) { f16_to_f32_f16c(src, dst, n); return; }
#endif
    f16_to_f32_portable(src, dst, n);
}

void ck_q8_0_to_f32(const void *src, float *dst, size_t n) {
#if CK_X86
    if (ck_isa_best() >= CK_ISA_AVX2) { q8_0_to_f32_avx2(src, dst, n / CK_Q8_0_BLOCK_VALUES); return; }
#endif
    q8_0_to_f32_portable(src, dst, n / CK_Q8_0_BLOCK_VALUES);
}

int ck_expand_rows(int format, const void *w, size_t cols, size_t row_begin, size_t row_end, float *dst) {
    size_t rb = ck_row_bytes(format, cols);
    if (rb == 0 && cols != 0) return -1;
    if (row_end <= row_begin) return 0;
    const uint8_t *p = (const uint8_t *)w + row_begin * rb;
    size_t n = (row_end - row_begin) * cols;
    switch (format) {
    case CK_FORMAT_F32: memcpy(dst, p, n * 4); break;
    case CK_FORMAT_F16: ck_f16_to_f32((const uint16_t *)p, dst, n); break;
    case CK_FORMAT_BF16: ck_bf16_to_f32((const uint16_t *)p, dst, n); break;
    case CK_FORMAT_Q8_0: ck_q8_0_to_f32(p, dst, n); break;
    case CK_FORMAT_Q4_0: ck_q4_0_to_f32(p, dst, n); break;
    default: return -1;
    }
    return 0;
}
