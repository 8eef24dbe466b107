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
#define CK_T_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c")))

int ck_isa_clamp(int isa);
uint16_t ck_f32_to_f16_scalar(float f);
float ck_f16_to_f32_scalar(uint16_t h);

// The Q4_0 panels' products (gemm_q4.c), called by gemm_q8.c's dispatch: fast != 0 for VNNI.
void ck_q4_run_panels(int fast, const void *packed, size_t rows, size_t cols, const int8_t *xq, const float *scale,
                      const int32_t *offset, size_t m, const float *bias, float *y, size_t ldy, int accumulate,
                      size_t panel_begin, size_t panel_end);
