"""Services a template can serve, and how to load one.

A service is a module with three functions:

- ``load(startup_ms)``: import what the service needs; runs once in the
  template. ``startup_ms`` is an extra, simulated import cost.
- ``warm(scratch_dir)``: exercise the service once in the template so
  that lazily loaded code is in the heap every worker inherits.
- ``prepare(session)``: in a bound worker, after the privilege drop and
  before the FIFOs are open, do the per-session set-up that needs no
  client byte (parse arguments, read the user's configuration); return
  a callable that serves the session on fds 0, 1 and 2 and returns the
  exit status. Preparing while the client is still being handed the
  worker takes that time out of the connection time.
"""

import importlib
import time

SERVICES = {
    'brz': 'prefork_worker.services.brz',
    'test': 'prefork_worker.services.testservice',
}


def load(name, startup_ms, home):
    """Import service ``name``, run its ``load``; return the module.

    ``home`` is the template's empty home directory. Any exception means
    the import failed.
    """
    module = importlib.import_module(SERVICES[name])
    if startup_ms:
        time.sleep(startup_ms / 1000.0)
    module.load(home)
    return module
