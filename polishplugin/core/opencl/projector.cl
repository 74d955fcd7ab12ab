/* Fourier-slice projection and back-projection (trilinear) of whole rfft images on the padded half
 * transform (layout and interpolation: halfgrid_sample / halfgrid_spread in common.h, twins of
 * polishplugin.core.projector).  Rotations are row-major 3x3 (A), and the image pixel (kx, ky) maps to
 * pad * A^T (kx, ky, 0); a point with x < 0 is folded onto its Hermitian mate (conjugated).
 */
#include "common.h"

/* ((kx + ky) * (N/2)) mod N for rfft pixel (ix, iy) of an N x N image (ky logical, positive Nyquist) */
inline int centre_phase_index(int ix, int iy, int box) {
    const int ky = iy < box / 2 + 1 ? iy : iy - box;
    long t = ((long)(ix + ky) * (long)(box / 2)) % box;
    return (int)(t < 0 ? t + box : t);
}

/* slice point of pixel (kx, ky) under rotation a, folded to x >= 0: integer bases, fractions; returns neg */
inline int slice_point(__global const float *a, const float kx, const float ky, const float pad,
                       int *bx, int *by, int *bz, float *fx, float *fy, float *fz)
{
    float x = pad * (a[0] * kx + a[3] * ky);
    float y = pad * (a[1] * kx + a[4] * ky);
    float z = pad * (a[2] * kx + a[5] * ky);
    const int neg = x < 0.0f;
    if (neg) { x = -x; y = -y; z = -z; }
    const float x0 = floor(x), y0 = floor(y), z0 = floor(z);
    *fx = x - x0; *fy = y - y0; *fz = z - z0;
    *bx = (int)x0; *by = (int)y0; *bz = (int)z0;
    return neg;
}

/* one work item per output pixel (p, iy, ix) of images (n, N, N/2+1) */
__kernel void project_slices(__global const float2 *grid, const int m,
                             __global const float *rot, const int n_img, const int box,
                             const float pad, const float rmax2, __global float2 *out)
{
    const int hxi = box / 2 + 1;
    const int gid = get_global_id(0);
    if (gid >= n_img * box * hxi) return;
    const int ix = gid % hxi;
    const int iy = (gid / hxi) % box;
    const int p = gid / (hxi * box);
    const float kx = (float)ix;
    const float ky = (float)(iy < box / 2 + 1 ? iy : iy - box);
    if (kx * kx + ky * ky > rmax2) { out[gid] = (float2)(0.0f, 0.0f); return; }
    int bx, by, bz;
    float fx, fy, fz;
    const int neg = slice_point(rot + 9 * p, kx, ky, pad, &bx, &by, &bz, &fx, &fy, &fz);
    float2 acc = halfgrid_sample(grid, m, bx, by, bz, fx, fy, fz);
    if (neg) acc.y = -acc.y;
    /* move the content from the origin to pixel box/2: exp(-2 pi i (kx + ky) c / N), with the
       integer product reduced modulo N first (float32 accuracy independent of the box size) */
    const float ph = -2.0f * PP_PI * (float)centre_phase_index(ix, iy, box) / (float)box;
    out[gid] = cmul(acc, (float2)(cos(ph), sin(ph)));
}

/* one work item per input pixel; scatter with float CAS atomics into data (re, im) and weight */
__kernel void insert_slices(__global float *data, __global float *weight, const int m,
                            __global const float2 *img, __global const float *wimg,
                            __global const float *rot, const int n_img, const int box,
                            const float pad, const float rmax2)
{
    const int hxi = box / 2 + 1;
    const int gid = get_global_id(0);
    if (gid >= n_img * box * hxi) return;
    const int ix = gid % hxi;
    const int iy = (gid / hxi) % box;
    const int p = gid / (hxi * box);
    const float kx = (float)ix;
    const float ky = (float)(iy < box / 2 + 1 ? iy : iy - box);
    if (kx * kx + ky * ky > rmax2) return;
    /* undo the image-centre phase: multiply by exp(+2 pi i (kx + ky) c / N) */
    const float ph = 2.0f * PP_PI * (float)centre_phase_index(ix, iy, box) / (float)box;
    float2 v = cmul(img[gid], (float2)(cos(ph), sin(ph)));
    int bx, by, bz;
    float fx, fy, fz;
    if (slice_point(rot + 9 * p, kx, ky, pad, &bx, &by, &bz, &fx, &fy, &fz)) v.y = -v.y;
    halfgrid_spread(data, weight, m, bx, by, bz, fx, fy, fz, v, wimg[gid]);
}
