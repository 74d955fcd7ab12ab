"""``python -m polishplugin <command>``: the same as the ``polishplugin`` console script."""

from polishplugin.programs._cli import run

run()
