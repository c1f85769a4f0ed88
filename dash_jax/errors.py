"""The one exception type a user is meant to see.

`launch.py` prints a UserError as a single line and exits non-zero; anything
else is a bug and keeps its traceback.
"""


class UserError(Exception):
  """Bad input (config, data, checkpoint): the message names problem and fix."""
