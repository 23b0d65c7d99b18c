//! The structs and constants the host passes to the CUDA kernels (`csrc/adam8bit_abi.cuh`,
//! `a8_scalars` in `csrc/adam8bit_math.cuh`) against their Rust mirrors (`src/cuda/abi.rs`,
//! `StepScalars`), without a GPU: the size of every struct, the offset of every field and the
//! value of every constant (integer `#define`s and enumerators), as g++ lays them out for the
//! host (the same layout nvcc uses: both follow the host ABI).
//!
//! Complete by construction: the C names are read from the headers, so a struct, field or
//! constant added on the C side without its mirror fails here; [`layout!`] names every field
//! of a Rust struct without `..`, so one added on the Rust side fails to compile until it is
//! listed. To extend: add the field to the `layout!` line of its struct (same name, same
//! order as in C), a struct as one more `layout!` line, a constant to [`constants`].

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use adam8bit::config::BLOCKSIZE;
use adam8bit::cuda::abi;
use adam8bit::qmap;
use adam8bit::scalars::StepScalars;

mod common;
use common::compile;

/// One struct: its C name, its size, and its fields' names and offsets in declaration order.
struct Layout {
    c_name: &'static str,
    size: usize,
    fields: Vec<(&'static str, usize)>,
}

/// The layout of Rust struct `ty`, mirror of C struct `c_name`, listing every field.
macro_rules! layout {
    ($c_name:literal, $ty:path { $($field:ident),* $(,)? }) => {{
        // A pattern without `..`: a field missing from the list does not compile.
        let _every_field_listed = |v: $ty| {
            let $ty { $($field: _),* } = v;
        };
        Layout {
            c_name: $c_name,
            size: std::mem::size_of::<$ty>(),
            fields: vec![$((stringify!($field), std::mem::offset_of!($ty, $field))),*],
        }
    }};
}

fn layouts() -> Vec<Layout> {
    vec![
        layout!(
            "a8_scalars",
            StepScalars {
                beta1,
                beta2,
                one_minus_beta1,
                one_minus_beta2,
                step_size,
                eps_c2,
                decay,
                eps,
                unorm_c1,
                unorm_c2,
                gnorm_scale,
                grad_scale,
                apply_decay,
            }
        ),
        layout!("a8_maps", abi::Maps { q1, q2, b1, b2 }),
        layout!(
            "a8_aux",
            abi::Aux {
                step,
                nonfinite,
                max1,
                max2,
                dec1,
                dec2,
                new_max1,
                new_max2,
                gnorm_scale,
                update_scale,
                unorm_vec,
                ticket,
                history,
            }
        ),
        layout!(
            "a8_tensor",
            abi::Tensor {
                p,
                g,
                s1,
                s2,
                a1,
                a2,
                partial,
                aux,
                n,
                first_block,
                first_chunk,
                k,
                dtype,
                flags,
                powers_last,
                call,
                lr,
                eps,
                powers,
                percentile,
                max_unorm,
                sr_key,
                sr_first,
            }
        ),
        layout!(
            "a8_batch",
            abi::Batch {
                maps,
                grad_scale,
                found_inf,
                count,
                total_blocks,
                total_chunks,
                t
            }
        ),
    ]
}

/// Every constant of the headers and the Rust value it must have.
fn constants() -> BTreeMap<&'static str, u64> {
    BTreeMap::from([
        ("A8_MAX_TENSORS", abi::MAX_TENSORS as u64),
        ("A8_BLOCK", BLOCKSIZE),
        ("A8_HISTORY", abi::HISTORY as u64),
        ("A8_F32", abi::F32 as u64),
        ("A8_F16", abi::F16 as u64),
        ("A8_BF16", abi::BF16 as u64),
        ("A8_CLIP", abi::CLIP as u64),
        ("A8_UNORM", abi::UNORM as u64),
        ("A8_SKIP_ZEROS", abi::SKIP_ZEROS as u64),
        ("A8_VECTOR", abi::VECTOR as u64),
        ("A8_CHUNK", abi::CHUNK),
        ("A8_KEY_LO", qmap::KEY_LO as u64),
        ("A8_KEY_HI", (qmap::KEY_HI_BITS >> qmap::KEY_SHIFT) as u64),
        ("A8_BUCKETS", qmap::BUCKETS as u64),
        ("A8_DYNAMIC", abi::DYNAMIC as u64),
        ("A8_STOCHASTIC", abi::STOCHASTIC as u64),
    ])
}

