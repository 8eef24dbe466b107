#pragma once
#include <stddef.h>
#include <stdint.h>
#include "ckernels.h"

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
// Q8_0 x Q8_0 product does. The integer sums are exact; per block the float work is
// t = float(Σ qx · qw) · dw (one rounding), f = fma(t, dx, f). The integer dot products run on
// AVX512-VNNI (vpdpbusd, 64 multiply-adds per instruction: four times a float32 FMA).
//
// W is packed once (at load) into panels of CK_Q8_PANEL output rows, the operand layout of
// vpdpbusd (see gemm_q8.c): the same int8 values and float16 scales, the same number of bytes
// per 32 rows as the Q8_0 rows, 64-byte aligned records. The packed copy replaces the original.

/// 1 when ck_packed_panels has a fast path on this CPU (AVX512-VNNI), 0 when it runs portable C.
int ck_q8_gemm_fast(void);

/// Output rows per panel (one task's unit of work).
#define CK_Q8_PANEL 32
/// Bytes of one panel's record for one block of 32 values (32 rows x 32 int8 + 32 float16 scales).
#define CK_Q8_PANEL_BLOCK_BYTES 1088

/// Bytes of one panel of `cols` (a multiple of 32) columns.
size_t ck_q8_panel_bytes(size_t cols);
/// Bytes of a packed [rows, cols] matrix (whole panels; the last one padded with zero rows), or 0
/// when cols is not a multiple of 32.
size_t ck_q8_packed_bytes(size_t rows, size_t cols);

/// Packs panels [panel_begin, panel_end) of W ([rows, cols] Q8_0 rows) into `packed`
/// (ck_q8_packed_bytes(rows, cols) bytes, 64-byte aligned). Panels are independent: callers may
/// pack them on several threads. Returns 0, or -1 when cols is not a multiple of 32.
int ck_q8_pack_panels(const void *w, size_t rows, size_t cols, void *packed, size_t panel_begin, size_t panel_end);

/// Rows [row_begin, row_end) of a packed matrix as float32 (d · q, exactly as ck_q8_0_to_f32),
/// densely into dst.
void ck_q8_packed_expand_rows(const void *packed, size_t cols, size_t row_begin, size_t row_end, float *dst);

/// Quantises rows of x (cols a multiple of 32): xq[i * cols + k] = qx, and per row i and block b
/// (index i * cols / 32 + b) scale = dx and offset = 128 · Σ qx (the correction of the unsigned
/// weight bytes).
void ck_q8_quantize_rows(const float *x, size_t ldx, size_t m, size_t cols, int8_t *xq, float *scale,
                         int32_t *offset);

/// Output columns [32·panel_begin, min(32·panel_end, rows)) of y (m rows, `ldy` apart) for
/// xq/scale/offset from ck_q8_quantize_rows and W packed by ck_q8_pack_panels (format
/// CK_FORMAT_Q8_0) or ck_q4_pack_panels (CK_FORMAT_Q4_0). accumulate != 0 adds to y. `bias` may be
/// NULL. `isa` as for ck_matmul (the VNNI path needs CK_ISA_AVX512 and VNNI; CK_ISA_PORTABLE runs
/// the portable C). Returns 0, or -1 when cols is 0 or not a multiple of 32, or another format.
int ck_packed_panels(int isa, int format, const void *packed, size_t rows, size_t cols, const int8_t *xq,
                     const float *scale, const int32_t *offset, size_t m, const float *bias, float *y, size_t ldy,
                     int accumulate, size_t panel_begin, size_t panel_end);

// ---- Q4_0 weights in 4-bit panels (gemm_q4.c) ------------------------------------------------
//
// The same products with W in GGUF Q4_0 (per block: scale dw, 4-bit q, weight q - 8), packed into
// panels of CK_Q8_PANEL rows whose records hold two rows' q per byte (0.5625 bytes per weight, as
// the file): Σ (q - 8) · qx is exact in int32, the float operations are the Q8_0 panels'.
// x is quantised by ck_q8_quantize_rows (its offset 128 · Σ qx is 16 times the 8 · Σ qx needed).

/// Bytes of one Q4_0 panel's record for one block of 32 values (32 rows x 32 nibbles + 32 float16 scales).
#define CK_Q4_PANEL_BLOCK_BYTES 576

size_t ck_q4_panel_bytes(size_t cols);
/// Bytes of a packed Q4_0 [rows, cols] matrix (whole panels), or 0 when cols is not a multiple of 32.
size_t ck_q4_packed_bytes(size_t rows, size_t cols);
/// Packs panels [panel_begin, panel_end) of W ([rows, cols] Q4_0 rows), as ck_q8_pack_panels.
int ck_q4_pack_panels(const void *w, size_t rows, size_t cols, void *packed, size_t panel_begin, size_t panel_end);
/// Rows [row_begin, row_end) of a packed Q4_0 matrix as float32 (d · (q - 8), exactly as ck_q4_0_to_f32).
void ck_q4_packed_expand_rows(const void *packed, size_t cols, size_t row_begin, size_t row_end, float *dst);

/// One product y[i, r] (+)= Σ_k x[i, k] · W[r, k] (+ bias[r]) of a ck_q8_packed_many job.
typedef struct {
    const void *packed;  ///< W packed by ck_q8_pack_panels or ck_q4_pack_panels (see format)
    size_t rows;
    const float *bias;   ///< rows floats, or NULL
    float *y;            ///< m rows, ldy floats apart
    size_t ldy;
    int accumulate;      ///< != 0: add to y
    int format;          ///< CK_FORMAT_Q8_0 or CK_FORMAT_Q4_0: how `packed` is laid out
} ck_q8_packed_product;

/// Runs every product against the same x (m rows of `cols` floats, ldx apart, quantised once) as
/// one job on the pool, panels of all products split over its threads (the decode step's Q/K/V,
/// gate/up). Returns 0, or -1 for cols not a multiple of 32 or out of memory (nothing computed).
int ck_q8_packed_many(ck_pool *pool, int isa, const ck_q8_packed_product *products, size_t count, size_t cols,
                      const float *x, size_t ldx, size_t m);

#ifdef __cplusplus
}
#endif
