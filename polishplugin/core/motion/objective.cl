/* Catmull-Rom (Keys a = -1/2) interpolation of K periodic M x M maps at one point each, with the
   gradient (OpenCL 1.2 C, float32).  maps: K*M*M row-major [k][y][x]; xy: K*2 (x, y) in map index units
   (origin already added); out: K*3 (value, d/dx, d/dy). */

inline void cr_weights(const float t, float *w, float *dw)
{
    const float t2 = t * t, t3 = t2 * t;
    w[0] = 0.5f * (-t3 + 2.0f * t2 - t);
    w[1] = 0.5f * (3.0f * t3 - 5.0f * t2 + 2.0f);
    w[2] = 0.5f * (-3.0f * t3 + 4.0f * t2 + t);
    w[3] = 0.5f * (t3 - t2);
    dw[0] = 0.5f * (-3.0f * t2 + 4.0f * t - 1.0f);
    dw[1] = 0.5f * (9.0f * t2 - 10.0f * t);
    dw[2] = 0.5f * (-9.0f * t2 + 8.0f * t + 1.0f);
    dw[3] = 0.5f * (3.0f * t2 - 2.0f * t);
}

inline int wrap(const int i, const int m) { const int r = i % m; return r < 0 ? r + m : r; }

__kernel void catmull_rom_grad(__global const float *maps, __global const float *xy, const int n_maps,
                               const int m, __global float *out)
{
    const int k = get_global_id(0);
    if (k >= n_maps) return;
    const float u = xy[2 * k], v = xy[2 * k + 1];
    const float fu = floor(u), fv = floor(v);
    float wx[4], dwx[4], wy[4], dwy[4];
    cr_weights(u - fu, wx, dwx);
    cr_weights(v - fv, wy, dwy);
    const int bx = (int)fu - 1, by = (int)fv - 1;
    __global const float *map = maps + (size_t)k * m * m;
    float val = 0.0f, gx = 0.0f, gy = 0.0f;
    for (int j = 0; j < 4; j++) {
        const int row = wrap(by + j, m) * m;
        float r = 0.0f, dr = 0.0f;
        for (int i = 0; i < 4; i++) {
            const float s = map[row + wrap(bx + i, m)];
            r += wx[i] * s;
            dr += dwx[i] * s;
        }
        val += wy[j] * r;
        gy += dwy[j] * r;
        gx += wy[j] * dr;
    }
    out[3 * k] = val;
    out[3 * k + 1] = gx;
    out[3 * k + 2] = gy;
}
