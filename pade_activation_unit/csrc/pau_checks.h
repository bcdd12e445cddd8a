// Argument checks and helpers shared by the CPU and CUDA ATen glue: one message per user mistake.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "pau_kernels.h"

namespace pau {

inline DType kernel_dtype(const at::Tensor& x) {
  switch (x.scalar_type()) {
    case at::kFloat: return DType::kFloat32;
    case at::kDouble: return DType::kFloat64;
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    default:
      TORCH_CHECK(false, "pau: input dtype must be float32, float64, float16 or bfloat16, got ", x.scalar_type());
  }
}

// Compute type of the kernels: double for float64 input, float otherwise.
inline at::ScalarType compute_dtype(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_arguments(const at::Tensor& x, const at::Tensor& numerator, const at::Tensor& denominator,
                            int64_t version) {
  TORCH_CHECK(version >= kVersionA && version <= kVersionN,
              "pau: version must be 0 (A), 1 (B) or 2 (N), got ", version);
  TORCH_CHECK(numerator.dim() == 1 && numerator.numel() >= 1 && numerator.numel() <= kNumeratorSlots,
              "pau: numerator must be a 1-D tensor of 1..", kNumeratorSlots, " coefficients, got shape ",
              numerator.sizes());
  TORCH_CHECK(denominator.dim() == 1 && denominator.numel() >= 1 && denominator.numel() <= kMaxDegree,
              "pau: denominator must be a 1-D tensor of 1..", kMaxDegree, " coefficients, got shape ",
              denominator.sizes());
  TORCH_CHECK(at::isFloatingType(numerator.scalar_type()) && at::isFloatingType(denominator.scalar_type()),
              "pau: coefficients must be floating point, got ", numerator.scalar_type(), " and ",
              denominator.scalar_type());
  TORCH_CHECK(numerator.device() == x.device() && denominator.device() == x.device(),
              "pau: input, numerator and denominator must be on one device, got ", x.device(), ", ",
              numerator.device(), " and ", denominator.device());
  kernel_dtype(x);
}

inline void check_grad_out(const at::Tensor& grad_out, const at::Tensor& x) {
  TORCH_CHECK(grad_out.sizes() == x.sizes(), "pau: grad_out shape ", grad_out.sizes(), " differs from input shape ",
              x.sizes());
  TORCH_CHECK(grad_out.scalar_type() == x.scalar_type(), "pau: grad_out dtype ", grad_out.scalar_type(),
              " differs from input dtype ", x.scalar_type());
  TORCH_CHECK(grad_out.device() == x.device(), "pau: grad_out device ", grad_out.device(),
              " differs from input device ", x.device());
}

}  // namespace pau
