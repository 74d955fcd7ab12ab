/* Per-particle frame multiply-accumulates (twins of polishplugin.core.kernels.frame_ops).
 * One work item per output element (p, k); loops over the F frames. */
#include "common.h"

__kernel void frame_cross_sum(__global const float2 *a, __global const float2 *b, __global const float *w,
                              const int n_p, const int n_f, const int n_k, __global float2 *out)
{
    const int gid = get_global_id(0);
    if (gid >= n_p * n_k) return;
    const int k = gid % n_k;
    const int p = gid / n_k;
    float2 acc = (float2)(0.0f, 0.0f);
    __global const float2 *ap = a + (long)p * n_f * n_k + k;
    for (int f = 0; f < n_f; f++) acc += w[(long)f * n_k + k] * ap[(long)f * n_k];
    out[gid] = cmul_conj(acc, b[gid]);
}

/* complex X */
__kernel void weighted_frame_sum_c(__global const float2 *x, __global const float *w,
                                   const int n_p, const int n_f, const int n_k, __global float2 *out)
{
    const int gid = get_global_id(0);
    if (gid >= n_p * n_k) return;
    const int k = gid % n_k;
    const int p = gid / n_k;
    float2 acc = (float2)(0.0f, 0.0f);
    __global const float2 *xp = x + (long)p * n_f * n_k + k;
    for (int f = 0; f < n_f; f++) acc += w[(long)f * n_k + k] * xp[(long)f * n_k];
    out[gid] = acc;
}

/* real X */
__kernel void weighted_frame_sum_r(__global const float *x, __global const float *w,
                                   const int n_p, const int n_f, const int n_k, __global float *out)
{
    const int gid = get_global_id(0);
    if (gid >= n_p * n_k) return;
    const int k = gid % n_k;
    const int p = gid / n_k;
    float acc = 0.0f;
    __global const float *xp = x + (long)p * n_f * n_k + k;
    for (int f = 0; f < n_f; f++) acc += w[(long)f * n_k + k] * xp[(long)f * n_k];
    out[gid] = acc;
}
