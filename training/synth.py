"""A synthetic corpus in the YouTube-8M frame-level layout (``ccrl synth OUT``).

The corpus makes temporal concept localization a real, learnable and not trivial task: video-level
labels are cheap and noisy, concepts appear only in stretches of their videos, look-alike sibling
classes make hard negatives, and both modalities carry part of the evidence.

Generative model
----------------
**World** (one per ``(seed, classes, knobs)``; :func:`build_world`):

- Class ids are vocabulary indices ordered by expected frequency (id 0 is the most frequent, as in
  the real vocabulary). Classes form a hierarchy: ``verticals`` (about ``classes_per_vertical``
  classes each) -> ``clusters`` of ``cluster_size`` siblings -> classes. Hierarchy and frequency
  are independent (a random permutation assigns classes to clusters).
- Every vertical, cluster, class and class *mode* has a random unit direction in the rgb space
  (1024-d) and one in the audio space (128-d); the background has ``background_atoms`` shared unit
  *atoms* per 1024 dimensions (48 in rgb, 6 in audio). The prototype of class c is
  ``vertical_scale * u_vertical + cluster_scale * u_cluster + class_scale * w * u_class`` with
  decreasing scales, so siblings are close, classes of one vertical less so, other verticals far.
  ``w`` splits the class-specific part between the modalities: a class draws its rgb share
  ``rho ~ U(rgb_share)``, rgb gets ``sqrt(2 rho)`` and audio ``sqrt(2 (1 - rho))``, so some classes
  differ from their siblings mostly by sound and others mostly by sight.
- Each class has ``modes_per_class`` sub-styles (direction ``u_mode`` of scale ``mode_scale``)
  shared across videos: labelled segments of a class in other videos are informative beyond the
  prototype (the CCRL similarity features).
- Video-label frequencies are Zipf-like: ``p(c) ~ (c + 1 + zipf_offset) ** -zipf_exponent``.
- Rated classes (``segment_label_ids.csv``): ``rated_fraction`` of the classes, drawn at random
  from all but the ``head_fraction`` most frequent ones. Generic head classes are not rated: a
  rated class must be specific enough that the videos showing it fit in the top 1/20 of a split
  (the candidate stage's budget).

**Video** (:func:`generate_video`, one independent random stream per video):

- Length ``F = min_frames + (max_frames - min_frames) * Beta(length_beta)`` frames (mean about
  140 with the defaults; many are not a multiple of 5).
- ``k`` true classes, ``P(k) = labels_per_video_probs`` for k = 1..5: the first (the video's
  *main topic*) by Zipf, or the video's rated class in validate/test; the others by Zipf with
  weights multiplied by ``1 + same_vertical_boost`` within the main topic's vertical.
- Timeline: each true class is shown in 1 to 3 contiguous runs covering ``U(coverage)`` of the
  video (the main topic at least ``main_min_coverage``, never squeezed by the others); with
  ``decoy_prob`` the video also shows a run of a *sibling* of the main topic (same cluster, not a
  true class, not labelled): a look-alike hard negative. Runs never overlap; the rest, at least
  ``min_background`` of the frames, is background.
- Frames: ``bias + scene + shot + noise + context + concept``, per modality. ``bias`` is a fixed
  per-dimension offset (``bias_scale``), ``scene`` a per-video mixture of the shared background
  atoms (``scene_scale``), ``shot`` a per-shot mixture (shots of about ``mean_shot_frames``,
  ``shot_scale``), ``noise`` i.i.d. Gaussian (``frame_noise`` per dimension), ``context`` =
  ``context_scale / sqrt(k)`` times the sum of the true classes' prototypes on every frame (a
  video about c looks a little like c throughout: easy at video level, a trap per segment), and
  ``concept`` = ``strength * (prototype + u_mode)`` on the frames of a run. A run draws
  ``strength ~ U(strength)``, jittered per frame by ``strength_jitter``; with
  ``audio_dropout_prob`` its audio carries no concept, else with ``rgb_weak_prob`` its visual is
  scaled by ``rgb_weak_factor`` (so neither modality alone settles the hardest cases). A video keeps
  one mode per class with probability ``same_mode_prob``, else each run draws its own.
- Everything is quantized with :func:`service.yt8m.quantize` (values within [-2, 2]).
- Video labels (noisy): each true class but the rated one is dropped with ``missing_label_prob``
  (at least one label is kept); with ``spurious_label_prob`` one class that is not shown is added
  (half the time a sibling of a true class). 1 to 5 labels per video.

**Ratings** (validate/test only): every rated video is rated for one class from the rated subset
that it shows (assigned round-robin over the rated classes, so ratings per class are even), and
with ``second_class_prob`` also for a second rated class it shows. A video gets
``U{ratings_per_video}`` ratings (about 5), positives with probability ``positive_share``: a
positive is a segment with at least 3 of its 5 frames showing the class; a negative shows none of
it, drawn with weights that favour look-alike sibling segments (``hard_negative_weight``) and other
concepts over background. With ``absent_rated_prob`` (0.2) a rated video does not show its rated
class at all, as happens in the real data, whose raters were sent to videos by noisy video labels:
it is about a look-alike sibling, carries the rated class as a (spurious) video label, and all of
its ratings of that class are negatives. Those negatives sit in videos that a good video model ranks
low for the class, so they are what candidate generation can remove from a class's list (without
them every rated negative shares a video with a positive, and CG can only lose positives).
``positive_share`` is the corpus-wide target: videos that show their rated class get
``positive_share / (1 - absent_rated_prob)`` positives.

**Knobs that are off by default** (the ``hard`` profile of :mod:`training.synth_profiles` uses
them; off, they draw nothing from the random streams, so the default corpus is unchanged):
``rated_minor_prob``, a rated video that shows its rated class is about another topic and shows
the rated class as a secondary one (ordinary coverage, a low video-level score: the videos that
candidate generation at 1/20 misses); ``run_style_scale``, every run adds a random direction of
its own to its class's signal (labelled segments of other videos look less alike);
``rating_flip_prob``, a rating's score is flipped (rater mistakes).

**Splits**: ``split_fractions`` = 60% train (video labels only), 25% validate, 15% test.

At the default size (``ccrl synth OUT``: 2000 videos, 100 classes, seed 0) that is 1200 / 500 /
300 videos of 139 / 135 / 132 frames on average; 2.3 labels per video; train label counts from 9
(rarest class) through 21 (median) to 111 (most frequent); 60 rated classes (drawn from ids
20..99) with 8-11 validate and 5-7 test videos each, 34-50 validate and 20-33 test ratings per
class, about 5 ratings per rated video, 55% positive. ``synth.json`` records every knob, the
hierarchy and these statistics for the corpus actually written.

Calibration (default corpus, measured, not enforced): the project's logistic candidate model
trained on train/ reaches Recall@K = 0.998 on test/ at K = 15 = 1/20 of the videos, while its
per-segment probabilities rank the rated test segments at AP 0.87 (chance 0.56): the video-level
task is easy, the segment-level one real but imperfect, and similarity to labelled segments of
other videos adds information beyond the class prototype.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from service.yt8m import (
    AUDIO_DIM,
    MAX_FRAMES,
    RGB_DIM,
    SEGMENT_FRAMES,
    Video,
    quantize,
)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

SPLITS = ("train", "validate", "test")
FORMAT_VERSION = 1
VOCABULARY_COLUMNS = (
    "Index",
    "TrainVideoCount",
    "KnowledgeGraphId",
    "Name",
    "WikiUrl",
    "Vertical1",
    "Vertical2",
    "Vertical3",
    "WikiDescription",
)
_VERTICAL_NAMES = (
    "Arts & Entertainment",
    "Games",
    "Autos & Vehicles",
    "Sports",
    "Food & Drink",
    "Computers & Electronics",
    "Pets & Animals",
    "Hobbies & Leisure",
    "Business & Industrial",
    "Beauty & Fitness",
    "Home & Garden",
    "Science",
    "Travel",
    "Shopping",
    "Music & Audio",
    "Jobs & Education",
    "Law & Government",
    "Health",
    "News",
    "Reference",
    "People & Society",
    "Internet & Telecom",
    "Real Estate",
    "Finance",
    "Books & Literature",
)
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "tr", "st")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "io")
_CODAS = ("", "", "n", "r", "s", "x", "l", "th")
_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class SynthConfig:
    """Every knob of the generative model (see the module docstring for what each one does)."""

    videos: int = 2000
    classes: int = 100
    seed: int = 0
    split_fractions: tuple[float, float, float] = (0.60, 0.25, 0.15)
    # Video length.
    min_frames: int = 60
    max_frames: int = 300
    length_beta: tuple[float, float] = (1.2, 2.5)
    # Hierarchy and geometry.
    classes_per_vertical: float = 16.0
    cluster_size: tuple[int, int] = (2, 5)
    modes_per_class: int = 3
    vertical_scale: float = 1.0
    cluster_scale: float = 0.7
    class_scale: float = 0.5
    mode_scale: float = 0.8
    rgb_share: tuple[float, float] = (0.3, 0.9)
    # Video-label frequencies.
    zipf_exponent: float = 0.8
    zipf_offset: float = 5.0
    labels_per_video_probs: tuple[float, ...] = (0.30, 0.30, 0.20, 0.12, 0.08)
    same_vertical_boost: float = 3.0
    missing_label_prob: float = 0.08
    spurious_label_prob: float = 0.08
    # Timeline.
    coverage: tuple[float, float] = (0.15, 0.45)
    main_min_coverage: float = 0.25
    min_background: float = 0.15
    min_run_frames: int = 8
    decoy_prob: float = 0.7
    decoy_coverage: tuple[float, float] = (0.08, 0.20)
    # Appearance.
    strength: tuple[float, float] = (0.25, 1.0)
    strength_jitter: float = 0.25
    audio_dropout_prob: float = 0.2
    rgb_weak_prob: float = 0.15
    rgb_weak_factor: float = 0.3
    same_mode_prob: float = 0.7
    run_style_scale: float = 0.0
    context_scale: float = 0.8
    background_atoms: int = 48
    scene_scale: float = 1.2
    shot_scale: float = 0.8
    mean_shot_frames: float = 12.0
    frame_noise: float = 0.35
    bias_scale: float = 0.15
    # Ratings.
    rated_fraction: float = 0.6
    head_fraction: float = 0.2
    ratings_per_video: tuple[int, int] = (4, 6)
    positive_share: float = 0.55
    second_class_prob: float = 0.1
    absent_rated_prob: float = 0.2
    hard_negative_weight: float = 4.0
    other_concept_weight: float = 2.0
    rated_minor_prob: float = 0.0
    rating_flip_prob: float = 0.0

    def validate(self) -> None:
        """Raise ``ValueError`` naming the knob when a value is out of range."""
        if self.videos < 3:
            raise ValueError(f"videos must be >= 3 (one per split), got {self.videos}")
        if self.classes < 4:
            raise ValueError(f"classes must be >= 4, got {self.classes}")
        if not 1 <= self.min_frames <= self.max_frames <= MAX_FRAMES:
            raise ValueError(
                f"need 1 <= min_frames <= max_frames <= {MAX_FRAMES}, "
                f"got min_frames={self.min_frames}, max_frames={self.max_frames}"
            )
        if self.min_frames < 2 * SEGMENT_FRAMES:
            raise ValueError(f"min_frames must be >= {2 * SEGMENT_FRAMES}, got {self.min_frames}")
        if len(self.split_fractions) != 3 or any(f <= 0 for f in self.split_fractions):
            raise ValueError(f"split_fractions must be 3 positive numbers: {self.split_fractions}")
        if not 1 <= len(self.labels_per_video_probs) <= 5:
            raise ValueError("labels_per_video_probs must give P(k) for k = 1..K, K <= 5")
        if not 0 < self.rated_fraction <= 1 or not 0 <= self.head_fraction < 1:
            raise ValueError("rated_fraction must be in (0, 1] and head_fraction in [0, 1)")
        if self.cluster_size[0] < 2 or self.cluster_size[1] < self.cluster_size[0]:
            raise ValueError(f"cluster_size must be (lo >= 2, hi >= lo): {self.cluster_size}")
        if not 0 <= self.absent_rated_prob < 0.5:
            raise ValueError(f"absent_rated_prob must be in [0, 0.5), got {self.absent_rated_prob}")
        for knob in ("rated_minor_prob", "rating_flip_prob"):
            if not 0 <= getattr(self, knob) < 0.5:
                raise ValueError(f"{knob} must be in [0, 0.5), got {getattr(self, knob)}")
        if self.run_style_scale < 0:
            raise ValueError(f"run_style_scale must be >= 0, got {self.run_style_scale}")
        if self.ratings_per_video[0] < 2 or self.ratings_per_video[1] < self.ratings_per_video[0]:
            raise ValueError(
                f"ratings_per_video must be (lo >= 2, hi >= lo): {self.ratings_per_video}"
            )

    def split_sizes(self) -> tuple[int, int, int]:
        """Videos per split (train, validate, test), each at least 1, summing to ``videos``."""
        total = sum(self.split_fractions)
        val = max(1, round(self.videos * self.split_fractions[1] / total))
        test = max(1, round(self.videos * self.split_fractions[2] / total))
        train = self.videos - val - test
        if train < 1:
            raise ValueError(f"{self.videos} videos are too few for three splits")
        return train, val, test


@dataclass
class Modality:
    """The directions of one modality (D = 1024 for rgb, 128 for audio), all float32.

    Attributes:
        prototypes: [C, D] class prototypes (hierarchy part, no mode).
        modes: [C, M, D] mode offsets.
        verticals: [V, D] vertical directions (unit).
        atoms: [B, D] background atoms (unit).
        bias: [D] per-dimension offset.
    """

    prototypes: F32
    modes: F32
    verticals: F32
    atoms: F32
    bias: F32


@dataclass
class World:
    """The class hierarchy, frequencies, rated subset, names and feature geometry of a corpus.

    Attributes:
        vertical_of: int64 [C], vertical index of each class.
        cluster_of: int64 [C], cluster index of each class (clusters never span verticals).
        zipf: float64 [C], normalized video-label frequency weights (decreasing with the id).
        rated: int64 [R], sorted rated class ids.
        rgb_share: float64 [C], the rho of each class.
        rgb, audio: the :class:`Modality` geometry.
    """

    config: SynthConfig
    vertical_names: list[str]
    cluster_names: list[str]
    class_names: list[str]
    kg_ids: list[str]
    vertical_of: I64
    cluster_of: I64
    zipf: npt.NDArray[np.float64]
    rated: I64
    rgb_share: npt.NDArray[np.float64]
    rgb: Modality
    audio: Modality
    siblings: list[I64] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def prototype(self, c: int) -> F32:
        """Class c's prototype, rgb then audio: float32 [1152] (dequantized units, no bias)."""
        return np.concatenate([self.rgb.prototypes[c], self.audio.prototypes[c]])

    def bias(self) -> F32:
        """The fixed per-dimension offset of every frame, rgb then audio: float32 [1152]."""
        return np.concatenate([self.rgb.bias, self.audio.bias])


