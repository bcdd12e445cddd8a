// CPU kernels of the Padé Activation Unit, compiled once per instruction set: the build defines PAU_CPU_ISA
// (cpu_baseline, cpu_avx2) and passes the matching -m flags; pau_cpu.cpp picks one at run time.
//
// Each chunk is processed in tiles of kTile elements. The per-element loops over a tile have no
// reductions and no calls, so -O3 vectorises them without -ffast-math (which would break NaN handling).
// Coefficient gradients are accumulated in kLanes lanes per term (acc[term][lane]) in the compute type,
// folded into double lanes after each tile and summed over lanes in a fixed order at the end of the chunk:
// the bits depend on the chunk's data only.
#include <algorithm>
#include <type_traits>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "../pau_kernels.h"

#ifndef PAU_CPU_ISA
#error "PAU_CPU_ISA must name the instruction-set namespace (see pade_activation_unit/build.py)"
#endif

namespace pau::PAU_CPU_ISA {
namespace {

constexpr int64_t kTile = 512;

template <typename T, int MaxM, int MaxN, int V>
Coefficients<T, MaxM, MaxN> coefficients_from(const ChunkParams& params) {
  T a[kNumeratorSlots];
  T b[kMaxDegree];
  for (int j = 0; j < kNumeratorSlots; ++j) a[j] = static_cast<T>(params.a[j]);
  for (int k = 0; k < kMaxDegree; ++k) b[k] = static_cast<T>(params.b[k]);
  return make_coefficients<T, MaxM, MaxN, V>(a, params.m, b, params.n);
}

template <typename T, int MaxM, int MaxN, bool Exact, int V>
void forward_tile(const T* __restrict__ x, T* __restrict__ y, int64_t len, const Coefficients<T, MaxM, MaxN>& coeffs) {
  using R = Rational<T, MaxM, MaxN, Exact, V>;
  const Coefficients<T, MaxM, MaxN> c = coeffs;
  for (int64_t i = 0; i < len; ++i) y[i] = R::forward(x[i], c);
}

// Lanes of the coefficient-gradient accumulators: element i of a tile adds to lane i % kLanes. The lane
// loop has a fixed trip count the compiler turns into whole vectors, and the accumulators' addresses do not
// move with the element, so they stay in registers across the tile instead of being loaded and stored per
// element.
constexpr int kLanes = 8;

template <typename T, int MaxM, int MaxN, bool Exact, int V>
void backward_tile(const T* __restrict__ g, const T* __restrict__ x, T* __restrict__ gx, int64_t len,
                   const Coefficients<T, MaxM, MaxN>& coeffs, double (&sums)[MaxM + 1 + MaxN][kLanes]) {
  using R = Rational<T, MaxM, MaxN, Exact, V>;
  const Coefficients<T, MaxM, MaxN> c = coeffs;
  T acc[R::kTerms][kLanes] = {};
  const int64_t whole = len - len % kLanes;
  for (int64_t base = 0; base < whole; base += kLanes) {
    for (int lane = 0; lane < kLanes; ++lane) {
      T terms[R::kTerms];
      gx[base + lane] = R::backward(x[base + lane], g[base + lane], c, terms);
      PAU_UNROLL
      for (int k = 0; k < R::kTerms; ++k) acc[k][lane] += terms[k];
    }
  }
  for (int lane = 0; lane < len - whole; ++lane) {
    T terms[R::kTerms];
    gx[whole + lane] = R::backward(x[whole + lane], g[whole + lane], c, terms);
    for (int k = 0; k < R::kTerms; ++k) acc[k][lane] += terms[k];
  }
  for (int k = 0; k < R::kTerms; ++k) {
    for (int lane = 0; lane < kLanes; ++lane) sums[k][lane] += static_cast<double>(acc[k][lane]);
  }
}

// Storage type S (float, double, c10::Half, c10::BFloat16) computed in T (double for double, else float).
template <typename S, typename T>
void to_compute(const S* src, T* dst, int64_t len) {
  for (int64_t i = 0; i < len; ++i) dst[i] = static_cast<T>(src[i]);
}

template <typename S, typename T>
void to_storage(const T* src, S* dst, int64_t len) {
  for (int64_t i = 0; i < len; ++i) dst[i] = static_cast<S>(src[i]);
}

template <typename S, typename T, int MaxM, int MaxN, bool Exact, int V>
void forward_chunk_impl(const S* x, S* y, int64_t count, const ChunkParams& params) {
  const auto c = coefficients_from<T, MaxM, MaxN, V>(params);
  for (int64_t start = 0; start < count; start += kTile) {
    const int64_t len = std::min(kTile, count - start);
    if constexpr (std::is_same_v<S, T>) {
      forward_tile<T, MaxM, MaxN, Exact, V>(x + start, y + start, len, c);
    } else {
      T xs[kTile];
      T ys[kTile];
      to_compute(x + start, xs, len);
      forward_tile<T, MaxM, MaxN, Exact, V>(xs, ys, len, c);
      to_storage(ys, y + start, len);
    }
  }
}

template <typename S, typename T, int MaxM, int MaxN, bool Exact, int V>
void backward_chunk_impl(const S* g, const S* x, S* gx, int64_t count, const ChunkParams& params, double* partial) {
  using R = Rational<T, MaxM, MaxN, Exact, V>;
  const auto c = coefficients_from<T, MaxM, MaxN, V>(params);
  double sums[R::kTerms][kLanes] = {};
  for (int64_t start = 0; start < count; start += kTile) {
    const int64_t len = std::min(kTile, count - start);
    if constexpr (std::is_same_v<S, T>) {
      backward_tile<T, MaxM, MaxN, Exact, V>(g + start, x + start, gx + start, len, c, sums);
    } else {
      T gs[kTile];
      T xs[kTile];
      T gxs[kTile];
      to_compute(g + start, gs, len);
      to_compute(x + start, xs, len);
      backward_tile<T, MaxM, MaxN, Exact, V>(gs, xs, gxs, len, c, sums);
      to_storage(gxs, gx + start, len);
    }
  }
  std::fill(partial, partial + kSlots, 0.0);
  for (int k = 0; k < R::kTerms; ++k) {
    double sum = 0.0;
    for (int lane = 0; lane < kLanes; ++lane) sum += sums[k][lane];
    partial[R::slot_of_term(k)] = sum;
  }
}

// Calls body.template operator()<S, T, MaxM, MaxN, Exact, V>() for the run-time dtype, version and degrees.
template <typename Body>
void dispatch(DType dtype, const ChunkParams& params, Body&& body) {
  auto with_degrees = [&]<typename S, typename T, int V>() {
    if (params.m == 5 && params.n == 4) {
      body.template operator()<S, T, 5, 4, true, V>();
    } else {
      body.template operator()<S, T, kMaxDegree, kMaxDegree, false, V>();
    }
  };
  auto with_version = [&]<typename S, typename T>() {
    switch (params.version) {
      case kVersionA: with_degrees.template operator()<S, T, kVersionA>(); break;
      case kVersionB: with_degrees.template operator()<S, T, kVersionB>(); break;
      default: with_degrees.template operator()<S, T, kVersionN>(); break;
    }
  };
  switch (dtype) {
    case DType::kFloat32: with_version.template operator()<float, float>(); break;
    case DType::kFloat64: with_version.template operator()<double, double>(); break;
    case DType::kFloat16: with_version.template operator()<c10::Half, float>(); break;
    case DType::kBFloat16: with_version.template operator()<c10::BFloat16, float>(); break;
  }
}

}  // namespace

void forward_chunk(DType dtype, const void* x, void* y, int64_t count, const ChunkParams& params) {
  dispatch(dtype, params, [&]<typename S, typename T, int MaxM, int MaxN, bool Exact, int V>() {
    forward_chunk_impl<S, T, MaxM, MaxN, Exact, V>(static_cast<const S*>(x), static_cast<S*>(y), count, params);
  });
}

void backward_chunk(DType dtype, const void* g, const void* x, void* gx, int64_t count, const ChunkParams& params,
                    double* partial) {
  dispatch(dtype, params, [&]<typename S, typename T, int MaxM, int MaxN, bool Exact, int V>() {
    backward_chunk_impl<S, T, MaxM, MaxN, Exact, V>(static_cast<const S*>(g), static_cast<const S*>(x),
                                                   static_cast<S*>(gx), count, params, partial);
  });
}

}  // namespace pau::PAU_CPU_ISA
