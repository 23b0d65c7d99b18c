// image.cpp: reads an nvcc fatbin (or a bare cubin) far enough to know its kernels: their
// names, launch bounds, parameter sizes, registers, stack frames and static shared memory.
//
// The fatbin container: a 16-byte header (magic 0xBA55ED50, version, header size, payload
// size) and entries, each a header (kind: 1 PTX, 2 ELF cubin; its own size; payload size; the
// SM version at offset 28; flags at offset 40) followed by its payload. A cubin is an ELF64
// file (machine EM_CUDA = 190) whose kernels have a `.text.<name>` section, a `.nv.info.<name>`
// section of attributes, and entries in the global `.nv.info` keyed by symbol index.
#include "image.h"

#include <stdint.h>
#include <string.h>

#include <map>

namespace cuemu {
namespace {

constexpr uint32_t kFatbinMagic = 0xBA55ED50u;
constexpr uint16_t kElfMachineCuda = 190;
// Entry flags seen on compressed payloads (PTX is zstd-compressed by default since CUDA 12.8).
constexpr uint32_t kFlagCompressed = 0x2000u | 0x8000u;

// nv.info attributes (the subset the emulator uses).
constexpr uint8_t kAttrMaxThreads = 0x05;
constexpr uint8_t kAttrReqNtid = 0x10;
constexpr uint8_t kAttrFrameSize = 0x11;
constexpr uint8_t kAttrParamSize = 0x19;
constexpr uint8_t kAttrRegCount = 0x2f;

template <class T>
bool read(const uint8_t *base, size_t size, size_t off, T &out) {
    if (off > size || size - off < sizeof(T)) return false;
    memcpy(&out, base + off, sizeof(T));
    return true;
}

struct Section {
    std::string name;
    uint32_t type = 0;
    uint64_t offset = 0, size = 0;
    uint32_t link = 0;
};

struct Elf {
    const uint8_t *data = nullptr;
    size_t size = 0;
    std::vector<Section> sections;
    std::vector<std::string> symbol_names;  // by symbol index
    std::map<std::string, size_t> by_name;

