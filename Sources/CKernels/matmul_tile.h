// Template for one vector ISA of the small-m product; included by matmul.c once per ISA with
// CK_T (target attribute), V (vector type), VL (lanes), FN(name) and the V* operations defined.
//
// A tile is R rows of W times M rows of x: each step converts R weight vectors once and uses
// each of them M times, so the weights are read (and converted) once per group of M x-rows;
// the R rows stay in L1 while the groups of x-rows pass over them.

#define CK_ALWAYS static inline __attribute__((always_inline))

CK_T CK_ALWAYS V FN(load_w)(const int fmt, const uint8_t *row, size_t k) {
    if (fmt == CK_FORMAT_F32) return VLOAD_F32((const float *)row + k);
    if (fmt == CK_FORMAT_F16) return VLOAD_F16((const uint16_t *)row + k);
    return VLOAD_BF16((const uint16_t *)row + k);
}

CK_T CK_ALWAYS void FN(tile)(const int fmt, const int R, const int M, const uint8_t *w, size_t rb,
                            size_t cols, const float *x, size_t ldx, float *y, size_t ldy) {
    V acc[CK_TILE_R][CK_TILE_M];
    for (int r = 0; r < R; r++)
        for (int i = 0; i < M; i++) acc[r][i] = VZERO();
    size_t k = 0;
    if (fmt == CK_FORMAT_Q8_0 || fmt == CK_FORMAT_Q4_0) {
        const size_t nb = cols / CK_Q8_0_BLOCK_VALUES;
        const size_t block_bytes = fmt == CK_FORMAT_Q8_0 ? CK_Q8_0_BLOCK_BYTES : CK_Q4_0_BLOCK_BYTES;
        for (size_t b = 0; b < nb; b++) {
            V d[CK_TILE_R];
            // Signed 4-bit q - 8 of each row's Q4_0 block, unpacked once per block (the fallback
            // for CPUs without int8 dot products; with them Q4_0 runs as packed panels).
            int8_t unpacked[CK_TILE_R][CK_Q8_0_BLOCK_VALUES];
            const int8_t *q[CK_TILE_R];
            for (int r = 0; r < R; r++) {
                const uint8_t *blk = w + r * rb + b * block_bytes;
                uint16_t dh;
                memcpy(&dh, blk, 2);
                d[r] = VSET1(_cvtsh_ss(dh));
                if (fmt == CK_FORMAT_Q4_0) {
                    for (int j = 0; j < 16; j++) {
                        unpacked[r][j] = (int8_t)((blk[2 + j] & 0x0F) - 8);
                        unpacked[r][j + 16] = (int8_t)((blk[2 + j] >> 4) - 8);
                    }
                    q[r] = unpacked[r];
                } else {
                    q[r] = (const int8_t *)(blk + 2);
                }
            }
            for (int h = 0; h < CK_Q8_0_BLOCK_VALUES / VL; h++) {
                V wv[CK_TILE_R];
                for (int r = 0; r < R; r++)
                    wv[r] = VMUL(VLOAD_I8(q[r] + h * VL), d[r]);
                for (int i = 0; i < M; i++) {
                    V xv = VLOAD_F32(x + i * ldx + b * CK_Q8_0_BLOCK_VALUES + h * VL);
                    for (int r = 0; r < R; r++) acc[r][i] = VFMA(wv[r], xv, acc[r][i]);
                }
            }
        }
        k = cols;
    } else {
        for (; k + VL <= cols; k += VL) {
            V wv[CK_TILE_R];
            for (int r = 0; r < R; r++) wv[r] = FN(load_w)(fmt, w + r * rb, k);
            for (int i = 0; i < M; i++) {
                V xv = VLOAD_F32(x + i * ldx + k);
                for (int r = 0; r < R; r++) acc[r][i] = VFMA(wv[r], xv, acc[r][i]);
            }
        }
    }
#ifdef CK_REDUCE_4X4
    if (R == 4 && M == 4 && k == cols) {
        CK_REDUCE_4X4(acc, y, ldy);
        return;
    }
#endif
    for (int r = 0; r < R; r++) {
        for (int i = 0; i < M; i++) {
            float s = VREDUCE(acc[r][i]);
            for (size_t kk = k; kk < cols; kk++) s += ck_weight_at(fmt, w + r * rb, kk) * x[i * ldx + kk];
            y[i * ldy + r] = s;
        }
    }
}

