#!/usr/bin/env python3
"""Puts the handwritten-digits table (1797 rows of 8x8 images, 64 features 0..16 and a label)
at a cache path for examples-c/quickstart.c.

The table ships inside scikit-learn's wheel (sklearn/datasets/data/digits.csv.gz), so no data
is committed here: the wheel is fetched with `pip download --no-deps` (the package tools, no
install, so it works with Debian's own Python too), that one file is extracted and
decompressed, and its SHA-256 is checked so that every machine trains on exactly the same bytes.
The wheel is pinned, version and tags: one file for every machine, whatever Python and CPU
run this script, since it is only unpacked.

Usage: fetch_digits.py [OUT_CSV]   (default: $ADAM8BIT_DATA_DIR or ~/.cache/adam8bit, digits.csv)
Prints the path of the CSV on success.
"""
import glob
import gzip
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

MEMBER = "sklearn/datasets/data/digits.csv.gz"
# SHA-256 of MEMBER, decompressed, in the wheel that WHEEL names.
SHA256 = "6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8"
WHEEL = ["scikit-learn==1.5.2", "--python-version", "3.11", "--implementation", "cp",
         "--abi", "cp311", "--platform", "manylinux2014_x86_64"]


def default_path():
    root = os.environ.get("ADAM8BIT_DATA_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "adam8bit")
    return os.path.join(root, "digits.csv")


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else default_path()
    if os.path.exists(out):
        with open(out, "rb") as f:
            if sha256(f.read()) == SHA256:
                print(out)
                return 0
        print(f"fetch_digits: {out} exists but is not the expected table; fetching it again",
              file=sys.stderr)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    print("fetch_digits: the digits table is missing; downloading scikit-learn's wheel with "
          f"`pip download --no-deps {WHEEL[0]}` (about 13 MB, nothing is installed) to extract "
          f"{MEMBER} -> {out}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--quiet", "--dest", tmp, *WHEEL]
        r = subprocess.run(cmd)
        wheels = glob.glob(os.path.join(tmp, "*.whl"))
        if r.returncode != 0 or not wheels:
            print("fetch_digits: pip could not download scikit-learn's wheel (no network or no "
                  "pip?). Put the file there by hand: it is "
                  f"{MEMBER}, decompressed, inside any scikit-learn wheel.", file=sys.stderr)
            return 1
        with zipfile.ZipFile(wheels[0]) as z:
            data = gzip.decompress(z.read(MEMBER))
    if sha256(data) != SHA256:
        print(f"fetch_digits: {MEMBER} in {os.path.basename(wheels[0])} has SHA-256 "
              f"{sha256(data)}, expected {SHA256}; the quickstart's asserted numbers were "
              "measured on the expected table", file=sys.stderr)
        return 1
    tmp_out = out + ".tmp"
    with open(tmp_out, "wb") as f:
        f.write(data)
    os.replace(tmp_out, out)  # atomic: a concurrent reader never sees half a file
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
