"""The C source of the kernels on channels-last rows (each pixel a run of C channels) and the
fused SGD update; built by caffe.accel.native."""

SOURCE = r"""
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void neg_pow(const float *restrict s, float *restrict p, int n, float beta) {
    if (beta == 0.75f) {
        for (int i = 0; i < n; i++) { float r = sqrtf(s[i]); p[i] = 1.0f / (r * sqrtf(r)); }
    } else if (beta == 0.5f) {
        for (int i = 0; i < n; i++) p[i] = 1.0f / sqrtf(s[i]);
    } else if (beta == 1.0f) {
        for (int i = 0; i < n; i++) p[i] = 1.0f / s[i];
    } else {
        for (int i = 0; i < n; i++) p[i] = powf(s[i], -beta);
    }
}

/* out[c] = sum_{j<size} padded[c + j], c < C */
static void window_sum(const float *restrict padded, float *restrict out, int C, int size) {
    for (int c = 0; c < C; c++) out[c] = padded[c];
    for (int j = 1; j < size; j++)
        for (int c = 0; c < C; c++) out[c] += padded[c + j];
}

/* one pixel's scale = k + alpha / size * window sum of x^2; sq (C + size - 1, zero ends) is scratch */
static void lrn_scale_row(const float *restrict xr, float *restrict sr, float *restrict sq, int C, int size,
                          float a, float k) {
    int h = size / 2;
    for (int c = 0; c < C; c++) sq[h + c] = xr[c] * xr[c];
    if (size == 5) {  /* the usual window in one pass (the same sums, in the same order) */
        for (int c = 0; c < C; c++) sr[c] = ((((sq[c] + sq[c + 1]) + sq[c + 2]) + sq[c + 3]) + sq[c + 4]) * a + k;
        return;
    }
    window_sum(sq, sr, C, size);
    for (int c = 0; c < C; c++) sr[c] = sr[c] * a + k;
}

static void lrn_forward_row(const float *restrict xr, float *restrict tr, float *restrict sr, float *restrict sq,
                            float *restrict p, int C, int size, float a, float beta, float k) {
    lrn_scale_row(xr, sr, sq, C, size, a, k);
    if (beta == 0.75f) {  /* neg_pow and the product in one pass (the same operations) */
        for (int c = 0; c < C; c++) { float r = sqrtf(sr[c]); tr[c] = xr[c] * (1.0f / (r * sqrtf(r))); }
        return;
    }
    neg_pow(sr, p, C, beta);
    for (int c = 0; c < C; c++) tr[c] = xr[c] * p[c];
}

/* the forward's scale and top recomputed from x (cheaper than keeping them: the blob is large) */
static void lrn_backward_row(const float *restrict dr, const float *restrict xr, float *restrict br,
                             float *restrict sr, float *restrict sq, float *restrict p, float *restrict win,
                             int C, int size, float a, float beta, float k, float coeff) {
    int h = size / 2;
    lrn_scale_row(xr, sr, sq, C, size, a, k);
    neg_pow(sr, p, C, beta);
    for (int c = 0; c < C; c++) sq[h + c] = dr[c] * (xr[c] * p[c]) / sr[c];
    if (size == 5) {  /* as lrn_scale_row */
        for (int c = 0; c < C; c++)
            br[c] = dr[c] * p[c] - coeff * xr[c] * ((((sq[c] + sq[c + 1]) + sq[c + 2]) + sq[c + 3]) + sq[c + 4]);
        return;
    }
    window_sum(sq, win, C, size);
    for (int c = 0; c < C; c++) br[c] = dr[c] * p[c] - coeff * xr[c] * win[c];
}

void lrn_forward(const float *x, float *top, long rows, int C, int size, float alpha, float beta, float k,
                 int threads) {
    #pragma omp parallel num_threads(threads)
    {
        float *sq = calloc((size_t)(C + size), sizeof(float)), *p = malloc(2 * (size_t)C * sizeof(float));
        #pragma omp for schedule(static)
        for (long r = 0; r < rows; r++)
            lrn_forward_row(x + r * C, top + r * C, p + C, sq, p, C, size, alpha / size, beta, k);
        free(sq);
        free(p);
    }
}

void lrn_backward(const float *top_diff, const float *x, float *bottom_diff, long rows, int C, int size,
                  float alpha, float beta, float k, int threads) {
    #pragma omp parallel num_threads(threads)
    {
        float *sq = calloc((size_t)(C + size), sizeof(float)), *p = malloc(3 * (size_t)C * sizeof(float));
        #pragma omp for schedule(static)
        for (long r = 0; r < rows; r++)
            lrn_backward_row(top_diff + r * C, x + r * C, bottom_diff + r * C, p + C, sq, p, p + 2 * C, C, size,
                             alpha / size, beta, k, 2.0f * alpha * beta / size);
        free(sq);
        free(p);
    }
}
"""

SOURCE += r"""
void sgd_update(float *w, const float *diff, float *history, long n, float decay, float rate,
                float momentum, int threads) {
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long i = 0; i < n; i++) {
        float h = fmaf(rate, fmaf(decay, w[i], diff[i]), momentum * history[i]);
        history[i] = h;
        w[i] = w[i] - h;
    }
}
"""