@dataclass
class VideoTruth:
    """What a video really shows (for tests and diagnostics; not written to the corpus).

    Attributes:
        classes: int64 [k], the true (shown) classes.
        presence: int64 [F], the class shown on each frame, -1 for background.
        decoys: int64 [d], sibling classes shown as look-alikes (not labelled).
        rated: int64 [r], the classes the video is rated for (empty in train).
    """

    classes: I64
    presence: I64
    decoys: I64
    rated: I64

    def segment_coverage(self, c: int) -> I64:
        """Frames of each whole segment that show class c: int64 [F // 5], values 0..5."""
        s = len(self.presence) // SEGMENT_FRAMES
        hits = self.presence[: s * SEGMENT_FRAMES] == c
        return np.asarray(hits.reshape(s, SEGMENT_FRAMES).sum(axis=1), dtype=np.int64)


def _unit(rng: np.random.Generator, n: int, dim: int) -> npt.NDArray[np.float64]:
    """n random unit vectors: [n, dim]."""
    v = rng.standard_normal((n, dim))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def _word(rng: np.random.Generator, syllables: int) -> str:
    parts = []
    for _ in range(syllables):
        parts.append(_ONSETS[rng.integers(len(_ONSETS))])
        parts.append(_VOWELS[rng.integers(len(_VOWELS))])
    parts.append(_CODAS[rng.integers(len(_CODAS))])
    return "".join(parts).capitalize()


