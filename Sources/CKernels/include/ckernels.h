#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---------------------------------------------------------------------------------------------
// Low-precision weights: formats, conversions, small-m products y = x · W^T, a worker pool.
//
// Weights are row-major [rows = out, cols = in], like PyTorch Linear weights and GGUF tensors
// (GGUF's ne[0] is `cols`). Each format is identified by its GGML type tag.
// Every function here is safe to call from several threads at once, except that one
// ck_pool must not run two jobs at once (ck_pool_run serialises its callers).
// ---------------------------------------------------------------------------------------------

enum {
    CK_FORMAT_F32 = 0,   ///< IEEE float32
    CK_FORMAT_F16 = 1,   ///< IEEE binary16
    CK_FORMAT_Q4_0 = 2,  ///< GGUF Q4_0: blocks of 32 = float16 scale d + 16 bytes of 4-bit q; value = d * (q - 8)
    CK_FORMAT_Q8_0 = 8,  ///< GGUF Q8_0: blocks of 32 = float16 scale d + 32 int8 q; value = d * q
    CK_FORMAT_I8 = 24,   ///< int8 with a float32 scale per KV-cache row and head (decode attention only)
    CK_FORMAT_BF16 = 30, ///< bfloat16 (upper half of a float32)
};

/// Bytes in one Q8_0 block (2-byte scale + 32 int8).
#define CK_Q8_0_BLOCK_BYTES 34
#define CK_Q8_0_BLOCK_VALUES 32
/// Bytes in one Q4_0 block (2-byte scale + 16 bytes: value j in the low nibble of byte j, value
/// j + 16 in its high nibble).
#define CK_Q4_0_BLOCK_BYTES 18

/// Instruction-set paths, slowest first. ck_isa_best() is what the process uses by default.
enum {
    CK_ISA_PORTABLE = 0, ///< plain C (compiler-vectorised at the target's baseline)
    CK_ISA_AVX2 = 1,     ///< AVX2 + FMA + F16C (Haswell and newer)
    CK_ISA_AVX512 = 2,   ///< AVX-512 F/BW/VL/DQ (+ F16C)
    /// AVX-512 plus AVX512_BF16 dot products (vdpbf16ps) for BF16 weights: x is rounded to bfloat16
    /// first (relative error up to 2^-9 per x value), then products are exact and summed in float32.
    /// Never chosen by default (-1); other formats run as CK_ISA_AVX512.
    CK_ISA_AVX512_BF16 = 3,
};

/// The best path this CPU (and OS) supports.
int ck_isa_best(void);
/// 1 when the CPU has AVX512_BF16 (vdpbf16ps) / AVX512_VNNI.
int ck_cpu_has_avx512bf16(void);
int ck_cpu_has_avx512vnni(void);

/// Bytes of one row of `cols` values in `format`, or 0 for an unknown format or a Q8_0/Q4_0 row
/// whose `cols` is not a multiple of 32.
size_t ck_row_bytes(int format, size_t cols);

// ---- Activations, in place --------------------------------------------------------------------

enum {
    CK_ACT_SILU = 0,       ///< x · σ(x)
    CK_ACT_QUICK_GELU = 1, ///< x · σ(1.702 x) (CLIP)
    CK_ACT_GELU_TANH = 2,  ///< 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))) (SigLIP)
};

/// x[i] = act(x[i]) · multiplier[i] (multiplier may be NULL: 1). Within a few ulp of the formula.
void ck_activate(int kind, float *x, const float *multiplier, size_t n);

// ---- Conversions (element counts; Q8_0 and Q4_0 counts must be multiples of 32) ----------------------

/// float32 -> float16, round to nearest even; overflow -> inf; NaN stays NaN (quiet).
void ck_f32_to_f16(const float *src, uint16_t *dst, size_t n);
void ck_f16_to_f32(const uint16_t *src, float *dst, size_t n);
/// float32 -> bfloat16, round to nearest even; NaN stays NaN (quiet), as gguf-py does it.
void ck_f32_to_bf16(const float *src, uint16_t *dst, size_t n);
void ck_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
/// float32 -> Q8_0 blocks (n/32 blocks of 34 bytes), bit-exact with ggml's
/// quantize_row_q8_0_ref and gguf-py's Q8_0.quantize_blocks for finite input.
void ck_f32_to_q8_0(const float *src, void *dst, size_t n);
void ck_q8_0_to_f32(const void *src, float *dst, size_t n);
/// float32 -> Q4_0 blocks (n/32 blocks of 18 bytes), bit-exact with ggml's
/// quantize_row_q4_0_ref and gguf-py's Q4_0.quantize_blocks for finite input.
void ck_f32_to_q4_0(const float *src, void *dst, size_t n);
void ck_q4_0_to_f32(const void *src, float *dst, size_t n);

/// Expands rows [row_begin, row_end) of a [rows, cols] matrix in `format` to float32, densely
/// into dst[(row_end - row_begin) * cols]. Returns 0, or -1 for an unknown format / bad cols.
int ck_expand_rows(int format, const void *w, size_t cols, size_t row_begin, size_t row_end,
                   float *dst);

// ---- Worker pool ------------------------------------------------------------------------------

typedef struct ck_pool ck_pool;
/// A task body: called once for each task index in [0, ntasks), on any of the pool's threads.
typedef void (*ck_task_fn)(void *context, size_t task, size_t ntasks);

/// A pool running jobs on `threads` threads in total: the caller plus threads - 1 workers.
/// Workers spin briefly between jobs (decode calls them back-to-back), then sleep.
/// Returns NULL if threads < 1 or a thread cannot be created.
ck_pool *ck_pool_create(int threads);
void ck_pool_destroy(ck_pool *pool);
int ck_pool_threads(const ck_pool *pool);

/// glibc only (no-op elsewhere): blocks up to `mmap_threshold` bytes come from the heap, and the
/// heap keeps up to `trim_threshold` free bytes at its top, so that buffers freed after one
/// forward pass are reused by the next without fresh (faulting, zeroed) pages.
void ck_keep_freed_memory(size_t mmap_threshold, size_t trim_threshold);
/// Runs fn(context, i, ntasks) for every i in [0, ntasks) and returns when all are done.
/// pool may be NULL (runs on the caller). Concurrent callers of one pool are serialised; a task
/// must not run a job on its own pool (it would wait for itself).
void ck_pool_run(ck_pool *pool, ck_task_fn fn, void *context, size_t ntasks);

// ---- Products -----------------------------------------------------------------------------

/// y[i, r] = sum_k x[i, k] * W[r, k] for i < m, r < rows; W is [rows, cols] in `format`.
/// x rows are `ldx` floats apart, y rows `ldy` floats apart. Rows of W are split over the pool's
/// threads (pool may be NULL). `isa` is a CK_ISA_* path, clamped to ck_isa_best() (or kept as
/// CK_ISA_AVX512_BF16 when the CPU has it); pass -1 for the best exact path. Returns 0, or -1 for an unknown format / Q8_0 cols not a multiple of 32.
int ck_matmul(ck_pool *pool, int isa, int format, const void *w, size_t rows, size_t cols,
              const float *x, size_t ldx, size_t m, float *y, size_t ldy);

/// Same product for output rows [row_begin, row_end) only, on the calling thread
/// (for callers that bring their own parallel-for). y still points at output column 0.
int ck_matmul_rows(int isa, int format, const void *w, size_t cols, const float *x, size_t ldx,
                   size_t m, float *y, size_t ldy, size_t row_begin, size_t row_end);

#ifdef __cplusplus
}
#endif
