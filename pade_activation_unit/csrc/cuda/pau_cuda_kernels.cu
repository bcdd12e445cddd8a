// CUDA kernels of the Padé Activation Unit. No torch headers: nvcc compiles only this file's code, and the
// ATen glue (pau_cuda.cpp) passes raw pointers and the current stream.
//
// Forward: grid-stride loop over 16-byte packs (4 floats, 2 doubles, 8 halves), then a scalar tail.
// Backward: the same loop on a grid of at most as many blocks as fit on the device at once (occupancy
// times SM count, at most 1024 blocks of 256 threads): a function of the element count, the kernel and the
// device only, so a given device always sums in the same order. Each thread accumulates coefficient-gradient terms in the compute type, folds them into
// double every kFlushEvery packs, the block reduces its threads with a fixed shuffle tree and a fixed
// loop over warps into partials[block][slot], and a second kernel adds the blocks in index order. No
// atomics anywhere, so the result has the same bits every run. Shared memory is a static
// [kSlots][warps] array indexed by compile-time bounds (the original sized it wrongly, docs/reference.md §10.3).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "../pau_kernels.h"

namespace pau::cuda {
namespace detail {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxBackwardBlocks = 1024;
constexpr int kFlushEvery = 16;

// Storage S <-> compute T conversions (T: double for double, float otherwise).
template <typename S>
struct Storage;
template <>
struct Storage<float> {
  using Compute = float;
  static __device__ __forceinline__ float load(float v) { return v; }
  static __device__ __forceinline__ float store(float v) { return v; }
};
template <>
struct Storage<double> {
  using Compute = double;
  static __device__ __forceinline__ double load(double v) { return v; }
  static __device__ __forceinline__ double store(double v) { return v; }
};
template <>
struct Storage<__half> {
  using Compute = float;
  static __device__ __forceinline__ float load(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half store(float v) { return __float2half_rn(v); }
};
template <>
struct Storage<__nv_bfloat16> {
  using Compute = float;
  static __device__ __forceinline__ float load(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};

template <typename S>
struct alignas(16) Pack {
  static constexpr int kWidth = 16 / sizeof(S);
  S v[kWidth];
};

template <typename S, int MaxM, int MaxN, bool Exact, int V>
__global__ void __launch_bounds__(kThreads)
    pau_forward_kernel(const S* __restrict__ x, S* __restrict__ y, int64_t count,
                       const typename Storage<S>::Compute* __restrict__ a, int m,
                       const typename Storage<S>::Compute* __restrict__ b, int n) {
  using T = typename Storage<S>::Compute;
  using R = Rational<T, MaxM, MaxN, Exact, V>;
  constexpr int W = Pack<S>::kWidth;
  const auto c = make_coefficients<T, MaxM, MaxN, V>(a, m, b, n);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t packs = count / W;
  const auto* x_packs = reinterpret_cast<const Pack<S>*>(x);
  auto* y_packs = reinterpret_cast<Pack<S>*>(y);
  for (int64_t i = first; i < packs; i += stride) {
    const Pack<S> in = x_packs[i];
    Pack<S> out;
#pragma unroll
    for (int l = 0; l < W; ++l) out.v[l] = Storage<S>::store(R::forward(Storage<S>::load(in.v[l]), c));
    y_packs[i] = out;
  }
  for (int64_t i = packs * W + first; i < count; i += stride) {
    y[i] = Storage<S>::store(R::forward(Storage<S>::load(x[i]), c));
  }
}

template <typename S, int MaxM, int MaxN, bool Exact, int V>
__global__ void __launch_bounds__(kThreads)
    pau_backward_kernel(const S* __restrict__ g, const S* __restrict__ x, S* __restrict__ gx, int64_t count,
                        const typename Storage<S>::Compute* __restrict__ a, int m,
                        const typename Storage<S>::Compute* __restrict__ b, int n, double* __restrict__ partials) {
  using T = typename Storage<S>::Compute;
  using R = Rational<T, MaxM, MaxN, Exact, V>;
  constexpr int W = Pack<S>::kWidth;
  constexpr int K = R::kTerms;
  const auto c = make_coefficients<T, MaxM, MaxN, V>(a, m, b, n);
  T acc[K];
  double total[K];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    acc[k] = T(0);
    total[k] = 0.0;
  }
  auto flush = [&]() {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      total[k] += static_cast<double>(acc[k]);
      acc[k] = T(0);
    }
  };
  auto element = [&](S g_value, S x_value) -> S {
    T terms[K];
    const T grad = R::backward(Storage<S>::load(x_value), Storage<S>::load(g_value), c, terms);
#pragma unroll
    for (int k = 0; k < K; ++k) acc[k] += terms[k];
    return Storage<S>::store(grad);
  };

  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t packs = count / W;
  const auto* g_packs = reinterpret_cast<const Pack<S>*>(g);
  const auto* x_packs = reinterpret_cast<const Pack<S>*>(x);
  auto* gx_packs = reinterpret_cast<Pack<S>*>(gx);
  int pending = 0;
  for (int64_t i = first; i < packs; i += stride) {
    const Pack<S> g_in = g_packs[i];
    const Pack<S> x_in = x_packs[i];
    Pack<S> out;
#pragma unroll
    for (int l = 0; l < W; ++l) out.v[l] = element(g_in.v[l], x_in.v[l]);
    gx_packs[i] = out;
    if (++pending == kFlushEvery) {
      flush();
      pending = 0;
    }
  }
  for (int64_t i = packs * W + first; i < count; i += stride) gx[i] = element(g[i], x[i]);
  flush();

