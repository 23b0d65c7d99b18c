// adam8bit.hpp: header-only C++17 wrapper over the C API of libadam8bit (adam8bit.h).
//
// - Every failing call throws adam8bit::Error, which carries the bnb_status_t and the library's
//   message; the C rule still holds: a call that throws changed nothing.
// - adam8bit::Optimizer owns a handle: move-only, destroyed with the object.
// - Steps take adam8bit::Span<T> (pointer + size; C++17 has no std::span), built implicitly from
//   std::vector, std::array, C arrays or any contiguous container with data() and size(); the
//   size is checked against the parameter's numel before the library sees the pointer.
// - State accessors return std::vector<uint8_t> (codes) or std::vector<float> (everything else).
//
// Link with adam8bit::adam8bit_cpp (CMake) or `pkg-config --libs adam8bit` and -std=c++17.
#ifndef ADAM8BIT_HPP
#define ADAM8BIT_HPP

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "adam8bit.h"

namespace adam8bit {

// A failed libadam8bit call: status() is the BNB_ERR_* code, what() "BNB_ERR_...: message".
class Error : public std::runtime_error {
public:
    Error(bnb_status_t status, const std::string &message)
        : std::runtime_error(std::string(bnb_status_name(status)) + ": " + message),
          status_(status), message_(message) {}
    bnb_status_t status() const noexcept { return status_; }
    // The library's message alone, without the status name.
    const std::string &message() const noexcept { return message_; }

private:
    bnb_status_t status_;
    std::string message_;
};

// Throws Error for anything but BNB_OK. The message is copied at once: the library's string
// is only valid until the next call on this thread.
inline void check(bnb_status_t status) {
    if (status != BNB_OK) throw Error(status, bnb_last_error_message());
}

// A non-owning view of contiguous elements, the part of std::span that step() needs.
template <class T>
class Span {
public:
    Span(T *data, std::size_t size) noexcept : data_(data), size_(size) {}
    template <std::size_t N>
    Span(T (&array)[N]) noexcept : data_(array), size_(N) {}
    // Any contiguous container whose data() converts to T* (std::vector, std::array, ...).
    template <class C, class = std::enable_if_t<
                           std::is_convertible_v<decltype(std::declval<C &>().data()), T *>>>
    Span(C &c) noexcept : data_(c.data()), size_(c.size()) {}
    T *data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }

private:
    T *data_;
    std::size_t size_;
};

// Handle-wide settings: the C struct with its defaults filled in, plus chainable setters.
//   auto cfg = adam8bit::Config().lr(3e-4).weight_decay(0.01);
class Config {
public:
    Config() { check(bnb_adam8bit_config_default(&c_, sizeof c_)); }
    static Config preset(bnb_preset_t preset) {
        Config c;
        check(bnb_adam8bit_config_preset(preset, &c.c_, sizeof c.c_));
        return c;
    }
    Config &lr(double v) { return c_.lr = v, *this; }
    Config &betas(double b1, double b2) { return c_.beta1 = b1, c_.beta2 = b2, *this; }
    Config &eps(double v) { return c_.eps = v, *this; }
    Config &weight_decay(double v) { return c_.weight_decay = v, *this; }
    Config &max_unorm(double v) { return c_.max_unorm = v, *this; }
    Config &min_8bit_size(std::uint64_t v) { return c_.min_8bit_size = v, *this; }
    Config &percentile_clipping(std::int32_t v) { return c_.percentile_clipping = v, *this; }
    Config &block_wise(bool v) { return c_.block_wise = v, *this; }
    Config &is_paged(bool v) { return c_.is_paged = v, *this; }
    Config &skip_zeros(bool v) { return c_.skip_zeros = v, *this; }
    // Rule 19: bf16/fp16 parameters round stochastically, with draws keyed by `seed`.
    Config &stochastic_rounding(bool v) { return c_.stochastic_rounding = v, *this; }
    Config &seed(std::uint64_t v) { return c_.seed = v, *this; }
    // Direct access for the fields without a setter (and for reading).
    bnb_adam8bit_config_t &c() noexcept { return c_; }
    const bnb_adam8bit_config_t &c() const noexcept { return c_; }

private:
    bnb_adam8bit_config_t c_;
};