/// The headers that define the kernel ABI, without comments.
fn headers() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    ["csrc/adam8bit_math.cuh", "csrc/adam8bit_abi.cuh"]
        .iter()
        .map(|h| uncommented(&std::fs::read_to_string(root.join(h)).unwrap()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` without its `//` and `/* */` comments.
fn uncommented(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    loop {
        match (rest.find("//"), rest.find("/*")) {
            (Some(line), block) if block.is_none_or(|b| line < b) => {
                out += &rest[..line];
                rest = rest[line..]
                    .find('\n')
                    .map_or("", |end| &rest[line + end..]);
            }
            (_, Some(block)) => {
                out += &rest[..block];
                rest = rest[block..]
                    .find("*/")
                    .map_or("", |end| &rest[block + end + 2..]);
            }
            _ => return out + rest,
        }
    }
}

/// The trailing identifier of a declarator (`*s2` -> `s2`, `history[A8_HISTORY]` -> `history`).
fn declared_name(declarator: &str) -> String {
    let d = declarator.split('[').next().unwrap().trim_end();
    let start = d
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    d[start..].to_string()
}

/// Every `struct name { ... };` of the headers: name and field names in order.
fn c_structs(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("struct ") {
        let after = &rest[at + 7..];
        let (Some(open), Some(close)) = (after.find('{'), after.find("};")) else {
            break;
        };
        let name = after[..open].trim();
        if open < close && !name.is_empty() && !name.contains(char::is_whitespace) {
            let fields = after[open + 1..close]
                .split(';')
                .filter(|d| !d.trim().is_empty())
                .flat_map(|d| d.split(',').map(declared_name).collect::<Vec<_>>())
                .collect();
            out.push((name.to_string(), fields));
        }
        rest = &after[close + 2..];
    }
    out
}

/// Every constant of the headers: each `#define NAME <integer expression>` (of literals and other
/// constants; not a macro such as `A8_HD`) and each enumerator.
fn c_constants(text: &str) -> Vec<String> {
    // Integer literals and other A8_ constants, joined by operators and parentheses.
    let integer = |v: &str| {
        let word = |w: &str| {
            w.starts_with("A8_")
                || w.starts_with(|c: char| c.is_ascii_digit())
                    && w.chars()
                        .all(|c| c.is_ascii_hexdigit() || "xXuUlL".contains(c))
        };
        !v.is_empty()
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_()<>|&^~+-*/ ".contains(c))
            && v.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| !w.is_empty())
                .all(word)
    };
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("#define ")?;
            let (name, value) = rest.trim().split_once(char::is_whitespace)?;
            integer(value.trim()).then(|| name.to_string())
        })
        .collect();
    let mut rest = text;
    while let Some(at) = rest.find("enum ") {
        let after = &rest[at + 5..];
        let (Some(open), Some(close)) = (after.find('{'), after.find('}')) else {
            break;
        };
        let enumerators = after[open + 1..close].split(',');
        names.extend(
            enumerators
                .map(|e| e.split('=').next().unwrap().trim().to_string())
                .filter(|n| !n.is_empty()),
        );
        rest = &after[close + 1..];
    }
    names
}

/// `name value` lines from a host program that prints every size, offset and constant.
fn c_values(layouts: &[Layout], constants: &[String]) -> BTreeMap<String, u64> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let mut src = String::from("#include <cstddef>\n#include <cstdio>\n");
    src += &format!(
        "#include \"{}\"\nint main() {{\n",
        root.join("csrc/adam8bit_abi.cuh").display()
    );
    let mut print = |name: String, expr: String| {
        src += &format!(
            "    std::printf(\"%s %llu\\n\", \"{name}\", (unsigned long long)({expr}));\n"
        );
    };
    for l in layouts {
        print(l.c_name.into(), format!("sizeof({})", l.c_name));
        for (f, _) in &l.fields {
            print(
                format!("{}.{f}", l.c_name),
                format!("offsetof({}, {f})", l.c_name),
            );
        }
    }
    for c in constants {
        print(c.clone(), c.clone());
    }
    src += "    return 0;\n}\n";
    let (cpp, exe) = (dir.join("cuda_abi_layout.cpp"), dir.join("cuda_abi_layout"));
    std::fs::write(&cpp, src).unwrap();
    compile(
        "CXX",
        "g++",
        &[
            "-std=c++17".as_ref(),
            "-Wall".as_ref(),
            "-Werror".as_ref(),
            "-o".as_ref(),
            exe.as_os_str(),
            cpp.as_os_str(),
        ],
    );
    let out = Command::new(&exe).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn kernel_abi_structs_and_constants_match_their_rust_mirrors() {
    let text = headers();
    let layouts = layouts();
    let structs = c_structs(&text);
    let c_names: Vec<&str> = structs.iter().map(|(n, _)| n.as_str()).collect();
    let rust_names: Vec<&str> = layouts.iter().map(|l| l.c_name).collect();
    assert_eq!(
        c_names, rust_names,
        "the headers' structs and their Rust mirrors"
    );
    for ((name, c_fields), l) in structs.iter().zip(&layouts) {
        let rust_fields: Vec<&str> = l.fields.iter().map(|(f, _)| *f).collect();
        assert_eq!(c_fields, &rust_fields, "{name}: fields, in order");
    }
    let c_consts = c_constants(&text);
    let want = constants();
    assert_eq!(
        c_consts
            .iter()
            .map(String::as_str)
            .collect::<std::collections::BTreeSet<_>>(),
        want.keys().copied().collect(),
        "the headers' constants and their Rust values"
    );

    let got = c_values(&layouts, &c_consts);
    let mut checked = 0;
    for l in &layouts {
        assert_eq!(got[l.c_name], l.size as u64, "sizeof({})", l.c_name);
        for (f, off) in &l.fields {
            assert_eq!(
                got[&format!("{}.{f}", l.c_name)],
                *off as u64,
                "offsetof({}, {f})",
                l.c_name
            );
            checked += 1;
        }
    }
    for (c, v) in &want {
        assert_eq!(got[*c], *v, "{c}");
    }
    assert!(checked >= 43, "only {checked} fields");
    println!(
        "{} structs, {checked} fields, {} constants",
        layouts.len(),
        want.len()
    );
}
