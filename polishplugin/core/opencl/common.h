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

#endif
