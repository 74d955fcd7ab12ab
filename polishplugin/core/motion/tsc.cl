/* Numerator of the held-out score TSC for one micrograph (OpenCL 1.2 C, float32):
   num[p*n_f+f] = sum_r Re(x[p,f,r] * exp(-i phi)), phi = c * (tx*kx[r] + ty*ky[r]), c = 2 pi / N.
   x: complex64 as float2 (n_p*n_f*R); t: (n_p*n_f*2) track (x, y) in px. One work-item per (p, f). */

__kernel void tsc_num(__global const float2 *x, __global const float *kx, __global const float *ky,
                      __global const float *t, const int n_pf, const int n_r, const float c,
                      __global float *num)
{
    const int pf = get_global_id(0);
    if (pf >= n_pf) return;
    const float tx = c * t[2 * pf], ty = c * t[2 * pf + 1];
    __global const float2 *row = x + (size_t)pf * n_r;
    float acc = 0.0f, comp = 0.0f;  /* Kahan-compensated sum */
    for (int r = 0; r < n_r; r++) {
        const float phi = tx * kx[r] + ty * ky[r];
        float cs;
        const float sn = sincos(phi, &cs);
        const float2 v = row[r];
        const float y = (v.x * cs + v.y * sn) - comp;
        const float s = acc + y;
        comp = (s - acc) - y;
        acc = s;
    }
    num[pf] = acc;
}
