// Products of Q4_0 weights packed once into 4-bit panels with int8-quantised activation rows:
// the Q8_0 panels' arithmetic (ck_many_rows.h, gemm_q8.c) with half the bytes per weight.
//
// A panel holds 32 output rows r0 .. r0+31. For each block b of 32 values it is one record of
// CK_Q4_PANEL_BLOCK_BYTES (576 = 9 cache lines, as many bytes as the 32 rows' Q4_0 blocks):
// - 8 steps s of 4 values, 64 bytes each: byte 4j + t (j < 16, t < 4) holds in its low nibble
//   row r0+j's q at column 32b + 4s + t and in its high nibble row r0+j+16's (q = the file's
//   unsigned 4-bit value, weight + 8). `v & 0x0F` and `(v >> 4) & 0x0F` give the two halves'
//   vpdpbusd operands: 16 lanes of 4 unsigned bytes each;
// - the 32 rows' float16 scales d, as stored in the file.
// As the Q8_0 panels' +128, the +8 makes the correction 8 · Σ qx depend on x alone: it is the
// Q8_0 offset (128 · Σ qx) / 16, exactly, and starts the block's int32 sum, which then is
// Σ (q - 8) · qx exactly. The float operations per output are those of the Q8_0 panels.
#include "ckernels.h"
#include "ck_internal.h"
#include "ck_many_rows.h"
#include "panel_tile.h"

#include <math.h>
#include <string.h>

#define P CK_Q8_PANEL
#define STEP_BYTES 64                         // one step of 4 values for 32 rows, two per byte
#define QW_BYTES (8 * STEP_BYTES)             // the 4-bit part of one block record
#define RECORD_BYTES CK_Q4_PANEL_BLOCK_BYTES  // QW_BYTES + 32 float16 scales

_Static_assert(RECORD_BYTES == QW_BYTES + P * 2, "panel record layout");
_Static_assert(RECORD_BYTES % 64 == 0, "records keep 64-byte alignment");

size_t ck_q4_panel_bytes(size_t cols) { return cols / CK_Q8_0_BLOCK_VALUES * RECORD_BYTES; }

size_t ck_q4_packed_bytes(size_t rows, size_t cols) {
    if (cols % CK_Q8_0_BLOCK_VALUES) return 0;
    return (rows + P - 1) / P * ck_q4_panel_bytes(cols);
}

// ---- Packing and unpacking ----------------------------------------------------------------------

// Row j's q at column c of a block record (0..15, the stored unsigned value).
static inline unsigned record_q(const uint8_t *rec, size_t j, size_t c) {
    uint8_t v = rec[(c / 4) * STEP_BYTES + 4 * (j % 16) + c % 4];
    return j < 16 ? v & 0x0F : v >> 4;
}

int ck_q4_pack_panels(const void *w, size_t rows, size_t cols, void *packed, size_t panel_begin, size_t panel_end) {
    size_t rb = ck_row_bytes(CK_FORMAT_Q4_0, cols);
    if (rb == 0) return -1;
    size_t nb = cols / CK_Q8_0_BLOCK_VALUES, panel_bytes = ck_q4_panel_bytes(cols);
    for (size_t p = panel_begin; p < panel_end && p * P < rows; p++) {
        uint8_t *panel = (uint8_t *)packed + p * panel_bytes;
        for (size_t b = 0; b < nb; b++) {
            uint8_t *rec = panel + b * RECORD_BYTES;
            for (size_t lane = 0; lane < 16; lane++) {
                // Rows r0 + lane (low nibbles) and r0 + lane + 16 (high); padding rows hold
                // q = 8 (weight 0) and scale 0.
                const uint8_t *lo = NULL, *hi = NULL;
                size_t rlo = p * P + lane, rhi = rlo + 16;
                if (rlo < rows) lo = (const uint8_t *)w + rlo * rb + b * CK_Q4_0_BLOCK_BYTES;
                if (rhi < rows) hi = (const uint8_t *)w + rhi * rb + b * CK_Q4_0_BLOCK_BYTES;
                for (size_t c = 0; c < 32; c++) {
                    unsigned ql = lo ? (c < 16 ? lo[2 + c] & 0x0F : lo[2 + c - 16] >> 4) : 8;
                    unsigned qh = hi ? (c < 16 ? hi[2 + c] & 0x0F : hi[2 + c - 16] >> 4) : 8;
                    rec[(c / 4) * STEP_BYTES + 4 * lane + c % 4] = (uint8_t)(ql | (qh << 4));
                }
                if (lo) memcpy(rec + QW_BYTES + 2 * lane, lo, 2); else memset(rec + QW_BYTES + 2 * lane, 0, 2);
                if (hi) memcpy(rec + QW_BYTES + 2 * (lane + 16), hi, 2); else memset(rec + QW_BYTES + 2 * (lane + 16), 0, 2);
            }
        }
    }
    return 0;
}

