//! `adam8bit-ckpt`: inspect, merge and split libadam8bit checkpoints.
//!
//! Exit status: 0 on success, the library's status code (`BNB_ERR_*`, 1..9) on a failure,
//! with its message on stderr, and 64 for a usage error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use adam8bit::checkpoint::manifest::path_name;
use adam8bit::checkpoint::{file, format, in_file, reshard, Checkpoint};
use adam8bit::error::Result;
use adam8bit::state::state_bytes;

const USAGE: &str = "usage:
  adam8bit-ckpt inspect <file>
  adam8bit-ckpt merge <out> <rank0> [<rank1> ...]
  adam8bit-ckpt split <in> <world> <prefix>      (writes <prefix>.<rank>-of-<world>.safetensors)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match argv.as_slice() {
        ["inspect", file] => inspect(Path::new(file)),
        ["merge", out, inputs @ ..] if !inputs.is_empty() => {
            let inputs: Vec<PathBuf> = inputs.iter().map(PathBuf::from).collect();
            reshard::merge_files(&inputs, Path::new(out))
        }
        ["split", input, world, prefix] => match world.parse::<u32>() {
            Ok(world) => {
                reshard::split_file(Path::new(input), world, Path::new(prefix)).map(|written| {
                    for p in written {
                        println!("{}", p.display());
                    }
                })
            }
            Err(_) => return usage(&format!("world `{world}` is not a number")),
        },
        _ => return usage("unknown command or wrong arguments"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("adam8bit-ckpt: {e}");
            ExitCode::from(e.status() as u8)
        }
    }
}

fn usage(why: &str) -> ExitCode {
    eprintln!("adam8bit-ckpt: {why}\n{USAGE}");
    ExitCode::from(64)
}

fn inspect(path: &Path) -> Result<()> {
    let bytes = file::read(path)?;
    let ck = format::decode(&bytes).map_err(|e| in_file(e, path))?;
    print!("{}", summary(path, bytes.len(), &ck));
    Ok(())
}

fn summary(path: &Path, file_bytes: usize, ck: &Checkpoint<'_>) -> String {
    let c = &ck.config;
    let mut s = format!(
        "{}: libadam8bit checkpoint, format version {}, written by libadam8bit {}, {file_bytes} bytes\n",
        path.display(),
        ck.format_version,
        ck.library_version
    );
    s += &format!(
        "config: lr {:?} betas ({:?}, {:?}) eps {:?} weight_decay {:?} max_unorm {:?} min_8bit_size {} \
         percentile_clipping {} block_wise {} is_paged {} skip_zeros {}\n",
        c.lr,
        c.beta1,
        c.beta2,
        c.eps,
        c.weight_decay,
        c.max_unorm,
        c.min_8bit_size,
        c.percentile_clipping,
        c.block_wise,
        c.is_paged,
        c.skip_zeros
    );
    for (g, lr) in &ck.groups {
        s += &format!("group {g}: lr {lr:?}\n");
    }
    s += &format!("{} parameters\n", ck.params.len());
    for (i, p) in ck.params.iter().enumerate() {
        let state = state_bytes(p.path, p.numel, c.clips_percentile(), c.max_unorm > 0.0);
        s += &format!(
            "param {i}: path {} numel {} dtype {} step {} state {state} bytes group {}",
            path_name(p.path),
            p.numel,
            p.dtype.name(),
            p.step,
            p.overrides.group
        );
        if let Some(sh) = p.overrides.shard {
            s += &format!(
                " shard [{}, {}) of {}",
                sh.offset,
                sh.offset + p.numel,
                sh.full_numel
            );
        }
        s.push('\n');
    }
    s
}
