"""The transferable curve prior and its versioned JSON.

A :class:`CurvePrior` keeps what a new dataset needs from the source datasets: the
predictive distribution of a new dataset's level (``mu_pop + tau * N(0, I)``, summarised
as a diagonal Gaussian), the spread of curves around their dataset's level (log-normal),
their correlation (fixed Cholesky factor) and the extrapolation noise
(:class:`~nax.curves.calibration.Calibration`). It is fitted by
:func:`nax.curves.fitting.fit_prior`.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from nax.curves import basis
from nax.curves.calibration import Calibration

FORMAT = "nax.curves.CurvePrior"
#: bump when the meaning of a stored field changes. Version 2 added ``calibration``;
#: a version-1 file still loads, as an uncalibrated prior (with a warning); any other
#: version is refused
VERSION = 2
READABLE_VERSIONS = (1, 2)


@dataclasses.dataclass(frozen=True)
class CurvePrior:
    """Population-level posterior of the hierarchical curve model.

    Arrays are float [D] (``L``: [D, D]) over the unconstrained parameter vector of
    :mod:`nax.curves.basis` for ``families``. ``info`` records the sources, the inference
    method and its diagnostics. ``calibration``: the extrapolation noise fitted on the
    source curves' prefixes (:class:`~nax.curves.calibration.Calibration`), or None
    (uncalibrated).
    """

    families: tuple[str, ...]
    mu_loc: np.ndarray
    mu_scale: np.ndarray
    log_sigma_loc: np.ndarray
    log_sigma_scale: np.ndarray
    L: np.ndarray
    minimize: bool = False
    info: dict = dataclasses.field(default_factory=dict)
    calibration: Calibration | None = None

    def model_prior(self) -> dict:
        """The arrays the ``transfer`` model takes as ``prior``."""
        return {
            k: jnp.asarray(getattr(self, k), jnp.float32)
            for k in ("mu_loc", "mu_scale", "log_sigma_loc", "log_sigma_scale", "L")
        }

    def to_dict(self) -> dict:
        out = {
            "format": FORMAT,
            "version": VERSION,
            "families": list(self.families),
            "minimize": self.minimize,
        }
        for k in ("mu_loc", "mu_scale", "log_sigma_loc", "log_sigma_scale", "L"):
            out[k] = np.asarray(getattr(self, k), np.float64).tolist()
        out["calibration"] = None if self.calibration is None else self.calibration.to_dict()
        out["info"] = self.info
        return out

    def save(self, path: str | Path) -> None:
        """Write the prior as JSON (format name and version first)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_dict(cls, d: dict, where: str = "prior") -> CurvePrior:
        if d.get("format") != FORMAT:
            raise ValueError(f"{where}: not a nax curve prior (format {d.get('format')!r}, expected {FORMAT!r})")
        version = d.get("version")
        if version not in READABLE_VERSIONS:
            raise ValueError(
                f"{where}: curve prior version {version!r}, this nax reads versions "
                f"{READABLE_VERSIONS}; refit it with fit_prior"
            )
        calibration = d.get("calibration") if version >= 2 else None
        if version == 1:
            warnings.warn(
                f"{where}: version-1 curve prior has no extrapolation-noise calibration; "
                "its predictive intervals are over-confident. Refit with fit_prior, or add "
                "one with nax.curves.fitting.calibrate_prior(prior, source_tables)",
                stacklevel=3,
            )
        if calibration is not None:
            calibration = Calibration.from_dict(calibration, where)
        fams = tuple(d["families"])
        unknown = [f for f in fams if f not in basis.FAMILIES]
        if unknown:
            raise ValueError(f"{where}: unknown curve families {unknown}")
        dim = basis.num_params(fams)
        arrs = {
            k: np.asarray(d[k], np.float64) for k in ("mu_loc", "mu_scale", "log_sigma_loc", "log_sigma_scale", "L")
        }
        for k, v in arrs.items():
            want = (dim, dim) if k == "L" else (dim,)
            if v.shape != want:
                raise ValueError(f"{where}: field {k} has shape {v.shape}, expected {want}")
        return cls(
            families=fams,
            minimize=bool(d.get("minimize", False)),
            info=dict(d.get("info", {})),
            calibration=calibration,
            **arrs,
        )

    @classmethod
    def load(cls, path: str | Path) -> CurvePrior:
        """Read a prior written by :meth:`save`; another format or version is a ``ValueError``."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not a JSON curve prior ({e})") from None
        return cls.from_dict(d, where=str(path))
