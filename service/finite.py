"""Defensive finiteness checks between the pipeline's stages (numpy only, no Python loops).

The frames are checked first (:func:`service.decode.decode_frames`: finite, within the range that
dequantized YouTube-8M features can hold), so none of these should ever fire; they exist so that a
non-finite value can never reach XGBoost, the label bank or the index, whatever a future model
does. Each raises :class:`NonFiniteError` (an :class:`service.decode.InputError`, so a 422 that
names the stage and the first bad position), never a 500.

NaN is XGBoost's "missing" and the pair matrix uses it on purpose in the columns of
:data:`NULLABLE_FEATURES` (a first segment has no previous one, a class may have no positive in
the bank, ...). Anywhere else a NaN, and an infinity anywhere, is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from service.decode import InputError
from service.features import FEATURE_NAMES

NULLABLE_FEATURES: tuple[str, ...] = (
    "seg_prob_prev",
    "seg_prob_next",
    "sim_pos_mean",
    "sim_neg_mean",
    "sim_mean_diff",
    "sim_mean_diff_prev",
    "sim_mean_diff_next",
    "sim_pos_max",
    "sim_neg_max",
    "sim_max_diff",
    "class_pos_rate",
)
"""Pair-matrix columns where NaN means "missing" (see :data:`service.features.FEATURE_NAMES`)."""


class NonFiniteError(InputError):
    """A stage of the pipeline produced a value that is not finite for this request's frames."""


def _position(mask: npt.NDArray[np.bool_]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _describe(value: float) -> str:
    return "NaN" if np.isnan(value) else ("Inf" if value > 0 else "-Inf")


def check_finite(name: str, arr: npt.NDArray[np.floating], *, field: str = "frames") -> None:
    """Raise :class:`NonFiniteError` naming ``name`` and the first non-finite place of ``arr``."""
    a = np.asarray(arr)
    if a.size and not np.isfinite(a).all():
        pos = _position(~np.isfinite(a))
        where = "".join(f"[{i}]" for i in pos)
        raise NonFiniteError(
            field,
            f"the pipeline produced a non-finite value for these frames: {name}{where} is "
            f"{_describe(float(a[pos]))}; the request was refused before anything was stored",
        )


def check_pair_matrix(
    x: npt.NDArray[np.float32], feature_names: Sequence[str] = FEATURE_NAMES
) -> None:
    """The pair matrix float32 [N, NF] before XGBoost: no Inf, NaN only where it means missing."""
    if x.size == 0:
        return
    bad = np.isinf(x)
    strict = np.asarray([n not in NULLABLE_FEATURES for n in feature_names], dtype=bool)
    bad[:, strict] |= np.isnan(x[:, strict])
    if bad.any():
        row, col = _position(bad)
        raise NonFiniteError(
            "frames",
            f"the pair features of these frames are not finite: row {row}, feature "
            f"{feature_names[col]!r} is {_describe(float(x[row, col]))}; nothing was scored",
        )
