"""The multi-fidelity strategies of ``nax search`` from its configuration.

``--strategy hyperband | asha | successive-halving`` draw new architectures uniformly from
the candidates (as their papers do: they are the baselines users pick); ``freeze-thaw``
proposes them with the characteristic model and values paused runs with the transferred
curve prior (:mod:`nax.search.freeze_thaw`), both fitted on the transfer-from datasets.
The rungs: ``--min-epochs`` up to ``--max-epochs`` by factors of ``--eta``
(:func:`nax.search.multifidelity.rungs`); freeze-thaw's jobs each train ``--min-epochs``
(default a quarter of a run, ``freeze_thaw.default_delta``), or with ``--ft-jobs rungs`` end
on those rungs (``--min-epochs`` default 1). ``--strategy asha --asha-transfer selection|both``
plugs nax's transfers into ASHA: the characteristic model proposes, and with ``both`` the
curve prior's predicted final ranks each rung's promotions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nax.search import halving
from nax.search.multifidelity import MFStrategy, hyperband_brackets


def strategy(
    config, space, candidates: np.ndarray | None, kind: str | None, sources, model: Callable[[], Any], prior
) -> MFStrategy:
    """The :class:`MFStrategy` of a resolved ``config`` (``eta``, ``min_epochs``, ``max_epochs``
    set); ``model()`` and ``prior()`` fit (or load) the transferred models when needed."""
    lo, hi, eta = config.min_epochs, config.max_epochs, config.eta
    kw = dict(space=space, candidates=candidates)
    if config.strategy == "hyperband":
        return halving.hyperband(lo, hi, eta, **kw)
    if config.strategy == "asha":
        if config.asha_transfer == "none":
            return halving.asha(lo, hi, eta, **kw)
        return _asha_transferred(config, space, candidates, kind, sources, model, prior)
    if config.strategy == "successive-halving":
        # as many trials as Hyperband's most exploratory bracket starts (eta**s_max)
        n = hyperband_brackets(lo, hi, eta)[0][0][0]
        return halving.successive_halving(n, lo, hi, eta, **kw)
    if config.strategy != "freeze-thaw":
        raise ValueError(f"{config.strategy!r} is not a multi-fidelity strategy")
    _needs_sources("--strategy freeze-thaw needs a curve prior and a characteristic model", kind, sources)
    from nax.search import freeze_thaw

    build = freeze_thaw.from_models
    from nax.curves.stopping import StopConfig

    stop = StopConfig(adapt=config.stop_adapt)  # the stopping rule's predictions, adapted as `nax search` adapts them
    jobs = dict(jobs="rungs", min_epochs=lo, eta=eta) if config.ft_jobs == "rungs" else dict(delta=lo)
    return build(prior(), model(), space, hi, stop_config=stop, candidates=candidates, **jobs)


def _needs_sources(what: str, kind: str | None, sources, curves: bool = True) -> None:
    no_curves = curves and kind != "curve"
    if no_curves or not sources:
        why = "the tables hold no learning curves" if no_curves else "no transfer-from dataset in the tables"
        raise ValueError(f"{what} from earlier datasets: {why}")


def _asha_transferred(config, space, candidates, kind, sources, model, prior) -> MFStrategy:
    """ASHA with the characteristic model proposing new runs (``--asha-transfer selection``)
    and, with ``both``, promotions ranked by the curve prior's median predicted final
    (:func:`nax.search.halving_rank.asha_from_models`, the experiment's builder too)."""
    from nax.curves.stopping import StopConfig
    from nax.search import halving_rank

    both = config.asha_transfer == "both"
    what = "a curve prior and a characteristic model" if both else "a characteristic model"
    _needs_sources(f"--asha-transfer {config.asha_transfer} needs {what}", kind, sources, curves=both)
    return halving_rank.asha_from_models(
        config.min_epochs,
        config.max_epochs,
        config.eta,
        space=space,
        candidates=candidates,
        model=model(),
        prior=prior() if both else None,
        stop_config=StopConfig(adapt=config.stop_adapt),
    )
