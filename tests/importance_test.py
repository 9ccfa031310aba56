"""Hyperparameter importance per algorithm, on the mirror of a synthetic sweep."""
import importlib.util

from mirror_test import METRIC, MMD, VAE, _importance_sweep
import pytest

from wae_jax import importance
from wae_jax import mirror


@pytest.mark.parametrize("sklearn", [True, False])
def test_importance_per_bracket(tmp_path, monkeypatch, sklearn):
  w, trials = _importance_sweep(tmp_path)
  if not sklearn:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sklearn" else find_spec(name, *a))
  table = importance.table(w, trials, metric=METRIC)
  evaluator = "FanovaImportanceEvaluator" if sklearn else "PedAnovaImportanceEvaluator"
  assert set(table.evaluator) == {evaluator}
  assert list(table.columns) == ["study", "bracket", "param", "importance", "evaluator",
                                 "n_complete", "note"]
  mmd = table[table.bracket == MMD]
  assert list(mmd.param) == ["optim.lr", "noise"]  # Most important first.
  assert mmd.importance.sum() == pytest.approx(1.0) and mmd.importance.iloc[0] > 0.5
  assert set(mmd.n_complete) == {12} and mmd.note.isna().all()
  vae = table[table.bracket == VAE]
  assert list(vae.param) == ["optim.lr"] and vae.importance.isna().all()
  assert "only hyperparameter" in vae.note.iloc[0]
  few = table[table.bracket == "few:debug"]
  assert list(few.param) == ["a", "b"] and few.importance.isna().all()
  assert set(few.n_complete) == {1} and "at least 2" in few.note.iloc[0]
  # The same table from the storage alone.
  from_url = importance.table(mirror.default_storage(w))
  assert from_url.drop(columns="importance").equals(table.drop(columns="importance"))