// Per-parameter overrides (bnb_param_options_t), setting the matching BNB_OPT_* flag.
class ParamOptions {
public:
    ParamOptions() { check(bnb_param_options_default(&o_, sizeof o_)); }
    ParamOptions &group(std::uint32_t g) { return o_.group = g, *this; }
    ParamOptions &lr_scale(double v) { return set(BNB_OPT_LR_SCALE), o_.lr_scale = v, *this; }
    ParamOptions &beta1(double v) { return set(BNB_OPT_BETA1), o_.beta1 = v, *this; }
    ParamOptions &beta2(double v) { return set(BNB_OPT_BETA2), o_.beta2 = v, *this; }
    ParamOptions &eps(double v) { return set(BNB_OPT_EPS), o_.eps = v, *this; }
    ParamOptions &weight_decay(double v) {
        return set(BNB_OPT_WEIGHT_DECAY), o_.weight_decay = v, *this;
    }
    ParamOptions &optim_bits(std::int32_t v) {
        return set(BNB_OPT_OPTIM_BITS), o_.optim_bits = v, *this;
    }
    ParamOptions &min_8bit_size(std::uint64_t v) {
        return set(BNB_OPT_MIN_8BIT_SIZE), o_.min_8bit_size = v, *this;
    }
    // This parameter is elements [offset, offset + numel) of a tensor of full_numel elements.
    ParamOptions &shard(std::uint64_t full_numel, std::uint64_t offset) {
        return set(BNB_OPT_SHARD), o_.shard_full_numel = full_numel, o_.shard_offset = offset,
               *this;
    }
    ParamOptions &stochastic_rounding(bool v) {
        return set(BNB_OPT_STOCHASTIC_ROUNDING), o_.stochastic_rounding = v, *this;
    }
    ParamOptions &seed(std::uint64_t v) { return set(BNB_OPT_SEED), o_.seed = v, *this; }
    // This parameter's key in rule 19's draws, instead of the one derived from its size.
    ParamOptions &rounding_key(std::uint64_t v) {
        return set(BNB_OPT_ROUNDING_KEY), o_.rounding_key = v, *this;
    }
    const bnb_param_options_t &c() const noexcept { return o_; }

private:
    void set(std::uint32_t flag) { o_.flags |= flag; }
    bnb_param_options_t o_;
};

// One entry of a step_many() call, with the parameter's sizes checked on construction.
struct StepItem {
    std::uint32_t id;
    void *param;
    const void *grad;
    std::size_t numel;
    bnb_dtype_t dtype;
    StepItem(std::uint32_t id_, Span<float> p, Span<const float> g)
        : id(id_), param(p.data()), grad(g.data()), numel(p.size()), dtype(BNB_DTYPE_F32) {
        if (p.size() != g.size())
            throw Error(BNB_ERR_INVALID_ARGUMENT, "param and grad differ in size");
    }
    // fp16 / bf16 buffers as raw 16-bit words.
    StepItem(std::uint32_t id_, Span<std::uint16_t> p, Span<const std::uint16_t> g,
             bnb_dtype_t dtype_)
        : id(id_), param(p.data()), grad(g.data()), numel(p.size()), dtype(dtype_) {
        require_16bit(dtype_);
        if (p.size() != g.size())
            throw Error(BNB_ERR_INVALID_ARGUMENT, "param and grad differ in size");
    }
    // A 16-bit buffer stepped as F32 would be read and written at twice its size.
    static void require_16bit(bnb_dtype_t dtype) {
        if (dtype != BNB_DTYPE_F16 && dtype != BNB_DTYPE_BF16)
            throw Error(BNB_ERR_INVALID_ARGUMENT,
                        "16-bit buffers need BNB_DTYPE_F16 or BNB_DTYPE_BF16, got dtype " +
                            std::to_string(dtype));
    }
};

// Loss scaling of one step_many() call (rule 18): pointers to one float each, host memory on a
// CPU handle and device memory on a CUDA handle (read there by the kernels, on the stream).
// Every gradient is divided by *grad_scale first; *found_inf != 0, or a scale that is zero,
// negative or not finite, makes the call change nothing. Unset: off.
class StepOptions {
public:
    StepOptions() { check(bnb_step_options_default(&o_, sizeof o_)); }
    StepOptions &grad_scale(const float *scale) {
        o_.grad_scale = scale;
        return *this;
    }
    StepOptions &found_inf(const float *flag) {
        o_.found_inf = flag;
        return *this;
    }
    const bnb_step_options_t &c() const { return o_; }

private:
    bnb_step_options_t o_;
};

