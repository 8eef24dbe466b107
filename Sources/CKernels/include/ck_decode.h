#pragma once
#include <stddef.h>
#include <stdint.h>

#include "ckernels.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---------------------------------------------------------------------------------------------
// The per-token work of decoding: several small-m products that share one input in one pool job
// (Q/K/V, gate/up), and attention of a few query rows over their KV caches.
// ---------------------------------------------------------------------------------------------

/// One product y[i, r] = sum_k x[i, k] * W[r, k] (i < m, r < rows) of a ck_matmul_many job.
typedef struct {
    int format;     ///< CK_FORMAT_*
    const void *w;  ///< [rows, cols] in `format`
    size_t rows;
    float *y;       ///< m rows, ldy floats apart
    size_t ldy;
} ck_product;

/// Runs every product against the same x (m rows of `cols` floats, ldx apart) as one job on the
/// pool, rows of all products split over its threads. Returns 0, or -1 for an unknown format or
/// Q8_0 cols not a multiple of 32 (nothing is computed then).
int ck_matmul_many(ck_pool *pool, int isa, const ck_product *products, size_t count, size_t cols,
                   const float *x, size_t ldx, size_t m);

/// One query row attending to its sequence's cache.
typedef struct {
    const float *q;      ///< [heads, head_dim], after RoPE (and q norm)
    const void *keys;    ///< key d of position t, KV head h at [t * row_stride + h * head_stride + d], in the
                         ///< job's kv_format, after RoPE (and k norm); CK_FORMAT_I8: key blocks (below)
    const void *values;  ///< laid out as keys
    size_t row_stride;   ///< elements between positions (kv_heads * head_dim when heads are interleaved)
    size_t head_stride;  ///< elements between KV heads (head_dim when interleaved)
    size_t length;       ///< positions visible to this row (all of them: it is the newest)
    float *out;          ///< [heads, head_dim]
    /// CK_FORMAT_I8 only (else NULL): the scale of key (value) row t of KV head h at [t * kv_heads + h],
    /// whatever the strides; element d is scale * int8 value.
    const float *key_scales;
    const float *value_scales;
} ck_attention_query;

/// CK_FORMAT_I8 keys are stored in blocks of 16 positions for integer dot products: block b holds,
/// per KV head h, head_dim / 4 groups of 16 positions x 4 consecutive values, as unsigned bytes
/// k + 128: key d of position t, head h at byte
///     ((t / 16 * kv_heads + h) * head_dim / 4 + d / 4) * 64 + t % 16 * 4 + d % 4.
/// The layout does not depend on the capacity (a cache grows by copying whole blocks). A query head
/// is rounded to int8 the same way (scale max|q| / 127), so a score is
///     scale * key_scale[t] * query_scale * (sum of the integer products).

/// Writes `rows` float32 key rows ([rows, heads * head_dim]) as positions first..first + rows - 1
/// of an int8 key-block cache, scales at scales[t * heads + h] (max|k| / 127).
void ck_kv_store_i8_keys(const float *x, size_t rows, size_t first, size_t heads, size_t head_dim, uint8_t *blocks,
                         float *scales);

/// Positions 0..rows-1 of an int8 key-block cache as float32 rows [rows, heads * head_dim].
void ck_kv_load_i8_keys(const uint8_t *blocks, const float *scales, size_t rows, size_t heads, size_t head_dim,
                        float *x);

/// Rounds `rows` cache rows of `heads` x `head_dim` float32 values (row i at x + i * heads * head_dim)
/// to int8 (an int8 cache's values) with one scale per row and head, max|x| / 127 (0 for an all-zero head): q = round(x / scale).
/// Scales go to scales[i * heads + h].
void ck_kv_quantize_i8(const float *x, size_t rows, size_t heads, size_t head_dim, int8_t *q, float *scales);

/// The float32 values of `rows` int8 cache rows quantised by ck_kv_quantize_i8.
void ck_kv_dequantize_i8(const int8_t *q, const float *scales, size_t rows, size_t heads, size_t head_dim, float *x);

/// out = softmax(scale * q K^T) V per query head, query head h reading KV head h / (heads / kv_heads)
/// (grouped-query attention): each KV head's keys and values are read once for all its query
/// heads. Tasks are (query row, KV head) pairs spread over the pool. Scores and softmax in float32.
/// Keys and values are float32, float16 or scaled int8 (kv_format CK_FORMAT_F32, CK_FORMAT_F16 or
/// CK_FORMAT_I8); scores, softmax and sums are float32 either way. Returns 0, or -1 for another kv_format.
int ck_decode_attention(ck_pool *pool, const ck_attention_query *queries, size_t count, size_t heads,
                        size_t kv_heads, size_t head_dim, float scale, int kv_format);

#ifdef __cplusplus
}
#endif
