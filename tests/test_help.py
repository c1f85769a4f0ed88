"""`dash-jax --help` / `python launch.py --help`: exit 0 and every config
field with its default and one-line meaning, grouped science / execution,
read from configs/default.py's own comments."""

from dash_jax.launch import config as config_lib
from dash_jax.launch import fieldhelp
from tests import helpers



def test_help_exits_0_and_lists_learning_rate(launch_in_process):
  code, out, err = launch_in_process('--help')
  assert code == 0, err
  line = next(l for l in out.splitlines() if l.startswith('  --config.learning_rate='))
  assert line.split()[0] == '--config.learning_rate=0.05'
  assert line.split(None, 1)[1].strip()  # and what it means


def test_launch_py_help_in_a_process():
  out = helpers.run_launch('--help', timeout=120)
  assert out.returncode == 0, out.stderr
  assert '--config.learning_rate=0.05' in out.stdout and out.stderr == ''


def test_every_field_of_default_py_has_a_help_line():
  with open(config_lib.DEFAULT_CONFIG) as f:
    meaning = fieldhelp.meanings(f.read())
  fields = config_lib.defaults()
  assert set(meaning) == set(fields)
  missing = sorted(f for f in fields if len(meaning[f].split()) < 2)  # not '# Model.'
  assert not missing, f'configs/default.py: give these fields a comment: {missing}'
  text = fieldhelp.help_text()
  science, execution = text.split('\nExecution fields')
  for field, value in fields.items():
    head = f'--config.{field}={fieldhelp._default_text(value)}'
    lines = [l for l in text.splitlines() if l.split()[:1] == [head]]
    assert len(lines) == 1, field
    assert meaning[field] in lines[0] and '\n' not in meaning[field]
    assert head in (execution if field in config_lib.EXECUTION_FIELDS else science), field


def test_meanings_parse_comments_generally():
  """Trailing comments and their indented continuations, a block above a
  field without one, a section heading skipped, the first sentence only."""
  source = '''
def get_config():
  config = ml_collections.ConfigDict()
  # Things.
  config.a = 1  # the a; '#' in a comment
  config.b = 'x#y'  # the b,
                    # continued. More here.

  # Heading:
  # what e is,
  # over two lines.
  config.e = (1,
              2)

  # What f is. Not this.
  config.f = 4
  config.g = 5
  return config
'''
  assert fieldhelp.meanings(source) == {
      'a': "the a; '#' in a comment", 'b': 'the b, continued.',
      'e': 'what e is, over two lines.', 'f': 'What f is.', 'g': ''}
