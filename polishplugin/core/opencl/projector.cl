/* Fourier-slice projection and back-projection (trilinear) on a padded half-transform.
 *
 * Grid layout: numpy rfftn of an (M, M, M) array: index [iz][iy][ix], ix < HX = M/2 + 1; logical
 * frequency of index i on a full axis is i if i < M/2 + 1 else i - M. y and z corners wrap
 * around (the DFT is periodic), x corners beyond HX - 1 are dropped, as in the numpy reference
 * polishplugin.core.projector._corners.  Rotations are row-major 3x3 (A), and the image
 * pixel (kx, ky) maps to pad * A^T (kx, ky, 0).
 */
#include "common.h"

inline int logical_to_index(int k, int m) { k = k % m; return k < 0 ? k + m : k; }

/* ((kx + ky) * (N/2)) mod N for rfft pixel (ix, iy) of an N x N image (ky logical, positive Nyquist) */
inline int centre_phase_index(int ix, int iy, int box) {
    const int ky = iy < box / 2 + 1 ? iy : iy - box;
    long t = ((long)(ix + ky) * (long)(box / 2)) % box;
    return (int)(t < 0 ? t + box : t);
}

/* one work item per output pixel (p, iy, ix) of images (n, N, N/2+1) */
__kernel void project_slices(__global const float2 *grid, const int m,
                             __global const float *rot, const int n_img, const int box,
                             const float pad, const float rmax2, const float scale,
                             __global float2 *out)
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
    __global const float *a = rot + 9 * p;
    float x = pad * (a[0] * kx + a[3] * ky);
    float y = pad * (a[1] * kx + a[4] * ky);
    float z = pad * (a[2] * kx + a[5] * ky);
    int neg = x < 0.0f;
    if (neg) { x = -x; y = -y; z = -z; }
    const int hx = m / 2 + 1;
    const float x0f = floor(x), y0f = floor(y), z0f = floor(z);
    const float fx = x - x0f, fy = y - y0f, fz = z - z0f;
    const int x0 = (int)x0f, y0 = (int)y0f, z0 = (int)z0f;
    float2 acc = (float2)(0.0f, 0.0f);
    for (int dz = 0; dz < 2; dz++) {
        const int zz = z0 + dz;
        const float wz = dz ? fz : 1.0f - fz;
        const int iz = logical_to_index(zz, m);
        for (int dy = 0; dy < 2; dy++) {
            const int yy = y0 + dy;
            const float wy = dy ? fy : 1.0f - fy;
            const int jy = logical_to_index(yy, m);
            for (int dx = 0; dx < 2; dx++) {
                const int xx = x0 + dx;
                if (xx >= hx) continue;
                const float w = wz * wy * (dx ? fx : 1.0f - fx);
                acc += w * grid[((long)iz * m + jy) * hx + xx];
            }
        }
    }
    if (neg) acc.y = -acc.y;
    /* move the content from the origin to pixel box/2: exp(-2 pi i (kx + ky) c / N), with the
       integer product reduced modulo N first (float32 accuracy independent of the box size) */
    const float ph = -2.0f * PP_PI * (float)centre_phase_index(ix, iy, box) / (float)box;
    const float2 e = (float2)(cos(ph), sin(ph));
    out[gid] = scale * cmul(acc, e);
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
    const float vw = wimg[gid];
    __global const float *a = rot + 9 * p;
    float x = pad * (a[0] * kx + a[3] * ky);
    float y = pad * (a[1] * kx + a[4] * ky);
    float z = pad * (a[2] * kx + a[5] * ky);
    if (x < 0.0f) { x = -x; y = -y; z = -z; v.y = -v.y; }
    const int hx = m / 2 + 1;
    const float x0f = floor(x), y0f = floor(y), z0f = floor(z);
    const float fx = x - x0f, fy = y - y0f, fz = z - z0f;
    const int x0 = (int)x0f, y0 = (int)y0f, z0 = (int)z0f;
    for (int dz = 0; dz < 2; dz++) {
        const int zz = z0 + dz;
        const float wz = dz ? fz : 1.0f - fz;
        const int iz = logical_to_index(zz, m);
        for (int dy = 0; dy < 2; dy++) {
            const int yy = y0 + dy;
            const float wy = dy ? fy : 1.0f - fy;
            const int jy = logical_to_index(yy, m);
            for (int dx = 0; dx < 2; dx++) {
                const int xx = x0 + dx;
                if (xx >= hx) continue;
                const float w = wz * wy * (dx ? fx : 1.0f - fx);
                if (w == 0.0f) continue;
                const long q = ((long)iz * m + jy) * hx + xx;
                atomic_add_float(data + 2 * q, w * v.x);
                atomic_add_float(data + 2 * q + 1, w * v.y);
                atomic_add_float(weight + q, w * vw);
            }
        }
    }
}
