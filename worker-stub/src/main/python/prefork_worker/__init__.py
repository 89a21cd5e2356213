"""The prefork template and worker agent.

The template (``prefork_template.py``) imports a service once, warms it,
and forks parked workers on request from preforkd. A worker binds to one
user, drops its privileges irrevocably, opens its FIFOs and serves exactly
one session. See ``protocol/PROTOCOL.md`` for the template protocol.
"""
