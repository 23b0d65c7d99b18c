"""Prints the CUDA kernels' static cost table (see scripts/kernel-costs.sh).

The instructions of a sweep's loop over a tensor's blocks (of its loops, the one with the most
code not marked cold, or the loop nested in it that holds most of that code: the Full route's
pass has a loop over tensors around one over their blocks) are split by the line table: those
whose inline stack touches a source block marked "cold path" (the block a line ending in that
comment opens, or that line itself if it opens none: the scalar code for an unaligned or
partial quad, subnormal halves, a NaN to narrow), the calls to CUDA's out-of-line slow paths
with their argument set-up, and the rest, the path an aligned full block takes. The loop
handles 8 elements per lane, so hot / 8 is the issue count per element that the budget is set
against. The line table is the compiler's: code it shares between a hot and a cold route
carries one route's lines, which is why the sweeps keep the Full route in a pass of its own.
"""
import re
import sys

SMS, CLOCK_HZ, ISSUE_PER_SM = 132, 1.98e9, 4 * 32  # H200 SXM: 4 schedulers x 32 lanes per clock
PEAK_BYTES = 4.8e12
BYTES = {"f32": 16, "f16": 10, "bf16": 10}  # blockwise: grad, param read + write, 2 codes r + w
REGS_PER_SM, THREADS_PER_SM, CTAS_PER_SM, SMEM_PER_SM, SMEM_RESERVED = 65536, 2048, 32, 233472, 1024


def cold_lines(paths):
    """Every line of a block whose first line says "cold path" (or that line, if it opens no
    block), by file."""
    cold = {}
    for path in paths:
        lines = open(path).read().split("\n")
        marked = set()
        for i, line in enumerate(lines):
            if "cold path" not in line:
                continue
            # "} else {  // cold path": the block is the one that line opens.
            code = line.split("//")[0].strip()
            code = code[1:] if code.startswith("}") else code
            depth = code.count("{") - code.count("}")
            # A line that opens the block holds its condition, which the hot route evaluates
            # too; a line that opens none is itself the cold code (a call).
            j = i
            if depth <= 0:
                marked.add(j + 1)
            while depth > 0 and j + 1 < len(lines):
                j += 1
                depth += lines[j].count("{") - lines[j].count("}")
                marked.add(j + 1)
        cold[path.split("/")[-1]] = marked
    return cold


def kernels(sass):
    """name -> list of (address, set of (file, line) of its inline stack)."""
    out, name, stack, pending = {}, None, [], False
    for line in sass.split("\n"):
        m = re.match(r"^\.text\.(\w+):", line)
        if m:
            name, stack = m.group(1), []
            out[name] = []
            continue
        m = re.match(r'\s*//## File "([^"]+)", line (\d+)', line)
        if m:
            if not pending:
                stack = []
            pending = True
            for f, l in re.findall(r'"([^"]+)", line (\d+)', line):
                stack.append((f.split("/")[-1], int(l)))
            continue
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+([^;]*);", line)
        if m and name:
            pending = False
            out[name].append((int(m.group(1), 16), m.group(2).strip(), tuple(stack)))
    return out


def slow_path_calls(body):
    """Addresses of the calls to CUDA's out-of-line slow paths (a correctly rounded division or
    square root whose operands need special handling) and of their argument set-up: the
    instructions after the predicated branch that skips them, up to the call. The kernels
    inline every function of their own, so every call in a loop is such a slow path."""
    slow = set()
    for k, (a, text, _) in enumerate(body):
        if not text.startswith("CALL.REL"):
            continue
        j = k
        while j > 0 and not re.match(r"@!?U?P\d+\s+BRA", body[j - 1][1]):
            j -= 1
        slow.update(x[0] for x in body[j:k + 1])
    return slow


def hot_path(body, cold):
    """The number of instructions of `body` (a loop) outside cold code and slow-path calls."""
    slow = slow_path_calls(body)
    return sum(1 for a, _, st in body
               if a not in slow and not any(l in cold.get(f, ()) for f, l in st))

def main():
    res, sass_path, *sources = sys.argv[1:]
    usage = {}
    for name, regs, stack, shared in re.findall(
        r"Function (\w+):\s*\n\s*REG:(\d+) STACK:(\d+) SHARED:(\d+)", open(res).read()
    ):
        usage[name] = (int(regs), int(stack), int(shared))
    sass = open(sass_path).read()
    # Label addresses: ".L_x_N:" lines precede the instruction at that address.
    label_at, current = {}, None
    for line in sass.split("\n"):
        m = re.match(r"^(\.L_x_\d+):", line)
        if m:
            current = m.group(1)
            continue
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/", line)
        if m and current:
            label_at[current] = int(m.group(1), 16)
            current = None
    cold = cold_lines(sources)
    print("| kernel | registers | stack | shared | CTAs/SM | loop instructions | hot path / element | budget / element |")
    print("|---|---|---|---|---|---|---|---|")
    for name, instrs in sorted(kernels(sass).items()):
        regs, stack, shared = usage.get(name, (0, 0, 0))
        warp_regs = -(-max(regs, 1) * 32 // 256) * 256
        ctas = min(CTAS_PER_SM, THREADS_PER_SM // 256, REGS_PER_SM // (warp_regs * 8),
                   SMEM_PER_SM // (shared + SMEM_RESERVED))
        # The loop over a tensor's blocks: of the loops (backward branches), the one with the
        # most instructions from code not marked cold, then, while one nested in it holds most
        # of those (more than half: the pass's loop over tensors around the one over their
        # blocks), that.
        loops = []
        for a, text, _ in instrs:
            m = re.search(r"BRA[^`]*`\((\.L_x_\d+)\)", text)
            if m and label_at.get(m.group(1), a + 1) < a:
                span = (label_at[m.group(1)], a)
                warm = sum(1 for x, _, st in instrs if span[0] <= x <= span[1]
                           and not any(l in cold.get(f, ()) for f, l in st))
                loops.append((warm, span))
        warm, best = max(loops) if loops else (0, None)
        while best:
            inner = [(w, sp) for w, sp in loops
                     if sp != best and best[0] <= sp[0] and sp[1] <= best[1] and 2 * w > warm]
            if not inner:
                break
            warm, best = max(inner)
        cells = ["", "", ""]
        if best and re.search(r"_(f32|f16|bf16)(_sr)?$", name):
            body = [i for i in instrs if best[0] <= i[0] <= best[1]]
            hot = hot_path(body, cold)
            dtype = re.search(r"_(f32|f16|bf16)(_sr)?$", name).group(1)
            budget = SMS * CLOCK_HZ * ISSUE_PER_SM / (0.9 * PEAK_BYTES / BYTES[dtype])
            cells = [str(len(body)), f"{hot / 8:.0f}",
                     f"{budget:.0f}" if name.startswith("a8_blockwise") else ""]
        print(f"| {name} | {regs} | {stack} | {shared} | {ctas} | " + " | ".join(cells) + " |")


main()
