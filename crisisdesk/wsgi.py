"""The WSGI application (gunicorn, runserver and `crisisdesk up` load it from here)."""

import gc
import os

from django.core.wsgi import get_wsgi_application


def settle_heap() -> None:
    """Move everything built while starting (Django, the URL conf, the apps' modules)
    out of the garbage collector's sight.

    Those objects live as long as the process, yet every full collection walked all of
    them: on a page that builds a few thousand rows (the war room of a long crisis) one
    such walk added 50-70 ms to one request in ten (bench/war_room.py: p95 117 ms
    before, 70 ms after, p50 unchanged). Freezing them after start-up is what the
    Python documentation advises for pre-fork servers too (gc.freeze), as it also keeps
    forked workers' memory shared. Cyclic garbage made by requests is still collected.
    """
    gc.collect()
    gc.freeze()


os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crisisdesk.settings")
application = get_wsgi_application()
settle_heap()
