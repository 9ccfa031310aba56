"""Held-out reconstruction cost and MMD(Q_Z, P_Z): the paper's test-set numbers."""

from wae_jax import evaluators
from wae_jax.evaluators.common import Context


@evaluators.register("heldout", metrics=(
    evaluators.Metric("recon"),  # Never the default rank: a small lambda always wins it.
    evaluators.Metric("recon_sq_l2"),  # Unweighted, comparable across recon.scale.
    evaluators.Metric("mmd_heldout"),
    evaluators.Metric("mmd_heldout_se", higher_is_better=None)))  # Its standard error.
def heldout(context: Context):
  _, costs, sq_l2, _ = context.heldout
  mmd, se = context.heldout_mmd()
  return {"recon": float(context.c.recon.scale * costs.mean()),
          "recon_sq_l2": float(sq_l2.mean()), "mmd_heldout": mmd, "mmd_heldout_se": se}
