// A LibTorch extension that exposes a libadam8bit handle to PyTorch as a TorchScript custom
// class, `torch.classes.adam8bit.Optimizer`. It only moves tensors' data pointers (and, for CUDA
// tensors, the current stream) into the C ABI; all math stays in libadam8bit.
#include <torch/custom_class.h>
#include <torch/library.h>
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>

#include <string>
#include <utility>
#include <vector>

extern "C" {
#include "adam8bit.h"
}

namespace {

void check(bnb_status_t status, const char *what) {
  TORCH_CHECK(status == BNB_OK, "libadam8bit ", what, " failed (", bnb_status_name(status), "): ",
              bnb_last_error_message());
}

bnb_dtype_t dtype_of(const at::Tensor &t) {
  switch (t.scalar_type()) {
    case at::kFloat: return BNB_DTYPE_F32;
    case at::kHalf: return BNB_DTYPE_F16;
    case at::kBFloat16: return BNB_DTYPE_BF16;
    default: TORCH_CHECK(false, "libadam8bit supports float32, float16 and bfloat16 tensors, not ", t.scalar_type());
  }
}

bnb_state_kind_t kind_of(const std::string &name) {
  static const char *const names[] = {"state1", "state2", "absmax1", "absmax2", "qmap1",
                                      "qmap2",  "max1",   "max2",    "gnorm_vec", "unorm_vec"};
  for (int i = 0; i < 10; ++i)
    if (name == names[i]) return i;
  TORCH_CHECK(false, "unknown state name '", name, "'");
}

// The handle, owned by a TorchScript object; destroyed with it.
struct Optimizer : torch::CustomClassHolder {
  bnb_adam8bit_t *handle = nullptr;
  bool on_cuda = false;
  int64_t cuda_index = 0;
  // What add_param registered, by id: a step with another size or dtype would overrun the
  // tensor's buffer (the library trusts the pointer it is given for numel elements).
  std::vector<std::pair<int64_t, at::ScalarType>> shapes;

  // `stochastic_rounding` and `seed`: rule 19 for bf16/fp16 parameters (the seed's 64 bits
  // travel through TorchScript's int64).
  Optimizer(double lr, double beta1, double beta2, double eps, double weight_decay, int64_t min_8bit_size,
            bool cuda, int64_t device_index, bool stochastic_rounding, int64_t seed) {
    bnb_adam8bit_config_t cfg;
    check(bnb_adam8bit_config_default(&cfg, sizeof cfg), "config_default");
    cfg.lr = lr;
    cfg.beta1 = beta1;
    cfg.beta2 = beta2;
    cfg.eps = eps;
    cfg.weight_decay = weight_decay;
    cfg.min_8bit_size = static_cast<uint64_t>(min_8bit_size);
    cfg.stochastic_rounding = stochastic_rounding;
    cfg.seed = static_cast<uint64_t>(seed);
    check(bnb_adam8bit_create(&cfg, cuda ? BNB_DEVICE_CUDA : BNB_DEVICE_CPU, static_cast<int32_t>(device_index),
                              &handle),
          "create");
    on_cuda = cuda;
    cuda_index = device_index;
  }
  ~Optimizer() override { bnb_adam8bit_destroy(handle); }

  int64_t add_param(const at::Tensor &p) {
    uint32_t id = 0;
    check(bnb_adam8bit_add_param(handle, static_cast<uint64_t>(p.numel()), dtype_of(p), &id), "add_param");
    shapes.emplace_back(p.numel(), p.scalar_type());
    return id;
  }

  // One step of every (id, param, grad) triple, in one call: params are updated in place.
  void step(const std::vector<int64_t> &ids, const std::vector<at::Tensor> &params,
            const std::vector<at::Tensor> &grads) {
    step_scaled(ids, params, grads, c10::nullopt, c10::nullopt);
  }

