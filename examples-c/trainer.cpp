// trainer.cpp: a C++17 training loop on adam8bit.hpp that checkpoints and resumes.
//
// Fits a two-layer tanh network to a fixed teacher network on synthetic data (the batch of
// step s is a pure function of s, so a resumed run sees exactly the batches the uninterrupted
// one saw). Three runs:
//   A. STEPS steps without interruption;
//   B. RESUME_AT steps, then a checkpoint to disk (optimizer: bnb_adam8bit_save; model: the
//      trainer's own file), everything destroyed as if the process had died, then a new
//      optimizer and model loaded from disk and trained to STEPS;
//   C. like B but through an in-memory checkpoint (serialize / deserialize).
// Asserts that B and C end with parameters and every optimizer state array identical to A's,
// bit for bit, and that loading a missing or mismatched checkpoint throws adam8bit::Error
// with the right status while the optimizer stays usable.
//
// Usage: trainer WORK_PREFIX   (files WORK_PREFIX.optim.safetensors and WORK_PREFIX.model)
#include <adam8bit.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr int IN = 64, HID = 96, OUT = 8, BATCH = 16, STEPS = 300, RESUME_AT = 137;

// Deterministic values from (seed, index): no hidden generator state to checkpoint.
float unit(std::uint64_t seed, std::uint64_t i) {
    std::uint64_t z = seed * 0x9E3779B97F4A7C15ull + i + 1;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return static_cast<float>((z ^ (z >> 31)) >> 40) / 16777216.0f * 2.0f - 1.0f;
}

struct Model {
    // w1 has 6144 elements: the 8-bit path. b1, w2 (768) and b2 stay below min_8bit_size: fp32.
    std::vector<float> w1 = std::vector<float>(HID * IN), b1 = std::vector<float>(HID),
                       w2 = std::vector<float>(OUT * HID), b2 = std::vector<float>(OUT);
    std::vector<std::vector<float> *> tensors() { return {&w1, &b1, &w2, &b2}; }

    static Model init(std::uint64_t seed, float scale) {
        Model m;
        std::uint64_t k = 0;
        for (auto *t : m.tensors())
            for (float &x : *t) x = unit(seed, k++) * scale;
        return m;
    }

    // y = w2 tanh(w1 x + b1) + b2 for one sample; h receives the hidden activations.
    void forward(const float *x, float *h, float *y) const {
        for (int j = 0; j < HID; j++) {
            float s = b1[j];
            for (int i = 0; i < IN; i++) s += w1[j * IN + i] * x[i];
            h[j] = std::tanh(s);
        }
        for (int k = 0; k < OUT; k++) {
            float s = b2[k];
            for (int j = 0; j < HID; j++) s += w2[k * HID + j] * h[j];
            y[k] = s;
        }
    }

    void save(const std::string &path) const {
        std::ofstream f(path, std::ios::binary);
        for (const auto *t : const_cast<Model *>(this)->tensors())
            f.write(reinterpret_cast<const char *>(t->data()),
                    static_cast<std::streamsize>(t->size() * sizeof(float)));
        if (!f) throw std::runtime_error("cannot write " + path);
    }
    void load(const std::string &path) {
        std::ifstream f(path, std::ios::binary);
        for (auto *t : tensors())
            f.read(reinterpret_cast<char *>(t->data()),
                   static_cast<std::streamsize>(t->size() * sizeof(float)));
        if (!f) throw std::runtime_error("cannot read " + path);
    }
};

const Model &teacher() {
    static const Model t = Model::init(4242, 0.5f);
    return t;
}

// Mean squared error against the teacher on batch `step`, and its gradient in g.
double loss_and_grad(const Model &m, int step, Model &g) {
    for (auto *t : g.tensors()) std::fill(t->begin(), t->end(), 0.0f);
    float x[IN], h[HID], y[OUT], th[HID], ty[OUT], dh[HID];
    double loss = 0;
    for (int b = 0; b < BATCH; b++) {
        for (int i = 0; i < IN; i++) x[i] = unit(1000003ull * static_cast<std::uint64_t>(step) + b, i);
        m.forward(x, h, y);
        teacher().forward(x, th, ty);
        std::fill(dh, dh + HID, 0.0f);
        for (int k = 0; k < OUT; k++) {
            float d = y[k] - ty[k];
            loss += 0.5 * d * d / BATCH;
            float dy = d / BATCH;
            g.b2[k] += dy;
            for (int j = 0; j < HID; j++) {
                g.w2[k * HID + j] += dy * h[j];
                dh[j] += dy * m.w2[k * HID + j];
            }
        }
        for (int j = 0; j < HID; j++) {
            float dz = dh[j] * (1 - h[j] * h[j]);
            g.b1[j] += dz;
            for (int i = 0; i < IN; i++) g.w1[j * IN + i] += dz * x[i];
        }
    }
    return loss;
}

adam8bit::Optimizer make_optimizer() {
    adam8bit::Optimizer opt(adam8bit::Config().lr(1e-2).weight_decay(1e-4));
    Model shape;
    for (auto *t : shape.tensors()) opt.add_param(t->size());
    return opt; // move-only handle: returned by move
}

