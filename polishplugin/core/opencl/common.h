/* Shared helpers for polishplugin's OpenCL kernels (OpenCL 1.2 C, float32, no extensions). */
#ifndef POLISHPLUGIN_COMMON_H
#define POLISHPLUGIN_COMMON_H

#define PP_PI 3.14159265358979323846f

inline float2 cmul(float2 a, float2 b) { return (float2)(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x); }
inline float2 cmul_conj(float2 a, float2 b) { /* a * conj(b) */ return (float2)(a.x * b.x + a.y * b.y, a.y * b.x - a.x * b.y); }
inline float2 cconj(float2 a) { return (float2)(a.x, -a.y); }

/* float atomic add through 32-bit compare-and-swap (core OpenCL 1.1+). */
inline void atomic_add_float(volatile __global float *addr, float val) {
    union { unsigned int u; float f; } old_v, new_v;
    do {
        old_v.f = *addr;
        new_v.f = old_v.f + val;
    } while (atomic_cmpxchg((volatile __global unsigned int *)addr, old_v.u, new_v.u) != old_v.u);
}

/* Trilinear corners on the package's padded half transform (M, M, M/2+1), numpy rfftn layout
 * [iz][iy][ix]: frequency K at index K mod M on z and y, ix = Kx in 0..M/2 (polishplugin.core.projector).
 * The point is (bx + fx, by + fy, bz + fz) with integer bases and fractions in [0, 1] and bx >= 0 (a point
 * with x < 0 is folded onto its Hermitian mate by the caller, who conjugates).  y and z corners wrap
 * around, x corners beyond M/2 are dropped.  Corner order and weights (wz wy) wx as the numpy reference
 * polishplugin.core.projector._ExtendedIndex. */
inline int wrap_index(int k, const int m) { k = k % m; return k < 0 ? k + m : k; }

/* the four (z, y) corner rows: flat offsets of their x = 0 elements and weights wz wy */
inline void halfgrid_rows(const int m, const int by, const int bz, const float fy, const float fz,
                          long rows[4], float wzy[4])
{
    const long hx = m / 2 + 1;
    const int z0 = wrap_index(bz, m), z1 = wrap_index(bz + 1, m);
    const int y0 = wrap_index(by, m), y1 = wrap_index(by + 1, m);
    const float gy = 1.0f - fy, gz = 1.0f - fz;
    rows[0] = ((long)z0 * m + y0) * hx; wzy[0] = gz * gy;
    rows[1] = ((long)z0 * m + y1) * hx; wzy[1] = gz * fy;
    rows[2] = ((long)z1 * m + y0) * hx; wzy[2] = fz * gy;
    rows[3] = ((long)z1 * m + y1) * hx; wzy[3] = fz * fy;
}

inline float2 halfgrid_sample(__global const float2 *grid, const int m, const int bx, const int by,
                              const int bz, const float fx, const float fy, const float fz)
{
    const int hx = m / 2 + 1;
    long rows[4];
    float wzy[4];
    halfgrid_rows(m, by, bz, fy, fz, rows, wzy);
    float2 acc = (float2)(0.0f, 0.0f);
    for (int c = 0; c < 4; c++) {
        if (bx < hx) acc += (wzy[c] * (1.0f - fx)) * grid[rows[c] + bx];
        if (bx + 1 < hx) acc += (wzy[c] * fx) * grid[rows[c] + bx + 1];
    }
    return acc;
}

/* the same corners, spreading v (complex) and vw (real) with float CAS atomics into data (re, im) and weight */
inline void halfgrid_spread(volatile __global float *data, volatile __global float *weight, const int m,
                            const int bx, const int by, const int bz, const float fx, const float fy,
                            const float fz, const float2 v, const float vw)
{
    const int hx = m / 2 + 1;
    long rows[4];
    float wzy[4];
    halfgrid_rows(m, by, bz, fy, fz, rows, wzy);
    for (int c = 0; c < 4; c++) {
        for (int dx = 0; dx < 2; dx++) {
            const float w = wzy[c] * (dx ? fx : 1.0f - fx);
            if (bx + dx >= hx || w == 0.0f) continue;
            const long q = rows[c] + bx + dx;
            atomic_add_float(data + 2 * q, w * v.x);
            atomic_add_float(data + 2 * q + 1, w * v.y);
            atomic_add_float(weight + q, w * vw);
        }
    }
}

#endif