  __shared__ double warp_sums[kSlots][kWarps];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    double v = total[k];
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (lane == 0) warp_sums[k][warp] = v;
  }
  __syncthreads();
  if (threadIdx.x < kSlots) {
    const int slot = threadIdx.x;
    int term = -1;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (R::slot_of_term(k) == slot) term = k;
    }
    double sum = 0.0;
    if (term >= 0) {
      for (int w = 0; w < kWarps; ++w) sum += warp_sums[term][w];
    }
    partials[static_cast<int64_t>(blockIdx.x) * kSlots + slot] = sum;
  }
}

// One warp: slot s sums partials[0..blocks)[s] in block order; version A multiplies b slots by sgn(b_k).
template <typename T>
__global__ void pau_reduce_kernel(const double* __restrict__ partials, int blocks, const T* __restrict__ b, int n,
                                  int version, double* __restrict__ result) {
  const int slot = threadIdx.x;
  if (slot >= kSlots) return;
  double sum = 0.0;
  for (int block = 0; block < blocks; ++block) sum += partials[static_cast<int64_t>(block) * kSlots + slot];
  const int k = slot - kNumeratorSlots;
  if (version == kVersionA && k >= 0 && k < n) sum *= static_cast<double>(sign(b[k]));
  result[slot] = sum;
}

inline void check_launch(const char* what) {
  // Also surfaces a failed occupancy or attribute query, which records its error the same way.
  const cudaError_t error = cudaGetLastError();
  if (error != cudaSuccess) {
    throw std::runtime_error(std::string("pau: ") + what + " launch failed: " + cudaGetErrorString(error));
  }
}

int64_t pack_units(DType dtype, int64_t count) {
  const int64_t width = dtype == DType::kFloat64 ? 2 : (dtype == DType::kFloat32 ? 4 : 8);
  return (count + width - 1) / width;
}

// Calls body.template operator()<S, MaxM, MaxN, Exact, V>() for the run-time dtype, version and degrees.
template <typename Body>
void dispatch(DType dtype, int m, int n, int version, Body&& body) {
  auto with_degrees = [&]<typename S, int V>() {
    if (m == 5 && n == 4) {
      body.template operator()<S, 5, 4, true, V>();
    } else {
      body.template operator()<S, kMaxDegree, kMaxDegree, false, V>();
    }
  };
  auto with_version = [&]<typename S>() {
    switch (version) {
      case kVersionA: with_degrees.template operator()<S, kVersionA>(); break;
      case kVersionB: with_degrees.template operator()<S, kVersionB>(); break;
      default: with_degrees.template operator()<S, kVersionN>(); break;
    }
  };
  switch (dtype) {
    case DType::kFloat32: with_version.template operator()<float>(); break;
    case DType::kFloat64: with_version.template operator()<double>(); break;
    case DType::kFloat16: with_version.template operator()<__half>(); break;
    case DType::kBFloat16: with_version.template operator()<__nv_bfloat16>(); break;
  }
}

}  // namespace detail

int backward_blocks(DType dtype, int64_t count, int m, int n, int version) {
  int device = 0;
  int sms = 0;
  int per_sm = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  detail::dispatch(dtype, m, n, version, [&]<typename S, int MaxM, int MaxN, bool Exact, int V>() {
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, detail::pau_backward_kernel<S, MaxM, MaxN, Exact, V>,
                                                  detail::kThreads, 0);
  });
  detail::check_launch("occupancy query");
  const int64_t resident = std::max(1, per_sm) * static_cast<int64_t>(std::max(1, sms));
  const int64_t wanted = (detail::pack_units(dtype, count) + detail::kThreads - 1) / detail::kThreads;
  return static_cast<int>(std::clamp<int64_t>(wanted, 1, std::min<int64_t>(resident, detail::kMaxBackwardBlocks)));
}

void launch_forward(DType dtype, const void* x, void* y, int64_t count, const void* a, int m, const void* b, int n,
                    int version, void* stream) {
  const int64_t wanted = (detail::pack_units(dtype, count) + detail::kThreads - 1) / detail::kThreads;
  const int blocks = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(wanted, int64_t{1} << 20)));
  auto cuda_stream = static_cast<cudaStream_t>(stream);
  detail::dispatch(dtype, m, n, version, [&]<typename S, int MaxM, int MaxN, bool Exact, int V>() {
    using T = typename detail::Storage<S>::Compute;
    detail::pau_forward_kernel<S, MaxM, MaxN, Exact, V><<<blocks, detail::kThreads, 0, cuda_stream>>>(
        static_cast<const S*>(x), static_cast<S*>(y), count, static_cast<const T*>(a), m, static_cast<const T*>(b),
        n);
  });
  detail::check_launch("forward kernel");
}

void launch_backward(DType dtype, const void* g, const void* x, void* gx, int64_t count, const void* a, int m,
                     const void* b, int n, int version, int blocks, double* partials, double* result, void* stream) {
  auto cuda_stream = static_cast<cudaStream_t>(stream);
  detail::dispatch(dtype, m, n, version, [&]<typename S, int MaxM, int MaxN, bool Exact, int V>() {
    using T = typename detail::Storage<S>::Compute;
    detail::pau_backward_kernel<S, MaxM, MaxN, Exact, V><<<blocks, detail::kThreads, 0, cuda_stream>>>(
        static_cast<const S*>(g), static_cast<const S*>(x), static_cast<S*>(gx), count, static_cast<const T*>(a), m,
        static_cast<const T*>(b), n, partials);
    detail::check_launch("backward kernel");
    detail::pau_reduce_kernel<T><<<1, 32, 0, cuda_stream>>>(partials, blocks, static_cast<const T*>(b), n, version,
                                                            result);
  });
  detail::check_launch("reduce kernel");
}

}  // namespace pau::cuda
