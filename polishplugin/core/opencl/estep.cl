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
 * spread_pixels_atomic / spread_pixels_owned: the back-projection of the same slices, the transpose of
 *   project_pixels: value v[r, k] (conjugated where the point folds onto its Hermitian mate) and weight
 *   w[r, k] spread trilinearly into three float32 sums on the margin-extended box of
 *   polishplugin.core.projector._ExtendedIndex (logical z, y in -R .. R+1, x in 0 .. R+1; flat index
 *   ((z + R) * (2R + 2) + y + R) * (R + 2) + x), which the host folds onto the periodic half grid.
 *   _atomic: one work item per (pixel, rotation), float compare-and-swap adds (GPUs; the last digits
 *   depend on the order the adds land in).  _owned: one work item per slab of z rows, each walking every
 *   sample in order and adding only the corners in its slab: no atomics, and every cell receives its adds
 *   in sample order, so the sums are the same on every run (CPU devices).
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

/* the slice point of pixel k under rot6 row a: logical integer bases and fractions, folded to x >= 0;
   returns whether it was folded (the caller conjugates) */
inline int pixel_point(const float2 k, __global const float *a, const int m, const float centre,
                       const float hi, int *bx, int *by, int *bz, float *fx, float *fy, float *fz)
{
    const float x = clamp(k.x * a[0] + k.y * a[3] + centre, 0.0f, hi);
    const float y = clamp(k.x * a[1] + k.y * a[4] + centre, 0.0f, hi);
    const float z = clamp(k.x * a[2] + k.y * a[5] + centre, 0.0f, hi);
    /* logical coordinate = (base - M/2) + fraction, exactly; a point with x < 0 is folded onto its
       Hermitian mate: base -> -base - 1, fraction -> 1 - fraction (exact in float32) */
    const int mc = m / 2;
    *bx = (int)x; *by = (int)y; *bz = (int)z;
    *fx = x - (float)*bx; *fy = y - (float)*by; *fz = z - (float)*bz;
    *bx -= mc; *by -= mc; *bz -= mc;
    const int neg = *bx < 0;
    if (neg) {
        *bx = -*bx - 1; *by = -*by - 1; *bz = -*bz - 1;
        *fx = 1.0f - *fx; *fy = 1.0f - *fy; *fz = 1.0f - *fz;
    }
    return neg;
}

/* one work item per (pixel, rotation): global size (n_pix, n_rot) */
__kernel void project_pixels(__global const float2 *grid, const int m, const float centre, const float hi,
                             __global const float *rot6, __global const float2 *k2d,
                             const int n_rot, const int n_pix, __global float2 *out)
{
    const int ip = get_global_id(0);
    const int ir = get_global_id(1);
    if (ip >= n_pix || ir >= n_rot) return;
    int bx, by, bz;
    float fx, fy, fz;
    const int neg = pixel_point(k2d[ip], rot6 + 6 * ir, m, centre, hi, &bx, &by, &bz, &fx, &fy, &fz);
    const float2 acc = halfgrid_sample(grid, m, bx, by, bz, fx, fy, fz);
    out[(long)ir * n_pix + ip] = neg ? cconj(acc) : acc;
}

/* spread one sample (folded point, value v, weight w) onto the corners whose extended z row is in
   [z_lo, z_hi) of the extended box of reach r; atomic: compare-and-swap adds, else plain adds */