def _make_names(
    rng: np.random.Generator, cluster_of: I64, n_clusters: int
) -> tuple[list[str], list[str]]:
    """Cluster words and class names: siblings share their cluster word (like 'BMW 3 Series').

    Some names carry commas and quotes on purpose, to exercise CSV quoting downstream.
    """
    used: set[str] = set()

    def fresh(syllables: int) -> str:
        while True:
            w = _word(rng, syllables)
            if w not in used:
                used.add(w)
                return w

    cluster_names = [fresh(2) for _ in range(n_clusters)]
    names: list[str] = []
    for c, k in enumerate(cluster_of):
        base = f"{cluster_names[k]} {fresh(int(rng.integers(1, 3)))}"
        if c % 11 == 5:
            base = f"{base}, {fresh(1)}"
        elif c % 13 == 7:
            base = f'{base} "{fresh(1)}"'
        names.append(base)
    return cluster_names, names


def _modality(
    rng: np.random.Generator,
    cfg: SynthConfig,
    dim: int,
    vertical_of: I64,
    cluster_of: I64,
    class_weight: npt.NDArray[np.float64],
) -> Modality:
    n_vert = int(vertical_of.max()) + 1
    n_clus = int(cluster_of.max()) + 1
    c = len(vertical_of)
    u_vert = _unit(rng, n_vert, dim)
    u_clus = _unit(rng, n_clus, dim)
    u_cls = _unit(rng, c, dim)
    u_mode = _unit(rng, c * cfg.modes_per_class, dim).reshape(c, cfg.modes_per_class, dim)
    protos = (
        cfg.vertical_scale * u_vert[vertical_of]
        + cfg.cluster_scale * u_clus[cluster_of]
        + cfg.class_scale * class_weight[:, None] * u_cls
    )
    return Modality(
        prototypes=protos.astype(np.float32),
        modes=(cfg.mode_scale * u_mode).astype(np.float32),
        verticals=u_vert.astype(np.float32),
        atoms=_unit(rng, max(2, cfg.background_atoms * dim // RGB_DIM), dim).astype(np.float32),
        bias=(cfg.bias_scale * rng.standard_normal(dim)).astype(np.float32),
    )


def build_world(cfg: SynthConfig) -> World:
    """The deterministic world of a config: hierarchy, frequencies, rated subset, geometry."""
    cfg.validate()
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0]))
    c = cfg.classes
    n_vert = max(2, min(len(_VERTICAL_NAMES), round(c / cfg.classes_per_vertical)))
    # Clusters: consecutive chunks of a random permutation of the classes.
    sizes: list[int] = []
    while sum(sizes) < c:
        sizes.append(int(rng.integers(cfg.cluster_size[0], cfg.cluster_size[1] + 1)))
    excess = sum(sizes) - c
    while excess > 0:  # shrink from the end, never below 2 (a lone class merges left)
        i = len(sizes) - 1
        cut = min(excess, sizes[i] - 1)
        sizes[i] -= cut
        excess -= cut
        if sizes[i] == 1:
            sizes.pop()
            sizes[-1] += 1
    perm = rng.permutation(c)
    cluster_of = np.empty(c, dtype=np.int64)
    start = 0
    for k, size in enumerate(sizes):
        cluster_of[perm[start : start + size]] = k
        start += size
    n_clus = len(sizes)
    cluster_vertical = rng.permutation(np.arange(n_clus) % n_vert).astype(np.int64)
    vertical_of = cluster_vertical[cluster_of]
    siblings = [
        np.flatnonzero((cluster_of == cluster_of[i]) & (np.arange(c) != i)) for i in range(c)
    ]

    ranks = np.arange(c, dtype=np.float64)
    zipf = (ranks + 1.0 + cfg.zipf_offset) ** -cfg.zipf_exponent
    zipf /= zipf.sum()

    head = min(c - 1, math.ceil(cfg.head_fraction * c))
    n_rated = max(1, min(c - head, round(cfg.rated_fraction * c)))
    rated = np.sort(rng.choice(np.arange(head, c), size=n_rated, replace=False)).astype(np.int64)

    rho = rng.uniform(cfg.rgb_share[0], cfg.rgb_share[1], size=c)
    rgb = _modality(rng, cfg, RGB_DIM, vertical_of, cluster_of, np.sqrt(2.0 * rho))
    audio = _modality(rng, cfg, AUDIO_DIM, vertical_of, cluster_of, np.sqrt(2.0 * (1.0 - rho)))

    vnames = [_VERTICAL_NAMES[i] for i in rng.permutation(len(_VERTICAL_NAMES))[:n_vert]]
    cluster_names, class_names = _make_names(rng, cluster_of, n_clus)
    kg: set[str] = set()
    kg_ids: list[str] = []
    while len(kg_ids) < c:
        token = "/m/0" + "".join(_ID_ALPHABET[i] for i in rng.integers(0, 36, size=5))
        if token not in kg:
            kg.add(token)
            kg_ids.append(token)
    return World(
        config=cfg,
        vertical_names=vnames,
        cluster_names=cluster_names,
        class_names=class_names,
        kg_ids=kg_ids,
        vertical_of=vertical_of,
        cluster_of=cluster_of,
        zipf=zipf,
        rated=rated,
        rgb_share=rho,
        rgb=rgb,
        audio=audio,
        siblings=siblings,
    )


