"""pytorch-fid's weights file read without torch: every storage type and layout, no code run."""
import os
import pickle
import zipfile

import numpy as np
import pytest

from wae_jax import inception_weights

TESTDATA = os.path.join(os.path.dirname(__file__), "testdata")
# Written by torch 2.14.1 (state_dict_zip.pth with torch.save's default, state_dict_legacy.pth
# with _use_new_zipfile_serialization=False) from:
#   base = torch.arange(12, dtype=torch.float32) / 4
#   {"conv.weight": base.view(3, 4), "conv.weight_t": base.view(3, 4).t(),
#    "bn.running_mean": base[2:8], "bn.num_batches_tracked": torch.tensor(7),
#    "half": torch.tensor([1.5, -2.0], dtype=torch.float16),
#    "param": torch.nn.Parameter(torch.tensor([[1.0, 2.0]]))}
BASE = np.arange(12, dtype=np.float32) / 4



@pytest.mark.parametrize("name", ["state_dict_zip.pth", "state_dict_legacy.pth"])
def test_read_state_dict_without_torch(name):
  sd = inception_weights.read_state_dict(os.path.join(TESTDATA, name))
  assert sorted(sd) == sorted(["conv.weight", "conv.weight_t", "bn.running_mean",
                               "bn.num_batches_tracked", "half", "param"])
  np.testing.assert_array_equal(sd["conv.weight"], BASE.reshape(3, 4))
  np.testing.assert_array_equal(sd["conv.weight_t"], BASE.reshape(3, 4).T)
  np.testing.assert_array_equal(sd["bn.running_mean"], BASE[2:8])
  assert sd["bn.num_batches_tracked"].dtype == np.int64 and sd["bn.num_batches_tracked"] == 7
  assert sd["half"].dtype == np.float16 and sd["half"].tolist() == [1.5, -2.0]
  np.testing.assert_array_equal(sd["param"], [[1.0, 2.0]])


def test_read_state_dict_refuses_code(tmp_path):
  evil = pickle.dumps({"conv.weight": os.system})
  zipped = tmp_path / "evil.pth"
  with zipfile.ZipFile(zipped, "w") as z:
    z.writestr("archive/data.pkl", evil)
  plain = tmp_path / "evil_legacy.pth"
  plain.write_bytes(evil)
  for path in (zipped, plain):
    with pytest.raises(inception_weights.WeightsError, match="not a readable torch state dict"):
      inception_weights.read_state_dict(str(path))
