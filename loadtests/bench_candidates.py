"""Candidate graph benchmark: ``python -m loadtests.bench_candidates [--repeat R] [--quick]``.

Prints, measured in one run (nothing is asserted):

1. ONNX Runtime time per video of ``candidate.onnx`` (video pass + the pass over the 5-frame
   segments, one :func:`service.candidate.run` call, as served) at 60 and 300 frames, for each
   generator (logistic, lstm, ensemble) and size (``small``, ``paper``), with 1 and 2 intra-op
   threads; and the ratio to the bare PyTorch forward of the same model (``graph_outputs`` under
   ``torch.no_grad``, same threads).
2. Training throughput (videos/s) of one optimizer step over a padded batch of 32 random videos
   of ~140 frames (the default corpus's mean length), for each model and size.

Weights are random (timing does not depend on them). ``--quick`` skips the paper size.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from loadtests.timing import best_of
from service import candidate
from service.yt8m import FEATURE_DIM
from training.candidates import (
    EnsembleModel,
    LogisticModel,
    LstmModel,
    build_model,
    model_config,
)
from training.export import export_onnx

NUM_CLASSES = 1000  # the segment task's rated vocabulary size: realistic output width


def make_models(preset: str) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    logistic = build_model(model_config("logistic", preset, NUM_CLASSES)).eval()
    lstm = build_model(model_config("lstm", preset, NUM_CLASSES)).eval()
    assert isinstance(logistic, LogisticModel) and isinstance(lstm, LstmModel)
    return {"logistic": logistic, "lstm": lstm, "ensemble": EnsembleModel(logistic, lstm).eval()}


def bench_inference(presets: list[str], repeat: int, workdir: Path) -> None:
    print("ONNX Runtime per video (one run call: video pass + segment pass)")
    print(f"{'preset':<7} {'model':<9} {'frames':>6} {'threads':>7} {'ort ms':>8} {'torch ms':>9} "
          f"{'torch/ort':>9}")  # fmt: skip
    rng = np.random.default_rng(0)
    for preset in presets:
        for name, model in make_models(preset).items():
            path = export_onnx(model, workdir / preset / name / "candidate.onnx")
            for threads in (1, 2):
                sess = candidate.open_session(path, threads=threads)
                torch.set_num_threads(threads)
                for frames_n in (60, 300):
                    frames = rng.uniform(-2, 2, (frames_n, FEATURE_DIM)).astype(np.float32)

                    def ort_call(s: object = sess, f: np.ndarray = frames) -> object:
                        return candidate.run(s, f)

                    t_ort = best_of(repeat, ort_call, warmup=True)
                    x = torch.from_numpy(frames)

                    def torch_call(m: torch.nn.Module = model, x: torch.Tensor = x) -> object:
                        with torch.no_grad():
                            return m.graph_outputs(x)  # type: ignore[operator]

                    t_torch = best_of(repeat, torch_call, warmup=True)
                    print(
                        f"{preset:<7} {name:<9} {frames_n:>6} {threads:>7} {t_ort * 1e3:>8.2f} "
                        f"{t_torch * 1e3:>9.2f} {t_torch / t_ort:>8.2f}x"
                    )


def bench_training(presets: list[str], repeat: int, batch: int = 32, frames_n: int = 140) -> None:
    print(f"\nTraining throughput (one Adam step, batch {batch} x ~{frames_n} frames)")
    print(f"{'preset':<7} {'model':<9} {'threads':>7} {'s/batch':>8} {'videos/s':>9}")
    rng = np.random.default_rng(1)
    lengths = torch.from_numpy(rng.integers(frames_n - 20, frames_n + 21, batch))
    x = torch.from_numpy(rng.uniform(-2, 2, (batch, int(lengths.max()), FEATURE_DIM)))
    x = x.to(torch.float32)
    y = torch.from_numpy((rng.random((batch, NUM_CLASSES)) < 0.003).astype(np.float32))
    for preset in presets:
        for name in ("logistic", "lstm"):
            model = build_model(model_config(name, preset, NUM_CLASSES)).train()
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)

            def step(m: torch.nn.Module = model, o: torch.optim.Optimizer = opt) -> None:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(m(x, lengths), y)
                o.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                o.step()

            for threads in (1, 2):
                torch.set_num_threads(threads)
                t = best_of(repeat, step, warmup=True)
                print(f"{preset:<7} {name:<9} {threads:>7} {t:>8.3f} {batch / t:>9.1f}")
    print(
        "(the logistic model trains on precomputed mean frames in train_candidates, so its real "
        "epochs are far cheaper than this padded-batch step)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per measurement")
    parser.add_argument("--quick", action="store_true", help="small preset only")
    args = parser.parse_args()
    presets = ["small"] if args.quick else ["small", "paper"]
    with tempfile.TemporaryDirectory(prefix="bench-candidates-") as tmp:
        bench_inference(presets, args.repeat, Path(tmp))
    bench_training(presets, max(1, args.repeat // 2))


if __name__ == "__main__":
    main()
