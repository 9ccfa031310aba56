"""Library noise off the console: the "Event loop is closed" tracebacks TensorStore prints
after a failed restore are dropped, every other traceback and line kept."""
import io
import sys
import threading

from absl import logging

from wae_jax import noise

NOISE = ("Traceback (most recent call last):\n",
         '  File "asyncio/base_events.py", line 806, in call_soon_threadsafe\n',
         "    self._check_closed()\n", "RuntimeError: Event loop is closed", "\n")
OTHER = ("Traceback (most recent call last):\n", '  File "x.py", line 1, in f\n',
         "ValueError: a real one\n")


def written(*writers, debug=False):
  out = io.StringIO()
  stream = noise._Filter(out)  # pylint: disable=protected-access
  logging.set_verbosity(logging.DEBUG if debug else logging.INFO)
  try:
    threads = [threading.Thread(target=lambda w=w: [stream.write(t) for t in w])
               for w in writers]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
  finally:
    logging.set_verbosity(logging.INFO)
  return out.getvalue()


def test_the_closed_loop_tracebacks_are_dropped_and_others_kept():
  text = written(NOISE, ("a line\n",), NOISE * 3, OTHER, NOISE)
  assert "Event loop" not in text and "call_soon" not in text
  assert "a line\n" in text and "".join(OTHER) in text


def test_debug_verbosity_shows_them():
  assert written(NOISE, debug=True) == "".join(NOISE)


def test_quiet_filters_stderr_once():
  before = sys.stderr
  try:
    noise.quiet()
    noise.quiet()
    assert isinstance(sys.stderr, noise._Filter)  # pylint: disable=protected-access
    assert sys.stderr.stream is before
  finally:
    sys.stderr = before