def _draw_classes(world: World, rng: np.random.Generator, first: int | None) -> I64:
    """The true classes of a video: int64 [k], k in 1..5 (the first is ``first`` when given)."""
    cfg = world.config
    probs = np.asarray(cfg.labels_per_video_probs, dtype=np.float64)
    k = min(int(rng.choice(len(probs), p=probs / probs.sum())) + 1, world.num_classes)
    chosen = [int(rng.choice(world.num_classes, p=world.zipf)) if first is None else first]
    same = world.vertical_of == world.vertical_of[chosen[0]]
    weights = world.zipf * (1.0 + cfg.same_vertical_boost * same)
    while len(chosen) < k:
        w = weights.copy()
        w[chosen] = 0.0
        chosen.append(int(rng.choice(world.num_classes, p=w / w.sum())))
    return np.asarray(chosen, dtype=np.int64)


def _layout(
    world: World,
    rng: np.random.Generator,
    frames: int,
    classes: I64,
) -> tuple[I64, list[tuple[int, int, int]], I64]:
    """Place the runs of a video's concepts on its timeline.

    ``classes[0]`` is the video's main topic: it covers at least ``main_min_coverage`` of the video
    (its runs are never squeezed) and the look-alike decoy is one of its siblings.

    Returns:
        presence: int64 [F], class per frame (-1 background).
        runs: (class, start, end) per run, end exclusive.
        decoys: int64 [d], the sibling classes shown as look-alikes.
    """
    cfg = world.config
    items: list[tuple[int, float, bool]] = []  # (class, fraction of the video, is main)
    for i, c in enumerate(classes):
        frac = rng.uniform(*cfg.coverage)
        if i == 0:
            frac = max(frac, cfg.main_min_coverage)
        n_runs = 1 + int(rng.binomial(2, 0.35))
        n_runs = max(1, min(n_runs, int(frac * frames) // cfg.min_run_frames))
        for part in rng.dirichlet(np.full(n_runs, 2.0)):
            items.append((int(c), frac * float(part), i == 0))
    decoys: list[int] = []
    if rng.random() < cfg.decoy_prob:
        pool = np.setdiff1d(world.siblings[int(classes[0])], classes)
        if len(pool):
            d = int(rng.choice(pool))
            decoys.append(d)
            items.append((d, rng.uniform(*cfg.decoy_coverage), False))
    order = rng.permutation(len(items))
    items = [items[i] for i in order]
    floor = min(cfg.min_run_frames, frames / 8)
    lengths = np.array([max(floor, f * frames) for _, f, _ in items], dtype=float)
    main = np.array([m for _, _, m in items], dtype=bool)
    budget = (1.0 - cfg.min_background) * frames
    if lengths.sum() > budget:  # squeeze the other concepts first, then everything
        room = max(budget - lengths[main].sum(), floor * (~main).sum())
        if (~main).any():
            lengths[~main] = np.maximum(lengths[~main] * room / lengths[~main].sum(), floor)
        if lengths.sum() > budget:
            lengths = np.maximum(lengths * budget / lengths.sum(), floor)
    lengths_i = np.floor(lengths).astype(np.int64)
    while lengths_i.sum() > frames - 1:  # very short videos: trim the longest runs
        lengths_i[np.argmax(lengths_i)] -= 1
    gaps = rng.dirichlet(np.ones(len(items) + 1)) * (frames - lengths_i.sum())
    gaps_i = np.floor(gaps).astype(np.int64)
    presence = np.full(frames, -1, dtype=np.int64)
    runs: list[tuple[int, int, int]] = []
    pos = 0
    for (c, _, _), length, gap in zip(items, lengths_i, gaps_i, strict=False):
        pos += int(gap)
        end = min(frames, pos + int(length))
        if end > pos:
            presence[pos:end] = c
            runs.append((c, pos, end))
        pos = end
    return presence, runs, np.asarray(decoys, dtype=np.int64)


def _shots(rng: np.random.Generator, frames: int, mean_len: float) -> I64:
    """Shot index of every frame: int64 [F] (shot lengths geometric with the given mean)."""
    lengths = rng.geometric(1.0 / mean_len, size=frames // 2 + 2)
    bounds = np.cumsum(lengths)
    return np.searchsorted(bounds, np.arange(frames), side="right").astype(np.int64)


def _render(
    world: World,
    mod: Modality,
    rng: np.random.Generator,
    frames: int,
    shot_of: I64,
    run_of: I64,
    run_sig: F32,
    run_strength: F32,
    context: F32,
) -> F32:
    """Frames of one modality: float32 [F, D] (dequantized units, before quantization).

    Args:
        shot_of: int64 [F] shot index per frame.
        run_of: int64 [F] run index per frame (-1 background).
        run_sig: float32 [n_runs, D] prototype + mode of each run.
        run_strength: float32 [F] concept strength per frame (0 off runs).
        context: float32 [D] the video's context vector.
    """
    cfg = world.config
    dim = mod.bias.shape[0]
    b = mod.atoms.shape[0]
    scene = cfg.scene_scale * rng.dirichlet(np.full(b, 0.3)) @ mod.atoms
    n_shots = int(shot_of[-1]) + 1
    shot = (cfg.shot_scale * rng.dirichlet(np.full(b, 0.3), size=n_shots) @ mod.atoms).astype(
        np.float32
    )
    x = rng.standard_normal((frames, dim), dtype=np.float32)
    x *= np.float32(cfg.frame_noise)
    x += (mod.bias + scene.astype(np.float32) + context)[None, :]
    x += shot[shot_of]
    on = run_of >= 0
    if on.any():
        x[on] += run_strength[on, None] * run_sig[run_of[on]]
    return x


def generate_video(
    world: World,
    rng: np.random.Generator,
    video_id: str,
    rated_class: int | None = None,
) -> tuple[Video, VideoTruth]:
    """One synthetic video and its ground truth.

    Stages, in the order they draw from ``rng``: length and classes, timeline (:func:`_layout`),
    per-run appearance, frames (:func:`_render`), the rating plan, the noisy video labels, the
    segment ratings (:func:`_rate`).

    Args:
        rated_class: for validate/test, the rated class the video is built around and rated for;
            ``None`` for a train video (no segment ratings).
    """
    cfg = world.config
    span = cfg.max_frames - cfg.min_frames
    frames = cfg.min_frames + round(span * rng.beta(*cfg.length_beta))
    absent = _rated_class_absent(world, rng, rated_class)
    minor = not absent and _rated_class_minor(world, rng, rated_class)
    classes = _video_classes(world, rng, rated_class, absent, minor)
    presence, runs, decoys = _layout(world, rng, frames, classes)
    run_of, strength, rgb_sig, audio_sig = _run_appearance(world, rng, frames, classes, runs)
    rgb, audio = _render_video(world, rng, frames, classes, run_of, strength, rgb_sig, audio_sig)
    plan = _rating_plan(world, rng, classes, rated_class)
    labels = _noisy_labels(world, rng, classes, {c for c, _ in plan})
    if absent:  # the spurious label that sent the raters here (at most 5 labels in all)
        labels = np.union1d(labels[:4], [rated_class]).astype(np.int64)
    truth = VideoTruth(classes, presence, decoys, np.zeros(0, dtype=np.int64))
    rated, seg_labels, seg_starts, seg_scores = _ratings(
        world, rng, truth, plan, absent, rated_class
    )
    video = Video(
        id=video_id,
        rgb=quantize(rgb),
        audio=quantize(audio),
        labels=labels,
        segment_labels=np.asarray(seg_labels, dtype=np.int64),
        segment_starts=np.asarray(seg_starts, dtype=np.int64),
        segment_scores=np.asarray(seg_scores, dtype=np.float32),
    )
    return video, VideoTruth(classes, presence, decoys, np.asarray(rated, dtype=np.int64))


def _rated_class_absent(world: World, rng: np.random.Generator, rated_class: int | None) -> bool:
    """Whether a rated video lacks its rated class: the raters were sent to it by a (spurious)
    video label, but it is about a look-alike sibling; all of its ratings are negatives."""
    cfg = world.config
    return (
        rated_class is not None
        and cfg.absent_rated_prob > 0
        and len(world.siblings[rated_class]) > 0
        and rng.random() < cfg.absent_rated_prob
    )


def _rated_class_minor(world: World, rng: np.random.Generator, rated_class: int | None) -> bool:
    """Whether a rated video is about another topic and shows its rated class as a secondary one
    (``rated_minor_prob``; no draw from ``rng`` when the knob is off)."""
    cfg = world.config
    return (
        rated_class is not None and cfg.rated_minor_prob > 0 and rng.random() < cfg.rated_minor_prob
    )


def _minor_classes(world: World, rng: np.random.Generator, rated_class: int) -> I64:
    """True classes of a rated video whose rated class is a secondary class: int64 [k], k >= 2.

    The main topic is drawn by Zipf among the other classes; ``rated_class`` comes second, so its
    runs get the ordinary coverage (no ``main_min_coverage``) and may be squeezed by the others.
    """
    w = world.zipf.copy()
    w[rated_class] = 0.0
    topic = int(rng.choice(world.num_classes, p=w / w.sum()))
    drawn = _draw_classes(world, rng, topic)
    rest = [int(c) for c in drawn[1:] if c != rated_class][:3]
    return np.asarray([topic, rated_class, *rest], dtype=np.int64)


def _video_classes(
    world: World, rng: np.random.Generator, rated_class: int | None, absent: bool, minor: bool
) -> I64:
    """The classes present in the video: int64 [K], its topic first."""
    if minor:
        assert rated_class is not None
        return _minor_classes(world, rng, rated_class)
    if not absent:
        return _draw_classes(world, rng, rated_class)
    assert rated_class is not None
    topic = int(rng.choice(world.siblings[rated_class]))
    classes = _draw_classes(world, rng, topic)
    return classes[classes != rated_class]


def _run_appearance(
    world: World,
    rng: np.random.Generator,
    frames: int,
    classes: I64,
    runs: list[tuple[int, int, int]],
) -> tuple[I64, F32, F32, F32]:
    """Per run of the timeline: strength, modality dropout and mode.

    Returns (run of each frame int64 [F] (-1: background), strength float32 [F], rgb signal
    float32 [n_runs, 1024], audio signal float32 [n_runs, 128]).
    """
    cfg = world.config
    n_runs = len(runs)
    video_mode = {int(c): int(rng.integers(cfg.modes_per_class)) for c in classes}
    run_of = np.full(frames, -1, dtype=np.int64)
    strength = np.zeros(frames, dtype=np.float32)
    rgb_gain = np.ones(n_runs, dtype=np.float32)
    audio_gain = np.ones(n_runs, dtype=np.float32)
    rgb_sig = np.zeros((n_runs, RGB_DIM), dtype=np.float32)
    audio_sig = np.zeros((n_runs, AUDIO_DIM), dtype=np.float32)
    for r, (c, start, end) in enumerate(runs):
        run_of[start:end] = r
        s = rng.uniform(*cfg.strength)
        jitter = 1.0 + cfg.strength_jitter * rng.standard_normal(end - start)
        strength[start:end] = s * np.clip(jitter, 0.2, 2.0)
        u = rng.random()
        if u < cfg.audio_dropout_prob:
            audio_gain[r] = 0.0
        elif u < cfg.audio_dropout_prob + cfg.rgb_weak_prob:
            rgb_gain[r] = cfg.rgb_weak_factor
        if c in video_mode and rng.random() < cfg.same_mode_prob:
            mode = video_mode[c]
        else:
            mode = int(rng.integers(cfg.modes_per_class))
        rgb_sig[r] = rgb_gain[r] * (world.rgb.prototypes[c] + world.rgb.modes[c, mode])
        audio_sig[r] = audio_gain[r] * (world.audio.prototypes[c] + world.audio.modes[c, mode])
        if cfg.run_style_scale > 0:  # a style of this run alone (not shared with other videos)
            rgb_sig[r] += rgb_gain[r] * cfg.run_style_scale * _unit(rng, 1, RGB_DIM)[0]
            audio_sig[r] += audio_gain[r] * cfg.run_style_scale * _unit(rng, 1, AUDIO_DIM)[0]
    return run_of, strength, rgb_sig, audio_sig


def _render_video(
    world: World,
    rng: np.random.Generator,
    frames: int,
    classes: I64,
    run_of: I64,
    strength: F32,
    rgb_sig: F32,
    audio_sig: F32,
) -> tuple[F32, F32]:
    """The video's frames before quantization: rgb float32 [F, 1024], audio float32 [F, 128]."""
    cfg = world.config
    ctx = cfg.context_scale / math.sqrt(len(classes))
    ctx_rgb = (ctx * world.rgb.prototypes[classes].sum(axis=0)).astype(np.float32)
    ctx_audio = (ctx * world.audio.prototypes[classes].sum(axis=0)).astype(np.float32)
    shot_of = _shots(rng, frames, cfg.mean_shot_frames)
    rgb = _render(world, world.rgb, rng, frames, shot_of, run_of, rgb_sig, strength, ctx_rgb)
    audio = _render(
        world, world.audio, rng, frames, shot_of, run_of, audio_sig, strength, ctx_audio
    )
    return rgb, audio


def _rating_plan(
    world: World, rng: np.random.Generator, classes: I64, rated_class: int | None
) -> list[tuple[int, int]]:
    """(rated class, ratings wanted) pairs: none for a train video, sometimes a second class."""
    if rated_class is None:
        return []
    cfg = world.config
    lo, hi = cfg.ratings_per_video
    n_total = int(rng.integers(lo, hi + 1))
    others = np.setdiff1d(np.intersect1d(classes[1:], world.rated), [rated_class])
    if len(others) and rng.random() < cfg.second_class_prob:
        return [(rated_class, max(2, n_total - 2)), (int(rng.choice(others)), 2)]
    return [(rated_class, n_total)]


def _ratings(
    world: World,
    rng: np.random.Generator,
    truth: VideoTruth,
    plan: list[tuple[int, int]],
    absent: bool,
    rated_class: int | None,
) -> tuple[list[int], list[int], list[int], list[float]]:
    """The segment ratings of ``plan``: (rated classes, then per rating: class, start, score)."""
    rated: list[int] = []
    seg_labels: list[int] = []
    seg_starts: list[int] = []
    seg_scores: list[float] = []
    for c, n in plan:
        starts, scores = _rate(world, rng, truth, int(c), n, absent and c == rated_class)
        if world.config.rating_flip_prob > 0:  # rater mistakes
            flip = rng.random(len(scores)) < world.config.rating_flip_prob
            scores[flip] = 1.0 - scores[flip]
        if len(starts):
            rated.append(int(c))
            seg_labels += [int(c)] * len(starts)
            seg_starts += starts.tolist()
            seg_scores += scores.tolist()
    return rated, seg_labels, seg_starts, seg_scores


def _noisy_labels(world: World, rng: np.random.Generator, classes: I64, keep: set[int]) -> I64:
    """Observed video labels: int64 [L], 1 <= L <= 5, sorted (some missing, some spurious).

    The classes in ``keep`` (those the video is rated for) are never dropped.
    """
    cfg = world.config
    kept = [int(c) for c in classes if c in keep or rng.random() >= cfg.missing_label_prob]
    if not kept:
        kept = [int(classes[0])]
    if len(kept) < 5 and rng.random() < cfg.spurious_label_prob:
        pool = np.setdiff1d(np.concatenate([world.siblings[int(c)] for c in classes]), classes)
        if len(pool) and rng.random() < 0.5:
            kept.append(int(rng.choice(pool)))
        else:
            w = world.zipf.copy()
            w[classes] = 0.0
            kept.append(int(rng.choice(world.num_classes, p=w / w.sum())))
    return np.unique(np.asarray(kept, dtype=np.int64))


def _rate(
    world: World, rng: np.random.Generator, truth: VideoTruth, c: int, n: int, absent: bool = False
) -> tuple[I64, npt.NDArray[np.float32]]:
    """Pick ~n rated segments of class c: (starts int64 [r], scores float32 [r]), sorted by start.

    Positives show c on >= 3 of 5 frames; negatives on none, weighted toward look-alike siblings.
    """
    cfg = world.config
    cov = truth.segment_coverage(c)
    pos_pool = np.flatnonzero(cov >= 3)
    neg_pool = np.flatnonzero(cov == 0)
    if not len(pos_pool) and not len(neg_pool):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    if absent:  # the class is not shown in the video: every rating is a negative
        want_pos, n_pos, n_neg = 0, 0, min(n, len(neg_pool))
    else:
        # positive_share is the corpus-wide target; videos whose rated class is absent have none.
        share = min(cfg.positive_share / (1.0 - cfg.absent_rated_prob), 0.9)
        want_pos = int(np.clip(rng.binomial(n, share), 1, n - 1))
        n_pos = min(want_pos, len(pos_pool))
        # Short of positives (short videos): fewer ratings, in the drawn proportion.
        want_neg = (n - want_pos) if n_pos == want_pos else round(n_pos * (n - want_pos) / want_pos)
        n_neg = min(max(want_neg, 1 if not n_pos else 0), len(neg_pool))
    s = len(cov)
    shown = truth.presence[: s * SEGMENT_FRAMES].reshape(s, SEGMENT_FRAMES)
    sib = np.isin(shown, world.siblings[c]).sum(axis=1) >= 3
    other = (shown >= 0).sum(axis=1) >= 3
    weight = np.where(sib, cfg.hard_negative_weight, np.where(other, cfg.other_concept_weight, 1.0))
    pos = rng.choice(pos_pool, size=n_pos, replace=False) if n_pos else pos_pool[:0]
    w = weight[neg_pool]
    neg = rng.choice(neg_pool, size=n_neg, replace=False, p=w / w.sum()) if n_neg else neg_pool[:0]
    segs = np.concatenate([pos, neg]).astype(np.int64)
    scores = np.concatenate([np.ones(n_pos), np.zeros(n_neg)]).astype(np.float32)
    order = np.argsort(segs, kind="stable")
    return segs[order] * SEGMENT_FRAMES, scores[order]


def _video_ids(cfg: SynthConfig) -> list[str]:
    """Unique random YouTube-8M-like ids (4 characters, 6 beyond 200k videos), seed-determined."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 2]))
    length = 4 if cfg.videos <= 200_000 else 6
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < cfg.videos:
        for row in rng.integers(0, len(_ID_ALPHABET), size=(cfg.videos, length)):
            vid = "".join(_ID_ALPHABET[i] for i in row)
            if vid not in seen:
                seen.add(vid)
                out.append(vid)
                if len(out) == cfg.videos:
                    break
    return out


def rated_assignment(world: World, split: int, n: int) -> I64:
    """The rated class of each of n videos of a rated split: int64 [n], even over rated classes."""
    rng = np.random.default_rng(np.random.SeedSequence([world.config.seed, 3, split]))
    reps = -(-n // len(world.rated))
    cycle = np.concatenate([rng.permutation(world.rated) for _ in range(reps)])[:n]
    return rng.permutation(cycle).astype(np.int64)


def generate_split(
    world: World, split: str, *, progress: bool = False, with_truth: bool = False
) -> Iterator[Video] | Iterator[tuple[Video, VideoTruth]]:
    """Yield the videos of a split in order (``(video, truth)`` pairs when ``with_truth``)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    index = SPLITS.index(split)
    sizes = world.config.split_sizes()
    offset = sum(sizes[:index])
    ids = _video_ids(world.config)[offset : offset + sizes[index]]
    assign = rated_assignment(world, index, sizes[index]) if index > 0 else None

    def gen() -> Iterator[Any]:
        for i in tqdm(
            range(sizes[index]), desc=f"synth {split}", unit="video", disable=not progress
        ):
            rng = np.random.default_rng(np.random.SeedSequence([world.config.seed, 1, index, i]))
            rated = None if assign is None else int(assign[i])
            video, truth = generate_video(world, rng, ids[i], rated)
            yield (video, truth) if with_truth else video

    return gen()


def write_vocabulary(path: Path, world: World, train_counts: I64) -> None:
    """Write ``vocabulary.csv`` in the real column layout (csv-module quoting)."""
    rng = np.random.default_rng(np.random.SeedSequence([world.config.seed, 4]))
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(VOCABULARY_COLUMNS)
        for c in range(world.num_classes):
            name = world.class_names[c]
            vertical = world.vertical_names[int(world.vertical_of[c])]
            cluster = world.cluster_names[int(world.cluster_of[c])]
            # A few classes are cross-listed under a second vertical, as in the real file.
            second = ""
            if rng.random() < 0.1:
                second = world.vertical_names[int(rng.integers(len(world.vertical_names)))]
                if second == vertical:
                    second = ""
            url = "https://en.wikipedia.org/wiki/" + name.replace(" ", "_").replace('"', "")
            desc = (
                f'{name} is a synthetic concept of the "{cluster}" family, in {vertical}. '
                f"It has {world.config.modes_per_class} visual styles, and a sound of its own."
            )
            w.writerow(
                [c, int(train_counts[c]), world.kg_ids[c], name, url, vertical, second, "", desc]
            )


def write_segment_label_ids(path: Path, ids: I64) -> None:
    """Write ``segment_label_ids.csv``: header ``Index`` then one class id per line."""
    with path.open("w", newline="", encoding="utf-8") as f:
        f.write("Index\n")
        for c in ids:
            f.write(f"{int(c)}\n")


@dataclass
class _SplitStats:
    videos: int = 0
    frames: int = 0
    labels: int = 0
    ratings: int = 0
    positives: int = 0
    label_counts: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    rating_counts: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    rated_videos: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "videos": self.videos,
            "frames": self.frames,
            "mean_frames": round(self.frames / max(1, self.videos), 2),
            "mean_labels": round(self.labels / max(1, self.videos), 3),
            "ratings": self.ratings,
            "positive_share": round(self.positives / max(1, self.ratings), 4),
        }
        if self.ratings:
            rated = self.rating_counts[self.rating_counts > 0]
            vids = self.rated_videos[self.rated_videos > 0]
            out["ratings_per_video"] = round(self.ratings / max(1, self.videos), 3)
            out["ratings_per_class"] = {"min": int(rated.min()), "max": int(rated.max())}
            out["rated_videos_per_class"] = {"min": int(vids.min()), "max": int(vids.max())}
        return out


def _tee_stats(videos: Iterator[Video], stats: _SplitStats, classes: int) -> Iterator[Video]:
    stats.label_counts = np.zeros(classes, dtype=np.int64)
    stats.rating_counts = np.zeros(classes, dtype=np.int64)
    stats.rated_videos = np.zeros(classes, dtype=np.int64)
    for v in videos:
        stats.videos += 1
        stats.frames += v.num_frames
        stats.labels += len(v.labels)
        stats.label_counts[v.labels] += 1
        stats.ratings += len(v.segment_labels)
        stats.positives += int((v.segment_scores > 0.5).sum())
        np.add.at(stats.rating_counts, v.segment_labels, 1)
        stats.rated_videos[np.unique(v.segment_labels)] += 1
        yield v


def run_synth(
    out: Path,
    *,
    videos: int | None = None,
    classes: int | None = None,
    seed: int = 0,
    gzip: bool = False,
    shards: int = 4,
    min_frames: int | None = None,
    max_frames: int | None = None,
    progress: bool = True,
    config: SynthConfig | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    """Write a synthetic corpus under ``out`` and return the ``synth.json`` content.

    ``out/train/``, ``out/validate/``, ``out/test/`` (TFRecords via ``service.tfrecord``),
    ``out/vocabulary.csv``, ``out/segment_label_ids.csv``, ``out/synth.json``. The bytes are a
    function of the arguments alone. ``profile`` (see :mod:`training.synth_profiles`) sets every
    knob and the default ``videos`` / ``classes`` (default profile: 2000 and 100); ``config``
    replaces the profile's knobs and size; ``videos``, ``classes``, ``seed``, ``min_frames`` and
    ``max_frames`` given here win over both.
    """
    from service.tfrecord import write_videos
    from training.synth_profiles import get_profile

    prof = get_profile(profile or "default")
    base = config or prof.config()
    cfg = replace(
        base,
        videos=base.videos if videos is None else videos,
        classes=base.classes if classes is None else classes,
        seed=seed,
    )
    if min_frames is not None:
        cfg = replace(cfg, min_frames=min_frames)
    if max_frames is not None:
        cfg = replace(cfg, max_frames=max_frames)
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    world = build_world(cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stats: dict[str, _SplitStats] = {}
    for split in SPLITS:
        folder = out / split
        folder.mkdir(exist_ok=True)
        for old in folder.glob("*.tfrecord*"):
            old.unlink()
        st = _SplitStats()
        stats[split] = st
        gen = generate_split(world, split, progress=progress)
        write_videos(
            _tee_stats(gen, st, cfg.classes),  # type: ignore[arg-type]
            folder,
            prefix="part",
            num_shards=min(shards, cfg.split_sizes()[SPLITS.index(split)]),
            compress=gzip,
        )
    write_vocabulary(out / "vocabulary.csv", world, stats["train"].label_counts)
    write_segment_label_ids(out / "segment_label_ids.csv", world.rated)
    meta = _metadata(world, stats, gzip=gzip, shards=shards)
    if prof.name != "default":  # the default profile's synth.json stays as it was
        meta["profile"] = prof.name
    (out / "synth.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    if progress:
        parts = ", ".join(
            f"{s} {st.videos} videos / {st.ratings} ratings" for s, st in stats.items()
        )
        print(f"wrote {out}: {parts}; {cfg.classes} classes, {len(world.rated)} rated")
    return meta


OPTIONAL_KNOBS = ("run_style_scale", "rated_minor_prob", "rating_flip_prob")
"""Knobs written to ``synth.json`` only when they differ from their default (off): the default
profile's files stay byte-for-byte what they were before these knobs existed."""


def _config_record(cfg: SynthConfig) -> dict[str, Any]:
    """``asdict(cfg)`` without the optional knobs that are at their default."""
    record = asdict(cfg)
    default = SynthConfig()
    for knob in OPTIONAL_KNOBS:
        if record[knob] == getattr(default, knob):
            del record[knob]
    return record


def _metadata(
    world: World, stats: dict[str, _SplitStats], *, gzip: bool, shards: int
) -> dict[str, Any]:
    cfg = world.config
    train_counts = stats["train"].label_counts
    median = float(np.median(train_counts))
    return {
        "format_version": FORMAT_VERSION,
        "generator": "training.synth",
        "config": _config_record(cfg),
        "seed": cfg.seed,
        "gzip": gzip,
        "shards": shards,
        "split_sizes": dict(zip(SPLITS, cfg.split_sizes(), strict=True)),
        "splits": {s: st.summary() for s, st in stats.items()},
        "train_label_counts": {
            "max": int(train_counts.max()),
            "median": median,
            "min": int(train_counts.min()),
        },
        "verticals": world.vertical_names,
        "clusters": [
            {
                "id": k,
                "name": world.cluster_names[k],
                "vertical": int(world.vertical_of[np.flatnonzero(world.cluster_of == k)[0]]),
                "classes": np.flatnonzero(world.cluster_of == k).tolist(),
            }
            for k in range(len(world.cluster_names))
        ],
        "classes": [
            {
                "id": c,
                "name": world.class_names[c],
                "vertical": int(world.vertical_of[c]),
                "cluster": int(world.cluster_of[c]),
                "rated": bool(np.isin(c, world.rated)),
                "zipf_weight": round(float(world.zipf[c]), 6),
                "rgb_share": round(float(world.rgb_share[c]), 4),
            }
            for c in range(world.num_classes)
        ],
        "rated_classes": world.rated.tolist(),
    }
