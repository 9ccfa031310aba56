"""Sphinx configuration of the wae-jax docs: MyST Markdown pages, the API from docstrings.

Build: `pip install -e ".[docs]"` then `sphinx-build -W -b html docs /tmp/wae-docs`.
"""
import importlib
import os
import pkgutil
import re
import sys

from docutils import nodes
from sphinx import addnodes
from sphinx.util.docutils import SphinxDirective

# The package from this checkout (an editable install finds it too).
sys.path.insert(0, os.path.abspath(".."))
# Autodoc imports every module; JAX on the CPU, without probing for accelerators.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

project = "wae-jax"
author = "the wae-jax authors"
copyright = "the wae-jax authors"  # pylint: disable=redefined-builtin

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# The docstrings quote code in single backticks: a name that Sphinx knows becomes a link,
# anything else reads as code.
default_role = "py:obj"
autosummary_generate = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = "wae-jax"
html_static_path = []


# The package's docstrings are plain text, not reStructuredText: backticks quote code, an
# indented block is an example or a formula, and `|x|`, `**kwargs` or `a_` mean what they
# say. Rewritten here so that each reads as written and none breaks the -W build; a broken
# cross-reference or a module that no longer imports still does.
_ITEM = re.compile(r"^(- |\* |\d+\. )")


def _escape(text: str) -> str:
  text = text.replace("\\", "\\\\").replace("*", "\\*").replace("|", "\\|")
  return re.sub(r"(?<=\w)_(?=\W|$)", r"\\_", text)


def _inline(line: str) -> str:
  """Escapes RST markup outside backtick-quoted code; code touching a letter is split off
  with RST's escaped space, which renders as nothing."""
  parts = re.split(r"(`[^`]+`)", line)
  for i in range(0, len(parts), 2):
    parts[i] = _escape(parts[i])
  for i in range(1, len(parts), 2):
    if parts[i - 1] and re.search(r"[\w)]$", parts[i - 1]):
      parts[i - 1] += "\\ "
    if i + 1 < len(parts) and re.match(r"\w", parts[i + 1]):
      parts[i + 1] = "\\ " + parts[i + 1]
  return "".join(parts)


def plain_docstring(app, what, name, obj, options, lines):  # pylint: disable=unused-argument
  out, literal, item = [], False, False
  for line in lines:
    indented = line[:1].isspace() and line.strip()
    if not line.strip():
      out.append(line)
      item = item and not literal  # A blank line inside a list item's text keeps it open.
      continue
    if indented and not literal and not (item and out[-1].strip()):
      if out and out[-1].strip():
        out.append("")
      out += ["::", ""]
      literal = True
    elif not indented:
      if literal and out[-1].strip():
        out.append("")
      literal, item = False, bool(_ITEM.match(line))
    out.append(line if literal else _inline(line))
  lines[:] = out


class Parts(SphinxDirective):
  """`{parts} wae_jax.searches`: the package's modules, each linked to its API page with its
  docstring's first paragraph, so that a part added to the package is listed here without an
  edit to the pages."""
  required_arguments = 1

  def run(self):
    package = importlib.import_module(self.arguments[0])
    items = nodes.bullet_list()
    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
      if module.name.startswith("_") or module.name == "common":  # Shared code, not a part.
        continue
      name = f"{package.__name__}.{module.name}"
      doc = (importlib.import_module(name).__doc__ or "").strip().split("\n\n")[0]
      ref = addnodes.pending_xref("", nodes.literal(module.name, module.name), refdomain="py",
                                  reftype="mod", reftarget=name, refexplicit=True)
      items += nodes.list_item("", nodes.paragraph("", "", ref,
                                                   nodes.Text(": " + " ".join(doc.split()))))
    return [items]


def setup(app):
  app.connect("autodoc-process-docstring", plain_docstring)
  app.add_directive("parts", Parts)