// Sets the CPU worker count shared by all handles (0 = the cores this process may use).
inline void set_num_threads(std::uint32_t n) { check(bnb_set_num_threads(n)); }
inline std::uint32_t num_threads() { return bnb_get_num_threads(); }
inline std::string version() { return bnb_adam8bit_version(); }

class Optimizer {
public:
    explicit Optimizer(const Config &config = Config(), bnb_device_t device = BNB_DEVICE_CPU,
                       std::int32_t device_index = 0) {
        check(bnb_adam8bit_create(&config.c(), device, device_index, &h_));
    }
    ~Optimizer() { bnb_adam8bit_destroy(h_); }
    Optimizer(const Optimizer &) = delete;
    Optimizer &operator=(const Optimizer &) = delete;
    Optimizer(Optimizer &&other) noexcept
        : h_(std::exchange(other.h_, nullptr)), shapes_(std::move(other.shapes_)) {}
    Optimizer &operator=(Optimizer &&other) noexcept {
        if (this != &other) {
            bnb_adam8bit_destroy(h_);
            h_ = std::exchange(other.h_, nullptr);
            shapes_ = std::move(other.shapes_);
        }
        return *this;
    }

    // The C handle, for calls this wrapper does not cover. Still owned by this object.
    bnb_adam8bit_t *get() const noexcept { return h_; }
    explicit operator bool() const noexcept { return h_ != nullptr; }

    std::uint32_t add_param(std::uint64_t numel, bnb_dtype_t dtype = BNB_DTYPE_F32,
                            const ParamOptions &options = ParamOptions()) {
        std::uint32_t id = 0;
        check(bnb_adam8bit_add_param_ex(live(), numel, dtype, &options.c(), &id));
        if (id == shapes_.size()) shapes_.push_back(Shape{numel, dtype});
        return id;
    }
    std::uint32_t num_params() const {
        std::uint32_t n = 0;
        check(bnb_adam8bit_num_params(live(), &n));
        return n;
    }
    bnb_param_info_t info(std::uint32_t id) const {
        bnb_param_info_t out{};
        check(bnb_adam8bit_param_info(live(), id, &out, sizeof out));
        return out;
    }
    Config config() const {
        Config c;
        check(bnb_adam8bit_get_config(live(), &c.c(), sizeof c.c()));
        return c;
    }
    void set_lr(double lr) { check(bnb_adam8bit_set_lr(live(), lr)); }
    void set_group_lr(std::uint32_t group, double lr) {
        check(bnb_adam8bit_set_group_lr(live(), group, lr));
    }

    // One step of parameter `id` (fp32). `param` and `grad` must both hold numel elements.
    void step(std::uint32_t id, Span<float> param, Span<const float> grad) {
        step_raw(id, param.data(), grad.data(), param.size(), grad.size(), BNB_DTYPE_F32);
    }
    // fp16 / bf16 parameters as raw 16-bit words, with their dtype.
    void step(std::uint32_t id, Span<std::uint16_t> param, Span<const std::uint16_t> grad,
              bnb_dtype_t dtype) {
        StepItem::require_16bit(dtype);
        step_raw(id, param.data(), grad.data(), param.size(), grad.size(), dtype);
    }
    // All listed parameters in one parallel sweep (CPU) or one launch per path (CUDA, on
    // `stream`), with loss scaling when `options` sets it.
    void step_many(const std::vector<StepItem> &items, const StepOptions &options = StepOptions(),
                   void *stream = nullptr) {
        std::vector<bnb_step_item_t> c;
        c.reserve(items.size());
        for (const StepItem &it : items) {
            check_numel(it.id, it.numel, it.numel, it.dtype);
            c.push_back(bnb_step_item_t{it.id, it.param, it.grad});
        }
        check(bnb_adam8bit_step_many_ex(live(), c.data(), c.size(), &options.c(), stream));
    }

