"""What README's Layout section promises: modules under 400 lines, and no import cycle among
the package's module-level imports (a function-level import is a deliberate lazy one)."""
import ast
import pathlib

PACKAGE = pathlib.Path(__file__).parent.parent / "wae_jax"


def _modules():
  """{dotted name: path} of every module of the package."""
  return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
          for p in PACKAGE.rglob("*.py")}


def test_every_module_is_under_400_lines():
  long = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
  assert {n: k for n, k in long.items() if k >= 400} == {}


def test_no_import_cycle():
  modules = _modules()
  graph = {}
  for name, path in modules.items():
    deps = set()
    for node in ast.parse(path.read_text()).body:
      if isinstance(node, ast.Import):
        deps |= {a.name for a in node.names}
      elif isinstance(node, ast.ImportFrom) and node.module:
        deps |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                 else node.module for a in node.names}
    graph[name] = {d for d in deps if d in modules and d != name}
  done, path = set(), []

  def visit(name):
    assert name not in path, " -> ".join(path[path.index(name):] + [name])
    if name not in done:
      path.append(name)
      for dep in sorted(graph[name]):
        visit(dep)
      path.pop()
      done.add(name)

  for name in sorted(graph):
    visit(name)
  assert "wae_jax.runner" in graph and graph["wae_jax.runner"]  # The walk saw real imports.
