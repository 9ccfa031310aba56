"""FID: Inception pool3 statistics of prior samples against the training split's, and of as
many held-out images (`fid_data`: the floor a model can reach at this sample count).

Needs pytorch-fid's Inception weights (`inception_params` from `evaluation.load_inception`);
without them it reports nothing. Its protocol (network, weights' sha256, preprocessing,
sample count, reference split and size) goes beside the number, so FIDs measured otherwise
never mix.
"""

import functools

from absl import logging

from wae_jax import evaluators
from wae_jax import fid
from wae_jax.evaluators.common import Context


@evaluators.register("fid", metrics=(
    evaluators.Metric("fid", table_rank=0, data="fid_data", per_sampler=True),
    evaluators.Metric("fid_data", higher_is_better=None)), fields=("fid_protocol",))
def evaluate(context: Context):
  if context.options.get("inception_params") is None:
    return {}
  variables, sha256 = context.options["inception_params"]
  logging.info("FID: Inception features of %d samples and %d held-out images (and once of "
               "the training split).", context.num_samples, len(context.real))
  distance = functools.partial(fid.inception_fid, dataset=context.dataset,
                               cache_dir=context.options["cache_dir"], variables=variables,
                               weights_sha256=sha256, mesh=context.inference.mesh)
  value, protocol = distance(context.samples)
  out = {"fid": value, "fid_protocol": {**protocol, **context.sampler.protocol}}
  if context.with_data:
    out["fid_data"] = distance(context.real)[0]
  return out
