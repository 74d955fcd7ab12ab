/* The two dense kernels of the auto-refine expectation step (twins of
 * polishplugin.core.refine.estep.NumpyOps), float32.
 *
 * project_pixels: trilinear samples (common.h halfgrid_sample) of the padded half transform
 *   (M, M, M/2+1, float2; polishplugin.core.projector) at the Fourier pixels k = (kx, ky) of slices
 *   A^T (kx, ky, 0): the coordinate (x, y, z) of pixel k under rotation r is kx * rot6[r, 0:3] +
 *   ky * rot6[r, 3:6] + M/2 with rot6 = pad * A[0:2, :], clipped to [0, hi] (hi = M - 1.001), then
 *   M/2 is taken off again, as polishplugin.core.refine.fourier3d._slice_coords.
 *
 * shifted_images: Y[p * T + t, k] = xw[p, k] exp(-2 pi i (k . s[p, t]) / N).
 *
 * cross_gemm: C = A B^T for row-major A (rows x kdim) and B (cols x kdim), real.  With A = Y and
 *   B = the projections P, both complex rows read as interleaved (re, im) floats, a row dot product
 *   is sum_k (Re Y Re P + Im Y Im P) = Re sum_k Y conj(P): the cross term of the squared differences.
 *   Work-group tiles of TSM x TSN outputs, TSK-deep slices of A and B staged in local memory; each
 *   work item holds WPTM x WPTN accumulators (rows ty + i * RTSM, columns tx + j * RTSN).
 */
#include "common.h"

/* no fused multiply-adds in the coordinates: the same float32 roundings as the numpy reference */
#pragma OPENCL FP_CONTRACT OFF

#ifndef TSM
#define TSM 64
#endif
#ifndef TSN
#define TSN 64
#endif
#ifndef TSK
#define TSK 16
#endif
#ifndef WPTM
#define WPTM 4
#endif
#ifndef WPTN
#define WPTN 4
#endif
#define RTSM (TSM / WPTM)
#define RTSN (TSN / WPTN)
#define NTHREADS (RTSM * RTSN)

/* one work item per (pixel, rotation): global size (n_pix, n_rot) */
__kernel void project_pixels(__global const float2 *grid, const int m, const float centre, const float hi,
                             __global const float *rot6, __global const float2 *k2d,
                             const int n_rot, const int n_pix, __global float2 *out)
{
    const int ip = get_global_id(0);
    const int ir = get_global_id(1);
    if (ip >= n_pix || ir >= n_rot) return;
    const float2 k = k2d[ip];
    __global const float *a = rot6 + 6 * ir;
    const float x = clamp(k.x * a[0] + k.y * a[3] + centre, 0.0f, hi);
    const float y = clamp(k.x * a[1] + k.y * a[4] + centre, 0.0f, hi);
    const float z = clamp(k.x * a[2] + k.y * a[5] + centre, 0.0f, hi);
    /* logical coordinate = (base - M/2) + fraction, exactly; a point with x < 0 is folded onto its
       Hermitian mate: base -> -base - 1, fraction -> 1 - fraction (exact in float32) */
    const int mc = m / 2;
    int bx = (int)x, by = (int)y, bz = (int)z;
    float fx = x - (float)bx, fy = y - (float)by, fz = z - (float)bz;
    bx -= mc; by -= mc; bz -= mc;
    const int neg = bx < 0;
    if (neg) {
        bx = -bx - 1; by = -by - 1; bz = -bz - 1;
        fx = 1.0f - fx; fy = 1.0f - fy; fz = 1.0f - fz;
    }
    const float2 acc = halfgrid_sample(grid, m, bx, by, bz, fx, fy, fz);
    out[(long)ir * n_pix + ip] = neg ? cconj(acc) : acc;
}

/* one work item per (pixel, particle * translation): global size (n_pix, n_part * n_trans) */
__kernel void shifted_images(__global const float2 *xw, __global const float2 *shifts,
                             __global const float2 *k2d, const int n_trans, const int n_pix,
                             const int n_pt, const float inv_box, __global float2 *y)
{
    const int ip = get_global_id(0);
    const int ipt = get_global_id(1);
    if (ip >= n_pix || ipt >= n_pt) return;
    const float2 k = k2d[ip];
    const float2 s = shifts[ipt];
    float turns = (k.x * s.x + k.y * s.y) * inv_box;
    turns -= rint(turns);  /* phase in [-pi, pi]: float32 sin/cos stay accurate */
    float c;
    const float sn = sincos(-2.0f * PP_PI * turns, &c);
    y[(long)ipt * n_pix + ip] = cmul(xw[(long)(ipt / n_trans) * n_pix + ip], (float2)(c, sn));
}

/* C (rows x cols) = A (rows x kdim) B^T, B (cols x kdim); local size (RTSN, RTSM) */
__kernel __attribute__((reqd_work_group_size(RTSN, RTSM, 1)))
void cross_gemm(__global const float *a, __global const float *b, const int rows, const int cols,
                const int kdim, __global float *c)
{
    __local float as[TSK][TSM];
    __local float bs[TSK][TSN];
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int lid = ty * RTSN + tx;
    const int row0 = get_group_id(1) * TSM, col0 = get_group_id(0) * TSN;
    float acc[WPTM][WPTN];
    for (int i = 0; i < WPTM; i++)
        for (int j = 0; j < WPTN; j++) acc[i][j] = 0.0f;
    for (int k0 = 0; k0 < kdim; k0 += TSK) {
        /* consecutive work items read consecutive k of one row (coalesced) */
        for (int l = lid; l < TSM * TSK; l += NTHREADS) {
            const int r = l / TSK, kk = l % TSK;
            const int gr = row0 + r, gk = k0 + kk;
            as[kk][r] = (gr < rows && gk < kdim) ? a[(long)gr * kdim + gk] : 0.0f;
        }
        for (int l = lid; l < TSN * TSK; l += NTHREADS) {
            const int r = l / TSK, kk = l % TSK;
            const int gr = col0 + r, gk = k0 + kk;
            bs[kk][r] = (gr < cols && gk < kdim) ? b[(long)gr * kdim + gk] : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < TSK; kk++) {
            float av[WPTM], bv[WPTN];
            for (int i = 0; i < WPTM; i++) av[i] = as[kk][ty + i * RTSM];
            for (int j = 0; j < WPTN; j++) bv[j] = bs[kk][tx + j * RTSN];
            for (int i = 0; i < WPTM; i++)
                for (int j = 0; j < WPTN; j++) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    for (int i = 0; i < WPTM; i++) {
        const int r = row0 + ty + i * RTSM;
        if (r >= rows) continue;
        for (int j = 0; j < WPTN; j++) {
            const int col = col0 + tx + j * RTSN;
            if (col < cols) c[(long)r * cols + col] = acc[i][j];
        }
    }
}
