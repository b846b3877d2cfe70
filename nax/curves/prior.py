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
#: what :meth:`CurvePrior.at_strength` may transfer: everything, or the curve shape only
SCOPES = ("full", "shape")
#: the level coordinates of a curve (final value, start fraction, noise scale): what a
#: scale-free ("shape") transfer leaves to the target's own prefixes
LEVEL = (basis.FINAL, basis.START, basis.LOG_NOISE)


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

    def at_strength(self, rho: float, scope: str = "full") -> CurvePrior:
        """This prior with the sources' influence on a target dataset weakened.

        ``rho`` in (0, 1] divides the spread of a new dataset's level around the population
        (``mu_scale``) and the uncertainty of its curve spread (``log_sigma_scale``) by
        ``rho``: the target's prefixes move its level further from the population's. ``rho
        = 0`` is *within-target pooling*: the vague level of ``no_transfer``
        (:func:`nax.curves.basis.vague_loc_scale`), a vague curve spread and no correlation,
        but the target's curves still share one level learned from their prefixes (so it is
        not ``no_transfer``, whose curves are independent). ``scope="shape"``: the level
        coordinates (final value, start fraction, noise; :data:`LEVEL`) get the vague prior
        at any ``rho``, so only the shape (rate, curvature, family weights) transfers - the
        scale-free transfer for a target whose levels are not comparable with the sources'.
        """
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"transfer strength rho must be in [0, 1], got {rho}")
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        if rho == 1.0 and scope == "full":
            return self
        d = len(self.mu_loc)
        vloc, vscale = (np.asarray(a, np.float64) for a in basis.vague_loc_scale(d))
        if rho == 0.0:
            mu_loc, mu_scale = vloc.copy(), vscale.copy()
            # the curve spread: log-normal around 1 (the prototype's measured choice, R13 notes)
            ls_loc, ls_scale, chol = np.zeros(d), np.ones(d), np.eye(d)
        else:
            mu_loc, mu_scale = self.mu_loc.copy(), self.mu_scale / rho
            ls_loc, ls_scale, chol = self.log_sigma_loc.copy(), self.log_sigma_scale / rho, self.L
        if scope == "shape":
            idx = list(LEVEL)
            mu_loc[idx], mu_scale[idx] = vloc[idx], vscale[idx]
            ls_scale[idx] = np.maximum(ls_scale[idx], 1.0)
        info = {**self.info, "strength": {"rho": float(rho), "scope": scope}}
        return dataclasses.replace(
            self, mu_loc=mu_loc, mu_scale=mu_scale, log_sigma_loc=ls_loc, log_sigma_scale=ls_scale, L=chol, info=info
        )

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