// Trains steps [from, to) with a cosine learning-rate schedule; returns the last loss.
double train(adam8bit::Optimizer &opt, Model &m, int from, int to) {
    Model g;
    double loss = 0;
    for (int s = from; s < to; s++) {
        loss = loss_and_grad(m, s, g);
        opt.set_lr(1e-2 * 0.5 * (1 + std::cos(3.14159265358979 * s / STEPS)));
        std::vector<adam8bit::StepItem> items;
        auto mt = m.tensors(), gt = g.tensors();
        for (std::uint32_t i = 0; i < mt.size(); i++) items.emplace_back(i, *mt[i], *gt[i]);
        opt.step_many(items);
        if (s % 50 == 0) std::printf("  step %3d  loss %.6f\n", s, loss);
    }
    return loss;
}

// train(), with loss scaling as GradScaler does it: gradients of a loss scaled by 256 (exact
// in fp32), unscaled inside the step; and before every 7th step a call that GradScaler would
// skip (found_inf = 1, on garbage gradients), which must change nothing.
void train_scaled(adam8bit::Optimizer &opt, Model &m, int from, int to) {
    Model g;
    const float scale = 256.0f, no_inf = 0.0f, inf = 1.0f;
    for (int s = from; s < to; s++) {
        loss_and_grad(m, s, g);
        opt.set_lr(1e-2 * 0.5 * (1 + std::cos(3.14159265358979 * s / STEPS)));
        std::vector<adam8bit::StepItem> items;
        auto mt = m.tensors(), gt = g.tensors();
        for (std::uint32_t i = 0; i < mt.size(); i++) items.emplace_back(i, *mt[i], *gt[i]);
        if (s % 7 == 0) {
            for (auto *t : gt)
                for (float &x : *t) x = 1e30f;
            opt.step_many(items, adam8bit::StepOptions().grad_scale(&scale).found_inf(&inf));
            loss_and_grad(m, s, g);
        }
        for (auto *t : gt)
            for (float &x : *t) x *= scale;
        opt.step_many(items, adam8bit::StepOptions().grad_scale(&scale).found_inf(&no_inf));
    }
}

// Every state array and step counter of every parameter, concatenated.
std::vector<std::uint8_t> state_of(const adam8bit::Optimizer &opt) {
    std::vector<std::uint8_t> all;
    for (std::uint32_t id = 0; id < opt.num_params(); id++) {
        for (bnb_state_kind_t k = BNB_STATE1; k <= BNB_UNORM_VEC; k++) {
            std::vector<std::uint8_t> s;
            try {
                s = opt.read_state_bytes(id, k);
            } catch (const adam8bit::Error &e) {
                if (e.status() != BNB_ERR_INVALID_ARGUMENT) throw;
                continue; // a kind this parameter's path does not keep
            }
            all.insert(all.end(), s.begin(), s.end());
        }
        const std::uint64_t step = opt.info(id).step;
        const auto *b = reinterpret_cast<const std::uint8_t *>(&step);
        all.insert(all.end(), b, b + sizeof step);
    }
    return all;
}

bool same(Model &a, Model &b) {
    auto ta = a.tensors(), tb = b.tensors();
    for (std::size_t i = 0; i < ta.size(); i++)
        if (std::memcmp(ta[i]->data(), tb[i]->data(), ta[i]->size() * sizeof(float)) != 0)
            return false;
    return true;
}

