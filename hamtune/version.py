"""hamtune's version, in a module of its own so that any package can read it without a cycle.

0.2.0 is the package re-layout (one sub-package per concept): experiments started by an earlier
version name modules in their pickled Ray state that no longer exist, so `--resume` refuses them.
"""

__version__ = "0.2.0"
#: The first version whose module paths an experiment's pickled Ray Tune state may name.
LAYOUT_VERSION = "0.2.0"
