// Element-wise maths of the Padé Activation Unit, shared by the CPU and the CUDA kernels.
//
// F(x) = P(x) / Q(x), P(x) = sum_{j=0..m} a_j x^j, and with t = |x| (version A) or t = x (B, N),
// S(t) = sum_{k=1..n} r_k t^k where r_k = |b_k| (A) or b_k (B, N):
//   A: Q = 1 + S(|x|)      B: Q = 1 + |S(x)|      N: Q = 1 + S(x)
// Derivatives use sgn(0) = 0 (the convention of torch.sign and of autograd through torch.abs), so the
// kernels and the pure-PyTorch reference agree at x = 0 and at the roots of S:
//   dQ/dx:   A: sgn(x) S'(|x|)          B: sgn(S) S'(x)        N: S'(x)
//   dQ/db_k: A: sgn(b_k) |x|^k          B: sgn(S) x^k          N: x^k
//   dF/dx = (P' - F Q') / Q,   dF/da_j = x^j / Q,   dF/db_k = -(F / Q) dQ/db_k.
// The kernels accumulate the b-gradient without the sgn(b_k) factor of version A; the caller applies it
// once to the reduced sum.
//
// Everything is a template on the maximal degrees. "Exact" instantiations (degrees known at compile time,
// (5, 4) here) unroll into straight-line code; the generic (8, 8) instantiation takes the degrees at run
// time and pads the polynomials with zeros, so one instantiation serves every smaller degree pair.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define PAU_HD __host__ __device__ __forceinline__
#define PAU_UNROLL _Pragma("unroll")
#else
#define PAU_HD inline __attribute__((always_inline))
#define PAU_UNROLL _Pragma("GCC unroll 17")
#endif

namespace pau {

constexpr int kMaxDegree = 8;
constexpr int kNumeratorSlots = kMaxDegree + 1;             // gradient slots a_0..a_8
constexpr int kSlots = kNumeratorSlots + kMaxDegree;        // then b_1..b_8: 17 slots in all
enum Version : int { kVersionA = 0, kVersionB = 1, kVersionN = 2 };

PAU_HD float absolute(float v) { return fabsf(v); }
PAU_HD double absolute(double v) { return fabs(v); }

template <typename T>
struct StepMaskOf;
template <>
struct StepMaskOf<float> {
  using type = uint32_t;
};
template <>
struct StepMaskOf<double> {
  using type = uint64_t;
};
template <typename T>
using StepMask = typename StepMaskOf<T>::type;

// x where mask is all ones, +0 where it is zero.
template <typename T>
PAU_HD T keep_bits(T x, StepMask<T> mask) {
  return __builtin_bit_cast(T, __builtin_bit_cast(StepMask<T>, x) & mask);
}

template <typename T>
PAU_HD StepMask<T> step_mask(bool keep) {
  return keep ? ~StepMask<T>(0) : StepMask<T>(0);
}

template <typename T>
PAU_HD T sign(T v) {
  return static_cast<T>(v > T(0)) - static_cast<T>(v < T(0));
}

// Coefficients in the compute type, zero-padded above the run-time degrees m and n.
template <typename T, int MaxM, int MaxN>
struct Coefficients {
  T a[MaxM + 1];                 // a_0..a_MaxM
  T da[MaxM > 0 ? MaxM : 1];     // (j+1) a_{j+1}: P'(x) = sum_j da_j x^j
  T r[MaxN];                     // r_{k+1}: S(t) = t * sum_k r[k] t^k
  T dr[MaxN];                    // (k+1) r_{k+1}: S'(t) = sum_k dr[k] t^k
  StepMask<T> a_steps[MaxM + 1];            // Horner step masks (generic degrees): j < m
  StepMask<T> da_steps[MaxM > 0 ? MaxM : 1];  // j < m - 1
  StepMask<T> r_steps[MaxN];                // k < n - 1
};

template <typename T, int MaxM, int MaxN, int V>
PAU_HD Coefficients<T, MaxM, MaxN> make_coefficients(const T* a, int m, const T* b, int n) {
  Coefficients<T, MaxM, MaxN> c;
  PAU_UNROLL
  for (int j = 0; j <= MaxM; ++j) {
    c.a[j] = j <= m ? a[j] : T(0);
    c.a_steps[j] = step_mask<T>(j < m);
  }
  PAU_UNROLL
  for (int j = 0; j < (MaxM > 0 ? MaxM : 1); ++j) {
    c.da[j] = j < m ? T(j + 1) * a[j + 1] : T(0);
    c.da_steps[j] = step_mask<T>(j < m - 1);
  }
  PAU_UNROLL
  for (int k = 0; k < MaxN; ++k) {
    const T rk = k < n ? (V == kVersionA ? absolute(b[k]) : b[k]) : T(0);
    c.r[k] = rk;
    c.dr[k] = T(k + 1) * rk;
    c.r_steps[k] = step_mask<T>(k < n - 1);
  }
  return c;
}

// sum_{j=0..deg} c[j] x^j in Horner form. Exact: deg == MaxDeg, straight-line code. Generic: c is zero
// above deg and steps[j] keeps x only where j < deg, so the running value stays exactly 0 until j reaches
// deg (it is multiplied by +0, never by x: an infinite x cannot turn the padding into NaN). The masks are
// precomputed bit patterns rather than comparisons, which keeps the CPU loop free of branches.
template <int MaxDeg, bool Exact, typename T>
PAU_HD T horner(const T* c, const StepMask<T>* steps, T x) {
  if constexpr (MaxDeg < 0) {
    return T(0);
  } else if constexpr (Exact) {
    T p = c[MaxDeg];
    PAU_UNROLL
    for (int j = MaxDeg - 1; j >= 0; --j) p = p * x + c[j];
    return p;
  } else {
    T p = T(0);
    PAU_UNROLL
    for (int j = MaxDeg; j >= 0; --j) p = p * keep_bits(x, steps[j]) + c[j];
    return p;
  }
}

template <typename T, int MaxM, int MaxN, bool Exact, int V>
struct Rational {
  using Coeffs = Coefficients<T, MaxM, MaxN>;
  static constexpr int kTerms = MaxM + 1 + MaxN;  // gradient terms: a_0..a_MaxM, b_1..b_MaxN

