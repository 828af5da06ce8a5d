"""The embedded broker never hands a worker a half-written message."""

from __future__ import annotations

import importlib

from kombu import Connection
from kombu.utils.json import dumps as real_dumps

TRANSPORT = "crisisdesk.broker:Transport"


def _options(tmp_path):
    folder = tmp_path / "queue"
    folder.mkdir()
    return folder, {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "processed_folder": str(tmp_path / "processed"),
        "store_processed": False,
    }


def test_a_worker_polling_while_a_message_is_written_never_reads_it_half_done(
    tmp_path, monkeypatch
):
    """A worker's poll lands at the worst moment: while the message is being serialised
    and written. It must find nothing (and take the message on its next poll)."""
    module_name, class_name = TRANSPORT.split(":")
    module = importlib.import_module(module_name)
    folder, options = _options(tmp_path)
    with (
        Connection(transport=TRANSPORT, transport_options=options) as w,
        Connection(transport=TRANSPORT, transport_options=options) as r,
    ):
        writer, reader = w.default_channel, r.default_channel
        seen_mid_write = []

        def dumps_while_polled(payload):
            try:
                seen_mid_write.append(reader._get("jobs"))
            except Exception as exc:  # noqa: BLE001 - Empty is the right answer here
                seen_mid_write.append(type(exc).__name__)
            return real_dumps(payload)

        monkeypatch.setattr(module, "dumps", dumps_while_polled)
        writer._put("jobs", {"text": "Ügyféladatok"})
        monkeypatch.undo()
        assert seen_mid_write == ["Empty"]
        assert reader._get("jobs") == {"text": "Ügyféladatok"}
    assert list(folder.iterdir()) == []


def test_the_desk_uses_it_for_the_embedded_broker_only(settings):
    from crisisdesk.celery import app

    scheme = settings.CELERY_BROKER_URL.split("://", 1)[0]
    with app.connection_for_write() as connection:
        module = type(connection.transport).__module__
    expected = {
        "filesystem": "crisisdesk.broker",
        "redis": "kombu.transport.redis",
        "amqp": "kombu.transport.pyamqp",
    }
    assert module == expected[scheme]


def test_connecting_to_the_folder_logs_no_warning_about_a_missing_hostname(tmp_path, caplog):
    """A folder has no host: kombu's virtual default ("localhost") made every connection
    warn "No hostname was supplied", noise in a new user's `crisisdesk up` output."""
    _folder, options = _options(tmp_path)
    # The desk's URL is "filesystem://" (no host), with our transport in its place.
    with (
        caplog.at_level("WARNING", logger="kombu"),
        Connection("filesystem://", transport=TRANSPORT, transport_options=options) as connection,
    ):
        assert not connection.hostname
        connection.info()
        connection.default_channel._put("jobs", {"n": 1})
    assert [r.getMessage() for r in caplog.records if r.name.startswith("kombu")] == []