    // ---- state access ----
    std::uint64_t state_size(std::uint32_t id, bnb_state_kind_t which) const {
        std::uint64_t n = 0;
        check(bnb_adam8bit_state_size(live(), id, which, &n));
        return n;
    }
    // Raw bytes of any state array.
    std::vector<std::uint8_t> read_state_bytes(std::uint32_t id, bnb_state_kind_t which) const {
        std::vector<std::uint8_t> out(state_size(id, which));
        check(bnb_adam8bit_read_state(live(), id, which, out.data(), out.size()));
        return out;
    }
    // An f32 array (absmax, maps, fp32 moments, histories); throws for 8-bit codes.
    std::vector<float> read_state_f32(std::uint32_t id, bnb_state_kind_t which) const {
        if ((which == BNB_STATE1 || which == BNB_STATE2) && info(id).path != BNB_PATH_FP32)
            throw Error(BNB_ERR_INVALID_ARGUMENT, "this state array holds uint8 codes, not f32");
        std::uint64_t bytes = state_size(id, which);
        std::vector<float> out(bytes / sizeof(float));
        check(bnb_adam8bit_read_state(live(), id, which, out.data(), bytes));
        return out;
    }
    void write_state(std::uint32_t id, bnb_state_kind_t which, const void *src,
                     std::uint64_t bytes) {
        check(bnb_adam8bit_write_state(live(), id, which, src, bytes));
    }
    template <class T>
    void write_state(std::uint32_t id, bnb_state_kind_t which, const std::vector<T> &src) {
        write_state(id, which, src.data(), src.size() * sizeof(T));
    }
    void set_step(std::uint32_t id, std::uint64_t step) {
        check(bnb_adam8bit_set_step(live(), id, step));
    }

    // ---- checkpoints ----------------------------------------------------------------------
    void save(const std::string &path) const { check(bnb_adam8bit_save(live(), path.c_str())); }
    void load(const std::string &path) { check(bnb_adam8bit_load(live(), path.c_str())); }
    // The size can change between the two calls if another thread steps the handle (the
    // metadata holds step counts and checksums); a too-small buffer reports the size needed,
    // so this retries with it.
    std::vector<std::uint8_t> serialize() const {
        std::uint64_t size = 0;
        check(bnb_adam8bit_serialized_size(live(), &size));
        for (;;) {
            std::vector<std::uint8_t> buf(size);
            std::uint64_t needed = 0;
            bnb_status_t st = bnb_adam8bit_serialize(live(), buf.data(), buf.size(), &needed);
            if (st == BNB_ERR_INVALID_ARGUMENT && needed > size) {
                size = needed;
                continue;
            }
            check(st);
            buf.resize(needed);
            return buf;
        }
    }
    void deserialize(const std::vector<std::uint8_t> &buf) {
        check(bnb_adam8bit_deserialize(live(), buf.data(), buf.size()));
    }

private:
    // A moved-from object holds NULL; the library would report "handle is NULL", but saying
    // "moved-from" here points at the real mistake.
    bnb_adam8bit_t *live() const {
        if (!h_) throw Error(BNB_ERR_INVALID_ARGUMENT, "use of a moved-from adam8bit::Optimizer");
        return h_;
    }
    // Sizes are checked against what add_param registered, without a library call per item:
    // param_info on a CUDA handle synchronises the device. Parameters registered through get()
    // are looked up with param_info.
    void check_numel(std::uint32_t id, std::size_t p, std::size_t g, bnb_dtype_t dtype) const {
        Shape s;
        if (id < shapes_.size()) {
            s = shapes_[id];
        } else {
            bnb_param_info_t i = info(id);
            s = Shape{i.numel, i.dtype};
        }
        if (p != s.numel || g != s.numel || dtype != s.dtype)
            throw Error(BNB_ERR_INVALID_ARGUMENT,
                        "parameter " + std::to_string(id) + " has " + std::to_string(s.numel) +
                            " elements of dtype " + std::to_string(s.dtype) + "; got param " +
                            std::to_string(p) + ", grad " + std::to_string(g) +
                            " elements of dtype " + std::to_string(dtype));
    }
    void step_raw(std::uint32_t id, void *p, const void *g, std::size_t pn, std::size_t gn,
                  bnb_dtype_t dtype) {
        check_numel(id, pn, gn, dtype);
        check(bnb_adam8bit_step(live(), id, p, g, nullptr));
    }

    struct Shape {
        std::uint64_t numel;
        bnb_dtype_t dtype;
    };
    bnb_adam8bit_t *h_ = nullptr;
    std::vector<Shape> shapes_;  // by id, for the parameters add_param registered
};

// The contiguous slice [offset, offset + len) of a flattened tensor that `rank` of `world` owns
// (256-element aligned; len 0 = this rank holds none of it).
inline std::pair<std::uint64_t, std::uint64_t> shard_range(std::uint64_t full_numel,
                                                           std::uint32_t rank,
                                                           std::uint32_t world) {
    std::uint64_t off = 0, len = 0;
    check(bnb_shard_range(full_numel, rank, world, &off, &len));
    return {off, len};
}

} // namespace adam8bit

#endif // ADAM8BIT_HPP
