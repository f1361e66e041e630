"""Imported by the engine's fork server when it starts (``set_forkserver_preload``), and
only for this effect: the kernel kills the fork server when the driver, its parent, dies.

Its pool workers arm the same signal against the fork server (``die_with_driver``), so a
killed driver takes the fork server and every worker with it (see ``engine.leftovers``).
If the driver died before this ran, the fork server's pipe is already closed and it exits.
"""

from reasonmill.engine.leftovers import die_with_parent

die_with_parent()