    const Section *find(const std::string &name) const {
        auto it = by_name.find(name);
        return it == by_name.end() ? nullptr : &sections[it->second];
    }
    bool bytes(const Section &s, const uint8_t *&p) const {
        if (s.offset > size || size - s.offset < s.size) return false;
        p = data + s.offset;
        return true;
    }
};

// The length of an ELF64 file from its headers (the section table is its last part).
bool elf_length(const uint8_t *d, size_t &len) {
    uint64_t shoff;
    uint16_t shentsize, shnum;
    if (!read(d, 64, 0x28, shoff) || !read(d, 64, 0x3a, shentsize) || !read(d, 64, 0x3c, shnum))
        return false;
    len = (size_t)(shoff + (uint64_t)shentsize * shnum);
    return true;
}

bool parse_elf(const uint8_t *d, size_t size, Elf &e, std::string &error) {
    e.data = d;
    e.size = size;
    uint16_t machine = 0, shentsize = 0, shnum = 0, shstrndx = 0;
    uint64_t shoff = 0;
    if (size < 64 || memcmp(d, "\x7f" "ELF", 4) != 0 || d[4] != 2 || d[5] != 1) {
        error = "not a 64-bit little-endian ELF cubin";
        return false;
    }
    read(d, size, 0x12, machine);
    read(d, size, 0x28, shoff);
    read(d, size, 0x3a, shentsize);
    read(d, size, 0x3c, shnum);
    read(d, size, 0x3e, shstrndx);
    if (machine != kElfMachineCuda) {
        error = "an ELF file for machine " + std::to_string(machine) + ", not a CUDA cubin";
        return false;
    }
    if (shentsize < 64 || shstrndx >= shnum) {
        error = "a cubin with a malformed section table";
        return false;
    }
    std::vector<uint32_t> name_offsets;
    for (uint16_t i = 0; i < shnum; ++i) {
        size_t h = (size_t)(shoff + (uint64_t)i * shentsize);
        Section s;
        uint32_t name;
        if (!read(d, size, h, name) || !read(d, size, h + 4, s.type) ||
            !read(d, size, h + 24, s.offset) || !read(d, size, h + 32, s.size) ||
            !read(d, size, h + 40, s.link)) {
            error = "a cubin whose section table runs past its end";
            return false;
        }
        name_offsets.push_back(name);
        e.sections.push_back(s);
    }
    const Section &strtab = e.sections[shstrndx];
    const uint8_t *names;
    if (!e.bytes(strtab, names)) {
        error = "a cubin whose section names run past its end";
        return false;
    }
    for (size_t i = 0; i < e.sections.size(); ++i) {
        uint32_t o = name_offsets[i];
        if (o >= strtab.size) continue;
        e.sections[i].name.assign((const char *)names + o,
                                  strnlen((const char *)names + o, strtab.size - o));
        e.by_name[e.sections[i].name] = i;
    }
    const Section *symtab = e.find(".symtab");
    if (!symtab || symtab->link >= e.sections.size()) return true;
    const Section &symstr = e.sections[symtab->link];
    const uint8_t *syms, *strs;
    if (!e.bytes(*symtab, syms) || !e.bytes(symstr, strs)) {
        error = "a cubin whose symbol table runs past its end";
        return false;
    }
    for (uint64_t off = 0; off + 24 <= symtab->size; off += 24) {
        uint32_t name;
        memcpy(&name, syms + off, 4);
        e.symbol_names.push_back(
            name < symstr.size
                ? std::string((const char *)strs + name, strnlen((const char *)strs + name, symstr.size - name))
                : std::string());
    }
    return true;
}

// Calls f(attr, value, value_size) for each attribute of an .nv.info section.
template <class F>
bool each_attribute(const uint8_t *p, uint64_t size, F f) {
    uint64_t o = 0;
    while (o + 2 <= size) {
        uint8_t format = p[o], attr = p[o + 1];
        if (format == 1) {  // no value
            o += 2;
        } else if (format == 2 || format == 3) {  // an immediate in the next two bytes
            if (o + 4 > size) return false;
            f(attr, p + o + 2, 2);
            o += 4;
        } else if (format == 4) {  // a sized value
            if (o + 4 > size) return false;
            uint16_t len;
            memcpy(&len, p + o + 2, 2);
            if (o + 4 + len > size) return false;
            f(attr, p + o + 4, len);
            o += 4 + (uint64_t)len;
        } else {
            return false;
        }
    }
    return true;
}

uint32_t word(const uint8_t *v, size_t i) {
    uint32_t w;
    memcpy(&w, v + 4 * i, 4);
    return w;
}

bool read_kernels(const Elf &e, Image &out, std::string &error) {
    std::map<std::string, unsigned> regs, frames;
    if (const Section *info = e.find(".nv.info")) {
        const uint8_t *p;
        if (!e.bytes(*info, p)) return error = "a cubin whose .nv.info runs past its end", false;
        each_attribute(p, info->size, [&](uint8_t attr, const uint8_t *v, size_t len) {
            if (len != 8 || (attr != kAttrRegCount && attr != kAttrFrameSize)) return;
            uint32_t sym = word(v, 0);
            if (sym >= e.symbol_names.size()) return;
            (attr == kAttrRegCount ? regs : frames)[e.symbol_names[sym]] = word(v, 1);
        });
    }
    const std::string prefix = ".nv.info.";
    for (const Section &s : e.sections) {
        if (s.name.compare(0, prefix.size(), prefix) != 0) continue;
        ImageKernel k;
        k.name = s.name.substr(prefix.size());
        if (!e.find(".text." + k.name)) continue;
        const uint8_t *p;
        if (!e.bytes(s, p)) return error = "a cubin whose " + s.name + " runs past its end", false;
        bool ok = each_attribute(p, s.size, [&](uint8_t attr, const uint8_t *v, size_t len) {
            if ((attr == kAttrMaxThreads || attr == kAttrReqNtid) && len == 12)
                k.max_threads = word(v, 0) * word(v, 1) * word(v, 2);
            if (attr == kAttrParamSize && len == 2) {
                uint16_t b;
                memcpy(&b, v, 2);
                k.param_bytes = b;
            }
        });
        if (!ok) return error = "a cubin with a malformed " + s.name, false;
        k.registers = regs.count(k.name) ? regs[k.name] : 0;
        k.local_bytes = frames.count(k.name) ? frames[k.name] : 0;
        if (const Section *sh = e.find(".nv.shared." + k.name)) k.static_shared = (unsigned)sh->size;
        out.kernels.push_back(k);
    }
    return true;
}

}  // namespace

bool parse_image(const void *data, unsigned arch, Image &out, std::string &error) {
    const uint8_t *d = (const uint8_t *)data;
    if (!d) return error = "the image is NULL", false;
    uint32_t magic;
    memcpy(&magic, d, 4);
    if (memcmp(d, "\x7f" "ELF", 4) == 0) {
        size_t len;
        if (!elf_length(d, len)) return error = "a truncated ELF header", false;
        Elf e;
        if (!parse_elf(d, len, e, error)) return false;
        out.arch = arch;
        out.bytes = len;
        return read_kernels(e, out, error);
    }
    if (magic != kFatbinMagic) {
        error = "neither a fatbin nor a cubin (PTX cannot be run: the emulator has no JIT; "
                "embed SASS for sm_" + std::to_string(arch) + ")";
        return false;
    }
    uint16_t header;
    uint64_t payload;
    memcpy(&header, d + 6, 2);
    memcpy(&payload, d + 8, 8);
    const size_t total = header + payload;
    out.bytes = total;
    std::string archs;
    for (size_t o = header; o + 48 <= total;) {
        uint16_t kind = 0;
        uint32_t entry_header = 0, sm = 0, flags = 0;
        uint64_t size = 0;
        read(d, total, o, kind);
        read(d, total, o + 4, entry_header);
        read(d, total, o + 8, size);
        read(d, total, o + 28, sm);
        read(d, total, o + 40, flags);
        if (entry_header < 48 || size > total || o + entry_header + size > total)
            return error = "a fatbin entry runs past the image's end", false;
        const uint8_t *payload_at = d + o + entry_header;
        if (kind == 2) {
            archs += " sm_" + std::to_string(sm);
            if (sm == arch) {
                if (flags & kFlagCompressed)
                    return error = "the sm_" + std::to_string(arch) +
                                   " cubin is compressed (the emulator reads plain cubins)",
                           false;
                Elf e;
                if (!parse_elf(payload_at, (size_t)size, e, error)) return false;
                out.arch = sm;
                return read_kernels(e, out, error);
            }
        }
        o += entry_header + size;
    }
    error = "no cubin for sm_" + std::to_string(arch) + " in the fatbin (it has:" +
            (archs.empty() ? std::string(" none") : archs) + ")";
    return false;
}

}  // namespace cuemu
