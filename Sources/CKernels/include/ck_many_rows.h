#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---------------------------------------------------------------------------------------------
// Kernels for many rows at once (vision encoder, projector, prefill): attention over a whole
// sequence and products with low-precision weights. Each call works on the calling thread;
// callers split work over their own threads (one head, or one block of output columns, per task).
// ---------------------------------------------------------------------------------------------

/// Rows of queries handled per block inside ck_attention_head (bounds its scratch space).
#define CK_ATTENTION_ROW_BLOCK 64

/// Floats of scratch one ck_attention_head call needs for `length` keys of `hd` values.
size_t ck_attention_scratch_floats(size_t length, size_t hd);

/// One attention head: out[t] = softmax(scale · q[t] · Kᵀ) · V for t < rows, in float32.
/// q is rows × hd (rows `ldq` floats apart), k and v are length × hd (`ldk`, `ldv` apart), out is
/// rows × hd (`ldo` apart). first_position < 0: every row sees every key (vision). Otherwise the
/// rows are positions first_position, first_position + 1, ... and row t sees keys
/// 0 ... first_position + t (causal prefill; length ≥ first_position + rows).
/// `scratch` holds at least ck_attention_scratch_floats(length, hd) floats. `isa` is a CK_ISA_*
/// path (clamped to what the CPU has; -1 for the best).
void ck_attention_head(int isa, const float *q, size_t ldq, const float *k, size_t ldk, const float *v,
                       size_t ldv, float *out, size_t ldo, size_t rows, size_t length, size_t hd,
                       float scale, long first_position, float *scratch);

#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
extern "C" {
#endif

// ---- Q8_0 weights times int8 activations ------------------------------------------------------
//
// y[i, r] = Σ_b dx[i, b] · dw[r, b] · Σ_{k in block b} qx[i, k] · qw[r, k]  (+ bias[r])
// with W in GGUF Q8_0 (per 32-value block: scale dw, int8 qw) and x quantised the same way once
// per call (per row and block of 32: dx = max|x| / 127, qx = round-half-even(x / dx)), as ggml's
// Q8_0 x Q8_0 product does. The integer dot products run on AVX512-VNNI (vpdpbusd, 64
// multiply-adds per instruction: four times a float32 FMA); W is repacked per call, 32 output
// rows at a time, so no second copy of the weights is kept.

/// 1 when ck_q8_gemm_panels has a fast path on this CPU (AVX512-VNNI), 0 when it runs portable C.
int ck_q8_gemm_fast(void);

/// Quantises rows of x (cols a multiple of 32): xq[i * cols + k] = qx + 128 (unsigned, for
/// vpdpbusd), scale[i * cols / 32 + b] = dx of row i, block b.
void ck_q8_quantize_rows(const float *x, size_t ldx, size_t m, size_t cols, uint8_t *xq, float *scale);

/// Output columns per panel (one task's unit of work).
#define CK_Q8_PANEL 32
/// Bytes of scratch one ck_q8_gemm_panels call needs for `cols` (a multiple of 32).
size_t ck_q8_panel_scratch_bytes(size_t cols);

/// Output columns [32·panel_begin, min(32·panel_end, rows)) of y (m rows, `ldy` apart) for
/// xq/scale from ck_q8_quantize_rows; W is [rows, cols] Q8_0. accumulate != 0 adds to y.
/// `bias` may be NULL. `isa` as for ck_matmul (the VNNI path needs CK_ISA_AVX512 and VNNI).
/// Returns 0, or -1 when cols is not a multiple of 32.
int ck_q8_gemm_panels(int isa, const void *w, size_t rows, size_t cols, const uint8_t *xq,
                      const float *scale, size_t m, const float *bias, float *y, size_t ldy,
                      int accumulate, size_t panel_begin, size_t panel_end, void *scratch);

#ifdef __cplusplus
}
#endif