SOURCE += r"""
#include <omp.h>

/* Per-channel sums over the rows, each thread over its own static block of rows (`acc`, double;
   `blk`, a float scratch the body may sum into, added into acc at the end), the partial sums added
   in thread order (the same bits for the same thread count). */
#define CHANNEL_SUMS(NSUMS, ...)                                                          \
    int nt = threads;                                                                     \
    double *part = calloc((size_t)nt * NSUMS * C, sizeof(double));                        \
    _Pragma("omp parallel num_threads(nt)")                                               \
    {                                                                                     \
        double *acc = part + (size_t)omp_get_thread_num() * NSUMS * C;                    \
        float *blk = calloc((size_t)NSUMS * C, sizeof(float));                            \
        _Pragma("omp for schedule(static)")                                               \
        for (long r = 0; r < rows; r++) { __VA_ARGS__ }                                   \
        for (int c = 0; c < NSUMS * C; c++) acc[c] += blk[c];                             \
        free(blk);                                                                        \
    }                                                                                     \
    for (int t = 1; t < nt; t++)                                                          \
        for (int c = 0; c < NSUMS * C; c++) part[c] += part[(size_t)t * NSUMS * C + c];

static void add_row(const float *restrict xr, float *restrict s, int C) {
    for (int c = 0; c < C; c++) s[c] += xr[c];
}

static void add_squared_deviations(const float *restrict xr, const float *restrict mean, float *restrict s, int C) {
    for (int c = 0; c < C; c++) { float d = xr[c] - mean[c]; s[c] += d * d; }
}

/* Batch statistics of channels-last rows: mean, and the biased variance from the centred values. */
void bn_stats(const float *x, long rows, int C, float *mean, float *var, int threads) {
    /* float sums over blocks of 64 rows (vectorised), added into double */
    {
        CHANNEL_SUMS(1,
            if (r % 64 == 0) { for (int c = 0; c < C; c++) { acc[c] += blk[c]; blk[c] = 0.0f; } }
            add_row(x + r * C, blk, C);)
        for (int c = 0; c < C; c++) mean[c] = (float)(part[c] / rows);
        free(part);
    }
    {
        CHANNEL_SUMS(1,
            if (r % 64 == 0) { for (int c = 0; c < C; c++) { acc[c] += blk[c]; blk[c] = 0.0f; } }
            add_squared_deviations(x + r * C, mean, blk, C);)
        for (int c = 0; c < C; c++) var[c] = (float)(part[c] / rows);
        free(part);
    }
}

/* top = xhat * gamma + beta, xhat = (x - mean) / std, then max(top, 0) if relu. */
void bn_scale_forward(const float *x, float *top, long rows, int C, const float *mean, const float *std,
                      const float *gamma, const float *beta, int relu, int threads) {
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *tr = top + r * C;
        for (int c = 0; c < C; c++) {
            float v = (xr[c] - mean[c]) / std[c] * gamma[c] + beta[c];
            tr[c] = relu ? (v > 0.0f ? v : 0.0f) : v;
        }
    }
}

/* Backward of bn_scale_forward (Caffe's ReLU, Scale and BatchNorm backward in turn): dz = top_diff
   where top > 0 (relu; top recomputed from x as the forward computed it, cheaper than reading it);
   d_gamma = sum dz xhat, d_beta = sum dz; bottom_diff = (dz gamma - mean(dz gamma)
   - mean(dz gamma xhat) xhat) / std. */
static void bn_backward_sums(const float *restrict dr, const float *restrict xr, const float *restrict mean,
                             const float *restrict std, const float *restrict gamma, const float *restrict beta,
                             int C, int relu, float *restrict s1, float *restrict s2) {
    for (int c = 0; c < C; c++) {
        float xhat = (xr[c] - mean[c]) / std[c];
        float dz = (!relu || xhat * gamma[c] + beta[c] > 0.0f) ? dr[c] : 0.0f;
        s1[c] += dz;
        s2[c] += dz * xhat;
    }
}

static void bn_backward_row(const float *restrict dr, const float *restrict xr, const float *restrict mean,
                            const float *restrict std, const float *restrict gamma, const float *restrict beta,
                            const float *restrict b, const float *restrict q, int C, int relu,
                            float *restrict br) {
    for (int c = 0; c < C; c++) {
        float xhat = (xr[c] - mean[c]) / std[c];
        float dz = (!relu || xhat * gamma[c] + beta[c] > 0.0f) ? dr[c] : 0.0f;
        br[c] = (dz * gamma[c] - b[c] - q[c] * xhat) / std[c];
    }
}

void bn_scale_backward(const float *top_diff, const float *x, long rows, int C, const float *mean,
                       const float *std, const float *gamma, const float *beta, int relu, float *bottom_diff,
                       float *d_gamma, float *d_beta, int threads) {
    /* float sums over blocks of 64 rows (vectorised), added into double */
    CHANNEL_SUMS(2,
        if (r % 64 == 0) { for (int c = 0; c < 2 * C; c++) { acc[c] += blk[c]; blk[c] = 0.0f; } }
        bn_backward_sums(top_diff + r * C, x + r * C, mean, std, gamma, beta, C, relu, blk, blk + C);)
    float *b = malloc(2 * (size_t)C * sizeof(float)), *q = b + C;
    for (int c = 0; c < C; c++) {
        d_beta[c] = (float)part[c];
        d_gamma[c] = (float)part[C + c];
        b[c] = (float)(gamma[c] * part[c] / rows);
        q[c] = (float)(gamma[c] * part[C + c] / rows);
    }
    free(part);
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < rows; r++)
        bn_backward_row(top_diff + r * C, x + r * C, mean, std, gamma, beta, b, q, C, relu, bottom_diff + r * C);
    free(b);
}
"""
