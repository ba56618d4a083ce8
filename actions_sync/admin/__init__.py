"""Admin settings (SPEC S12): the model, the store-backed commands, the live reader.

model.py     AdminSettings (typed, defaults, validation), parse_value
snapshot.py  the compacted `actions.settings` topic: encode, publish
live.py      LiveSettings: what agents read, kept current in the background
commands.py  `settings show|set` (CLI entry points `show`, `set_value`)
"""

from actions_sync.admin.commands import set_value, show
from actions_sync.admin.live import LiveSettings
from actions_sync.admin.model import AdminSettings

__all__ = ["AdminSettings", "LiveSettings", "set_value", "show"]
