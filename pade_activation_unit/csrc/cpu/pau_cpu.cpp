// The op schemas of namespace `pau` and their CPU implementation (the CUDA one lives in ../cuda/pau_cuda.cpp).
//
// Work is split into fixed chunks of kCpuChunk elements (independent of the thread count) that torch's
// intra-op threads claim one by one; each chunk writes its own coefficient-gradient partial sums, which are
// then added in chunk order, so the gradients have the same bits for any thread count and any claiming
// order. The kernels come in one build per instruction set; the best one this CPU runs is picked once.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/enum_tag.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

#include "../pau_checks.h"
#include "../pau_kernels.h"

namespace pau {
namespace {

struct CpuKernels {
  decltype(&cpu_baseline::forward_chunk) forward;
  decltype(&cpu_baseline::backward_chunk) backward;
  const char* name;
};

const CpuKernels& cpu_kernels() {
  static const CpuKernels kernels = [] {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      return CpuKernels{&cpu_avx2::forward_chunk, &cpu_avx2::backward_chunk, "avx2"};
    }
#endif
    return CpuKernels{&cpu_baseline::forward_chunk, &cpu_baseline::backward_chunk, "baseline"};
  }();
  return kernels;
}

ChunkParams chunk_params(const at::Tensor& numerator, const at::Tensor& denominator, int64_t version) {
  ChunkParams params{};
  const at::Tensor a = numerator.to(at::kDouble).contiguous();
  const at::Tensor b = denominator.to(at::kDouble).contiguous();
  params.m = static_cast<int>(a.numel()) - 1;
  params.n = static_cast<int>(b.numel());
  for (int j = 0; j <= params.m; ++j) params.a[j] = a.data_ptr<double>()[j];
  for (int k = 0; k < params.n; ++k) params.b[k] = b.data_ptr<double>()[k];
  params.version = static_cast<int>(version);
  return params;
}

int64_t chunk_count(int64_t numel) { return (numel + kCpuChunk - 1) / kCpuChunk; }

// Calls body(chunk) once for every chunk in [0, chunks) on torch's intra-op threads (at::parallel_for, so
// torch.set_num_threads applies). Threads claim chunks from a shared counter rather than taking fixed
// halves: on a busy machine a preempted thread then holds up one chunk, not half of the work. The result
// of a chunk depends on its index only, never on which thread ran it.
template <typename Body>
void for_each_chunk(int64_t chunks, const Body& body) {
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(at::get_num_threads(), chunks);
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (int64_t chunk = next.fetch_add(1); chunk < chunks; chunk = next.fetch_add(1)) body(chunk);
  });
}

at::Tensor forward_cpu(const at::Tensor& x_in, const at::Tensor& numerator, const at::Tensor& denominator,
                       int64_t version) {
  check_arguments(x_in, numerator, denominator, version);
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = at::empty_like(x, at::MemoryFormat::Contiguous);
  const int64_t numel = x.numel();
  if (numel == 0) return y;
  const ChunkParams params = chunk_params(numerator, denominator, version);
  const DType dtype = kernel_dtype(x);
  const int64_t element_size = static_cast<int64_t>(x.element_size());
  const auto* x_bytes = static_cast<const char*>(x.const_data_ptr());
  auto* y_bytes = static_cast<char*>(y.data_ptr());
  const auto& kernels = cpu_kernels();
  for_each_chunk(chunk_count(numel), [&](int64_t chunk) {
    const int64_t start = chunk * kCpuChunk;
    const int64_t count = std::min(kCpuChunk, numel - start);
    kernels.forward(dtype, x_bytes + start * element_size, y_bytes + start * element_size, count, params);
  });
  return y;
}

// Sums the per-chunk partials in chunk order and splits them into the two coefficient gradients.
std::tuple<at::Tensor, at::Tensor> coefficient_gradients(const std::vector<double>& partials, int64_t chunks,
                                                         const ChunkParams& params, const at::Tensor& numerator,
                                                         const at::Tensor& denominator) {
  double totals[kSlots] = {};
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    for (int slot = 0; slot < kSlots; ++slot) totals[slot] += partials[chunk * kSlots + slot];
  }
  const auto double_options = numerator.options().dtype(at::kDouble);
  at::Tensor grad_a = at::empty({params.m + 1}, double_options);
  at::Tensor grad_b = at::empty({params.n}, double_options);
  for (int j = 0; j <= params.m; ++j) grad_a.data_ptr<double>()[j] = totals[j];
  for (int k = 0; k < params.n; ++k) {
    const double b = params.b[k];
    const double sign_b = params.version == kVersionA ? static_cast<double>((b > 0) - (b < 0)) : 1.0;
    grad_b.data_ptr<double>()[k] = sign_b * totals[kNumeratorSlots + k];
  }
  return {grad_a.to(numerator.scalar_type()), grad_b.to(denominator.scalar_type())};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(const at::Tensor& grad_out_in, const at::Tensor& x_in,
                                                            const at::Tensor& numerator,
                                                            const at::Tensor& denominator, int64_t version) {
  check_arguments(x_in, numerator, denominator, version);
  check_grad_out(grad_out_in, x_in);
  const at::Tensor x = x_in.contiguous();
  const at::Tensor grad_out = grad_out_in.contiguous();
  at::Tensor grad_x = at::empty_like(x, at::MemoryFormat::Contiguous);
  const int64_t numel = x.numel();
  if (numel == 0) {
    return {grad_x, at::zeros_like(numerator, at::MemoryFormat::Contiguous),
            at::zeros_like(denominator, at::MemoryFormat::Contiguous)};
  }
  const ChunkParams params = chunk_params(numerator, denominator, version);
  const DType dtype = kernel_dtype(x);
  const int64_t element_size = static_cast<int64_t>(x.element_size());
  const auto* g_bytes = static_cast<const char*>(grad_out.const_data_ptr());
  const auto* x_bytes = static_cast<const char*>(x.const_data_ptr());
  auto* gx_bytes = static_cast<char*>(grad_x.data_ptr());
  const int64_t chunks = chunk_count(numel);
  std::vector<double> partials(static_cast<size_t>(chunks * kSlots));
  const auto& kernels = cpu_kernels();
  for_each_chunk(chunks, [&](int64_t chunk) {
    const int64_t start = chunk * kCpuChunk;
    const int64_t count = std::min(kCpuChunk, numel - start);
    const int64_t offset = start * element_size;
    kernels.backward(dtype, g_bytes + offset, x_bytes + offset, gx_bytes + offset, count, params,
                     partials.data() + chunk * kSlots);
  });
  auto [grad_a, grad_b] = coefficient_gradients(partials, chunks, params, numerator, denominator);
  return {grad_x, grad_a, grad_b};
}

std::string cpu_capability() { return cpu_kernels().name; }

}  // namespace

TORCH_LIBRARY(pau, m) {
  m.def("forward(Tensor x, Tensor numerator, Tensor denominator, int version) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  m.def(
      "backward(Tensor grad_out, Tensor x, Tensor numerator, Tensor denominator, int version) "
      "-> (Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
  m.def("cpu_capability() -> str", &cpu_capability);
}

TORCH_LIBRARY_IMPL(pau, CPU, m) {
  m.impl("forward", &forward_cpu);
  m.impl("backward", &backward_cpu);
}

}  // namespace pau
