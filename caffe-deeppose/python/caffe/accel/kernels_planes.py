"""The C source of the kernels on NCHW planes (each channel of each item a run of pixels); built
with kernels_rows' as one C file (it uses its neg_pow) by caffe.accel.native, which declares them."""

SOURCE = r"""
/* The same kernels on NCHW blobs (planes: each channel of each item a run of P pixels), computing
   every element with the same operations as the row kernels (the LRN and the BatchNorm top and
   bottom diff: the same bits given the same statistics), vectorised over the pixels of a block of
   PB. Channel sums (statistics, the BatchNorm backward's) go channel by channel, each thread its
   own channels: float sums of 8 lanes over blocks of 64 pixels, added into double. The LRN's block
   reads and writes C planes at once, more streams than the hardware prefetcher follows: each
   channel's next block is prefetched by hand (its backward in 2/3 of the time). */
#define PB 64

static long min_long(long a, long b) { return a < b ? a : b; }

/* scale (C x PB) of nb pixels at x (channel c at x + c P); sq: (C + size - 1) x PB, zero ends */
static void lrn_scale_block(const float *restrict x, long P, int nb, float *restrict s, float *restrict sq, int C,
                            int size, float a, float k) {
    int h = size / 2;
    for (int c = 0; c < C; c++) {
        for (int l = 0; l < PB; l += 16) __builtin_prefetch(x + c * P + PB + l);  /* the next block's */
        for (int j = 0; j < nb; j++) sq[(h + c) * PB + j] = x[c * P + j] * x[c * P + j];
    }
    for (int c = 0; c < C; c++) {
        float *sc = s + c * PB;
        const float *q = sq + c * PB;
        if (size == 5) {
            for (int j = 0; j < nb; j++)
                sc[j] = ((((q[j] + q[PB + j]) + q[2 * PB + j]) + q[3 * PB + j]) + q[4 * PB + j]) * a + k;
        } else {
            for (int j = 0; j < nb; j++) sc[j] = q[j];
            for (int i = 1; i < size; i++)
                for (int j = 0; j < nb; j++) sc[j] += q[i * PB + j];
            for (int j = 0; j < nb; j++) sc[j] = sc[j] * a + k;
        }
    }
}

#define PLANE_BLOCKS(...)                                                                 \
    long nblk = (P + PB - 1) / PB;                                                        \
    _Pragma("omp parallel num_threads(threads)")                                          \
    {                                                                                     \
        float *sq = calloc((size_t)(C + size) * PB, sizeof(float));                       \
        float *s = malloc(3 * (size_t)C * PB * sizeof(float)), *p = s + (size_t)C * PB;    \
        float *u = p + (size_t)C * PB;                                                    \
        _Pragma("omp for schedule(static)")                                               \
        for (long t = 0; t < N * nblk; t++) {                                             \
            long off = (t / nblk) * C * P + (t % nblk) * PB;                              \
            int nb = (int)min_long(PB, P - (t % nblk) * PB);                              \
            __VA_ARGS__                                                                   \
        }                                                                                 \
        free(sq);                                                                         \
        free(s);                                                                          \
    }

/* the top of nb pixels (channel c at tb + c cs) */
static void lrn_top_block(const float *restrict xb, long P, float *restrict tb, long cs, int nb,
                          const float *restrict s, float *restrict p, int C, float beta) {
    for (int c = 0; c < C; c++) {
        for (int l = 0; l < PB; l += 16) __builtin_prefetch(tb + c * cs + PB + l, 1);  /* the next block's */
        if (beta == 0.75f) {
            for (int j = 0; j < nb; j++) { float r = sqrtf(s[c * PB + j]); tb[c * cs + j] = xb[c * P + j] * (1.0f / (r * sqrtf(r))); }
        } else {
            neg_pow(s + c * PB, p + c * PB, nb, beta);
            for (int j = 0; j < nb; j++) tb[c * cs + j] = xb[c * P + j] * p[c * PB + j];
        }
    }
}

/* x and the top in planes */
void lrn_forward_planes(const float *x, float *top, long N, int C, long P, int size, float alpha, float beta,
                        float k, int threads) {
    PLANE_BLOCKS(
        const float *xb = x + off;
        lrn_scale_block(xb, P, nb, s, sq, C, size, alpha / size, k);
        lrn_top_block(xb, P, top + off, P, nb, s, p, C, beta);)
}

/* the bottom diff of nb pixels from the top diff (channel c at db + c cs) */
static void lrn_bottom_diff_block(const float *restrict db, long cs, const float *restrict xb,
                                  float *restrict bb, long P, int nb, float *restrict s, float *restrict p,
                                  float *restrict sq, int C, int size, float beta, float coeff) {
    int h = size / 2;
    for (int c = 0; c < C; c++) {
        for (int l = 0; l < PB; l += 16) {  /* the next block's top diff and bottom diff */
            __builtin_prefetch(db + c * cs + PB + l);
            __builtin_prefetch(bb + c * P + PB + l, 1);
        }
        neg_pow(s + c * PB, p + c * PB, nb, beta);
        for (int j = 0; j < nb; j++)
            sq[(h + c) * PB + j] = db[c * cs + j] * (xb[c * P + j] * p[c * PB + j]) / s[c * PB + j];
    }
    for (int c = 0; c < C; c++) {
        const float *q = sq + c * PB;
        float *w = s + c * PB;  /* the scale of channel c is no longer needed: its window sum */
        if (size == 5) {
            for (int j = 0; j < nb; j++) w[j] = (((q[j] + q[PB + j]) + q[2 * PB + j]) + q[3 * PB + j]) + q[4 * PB + j];
        } else {
            for (int j = 0; j < nb; j++) w[j] = q[j];
            for (int i = 1; i < size; i++)
                for (int j = 0; j < nb; j++) w[j] += q[i * PB + j];
        }
        for (int j = 0; j < nb; j++)
            bb[c * P + j] = db[c * cs + j] * p[c * PB + j] - coeff * xb[c * P + j] * w[j];
    }
}

/* x and the bottom diff in planes; the top diff in rows (diff_rows) or planes */
void lrn_backward_planes(const float *top_diff, const float *x, float *bottom_diff, long N, int C, long P, int size,
                         float alpha, float beta, float k, int diff_rows, int threads) {
    float coeff = 2.0f * alpha * beta / size;
    PLANE_BLOCKS(
        const float *xb = x + off;
        lrn_scale_block(xb, P, nb, s, sq, C, size, alpha / size, k);
        if (diff_rows) {  /* the block's top diff as planes first (a gather per element is slower) */
            const float *db = top_diff + (t / nblk) * C * P + (t % nblk) * PB * C;
            for (int j = 0; j < nb; j++)
                for (int c = 0; c < C; c++) u[c * PB + j] = db[j * C + c];
            lrn_bottom_diff_block(u, PB, xb, bottom_diff + off, P, nb, s, p, sq, C, size, beta, coeff);
        } else
            lrn_bottom_diff_block(top_diff + off, P, xb, bottom_diff + off, P, nb, s, p, sq, C, size, beta, coeff);)
}

/* sum of m <= 64 values: float sums of 8 lanes, the lanes added pairwise */
static inline float lane_sum(const float *restrict v, int m) {
    float lane[8] = {0};
    int i = 0;
    for (; i + 8 <= m; i += 8)
        for (int l = 0; l < 8; l++) lane[l] += v[i + l];
    for (; i < m; i++) lane[i & 7] += v[i];
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

/* sum of v (n values) and of (v - mu)^2: lane sums over blocks of 64, added into double */
static double plane_sum(const float *restrict v, long n) {
    double acc = 0.0;
    for (long b = 0; b < n; b += 64) acc += (double)lane_sum(v + b, (int)min_long(64, n - b));
    return acc;
}

static double plane_squared_deviations(const float *restrict v, long n, float mu) {
    double acc = 0.0;
    float sq[64];
    for (long b = 0; b < n; b += 64) {
        int m = (int)min_long(64, n - b);
        for (int j = 0; j < m; j++) { float d = v[b + j] - mu; sq[j] = d * d; }
        acc += (double)lane_sum(sq, m);
    }
    return acc;
}

void bn_stats_planes(const float *x, long N, int C, long P, float *mean, float *var, int threads) {
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int c = 0; c < C; c++) {
        double acc = 0.0;
        for (long n = 0; n < N; n++) acc += plane_sum(x + (n * C + c) * P, P);
        float mu = (float)(acc / (N * P));
        acc = 0.0;
        for (long n = 0; n < N; n++) acc += plane_squared_deviations(x + (n * C + c) * P, P, mu);
        mean[c] = mu;
        var[c] = (float)(acc / (N * P));
    }
}

void bn_scale_forward_planes(const float *x, float *top, long N, int C, long P, const float *mean, const float *std,
                             const float *gamma, const float *beta, int relu, int threads) {
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long t = 0; t < N * C; t++) {
        int c = (int)(t % C);
        const float *restrict xr = x + t * P;
        float *restrict tr = top + t * P;
        float mu = mean[c], sd = std[c], ga = gamma[c], be = beta[c];
        for (long j = 0; j < P; j++) {
            float v = (xr[j] - mu) / sd * ga + be;
            tr[j] = relu ? (v > 0.0f ? v : 0.0f) : v;
        }
    }
}

/* sums of dz and dz xhat over a plane (as plane_sum) */
static inline float bn_dz(float d, float x, float mean, float std, float gamma, float beta, int relu, float *xhat) {
    *xhat = (x - mean) / std;
    return (!relu || *xhat * gamma + beta > 0.0f) ? d : 0.0f;
}

static void bn_backward_plane_sums(const float *restrict d, const float *restrict x, long n, float mean, float std,
                                   float gamma, float beta, int relu, double *s1, double *s2) {
    float dz[64], dzx[64];
    for (long b = 0; b < n; b += 64) {
        int m = (int)min_long(64, n - b);
        for (int j = 0; j < m; j++) {
            float xhat;
            dz[j] = bn_dz(d[b + j], x[b + j], mean, std, gamma, beta, relu, &xhat);
            dzx[j] = dz[j] * xhat;
        }
        *s1 += (double)lane_sum(dz, m);
        *s2 += (double)lane_sum(dzx, m);
    }
}

void bn_scale_backward_planes(const float *top_diff, const float *x, long N, int C, long P, const float *mean,
                              const float *std, const float *gamma, const float *beta, int relu, float *bottom_diff,
                              float *d_gamma, float *d_beta, int threads) {
    long rows = N * P;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int c = 0; c < C; c++) {
        double s1 = 0.0, s2 = 0.0;
        for (long n = 0; n < N; n++)
            bn_backward_plane_sums(top_diff + (n * C + c) * P, x + (n * C + c) * P, P, mean[c], std[c], gamma[c],
                                   beta[c], relu, &s1, &s2);
        d_beta[c] = (float)s1;
        d_gamma[c] = (float)s2;
        float b = (float)(gamma[c] * s1 / rows), q = (float)(gamma[c] * s2 / rows);
        float mu = mean[c], sd = std[c], ga = gamma[c], be = beta[c];
        for (long n = 0; n < N; n++) {
            const float *restrict dr = top_diff + (n * C + c) * P, *restrict xr = x + (n * C + c) * P;
            float *restrict br = bottom_diff + (n * C + c) * P;
            for (long j = 0; j < P; j++) {
                float xhat, dz = bn_dz(dr[j], xr[j], mu, sd, ga, be, relu, &xhat);
                br[j] = (dz * ga - b - q * xhat) / sd;
            }
        }
    }
}
"""
