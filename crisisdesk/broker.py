"""The embedded broker: kombu's filesystem transport, with every message written atomically.

kombu's own transport creates the message file and then writes into it; a
worker polling the folder can take the file in between and read it empty,
which stops the worker (json "Expecting value"). Here the message is written
under a name the reader ignores and renamed into place when complete.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # "partition('.')" of this name is never "<queue>.msg": the reader skips it.
        partial = os.path.join(self.data_folder_out, f"partial-{uuid.uuid4()}.tmp")
        try:
            with open(partial, "wb") as f:
                f.write(dumps(payload).encode())
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel

    @property
    def default_connection_params(self):
        # The virtual transports' default names a host, "localhost", which kombu then
        # warns about ("No hostname was supplied") on every connection: a folder has none.
        return {"port": self.default_port}