  // step() with GradScaler's loss scaling fused in (rule 18): grads are divided by
  // `grad_scale` inside the step; a nonzero `found_inf` makes it change nothing. Both are
  // one-element float32 tensors on the parameters' device, read there (no host read on CUDA).
  void step_scaled(const std::vector<int64_t> &ids, const std::vector<at::Tensor> &params,
                   const std::vector<at::Tensor> &grads, const c10::optional<at::Tensor> &grad_scale,
                   const c10::optional<at::Tensor> &found_inf) {
    TORCH_CHECK(ids.size() == params.size() && ids.size() == grads.size(), "ids, params and grads differ in length");
    std::vector<bnb_step_item_t> items(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      TORCH_CHECK(params[i].is_contiguous() && grads[i].is_contiguous(), "param and grad must be contiguous");
      TORCH_CHECK(params[i].scalar_type() == grads[i].scalar_type(), "param and grad dtypes differ");
      TORCH_CHECK(params[i].numel() == grads[i].numel(), "param and grad sizes differ");
      TORCH_CHECK(ids[i] >= 0 && static_cast<size_t>(ids[i]) < shapes.size(), "no parameter ", ids[i]);
      TORCH_CHECK(params[i].numel() == shapes[ids[i]].first && params[i].scalar_type() == shapes[ids[i]].second,
                  "parameter ", ids[i], " was registered with ", shapes[ids[i]].first, " elements of ",
                  shapes[ids[i]].second, "; got ", params[i].numel(), " of ", params[i].scalar_type());
      TORCH_CHECK(params[i].is_cuda() == on_cuda && grads[i].is_cuda() == on_cuda,
                  on_cuda ? "this optimizer steps CUDA tensors" : "this optimizer steps CPU tensors");
      TORCH_CHECK(!on_cuda || (params[i].get_device() == cuda_index && grads[i].get_device() == cuda_index),
                  "this optimizer's state is on cuda:", cuda_index);
      items[i].id = static_cast<uint32_t>(ids[i]);
      items[i].param = params[i].data_ptr();
      items[i].grad = grads[i].data_ptr();
    }
    // CPU tensors take no stream; CUDA tensors go on torch's current stream of their device, so
    // the step is ordered after the backward pass that produced the gradients and before the
    // next forward pass, without synchronising the host.
    void *stream = nullptr;
    if (!params.empty() && params[0].is_cuda()) {
      for (size_t i = 0; i < params.size(); ++i)
        TORCH_CHECK(params[i].device() == params[0].device() && grads[i].device() == params[0].device(),
                    "all params and grads of one step must be on one device");
      stream = c10::cuda::getCurrentCUDAStream(params[0].get_device()).stream();
    }
    bnb_step_options_t options;
    check(bnb_step_options_default(&options, sizeof options), "step_options_default");
    const char *names[] = {"grad_scale", "found_inf"};
    const c10::optional<at::Tensor> *given[] = {&grad_scale, &found_inf};
    const float **slots[] = {&options.grad_scale, &options.found_inf};
    for (int k = 0; k < 2; ++k) {
      if (!given[k]->has_value()) continue;
      const at::Tensor &t = given[k]->value();
      TORCH_CHECK(t.scalar_type() == at::kFloat && t.numel() == 1 && t.is_contiguous(), names[k],
                  " must be a one-element float32 tensor");
      TORCH_CHECK(t.is_cuda() == on_cuda && (!on_cuda || t.get_device() == cuda_index), names[k],
                  " must be on the parameters' device");
      *slots[k] = t.data_ptr<float>();
    }
    check(bnb_adam8bit_step_many_ex(handle, items.data(), items.size(), &options, stream), "step_many_ex");
  }

  // The whole optimizer state as a libadam8bit checkpoint (safetensors; docs/checkpoint.md).
  void save(const std::string &path) { check(bnb_adam8bit_save(handle, path.c_str()), "save"); }
  void load(const std::string &path) { check(bnb_adam8bit_load(handle, path.c_str()), "load"); }

  void set_lr(double lr) { check(bnb_adam8bit_set_lr(handle, lr), "set_lr"); }

  void set_step(int64_t id, int64_t step) {
    check(bnb_adam8bit_set_step(handle, static_cast<uint32_t>(id), static_cast<uint64_t>(step)), "set_step");
  }

  int64_t get_step(int64_t id) {
    bnb_param_info_t info{};
    check(bnb_adam8bit_param_info(handle, static_cast<uint32_t>(id), &info, sizeof info), "param_info");
    return static_cast<int64_t>(info.step);
  }

  bool stochastic_rounding(int64_t id) {
    bnb_param_info_t info{};
    check(bnb_adam8bit_param_info(handle, static_cast<uint32_t>(id), &info, sizeof info), "param_info");
    return info.stochastic_rounding;
  }

  int64_t state_bytes(int64_t id) {
    bnb_param_info_t info{};
    check(bnb_adam8bit_param_info(handle, static_cast<uint32_t>(id), &info, sizeof info), "param_info");
    return static_cast<int64_t>(info.state_bytes);
  }

  // A copy of state array `name` (bitsandbytes' key) as a uint8 (codes) or float32 tensor.
  at::Tensor read_state(int64_t id, const std::string &name) {
    uint64_t bytes = 0;
    bnb_state_kind_t kind = kind_of(name);
    check(bnb_adam8bit_state_size(handle, static_cast<uint32_t>(id), kind, &bytes), "state_size");
    bool codes = (kind == BNB_STATE1 || kind == BNB_STATE2) && is_8bit(id);
    at::Tensor out = codes ? at::empty({static_cast<int64_t>(bytes)}, at::kByte)
                           : at::empty({static_cast<int64_t>(bytes / 4)}, at::kFloat);
    check(bnb_adam8bit_read_state(handle, static_cast<uint32_t>(id), kind, out.data_ptr(), bytes), "read_state");
    return out;
  }

  void write_state(int64_t id, const std::string &name, const at::Tensor &src) {
    at::Tensor c = src.contiguous().cpu();
    check(bnb_adam8bit_write_state(handle, static_cast<uint32_t>(id), kind_of(name), c.data_ptr(),
                                   static_cast<uint64_t>(c.numel() * c.element_size())),
          "write_state");
  }

 private:
  bool is_8bit(int64_t id) {
    bnb_param_info_t info{};
    check(bnb_adam8bit_param_info(handle, static_cast<uint32_t>(id), &info, sizeof info), "param_info");
    return info.path != BNB_PATH_FP32;
  }
};

}  // namespace

TORCH_LIBRARY(adam8bit, m) {
  m.class_<Optimizer>("Optimizer")
      .def(torch::init<double, double, double, double, double, int64_t, bool, int64_t, bool, int64_t>())
      .def("add_param", &Optimizer::add_param)
      .def("step", &Optimizer::step)
      .def("step_scaled", &Optimizer::step_scaled)
      .def("save", &Optimizer::save)
      .def("load", &Optimizer::load)
      .def("set_lr", &Optimizer::set_lr)
      .def("set_step", &Optimizer::set_step)
      .def("get_step", &Optimizer::get_step)
      .def("state_bytes", &Optimizer::state_bytes)
      .def("stochastic_rounding", &Optimizer::stochastic_rounding)
      .def("read_state", &Optimizer::read_state)
      .def("write_state", &Optimizer::write_state);
}
