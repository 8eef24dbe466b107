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