int failures = 0;
void expect(bool ok, const char *what) {
    if (!ok) {
        std::fprintf(stderr, "FAIL: %s\n", what);
        failures++;
    }
}

} // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s WORK_PREFIX\n", argv[0]);
        return 2;
    }
    const std::string optim_path = std::string(argv[1]) + ".optim.safetensors";
    const std::string model_path = std::string(argv[1]) + ".model";
    try {
        std::printf("A: %d steps uninterrupted\n", STEPS);
        Model ma = Model::init(1, 0.1f);
        adam8bit::Optimizer oa = make_optimizer();
        Model scratch;
        const double first = loss_and_grad(ma, 0, scratch);
        const double last = train(oa, ma, 0, STEPS);
        expect(last < 0.5 * first, "run A did not halve its loss");
        expect(oa.info(0).path == BNB_PATH_BLOCKWISE8 && oa.info(2).path == BNB_PATH_FP32,
               "w1 should take the 8-bit path and w2 the fp32 path");

        std::printf("B: %d steps, checkpoint to disk, restart, %d more\n", RESUME_AT,
                    STEPS - RESUME_AT);
        {
            Model mb = Model::init(1, 0.1f);
            adam8bit::Optimizer ob = make_optimizer();
            train(ob, mb, 0, RESUME_AT);
            ob.save(optim_path);
            mb.save(model_path);
        } // optimizer and model gone, as after a crash
        Model mb;
        mb.load(model_path);
        adam8bit::Optimizer ob = make_optimizer();
        ob.load(optim_path);
        expect(ob.info(0).step == RESUME_AT, "loaded step counter");
        train(ob, mb, RESUME_AT, STEPS);
        expect(same(ma, mb), "B: parameters differ from the uninterrupted run");
        expect(state_of(oa) == state_of(ob), "B: optimizer state differs from the uninterrupted run");

        std::printf("C: the same through an in-memory checkpoint (serialize/deserialize)\n");
        Model mc = Model::init(1, 0.1f);
        adam8bit::Optimizer oc = make_optimizer();
        train(oc, mc, 0, RESUME_AT);
        const std::vector<std::uint8_t> bytes = oc.serialize();
        adam8bit::Optimizer oc2 = make_optimizer();
        oc2.deserialize(bytes);
        oc = std::move(oc2); // move assignment frees the old handle
        train(oc, mc, RESUME_AT, STEPS);
        expect(same(ma, mc), "C: parameters differ from the uninterrupted run");
        expect(state_of(oa) == state_of(oc), "C: optimizer state differs from the uninterrupted run");

        std::printf("D: loss-scaled gradients unscaled in the step, with skipped calls\n");
        Model md = Model::init(1, 0.1f);
        adam8bit::Optimizer od = make_optimizer();
        train_scaled(od, md, 0, STEPS);
        expect(same(ma, md), "D: parameters differ from the unscaled run");
        expect(state_of(oa) == state_of(od), "D: optimizer state differs from the unscaled run");

        // Errors arrive as exceptions with the status, and a failed load changes nothing.
        const auto before = state_of(oc);
        try {
            oc.load(std::string(argv[1]) + ".does-not-exist");
            expect(false, "loading a missing file did not throw");
        } catch (const adam8bit::Error &e) {
            expect(e.status() == BNB_ERR_IO && !e.message().empty(), "missing file -> BNB_ERR_IO");
        }
        expect(state_of(oc) == before, "a failed load changed the optimizer");
        adam8bit::Optimizer other(adam8bit::Config().lr(1e-2).weight_decay(1e-4));
        other.add_param(123);
        const auto other_before = state_of(other);
        const double other_lr = other.config().c().lr;
        try {
            other.load(optim_path);
            expect(false, "loading into other parameters did not throw");
        } catch (const adam8bit::Error &e) {
            expect(e.status() == BNB_ERR_MISMATCH, "other parameters -> BNB_ERR_MISMATCH");
            std::printf("  expected error: %s\n", e.what());
        }
        expect(state_of(other) == other_before && other.config().c().lr == other_lr,
               "a mismatched load changed the optimizer");
        // The wrapper's own checks: 16-bit words stepped as F32 would be read at twice their
        // size, and 8-bit codes are not f32.
        std::vector<std::uint16_t> words(123), word_grads(123);
        try {
            other.step(0, words, word_grads, BNB_DTYPE_F32);
            expect(false, "16-bit buffers stepped as F32 did not throw");
        } catch (const adam8bit::Error &e) {
            expect(e.status() == BNB_ERR_INVALID_ARGUMENT, "16-bit buffers as F32 -> INVALID");
        }
        const std::uint32_t codes_id = other.add_param(8192);
        try {
            other.read_state_f32(codes_id, BNB_STATE1);
            expect(false, "read_state_f32 of 8-bit codes did not throw");
        } catch (const adam8bit::Error &e) {
            expect(e.status() == BNB_ERR_INVALID_ARGUMENT, "codes as f32 -> INVALID");
        }
        expect(other.read_state_f32(codes_id, BNB_ABSMAX1).size() == 32, "absmax as f32");
        // Rule 19 through the wrapper: bf16 weights rounded stochastically repeat exactly for
        // one seed and key, and the key set here is the one reported.
        auto rounded = [](std::uint64_t seed) {
            adam8bit::Optimizer sr(adam8bit::Config().lr(1e-3).stochastic_rounding(true).seed(seed));
            const std::uint32_t id =
                sr.add_param(4096, BNB_DTYPE_BF16, adam8bit::ParamOptions().rounding_key(42));
            expect(sr.info(id).stochastic_rounding && sr.info(id).rounding_key == 42,
                   "stochastic rounding and the key reported");
            std::vector<std::uint16_t> w(4096, 0x3F80), gw(4096, 0x3F00);  // 1.0 and 0.5
            for (int s = 0; s < 3; ++s) sr.step(id, w, gw, BNB_DTYPE_BF16);
            return w;
        };
        const std::vector<std::uint16_t> a = rounded(1), b = rounded(1), c = rounded(2);
        expect(a == b && a != c, "stochastic rounding repeats for a seed, differs for another");
        expect(a != std::vector<std::uint16_t>(4096, 0x3F80), "sub-ulp updates move some weights");
        std::remove(optim_path.c_str());
        std::remove(model_path.c_str());
        std::printf("final loss %.6f (from %.6f); resumed runs equal the uninterrupted run bit "
                    "for bit\n", last, first);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "FAIL: unexpected exception: %s\n", e.what());
        return 1;
    }
    std::printf(failures ? "trainer: FAILED\n" : "trainer: OK\n");
    return failures ? 1 : 0;
}