// Instantiates the tile for a constant format, R rows and a group of mg <= MMAX x-rows.
#define CK_GROUP_CASES(FMT, RR, MMAX)                                                       \
    switch (mg) {                                                                           \
    case 1: FN(tile)(FMT, RR, 1, wr, rb, cols, xi, ldx, yi, ldy); break;                    \
    case 2: FN(tile)(FMT, RR, 2, wr, rb, cols, xi, ldx, yi, ldy); break;                    \
    case 3: FN(tile)(FMT, RR, 3, wr, rb, cols, xi, ldx, yi, ldy); break;                    \
    case 4: FN(tile)(FMT, RR, 4, wr, rb, cols, xi, ldx, yi, ldy); break;                    \
    case 5: FN(tile)(FMT, RR, (MMAX > 4 ? 5 : 4), wr, rb, cols, xi, ldx, yi, ldy); break;   \
    case 6: FN(tile)(FMT, RR, (MMAX > 4 ? 6 : 4), wr, rb, cols, xi, ldx, yi, ldy); break;   \
    case 7: FN(tile)(FMT, RR, (MMAX > 4 ? 7 : 4), wr, rb, cols, xi, ldx, yi, ldy); break;   \
    default: FN(tile)(FMT, RR, MMAX, wr, rb, cols, xi, ldx, yi, ldy); break;                \
    }

#define CK_FORMAT_CASES(RR, MMAX)                                                           \
    switch (fmt) {                                                                          \
    case CK_FORMAT_F32: CK_GROUP_CASES(CK_FORMAT_F32, RR, MMAX) break;                      \
    case CK_FORMAT_F16: CK_GROUP_CASES(CK_FORMAT_F16, RR, MMAX) break;                      \
    case CK_FORMAT_BF16: CK_GROUP_CASES(CK_FORMAT_BF16, RR, MMAX) break;                    \
    case CK_FORMAT_Q4_0: CK_GROUP_CASES(CK_FORMAT_Q4_0, RR, MMAX) break;                    \
    default: CK_GROUP_CASES(CK_FORMAT_Q8_0, RR, MMAX) break;                                \
    }

// Walks rows in tiles of RR (then single rows) and x-rows in groups of at most MMAX.
// The next tile's rows (contiguous) are requested while this one computes: more loads in flight
// than the hardware prefetcher keeps for four row streams.
#ifndef CK_PREFETCH_NEXT
#define CK_PREFETCH_NEXT(p, bytes, ok)                                                      \
    if (ok) for (size_t off = 0; off < (bytes); off += 64) _mm_prefetch((const char *)(p) + off, _MM_HINT_T0);
#endif

#define CK_ROWS_LOOP(RR, MMAX)                                                              \
    {                                                                                       \
        size_t r = r0;                                                                      \
        for (; r + RR <= r1; r += RR) {                                                     \
            const uint8_t *wr = w + r * rb;                                                 \
            CK_PREFETCH_NEXT(wr + 2 * RR * rb, RR * rb, r + 3 * RR <= r1)                        \
            for (size_t i0 = 0; i0 < m; i0 += MMAX) {                                       \
                size_t mg = m - i0 < MMAX ? m - i0 : MMAX;                                  \
                const float *xi = x + i0 * ldx;                                             \
                float *yi = y + i0 * ldy + r;                                               \
                CK_FORMAT_CASES(RR, MMAX)                                                   \
            }                                                                               \
        }                                                                                   \
        for (; r < r1; r++) {                                                               \
            const uint8_t *wr = w + r * rb;                                                 \
            for (size_t i0 = 0; i0 < m; i0 += MMAX) {                                       \
                size_t mg = m - i0 < MMAX ? m - i0 : MMAX;                                  \
                const float *xi = x + i0 * ldx;                                             \
                float *yi = y + i0 * ldy + r;                                               \
                CK_FORMAT_CASES(1, MMAX)                                                    \
            }                                                                               \
        }                                                                                   \
    }

// 4 weight rows x 4 x-rows = 16 accumulators. (2 x 8, converting each weight vector once per 8
// x-rows, measured 10-30% slower for F32/F16/BF16 at m = 8 and 16, and no better for Q8_0.)
CK_T static void FN(rows)(int fmt, const uint8_t *w, size_t rb, size_t cols, const float *x,
                          size_t ldx, size_t m, float *y, size_t ldy, size_t r0, size_t r1) {
    CK_ROWS_LOOP(4, 4)
}

#undef CK_GROUP_CASES
#undef CK_ROWS_LOOP
#undef CK_FORMAT_CASES
#undef CK_ALWAYS
