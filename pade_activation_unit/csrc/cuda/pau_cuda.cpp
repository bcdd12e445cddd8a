// CUDA implementation of the `pau` ops (schemas in ../cpu/pau_cpu.cpp): ATen glue around the kernels of
// pau_cuda_kernels.cu, launched on the current stream of the input's device.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>

#include "../pau_checks.h"
#include "../pau_kernels.h"

namespace pau {
namespace {

// Contiguous and 16-byte aligned (the kernels load 16-byte packs); a view at an odd offset is copied.
at::Tensor aligned_contiguous(const at::Tensor& t) {
  at::Tensor result = t.contiguous();
  if (reinterpret_cast<std::uintptr_t>(result.const_data_ptr()) % 16 != 0) {
    result = result.clone(at::MemoryFormat::Contiguous);
  }
  return result;
}

at::Tensor forward_cuda(const at::Tensor& x_in, const at::Tensor& numerator, const at::Tensor& denominator,
                        int64_t version) {
  check_arguments(x_in, numerator, denominator, version);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = aligned_contiguous(x_in);
  at::Tensor y = at::empty_like(x, at::MemoryFormat::Contiguous);
  if (x.numel() == 0) return y;
  const at::Tensor a = numerator.to(compute_dtype(x)).contiguous();
  const at::Tensor b = denominator.to(compute_dtype(x)).contiguous();
  cuda::launch_forward(kernel_dtype(x), x.const_data_ptr(), y.data_ptr(), x.numel(), a.const_data_ptr(),
                       static_cast<int>(a.numel()) - 1, b.const_data_ptr(), static_cast<int>(b.numel()),
                       static_cast<int>(version), c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cuda(const at::Tensor& grad_out_in, const at::Tensor& x_in,
                                                             const at::Tensor& numerator,
                                                             const at::Tensor& denominator, int64_t version) {
  check_arguments(x_in, numerator, denominator, version);
  check_grad_out(grad_out_in, x_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = aligned_contiguous(x_in);
  const at::Tensor grad_out = aligned_contiguous(grad_out_in);
  at::Tensor grad_x = at::empty_like(x, at::MemoryFormat::Contiguous);
  if (x.numel() == 0) {
    return {grad_x, at::zeros_like(numerator, at::MemoryFormat::Contiguous),
            at::zeros_like(denominator, at::MemoryFormat::Contiguous)};
  }
  const at::Tensor a = numerator.to(compute_dtype(x)).contiguous();
  const at::Tensor b = denominator.to(compute_dtype(x)).contiguous();
  const DType dtype = kernel_dtype(x);
  const int m = static_cast<int>(a.numel()) - 1;
  const int n = static_cast<int>(b.numel());
  const int blocks = cuda::backward_blocks(dtype, x.numel(), m, n, static_cast<int>(version));
  const auto double_options = x.options().dtype(at::kDouble);
  at::Tensor partials = at::empty({int64_t{blocks} * kSlots}, double_options);
  at::Tensor result = at::empty({kSlots}, double_options);
  cuda::launch_backward(dtype, grad_out.const_data_ptr(), x.const_data_ptr(), grad_x.data_ptr(), x.numel(),
                        a.const_data_ptr(), m, b.const_data_ptr(), n, static_cast<int>(version), blocks,
                        partials.data_ptr<double>(), result.data_ptr<double>(),
                        c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
  // Copies (copy=true), so the two gradients never share storage with each other or the workspace.
  at::Tensor grad_a = result.narrow(0, 0, numerator.numel()).to(numerator.scalar_type(), false, true);
  at::Tensor grad_b = result.narrow(0, kNumeratorSlots, denominator.numel()).to(denominator.scalar_type(), false, true);
  return {grad_x, grad_a, grad_b};
}

}  // namespace

TORCH_LIBRARY_IMPL(pau, CUDA, m) {
  m.impl("forward", &forward_cuda);
  m.impl("backward", &backward_cuda);
}

}  // namespace pau
