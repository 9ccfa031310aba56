"""Hyperparameter importance per algorithm, by Optuna's own evaluators on the sweep's mirror.

fANOVA (Hutter et al., ICML 2014) where scikit-learn is installed, else PED-ANOVA; each
bracket (algorithm) is ranked on its own study, so a setting that matters for one algorithm
is not averaged away by another.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any, Mapping

import optuna
from optuna.trial import TrialState
import pandas as pd

from wae_jax import mirror

MIN_COMPLETE = 2  # Complete trials a bracket needs before Optuna can rank its params.


def table(source: str, trials: Mapping[str, Mapping[str, Any]] | None = None, *,
               metric: str | None = None, storage: str | None = None,
               search_states: Mapping[str, str] | None = None) -> pd.DataFrame:
  """Each bracket's hyperparameter importances by Optuna's own evaluator: one row per
  (study, param), its `importance` (normalised to sum to 1) or a `note` saying why none.

  `source` is a storage URL (all its studies), or a sweep directory given with `trials` and
  `metric` as to `mirror.sync`, which mirrors it first (its studies only). The `evaluator`
  column says which evaluator ranked.
  """
  names = None
  if trials is not None:
    if metric is None:
      raise ValueError("importance of a sweep directory needs its metric")
    url = mirror.sync(source, trials, metric=metric, storage=storage,
                      search_states=search_states)
    names = mirror.study_names(source, trials)
  else:
    url = source
  evaluator = (optuna.importance.FanovaImportanceEvaluator(seed=0)
               if importlib.util.find_spec("sklearn") else
               optuna.importance.PedAnovaImportanceEvaluator())
  rdb = optuna.storages.RDBStorage(url)
  rows = []
  try:
    for frozen in sorted(rdb.get_all_studies(), key=lambda s: s.study_name):
      if names is None or frozen.study_name in names:
        study = optuna.load_study(study_name=frozen.study_name, storage=rdb)
        rows += _importance_rows(study, evaluator, frozen.user_attrs.get("base_config"))
  finally:
    rdb.remove_session()
    rdb.engine.dispose()
  return pd.DataFrame(rows, columns=["study", "bracket", "param", "importance", "evaluator",
                                     "n_complete", "note"])


def _importance_rows(study: optuna.Study, evaluator: optuna.importance.BaseImportanceEvaluator,
                     bracket: str | None) -> list[dict[str, Any]]:
  trials = study.get_trials(deepcopy=False)
  params = sorted({p for t in trials for p in t.distributions})
  n_complete = sum(t.state == TrialState.COMPLETE for t in trials)
  row = dict(study=study.study_name, bracket=bracket or study.study_name,
             evaluator=type(evaluator).__name__, n_complete=n_complete)
  note = None
  if not params:
    return [{**row, "param": None, "importance": math.nan, "note": "no hyperparameter varies"}]
  if len(params) == 1:
    note = "the only hyperparameter: nothing to rank it against"
  elif n_complete < MIN_COMPLETE:
    note = f"{n_complete} complete trials: Optuna needs at least {MIN_COMPLETE}"
  else:
    try:
      found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError) as e:  # Optuna's own refusal, said in the table.
      note = f"{type(e).__name__}: {str(e).splitlines()[0]}"
    else:
      missing = "not set in every complete trial"  # Outside fANOVA's common search space.
      ranked = sorted(params, key=lambda p: -found.get(p, -math.inf))
      return [{**row, "param": p, "importance": found.get(p, math.nan),
               "note": None if p in found else missing} for p in ranked]
  return [{**row, "param": p, "importance": math.nan, "note": note} for p in params]
