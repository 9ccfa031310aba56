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
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# The docstrings quote code in single backticks: a name that Sphinx knows becomes a link,
# anything else reads as code.
default_role = "py:obj"
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
  text = text.replace("`", "\\`")  # A lone backtick (a pair is code, split off before).
  return re.sub(r"(?<=\w)_(?=\W|$)", r"\\_", text)


def _inline(line: str) -> str:
  """Escapes RST markup outside backtick-quoted code; code touching a letter is split off
  with RST's escaped space, which renders as nothing."""
  parts = re.split(r"(`[^`\s](?:[^`]*[^`\s])?`)", line)
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


# The API reference: a page per module of these packages, written at each build into _api/
# (not committed), so a module added to the package gets its page without an edit here.
API_PACKAGES = ("wae_jax", "wae_jax.launch")


def _modules(package_name: str, recursive: bool) -> list[str]:
  package = importlib.import_module(package_name)
  walk = pkgutil.walk_packages if recursive else pkgutil.iter_modules
  return sorted(m.name if recursive else f"{package_name}.{m.name}"
                for m in walk(package.__path__, prefix=f"{package_name}." if recursive else ""))


def api_modules() -> list[str]:
  names = set()
  for package in API_PACKAGES:
    names |= {package, *_modules(package, recursive=True)}
  return sorted(names)


def write_api_pages(app):
  out = os.path.join(app.srcdir, "_api")
  os.makedirs(out, exist_ok=True)
  pages = {f"{name}.rst": f"{name}\n{'=' * len(name)}\n\n.. automodule:: {name}\n"
                          "   :members:\n   :show-inheritance:\n" for name in api_modules()}
  for stale in set(os.listdir(out)) - set(pages):
    os.remove(os.path.join(out, stale))
  for name, text in pages.items():
    path = os.path.join(out, name)
    if not os.path.exists(path) or open(path).read() != text:  # Unchanged: not rebuilt.
      with open(path, "w") as f:
        f.write(text)


def _summary(name: str) -> str:
  doc = (importlib.import_module(name).__doc__ or "").strip().split("\n\n")[0]
  return " ".join(doc.split())


class Modules(SphinxDirective):
  """`{modules} wae_jax.searches`: the package's modules (a part each), linked to their API
  pages with their docstrings' first paragraphs; no argument: every module of the API. A
  module added to a package is listed without an edit to the pages."""
  optional_arguments = 1

  def run(self):
    if self.arguments:
      try:
        importlib.import_module(self.arguments[0])
      except ModuleNotFoundError as e:  # A registry not in this checkout: nothing to list.
        if e.name != self.arguments[0]:
          raise
        return []
      names = [n for n in _modules(self.arguments[0], recursive=False)
               if not n.rsplit(".", 1)[1].startswith("_")
               and not n.endswith(".common")]  # Shared code, not a part.
    else:
      names = api_modules()
    items = nodes.bullet_list()
    for name in names:
      label = name.rsplit(".", 1)[1] if self.arguments else name
      ref = addnodes.pending_xref("", nodes.literal(label, label), refdomain="py",
                                  reftype="mod", reftarget=name, refexplicit=True)
      text = [nodes.literal(part[1:-1], part[1:-1]) if part.startswith("`") else
              nodes.Text(part) for part in re.split(r"(`[^`]+`)", ": " + _summary(name)) if part]
      items += nodes.list_item("", nodes.paragraph("", "", ref, *text))
    return [items]


def setup(app):
  app.connect("autodoc-process-docstring", plain_docstring)
  app.connect("builder-inited", write_api_pages)
  app.add_directive("modules", Modules)