void ck_q4_packed_expand_rows(const void *packed, size_t cols, size_t row_begin, size_t row_end, float *dst) {
    size_t nb = cols / CK_Q8_0_BLOCK_VALUES, panel_bytes = ck_q4_panel_bytes(cols);
    for (size_t r = row_begin; r < row_end; r++) {
        const uint8_t *panel = (const uint8_t *)packed + (r / P) * panel_bytes;
        size_t j = r % P;
        float *out = dst + (r - row_begin) * cols;
        for (size_t b = 0; b < nb; b++) {
            const uint8_t *rec = panel + b * RECORD_BYTES;
            uint16_t dh;
            memcpy(&dh, rec + QW_BYTES + 2 * j, 2);
            float d = ck_f16_to_f32_scalar(dh);
            for (size_t c = 0; c < 32; c++) out[b * 32 + c] = (float)((int)record_q(rec, j, c) - 8) * d;
        }
    }
}

// ---- Products ----------------------------------------------------------------------------------

// The definition, one output at a time, in the vector path's order of float operations:
// per block t = (float)(Σ (q - 8) · qx) · dw (one rounding), then f = fma(t, dx, f).
static void panel_portable(const int8_t *xq, size_t cols, const float *scale, size_t m, const uint8_t *panel,
                           size_t nb, const float *bias, float *y, size_t ldy, int accumulate, size_t ncols) {
    for (size_t i = 0; i < m; i++) {
        const int8_t *xr = xq + i * cols;
        const float *sr = scale + i * nb;
        for (size_t j = 0; j < ncols; j++) {
            float f = 0.0f;
            for (size_t b = 0; b < nb; b++) {
                const uint8_t *rec = panel + b * RECORD_BYTES;
                int32_t acc = 0;
                for (size_t c = 0; c < 32; c++) acc += (int32_t)xr[b * 32 + c] * ((int32_t)record_q(rec, j, c) - 8);
                uint16_t dh;
                memcpy(&dh, rec + QW_BYTES + 2 * j, 2);
                float t = (float)acc * ck_f16_to_f32_scalar(dh);
                f = fmaf(t, sr[b], f);
            }
            float v = bias ? f + bias[j] : f;
            y[i * ldy + j] = accumulate ? y[i * ldy + j] + v : v;
        }
    }
}

#if CK_X86
// Up to 8 x rows, both 16-row halves of each step at once: each step's 64 bytes are unpacked and
// each x value broadcast once. At 7-8 rows the 8 x 2 int32 accumulators stay in registers and the
// float ones (touched once per block) may be kept in L1 (measured the same or slightly faster than
// the Q8_0 panels' tile by halves at m = 8 on a loaded machine: 6.4-7.5 against 7.1-8.5 ms for
// MiniMind2-V's step). Same float operations per output as the Q8_0 tiles.
CK_T_VNNI CK_TILE_INLINE void tile_vnni(const int M, const int8_t *xq, size_t ldq, const float *scale,
                                        const int32_t *offset, const uint8_t *panel, size_t nb, const float *bias,
                                        float *y, size_t ldy, int accumulate, __mmask16 m0, __mmask16 m1,
                                        const uint8_t *prefetch_end) {
    ck_panel_tile(1, M, xq, ldq, scale, offset, panel, nb, bias, y, ldy, accumulate, m0, m1, prefetch_end);
}

CK_T_VNNI static void panel_vnni(const int8_t *xq, size_t cols, const float *scale, const int32_t *offset, size_t m,
                                 const uint8_t *panel, size_t nb, const float *bias, float *y, size_t ldy,
                                 int accumulate, size_t ncols, const uint8_t *prefetch_end) {
    CK_PANEL_MASKS(ncols, m0, m1);
    CK_PANEL_TILES(tile_vnni, tile_vnni, xq, cols, scale, offset, m, panel, nb, bias, y, ldy, accumulate, m0, m1,
                   prefetch_end);
}
#endif

void ck_q4_panel(int fast, const int8_t *xq, size_t cols, const float *scale, const int32_t *offset, size_t m,
                 const uint8_t *panel, size_t nb, const float *bias, float *y, size_t ldy, int accumulate, size_t ncols,
                 const uint8_t *prefetch_end) {
#if CK_X86
    if (fast) {
        panel_vnni(xq, cols, scale, offset, m, panel, nb, bias, y, ldy, accumulate, ncols, prefetch_end);
        return;
    }
#else
    (void)fast;
    (void)prefetch_end;
#endif
    (void)offset; // the portable path sums (q - 8) · qx directly
    panel_portable(xq, cols, scale, m, panel, nb, bias, y, ldy, accumulate, ncols);
}
