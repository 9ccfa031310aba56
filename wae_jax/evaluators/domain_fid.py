"""Domain FID: the Frechet distance of a classifier trained on the dataset's own labels.

Not an Inception FID: a sample-quality score for small grey datasets, with the classifier's
test accuracy and the protocol beside it, and `domain_fid_data`, the same distance for as
many held-out images (the floor a model can reach at this sample count). Datasets without
labels (CelebA) get none.
"""

from absl import logging

from wae_jax import classifier
from wae_jax import evaluators
from wae_jax import fid
from wae_jax.evaluators.common import Context


@evaluators.register("domain_fid", metrics=(
    evaluators.Metric("domain_fid", table_rank=1, data="domain_fid_data", per_sampler=True),
    evaluators.Metric("domain_fid_classifier_acc", higher_is_better=True),
    evaluators.Metric("domain_fid_data", higher_is_better=None)), fields=("domain_fid_protocol",))
def evaluate(context: Context):
  ds, cache_dir = context.dataset, context.options["cache_dir"]
  if ds.train.labels is None:
    logging.info("No domain FID: %s has no class labels.", ds.name)
    return {}
  # Says so when it trains (once per dataset); at every later evaluation it loads silently.
  clf = classifier.get_or_train(
      ds, cache_dir, steps=context.options.get("classifier_steps", classifier.STEPS))
  value, protocol = fid.domain_fid(context.samples, ds, cache_dir, clf)
  out = {"domain_fid": value, "domain_fid_protocol": {**protocol, **context.sampler.protocol}}
  if context.with_data:
    out.update(domain_fid_classifier_acc=clf.test_accuracy,
               domain_fid_data=fid.domain_fid(context.real, ds, cache_dir, clf)[0])
  return out
