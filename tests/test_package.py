"""The project is a package whose modules import one way (no circles)."""
import ast
import os
import pathlib

from tests import helpers

ROOT = pathlib.Path(helpers.ROOT)  # as a Path: rglob, relative_to
PACKAGE = ROOT / 'dash_jax'


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _imports(path: pathlib.Path, modules: set) -> set:
  """dash_jax modules `path` imports, at any depth of the file: `from P
  import m` names module P.m where that is a module, else P's names."""
  out = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names = [f'{node.module}.{a.name}' if f'{node.module}.{a.name}' in modules
               else node.module for a in node.names]
    else:
      continue
    out |= {n for n in names if n in modules}
  return out


def import_graph() -> dict:
  files = {_module_name(p): p for p in PACKAGE.rglob('*.py')}
  modules = set(files)
  return {m: _imports(p, modules) - {m} for m, p in files.items()}


def find_cycle(graph: dict):
  state, stack = {}, []

  def visit(m):
    state[m] = 'open'
    stack.append(m)
    for d in sorted(graph.get(m, ())):
      if state.get(d) == 'open':
        return stack[stack.index(d):] + [d]
      if d not in state:
        found = visit(d)
        if found:
          return found
    state[m] = 'done'
    stack.pop()
    return None

  for m in sorted(graph):
    if m not in state:
      found = visit(m)
      if found:
        return found
  return None


def test_the_package_imports_one_way():
  graph = import_graph()
  assert 'dash_jax.protocol' in graph and 'dash_jax.launch.runs' in graph
  assert find_cycle(graph) is None, ' -> '.join(find_cycle(graph))


def _core_imports_of_launch(graph) -> list[str]:
  """'core -> launch' for each core module that imports the launch layer
  (dash_jax/__init__.py's run() is the one door from the core's package
  to a launch, imported lazily)."""
  return [f'{m} -> {d}' for m, deps in sorted(graph.items())
          if not m.startswith('dash_jax.launch') and m != 'dash_jax'
          for d in sorted(deps) if d.startswith('dash_jax.launch')]


def test_the_core_never_imports_the_launch_layer_nor_ml_collections():
  graph = import_graph()
  assert _core_imports_of_launch(graph) == []
  core = [p for p in PACKAGE.rglob('*.py') if 'launch' not in p.relative_to(PACKAGE).parts]
  assert len(core) > 20
  users = [str(p.relative_to(ROOT)) for p in core
           if 'ml_collections' in p.read_text() or 'ConfigDict' in p.read_text()]
  assert users == []


def test_the_layer_check_finds_a_core_module_importing_the_launch():
  graph = {'dash_jax.train': {'dash_jax.launch.config'}, 'dash_jax.launch.runs': {'dash_jax.train'}}
  assert _core_imports_of_launch(graph) == ['dash_jax.train -> dash_jax.launch.config']


def test_the_cycle_finder_finds_a_cycle():
  assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
  assert find_cycle({'a': {'b'}, 'b': set()}) is None


def test_no_file_edits_sys_path():
  offenders = []
  for path in ROOT.rglob('*.py'):
    if '.git' in path.parts or path.name == os.path.basename(__file__):
      continue
    if 'sys.path' in path.read_text():
      offenders.append(str(path.relative_to(ROOT)))
  assert offenders == []



MAX_FUNCTION_LINES = 60  # a function a reader takes in at once


def functions(package):
  """(path relative to the package's folder, function node) of every def
  under `package`: what the shape checks below read."""
  for path in sorted(package.rglob('*.py')):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        yield path.relative_to(package.parent), node


def long_functions(package=PACKAGE, limit=MAX_FUNCTION_LINES) -> list[str]:
  """'path:line name (N lines)' of every function under `package` longer
  than `limit` lines (def line to last line, docstring included)."""
  return [f'{path}:{fn.lineno} {fn.name} ({fn.end_lineno - fn.lineno + 1} lines)'
          for path, fn in functions(package) if fn.end_lineno - fn.lineno + 1 > limit]


def test_no_function_is_over_60_lines():
  assert long_functions() == []


def test_the_length_check_finds_a_long_function(tmp_path):
  (tmp_path / 'pkg').mkdir()
  body = ''.join(f'  x{i} = {i}\n' for i in range(MAX_FUNCTION_LINES))
  (tmp_path / 'pkg' / 'long.py').write_text(f'def short():\n  pass\n\n\ndef f():\n{body}')
  assert long_functions(tmp_path / 'pkg') == [
      f'pkg/long.py:5 f ({MAX_FUNCTION_LINES + 1} lines)']


MAX_PARAMETERS = 7  # more, and a call site can no longer be read without the signature


def parameter_count(args: ast.arguments) -> int:
  """Positional-only, ordinary and keyword-only parameters, *args and
  **kwargs; a method's self or cls is not counted."""
  names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
  count = len(names) + (args.vararg is not None) + (args.kwarg is not None)
  return count - (bool(names) and names[0] in ('self', 'cls'))


def many_parameter_functions(package=PACKAGE, limit=MAX_PARAMETERS) -> list[str]:
  """'path:line name (N parameters)' of every function under `package`
  taking more than `limit` parameters."""
  return [f'{path}:{fn.lineno} {fn.name} ({parameter_count(fn.args)} parameters)'
          for path, fn in functions(package) if parameter_count(fn.args) > limit]


def test_no_function_takes_over_7_parameters():
  assert many_parameter_functions() == []


def test_the_parameter_check_finds_a_function_with_many_parameters(tmp_path):
  (tmp_path / 'pkg').mkdir()
  (tmp_path / 'pkg' / 'wide.py').write_text(
      'def f(a, b, /, c, *args, d, **kw):\n  pass\n\n\n'
      'class C:\n  def m(self, a, b, c, d, e, f, g):\n    pass\n\n'
      '  def wide(self, a, b, c, d, e, f, g, h):\n    pass\n')
  assert many_parameter_functions(tmp_path / 'pkg', limit=5) == [
      'pkg/wide.py:1 f (6 parameters)', 'pkg/wide.py:6 m (7 parameters)',
      'pkg/wide.py:9 wide (8 parameters)']
  assert many_parameter_functions(tmp_path / 'pkg') == ['pkg/wide.py:9 wide (8 parameters)']


def unnamed_returns(package=PACKAGE, limit=3) -> list[str]:
  """'path:line name (N values)' of every `return a, b, c, d, ...` of more
  than `limit` values under `package`: such a return is a NamedTuple or a
  dataclass. A custom_vjp backward rule (`*_bwd`) is exempt: JAX wants one
  cotangent per input, as a plain tuple."""
  return [f'{path}:{node.lineno} {fn.name} ({len(node.value.elts)} values)'
          for path, fn in functions(package) if not fn.name.endswith('_bwd')
          for node in ast.walk(fn)
          if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple)
          and len(node.value.elts) > limit]


def test_no_function_returns_more_than_3_unnamed_values():
  assert unnamed_returns() == []


def test_the_return_check_finds_an_unnamed_return(tmp_path):
  (tmp_path / 'pkg').mkdir()
  (tmp_path / 'pkg' / 'ret.py').write_text(
      'def f():\n  return 1, 2, 3, 4\n\n\ndef g():\n  return 1, 2, 3\n\n\n'
      'def h_bwd(res, g):\n  return g, g, g, g\n')
  assert unnamed_returns(tmp_path / 'pkg') == ['pkg/ret.py:2 f (4 values)']