  // Gradient slot (0..kSlots-1) of term index k.
  static PAU_HD int slot_of_term(int k) { return k <= MaxM ? k : kNumeratorSlots + (k - MaxM - 1); }

  static PAU_HD T forward(T x, const Coeffs& c) {
    const T t = V == kVersionA ? absolute(x) : x;
    const T s = t * horner<MaxN - 1, Exact>(c.r, c.r_steps, t);
    const T q = T(1) + (V == kVersionB ? absolute(s) : s);
    return horner<MaxM, Exact>(c.a, c.a_steps, x) / q;
  }

  // Returns dL/dx for upstream gradient g and writes the per-element coefficient gradient terms
  // (terms[0..MaxM]: dL/da_j; terms[MaxM+1..]: dL/db_k without version A's sgn(b_k)).
  static PAU_HD T backward(T x, T g, const Coeffs& c, T* terms) {
    const T t = V == kVersionA ? absolute(x) : x;
    const T s = t * horner<MaxN - 1, Exact>(c.r, c.r_steps, t);
    const T ds = horner<MaxN - 1, Exact>(c.dr, c.r_steps, t);
    T q;
    T dq;
    T w;  // dQ/db_k = w * t^k (times sgn(b_k) for version A)
    if constexpr (V == kVersionA) {
      q = T(1) + s;
      dq = sign(x) * ds;
      w = T(1);
    } else if constexpr (V == kVersionB) {
      w = sign(s);
      q = T(1) + absolute(s);
      dq = w * ds;
    } else {
      q = T(1) + s;
      dq = ds;
      w = T(1);
    }
    const T p = horner<MaxM, Exact>(c.a, c.a_steps, x);
    const T dp = horner<MaxM - 1, Exact>(c.da, c.da_steps, x);
    const T inv_q = T(1) / q;
    const T f = p * inv_q;
    const T g_over_q = g * inv_q;
    T power = T(1);
    PAU_UNROLL
    for (int j = 0; j <= MaxM; ++j) {
      terms[j] = g_over_q * power;
      power *= x;
    }
    const T g_b = -g_over_q * f * w;
    power = t;
    PAU_UNROLL
    for (int k = 0; k < MaxN; ++k) {
      terms[MaxM + 1 + k] = g_b * power;
      power *= t;
    }
    return g_over_q * (dp - f * dq);
  }
};

}  // namespace pau
