#!/usr/bin/env python3
"""Time the official TinyRecursiveModels code on the same synthetic work as `trm bench`.

Usage: bench_official.py --dir OFFICIAL_CHECKOUT --config sudoku-att --hidden 128 --batch 32
       [--steps 3] [--threads 2] [--n-sup 4] [--latency-n-sup 16] [--only train,infer,latency]
       [--compile] [--device cpu|cuda]

Prints one JSON line per result with the fields of `trm bench` (kind, config, batch, hidden,
n_sup, median_s, per_s, peak_rss_mib, base_rss_mib; on cuda also device_peak_mib, the most
memory torch's caching allocator reserved in the phase, as `trm bench` reports for its GPU
backends, and device_allocated_peak_mib). Float32 on either device (the official trainer
runs bfloat16 on GPUs; float32 compares the same arithmetic), TF32 off. Eager by default;
--compile wraps the model in torch.compile as the official pretrain.py does (unless
DISABLE_COMPILE is set); compilation happens in the warm-up and is not timed. The official trainer uses AdamATan2, which needs
CUDA; on CPU this times torch.optim.AdamW instead (the same elementwise cost) and says so.
Exits 3 (and prints what to install) when torch or the checkout is missing.
"""
import argparse
import json
import os
import statistics
import sys
import time


def fail(msg):
    print(f"bench_official: skipped: {msg}", file=sys.stderr)
    sys.exit(3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--config", default="sudoku-att", choices=["sudoku-att", "sudoku-mlp"])
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-sup", type=int, default=4)
    ap.add_argument("--latency-n-sup", type=int, default=16)
    ap.add_argument("--only", default="train,infer,latency")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="where the official model runs; cuda times with torch.cuda.synchronize()")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the model, as the official pretrain.py does unless DISABLE_COMPILE is set")
    a = ap.parse_args()

    trm_py = os.path.join(a.dir, "models", "recursive_reasoning", "trm.py")
    if not os.path.exists(trm_py):
        fail(f"{trm_py} not found: pass a checkout of github.com/SamsungSAILMontreal/TinyRecursiveModels")
    try:
        import torch
    except ImportError:
        fail(f"{sys.executable} has no torch: `pip install torch` (PyPI; or the CPU-only wheel with "
             "`--index-url https://download.pytorch.org/whl/cpu`), plus `pip install pydantic einops` "
             "for the official model; pass that python with --python")
    try:
        import pydantic, einops  # noqa: F401  (imported by the official model)
    except ImportError:
        fail("the official model needs `pip install pydantic einops`")
    if a.device == "cuda" and not torch.cuda.is_available():
        fail(f"torch {torch.__version__} sees no CUDA device (--device cuda)")
    sys.path.insert(0, a.dir)
    from models.recursive_reasoning.trm import TinyRecursiveReasoningModel_ACTV1
    from models.losses import ACTLossHead

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cuda = a.device == "cuda"
    if cuda:
        # As pretrain.py's `with torch.device("cuda")`: parameters, buffers and carries there.
        torch.set_default_device("cuda")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    only = a.only.split(",")
    h = a.hidden
    def config(batch, n_sup):
        return dict(
            batch_size=batch, seq_len=81, puzzle_emb_ndim=h, num_puzzle_identifiers=1, vocab_size=11,
            H_cycles=3, L_cycles=6, H_layers=0, L_layers=2, hidden_size=h, expansion=4.0, num_heads=8,
            pos_encodings="none" if a.config == "sudoku-mlp" else "rope", halt_max_steps=n_sup,
            halt_exploration_prob=0.1, forward_dtype="float32", mlp_t=a.config == "sudoku-mlp",
            puzzle_emb_len=16, no_ACT_continue=True)

    def batch_of(n):
        g = torch.Generator(device="cpu").manual_seed(1)
        batch = {
            "inputs": torch.randint(1, 11, (n, 81), generator=g, dtype=torch.int32, device="cpu"),
            "labels": torch.randint(1, 11, (n, 81), generator=g, dtype=torch.int32, device="cpu"),
            "puzzle_identifiers": torch.zeros(n, dtype=torch.int32, device="cpu"),
        }
        return {k: v.to(a.device) for k, v in batch.items()}

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def status_mib(field):
        # VmRSS / VmHWM from /proc/self/status (Linux), in MiB, as `trm bench` reads them.
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        return None

    def phase_start():
        # Reset the peak RSS to the current RSS, as `trm bench` does before each phase, and on
        # cuda free the allocator's cached pages and its peak counters.
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        if cuda:
            sync()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        return status_mib("VmRSS")

    def device_fields():
        if not cuda:
            return {}
        mib = 1024.0 * 1024.0
        return dict(device_peak_mib=torch.cuda.max_memory_reserved() / mib,
                    device_allocated_peak_mib=torch.cuda.max_memory_allocated() / mib,
                    gpu=torch.cuda.get_device_name())

    def timed(fn):
        # Compiled graphs can recompile on the first calls (the carry's guards change), so
        # give them a longer untimed warm-up.
        for _ in range(max(a.warmup, 3) if a.compile else a.warmup):
            fn()
        sync()
        out = []
        for _ in range(a.steps):
            t = time.perf_counter()
            fn()
            sync()
            out.append(time.perf_counter() - t)
        return out

    mode = "torch.compile" if a.compile else "eager"

    def emit(kind, batch, n_sup, samples, note, base_rss):
        med = statistics.median(samples)
        per = (batch if kind == "inference" else 1) / med
        print(json.dumps(dict(kind=kind, config=f"{a.config}-h{h}", backend=f"torch-{torch.__version__}-{a.device}-{mode}",
                              batch=batch, hidden=h, n_sup=n_sup, iters=len(samples), median_s=med,
                              min_s=min(samples), per_s=per, threads=a.threads,
                              peak_rss_mib=status_mib("VmHWM"), base_rss_mib=base_rss,
                              note=f"{mode}; {note}", **device_fields())), flush=True)

    if "train" in only:
        base_rss = phase_start()
        model = ACTLossHead(TinyRecursiveReasoningModel_ACTV1(config(a.batch, 16)), "stablemax_cross_entropy")
        model.train()
        if a.compile:
            model = torch.compile(model)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
        batch = batch_of(a.batch)
        state = {"carry": model.initial_carry(batch)}

        def step():
            carry, loss, _, _, _ = model(return_keys=[], carry=state["carry"], batch=batch)
            (loss / a.batch).backward()
            opt.step()
            opt.zero_grad()
            state["carry"] = carry
        # AdamATan2 (the official optimizer) is a compiled CUDA extension that is not on PyPI as
        # a wheel; AdamW does the same elementwise work.
        emit("train_step", a.batch, 1, timed(step), "torch AdamW in place of AdamATan2", base_rss)

    def infer(batch_size, n_sup, kind):
        base_rss = phase_start()
        model = TinyRecursiveReasoningModel_ACTV1(config(batch_size, n_sup))
        model.eval()
        if a.compile:
            model = torch.compile(model)
        batch = batch_of(batch_size)

        def run():
            with torch.inference_mode():
                carry = model.initial_carry(batch)
                for _ in range(n_sup):
                    carry, _ = model(carry=carry, batch=batch)
        emit(kind, batch_size, n_sup, timed(run), "eval mode: always N_sup steps", base_rss)

    if "infer" in only:
        infer(a.batch, a.n_sup, "inference")
    if "latency" in only and a.latency_n_sup > 0:
        infer(1, a.latency_n_sup, "latency")


if __name__ == "__main__":
    main()
