"""The C source of Caffe's MAX pooling on NCHW planes, with Caffe's int mask; built with the other
kernels by caffe.accel.native."""

SOURCE = r"""
#include <float.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

/* pooling_layer.cpp's MAX, output row by output row: each window clipped to the plane, starting at
   -FLT_MAX, the first strictly greater value in row-major order wins and its index (h W + w in the
   plane) goes to the mask (-1 where none does: a window of NaN). */
static void max_pool_row(const float *xp, int H, int W, int ph, float *restrict t, int *restrict m, int PW,
                         int kh, int kw, int sh, int sw, int pad_h, int pad_w) {
    int hs = ph * sh - pad_h, he = hs + kh < H ? hs + kh : H;
    if (hs < 0) hs = 0;
    for (int pw = 0; pw < PW; pw++) {
        int ws = pw * sw - pad_w, we = ws + kw < W ? ws + kw : W;
        if (ws < 0) ws = 0;
        float best = -FLT_MAX;
        int at = -1;
        for (int h = hs; h < he; h++)
            for (int w = ws; w < we; w++)
                if (xp[h * W + w] > best) { best = xp[h * W + w]; at = h * W + w; }
        t[pw] = best;
        m[pw] = at;
    }
}

#ifdef __AVX512F__
/* the same for stride 1 or 2 and no padding, 16 windows of the row at a time: the taps in the
   same row-major order, cells past the plane's edge read as -FLT_MAX (never strictly greater) */
static void max_pool_row16(const float *xp, int H, int W, int ph, float *t, int *m, int PW, int kh, int kw,
                           int sh, int sw) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i lanes = sw == 2 ? even : _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 floor = _mm512_set1_ps(-FLT_MAX);
    int hs = ph * sh, he = hs + kh < H ? hs + kh : H;
    for (int p0 = 0; p0 < PW; p0 += 16) {
        __mmask16 out = PW - p0 >= 16 ? 0xffff : (__mmask16)((1u << (PW - p0)) - 1);
        __m512 best = floor;
        __m512i at = _mm512_set1_epi32(-1);
        for (int h = hs; h < he; h++) {
            const float *row = xp + (long)h * W;
            for (int kx = 0; kx < kw; kx++) {
                int c0 = p0 * sw + kx, n = W - c0;  /* this tap's columns: c0 + sw i */
                __mmask16 la = n >= 16 ? 0xffff : n > 0 ? (__mmask16)((1u << n) - 1) : 0;
                __m512 v = _mm512_mask_loadu_ps(floor, la, row + c0);
                if (sw == 2) {
                    __mmask16 lb = n >= 32 ? 0xffff : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
                    v = _mm512_permutex2var_ps(v, even, _mm512_mask_loadu_ps(floor, lb, row + c0 + 16));
                }
                __mmask16 g = _mm512_mask_cmp_ps_mask(out, v, best, _CMP_GT_OQ);
                best = _mm512_mask_blend_ps(g, best, v);
                at = _mm512_mask_blend_epi32(g, at, _mm512_add_epi32(_mm512_set1_epi32(h * W + c0), lanes));
            }
        }
        _mm512_mask_storeu_ps(t + p0, out, best);
        _mm512_mask_storeu_epi32(m + p0, out, at);
    }
}
#endif

void max_pool_planes(const float *x, float *top, int *mask, long planes, int H, int W, int PH, int PW, int kh,
                     int kw, int sh, int sw, int pad_h, int pad_w, int threads) {
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long q = 0; q < planes; q++)
        for (int ph = 0; ph < PH; ph++) {
            const float *xp = x + q * H * W;
            float *t = top + (q * PH + ph) * PW;
            int *m = mask + (q * PH + ph) * PW;
#ifdef __AVX512F__
            if ((sw == 1 || sw == 2) && pad_h == 0 && pad_w == 0) {
                max_pool_row16(xp, H, W, ph, t, m, PW, kh, kw, sh, sw);
                continue;
            }
#endif
            max_pool_row(xp, H, W, ph, t, m, PW, kh, kw, sh, sw, pad_h, pad_w);
        }
}

/* bottom_diff = 0, then each top cell's diff added at its mask's cell, in the top's order */
void max_pool_backward_planes(const float *top_diff, const int *mask, float *bottom_diff, long planes, long HW,
                              long PHW, int threads) {
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long q = 0; q < planes; q++) {
        float *b = bottom_diff + q * HW;
        const float *d = top_diff + q * PHW;
        const int *m = mask + q * PHW;
        memset(b, 0, HW * sizeof(float));
        for (long i = 0; i < PHW; i++)
            if (m[i] >= 0) b[m[i]] += d[i];
    }
}
"""