inline void spread_sample(__global float *ext_re, __global float *ext_im, __global float *ext_w, const int r,
                          const int bx, const int by, const int bz, const float fx, const float fy,
                          const float fz, const float2 v, const float w, const int z_lo, const int z_hi,
                          const int atomic)
{
    const int ny = 2 * r + 2, nx = r + 2;
    for (int dz = 0; dz < 2; dz++) {
        const int ez = bz + dz + r;
        if (ez < z_lo || ez >= z_hi) continue;
        const float wz = dz ? fz : 1.0f - fz;
        for (int dy = 0; dy < 2; dy++) {
            const float wzy = wz * (dy ? fy : 1.0f - fy);
            const long row = ((long)ez * ny + (by + dy + r)) * nx + bx;
            for (int dx = 0; dx < 2; dx++) {
                const float c = wzy * (dx ? fx : 1.0f - fx);
                if (atomic) {
                    atomic_add_float((volatile __global float *)(ext_re + row + dx), c * v.x);
                    atomic_add_float((volatile __global float *)(ext_im + row + dx), c * v.y);
                    atomic_add_float((volatile __global float *)(ext_w + row + dx), c * w);
                } else {
                    ext_re[row + dx] += c * v.x;
                    ext_im[row + dx] += c * v.y;
                    ext_w[row + dx] += c * w;
                }
            }
        }
    }
}

/* one work item per (pixel, rotation): global size (n_pix, n_rot); extended box of reach r */
__kernel void spread_pixels_atomic(__global float *ext_re, __global float *ext_im, __global float *ext_w,
                                   const int r, const int m, const float centre, const float hi,
                                   __global const float *rot6, __global const float2 *k2d,
                                   __global const float2 *vals, __global const float *wts, const int n_rot,
                                   const int n_pix)
{
    const int ip = get_global_id(0);
    const int ir = get_global_id(1);
    if (ip >= n_pix || ir >= n_rot) return;
    int bx, by, bz;
    float fx, fy, fz;
    const int neg = pixel_point(k2d[ip], rot6 + 6 * ir, m, centre, hi, &bx, &by, &bz, &fx, &fy, &fz);
    const long s = (long)ir * n_pix + ip;
    spread_sample(ext_re, ext_im, ext_w, r, bx, by, bz, fx, fy, fz, neg ? cconj(vals[s]) : vals[s], wts[s],
                  0, 2 * r + 2, 1);
}

/* one work item per slab of extended z rows (global size n_slabs): every sample in order, only the
   corners whose z row is in the slab; plain adds (each cell is added to by one work item, in sample order) */
__kernel void spread_pixels_owned(__global float *ext_re, __global float *ext_im, __global float *ext_w,
                                  const int r, const int m, const float centre, const float hi,
                                  __global const float *rot6, __global const float2 *k2d,
                                  __global const float2 *vals, __global const float *wts, const int n_rot,
                                  const int n_pix, const int n_slabs)
{
    const int g = get_global_id(0);
    if (g >= n_slabs) return;
    const int nz = 2 * r + 2, mc = m / 2;
    const int z_lo = (int)(((long)g * nz) / n_slabs), z_hi = (int)(((long)(g + 1) * nz) / n_slabs);
    for (int ir = 0; ir < n_rot; ir++) {
        __global const float *a = rot6 + 6 * ir;
        const float ax = a[0], bx3 = a[3], az = a[2], bz5 = a[5];
        for (int ip = 0; ip < n_pix; ip++) {
            /* the folded z row of the sample first (as pixel_point computes it): most samples are skipped */
            const float2 k = k2d[ip];
            const float x = clamp(k.x * ax + k.y * bx3 + centre, 0.0f, hi);
            const float z = clamp(k.x * az + k.y * bz5 + centre, 0.0f, hi);
            const int z0 = (int)z - mc;
            const int ez = ((int)x - mc < 0 ? -z0 - 1 : z0) + r;
            if (ez + 1 < z_lo || ez >= z_hi) continue;
            int bx, by, bz;
            float fx, fy, fz;
            const int neg = pixel_point(k, a, m, centre, hi, &bx, &by, &bz, &fx, &fy, &fz);
            const long s = (long)ir * n_pix + ip;
            spread_sample(ext_re, ext_im, ext_w, r, bx, by, bz, fx, fy, fz, neg ? cconj(vals[s]) : vals[s],
                          wts[s], z_lo, z_hi, 0);
        }
    }
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
