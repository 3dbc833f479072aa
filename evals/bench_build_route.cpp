// The torch.utils.cpp_extension route measured by evals/bench_build_route.py: the same C kernels
// as the shipped ctypes route (stftblur/csrc/local_phase.c, compiled here as C++ with the same
// floating-point flags), entered through PyTorch's tensor API and split over PyTorch's intra-op
// threads with at::parallel_for. A benchmark, not part of the library.
#include <math.h>
#include <stdint.h>

#include <ATen/Parallel.h>
#include <torch/extension.h>

extern "C" {
#include "local_phase.c"
}

namespace {

constexpr int64_t kParallelMinWork = int64_t(1) << 16;  // stftblur._native.PARALLEL_MIN_WORK

int64_t grain(int64_t work_per_item) { return std::max<int64_t>(1, kParallelMinWork / std::max<int64_t>(1, work_per_item)); }

// fo, ft: float32 views (..., 2) of the complex spectra; layout as in stftblur.losses._compiled.
void terms(int64_t mode, torch::Tensor fo, torch::Tensor ft, bool need_o, bool need_t, torch::Tensor wv,
           torch::Tensor wa, torch::Tensor wp, int64_t patches, int64_t rows, int64_t len, int64_t s_patch,
           int64_t s_row, double pw, double aw, double off, double eps2, torch::Tensor sums) {
  TORCH_CHECK(fo.scalar_type() == at::kFloat && ft.scalar_type() == at::kFloat, "fo, ft: float32 views");
  TORCH_CHECK(fo.strides() == ft.strides() && fo.sizes() == ft.sizes(), "fo, ft: same layout");
  for (const auto& w : {wv, wa, wp})
    TORCH_CHECK(w.scalar_type() == at::kFloat && w.is_contiguous() && w.numel() == rows * len, "weights");
  TORCH_CHECK(sums.scalar_type() == at::kDouble && sums.is_contiguous() && sums.numel() == patches, "sums");
  float* o = fo.data_ptr<float>();
  float* t = ft.data_ptr<float>();
  double* s = sums.data_ptr<double>();
  at::parallel_for(0, patches, grain(rows * len), [&](int64_t i0, int64_t i1) {
    int code = lpl_terms((int)mode, o, t, need_o, need_t, wv.data_ptr<float>(), wa.data_ptr<float>(),
                         wp.data_ptr<float>(), i0, i1, rows, len, s_patch, s_row, (float)pw, (float)aw, (float)off,
                         (float)eps2, s);
    TORCH_CHECK(code == 0, "lpl_terms: status ", code);
  });
}

void overlap_add(torch::Tensor pat, c10::optional<torch::Tensor> win, torch::Tensor out, int64_t stride) {
  TORCH_CHECK(pat.scalar_type() == at::kFloat && pat.dim() == 5, "patches: (n, K, L, R, C) float32");
  TORCH_CHECK(out.scalar_type() == at::kFloat && out.dim() == 3 && out.is_contiguous(), "out: (n, H, W) float32");
  const int64_t n = pat.size(0), k = pat.size(1), l = pat.size(2), r = pat.size(3), c = pat.size(4);
  const int64_t height = out.size(1), width = out.size(2);
  const float* w = nullptr;
  if (win.has_value()) {
    TORCH_CHECK(win->scalar_type() == at::kFloat && win->is_contiguous() && win->size(1) == c, "window");
    w = win->data_ptr<float>();
  }
  const float* p = pat.data_ptr<float>();
  float* q = out.data_ptr<float>();
  const int64_t work = width * std::max<int64_t>(1, (r * c) / (stride * stride));
  at::parallel_for(0, n * height, grain(work), [&](int64_t q0, int64_t q1) {
    int code = lpl_overlap_add(p, w, q, q0, q1, height, width, k, l, r, c, stride, pat.stride(0), pat.stride(1),
                               pat.stride(2), pat.stride(3), pat.stride(4));
    TORCH_CHECK(code == 0, "lpl_overlap_add: status ", code);
  });
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("terms", &terms);
  m.def("overlap_add", &overlap_add);
}
