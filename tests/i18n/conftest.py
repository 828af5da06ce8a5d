from __future__ import annotations

from tests.warroom.conftest import (  # noqa: F401 - the war room's desk, shared
    broker_calls,
    comms_desk,
    desk,
    make_playbook,
    manager,
    responder,
    team,
)
