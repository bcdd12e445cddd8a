// The plain C++ interface between the ATen glue (pau_cpu.cpp, pau_cuda.cpp) and the kernels. It holds no
// torch types, so the kernel files compile without torch headers: the CPU kernels once per instruction
// set in a couple of seconds, the CUDA kernels with nvcc alone.
#pragma once

#include <cstdint>

#include "pau_math.h"

namespace pau {

enum class DType : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

// CPU work is split into chunks of this many elements whatever the thread count, and the coefficient
// gradients are summed per chunk, then over chunks in order: the same bits for any number of threads.
constexpr int64_t kCpuChunk = int64_t{1} << 14;

struct ChunkParams {
  double a[kNumeratorSlots];  // numerator a_0..a_m
  double b[kMaxDegree];       // denominator b_1..b_n
  int m;
  int n;
  int version;
};

// forward_chunk: y[i] = F(x[i]) for i < count. backward_chunk: gx[i] = g[i] dF/dx(x[i]) and
// partial[slot] = sum_i g[i] dF/dcoef(x[i]) in the slots of pau_math.h (all kSlots written).
#define PAU_DECLARE_CPU_KERNELS(isa)                                                                  \
  namespace isa {                                                                                   \
  void forward_chunk(DType dtype, const void* x, void* y, int64_t count, const ChunkParams& params); \
  void backward_chunk(DType dtype, const void* g, const void* x, void* gx, int64_t count,           \
                      const ChunkParams& params, double* partial);                                  \
  }

PAU_DECLARE_CPU_KERNELS(cpu_baseline)
#if defined(__x86_64__)
PAU_DECLARE_CPU_KERNELS(cpu_avx2)
#endif

namespace cuda {

// Coefficient pointers are device arrays in the compute type (double for kFloat64, float otherwise);
// x, y, g, gx must be 16-byte aligned; stream is a cudaStream_t.
void launch_forward(DType dtype, const void* x, void* y, int64_t count, const void* a, int m, const void* b,
                    int n, int version, void* stream);

// Number of blocks of the backward kernel for `count` elements on the current device: at most what the
// device holds at once. It depends on count, the kernel and the device only, so on one device the
// reduction order (and the result bits) never change.
int backward_blocks(DType dtype, int64_t count, int m, int n, int version);

// blocks: from backward_blocks; partials: device doubles [blocks * kSlots] (workspace); result: device
// doubles [kSlots], summed over blocks in index order, version A's sgn(b_k) applied.
void launch_backward(DType dtype, const void* g, const void* x, void* gx, int64_t count, const void* a, int m,
                     const void* b, int n, int version, int blocks, double* partials, double* result, void* stream);

}  // namespace cuda
}  // namespace pau
