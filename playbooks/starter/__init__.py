"""The starter library: roles, stakeholder groups and five complete playbooks.

Written from practitioners' guidance on online-reputation crises (see the
README's "Starter library"): act within the hour, one voice, never delete
criticism, offer a private channel, apologise where at fault, follow up with
what went wrong and rewrite the protocols.
"""

from pathlib import Path

STARTER_FILE = Path(__file__).with_name("starter.yaml")
INJECTS_FILE = Path(__file__).with_name("injects.yaml")
