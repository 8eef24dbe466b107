// Internal to CKernels: target attributes and shared scalar helpers.
#pragma once
#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#define CK_X86 1
#else
#define CK_X86 0
#endif

// Per-function targets keep the rest of the binary at the baseline ISA; callers dispatch at run
// time on ck_isa_best().
#define CK_T_AVX2 __attribute__((target("avx2,fma,f16c")))
#define CK_T_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define CK_T_AVX512VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define CK_T_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c")))

int ck_isa_clamp(int isa);
uint16_t ck_f32_to_f16_scalar(float f);
float ck_f16_to_f32_scalar(uint16_t h);

// One panel of 32 output rows (ncols of them real) times m quantised x rows, in the Q8_0 (gemm_q8.c)
// or Q4_0 (gemm_q4.c) panel layout: VNNI tiles when fast != 0, else the portable definition.
// prefetch_end: where the packed matrix's memory ends (the first tile prefetches up to it).
typedef void (*ck_panel_fn)(int fast, const int8_t *xq, size_t cols, const float *scale, const int32_t *offset,
                            size_t m, const uint8_t *panel, size_t nb, const float *bias, float *y, size_t ldy,
                            int accumulate, size_t ncols, const uint8_t *prefetch_end);
void ck_q4_panel(int fast, const int8_t *xq, size_t cols, const float *scale, const int32_t *offset, size_t m,
                 const uint8_t *panel, size_t nb, const float *bias, float *y, size_t ldy, int accumulate, size_t ncols,
                 const uint8_t *prefetch_end);
