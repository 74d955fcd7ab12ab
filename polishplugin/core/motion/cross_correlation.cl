/* Weighted cross-power spectra for the motion CC maps (OpenCL 1.2 C, float32):
   out[p,f,k] = obs[p,f,k] * w[f,k] * conj(pred[p,k]); complex numbers as float2. */

__kernel void cc_product(__global const float2 *obs, __global const float2 *pred, __global const float *w,
                         const int n_p, const int n_f, const int n_k, __global float2 *out)
{
    const int idx = get_global_id(0);
    if (idx >= n_p * n_f * n_k) return;
    const int k = idx % n_k;
    const int f = (idx / n_k) % n_f;
    const int p = idx / (n_k * n_f);
    const float2 a = obs[idx];
    const float2 b = pred[p * n_k + k];
    const float s = w[f * n_k + k];
    /* a * conj(b) */
    out[idx] = (float2)((a.x * b.x + a.y * b.y) * s, (a.y * b.x - a.x * b.y) * s);
}
