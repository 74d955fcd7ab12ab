/* Numerator of the held-out score TSC for one micrograph (OpenCL 1.2 C, float32):
   num[p*n_f+f] = sum_r Re(x[p,f,r] * exp(-i c (tx kx[r] + ty ky[r]))), c = 2 pi / N.

   The ring is stored by rows (rows[i] = (ky, first kx, start, length): pixels start..start+length-1 of
   x[p,f,:] have that ky and kx = first kx + j).  Per row the phase factor separates,
   exp(-i c (ky ty + kx tx)) = exp(-i c (ky ty + kx0 tx)) * e^j with e = exp(-i c tx): one cis() at the row
   start, then a complex recurrence in 4 lanes (z, z e, z e^2, z e^3, advanced by e^4).  Rows hold at most
   N/2+1 pixels (about 30 at training size), so the float32 drift stays ~1e-6; row sums are added with Kahan
   compensation.

   One work-item per (p, f) walks its own contiguous row of x (the fast layout on CPU devices).
   t[pf] = (tx_int mod N, ty_int mod N, tx_frac, ty_frac): the integer parts make the phases exact modulo N. */

/* exp(-2 pi i (ai + f) / N) for an integer ai (|ai| < 2^22) and a float f: quadrant reduction done exactly on
   the integer part, then Taylor polynomials on |r| <= pi/4 (error ~1e-7). */
inline float2 cis_neg(const int ai, const float f, const float box)
{
    const float qf = rint(((float)ai + f) * (4.0f / box));
    const float r = (((float)ai - qf * (0.25f * box)) + f) * (-6.2831853071795865f / box);
    const float r2 = r * r;
    const float s = r * (1.0f + r2 * (-1.6666667e-1f + r2 * (8.3333333e-3f + r2 * (-1.9841270e-4f
                                                                               + r2 * 2.7557319e-6f))));
    const float cc = 1.0f + r2 * (-0.5f + r2 * (4.1666667e-2f + r2 * (-1.3888889e-3f + r2 * 2.4801587e-5f)));
    /* -2 pi (ai + f) / N = r - q pi/2: exp(i(r - q pi/2)) = (cc + i s) (-i)^q */
    switch (((int)qf) & 3) {
    case 0: return (float2)(cc, s);
    case 1: return (float2)(s, -cc);
    case 2: return (float2)(-cc, -s);
    default: return (float2)(-s, cc);
    }
}

__kernel void tsc_num_rows(__global const float2 *x, __global const int4 *rows, const int n_rows,
                           const int n_r, __global const float4 *t, const int n_pf, const int box,
                           __global float *num)
{
    const int pf = get_global_id(0);
    if (pf >= n_pf) return;
    const float4 tt = t[pf];
    const int txi = (int)tt.x, tyi = (int)tt.y;   /* in [0, N) */
    const float fbox = (float)box;
    const float2 e1 = cis_neg(txi, tt.z, fbox), e2 = cis_neg(2 * txi, 2.0f * tt.z, fbox);
    const float2 e3 = cis_neg(3 * txi, 3.0f * tt.z, fbox), e4 = cis_neg(4 * txi, 4.0f * tt.z, fbox);
    const float4 lc = (float4)(1.0f, e1.x, e2.x, e3.x), ls = (float4)(0.0f, e1.y, e2.y, e3.y);
    __global const float *xp = (__global const float *)(x + (size_t)pf * n_r);
    float acc = 0.0f, comp = 0.0f;
    for (int r = 0; r < n_rows; r++) {
        const int4 m = rows[r];
        const float2 z = cis_neg((m.x * tyi + m.y * txi) % box, (float)m.x * tt.w + (float)m.y * tt.z, fbox);
        float4 qc = z.x * lc - z.y * ls, qs = z.x * ls + z.y * lc;
        __global const float *v = xp + 2 * m.z;
        float4 s = (float4)(0.0f);
        int j = 0;
        for (; j + 4 <= m.w; j += 4) {
            const float8 w = vload8(0, v + 2 * j);
            s += w.even * qc - w.odd * qs;
            const float4 nc = qc * e4.x - qs * e4.y;
            qs = qc * e4.y + qs * e4.x;
            qc = nc;
        }
        float rest = 0.0f, zc = qc.x, zs = qs.x;
        for (; j < m.w; j++) {
            rest += v[2 * j] * zc - v[2 * j + 1] * zs;
            const float nc = zc * e1.x - zs * e1.y;
            zs = zc * e1.y + zs * e1.x;
            zc = nc;
        }
        const float y = ((s.x + s.y) + (s.z + s.w) + rest) - comp, u = acc + y;
        comp = (u - acc) - y;
        acc = u;
    }
    num[pf] = acc;
}
