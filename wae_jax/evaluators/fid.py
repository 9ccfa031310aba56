"""FID: Inception pool3 statistics of prior samples against the training split's.

Needs pytorch-fid's Inception weights (`inception_params` from `evaluation.load_inception`);
without them it reports nothing. The weights' sha256 goes beside the number, so FIDs from
other weights never mix.
"""

from absl import logging

from wae_jax import evaluators
from wae_jax import fid
from wae_jax.evaluators.common import Context


@evaluators.register("fid", metrics=(evaluators.Metric("fid", table_rank=0),),
                     fields=("inception_sha256",))
def evaluate(context: Context):
  if context.options.get("inception_params") is None:
    return {}
  variables, sha256 = context.options["inception_params"]
  logging.info("FID: Inception features of %d samples (and once of the training split).",
               context.num_samples)
  return {"fid": fid.inception_fid(context.samples, context.dataset,
                                   context.options["cache_dir"], variables, sha256,
                                   context.inference.mesh),
          "inception_sha256": sha256}
