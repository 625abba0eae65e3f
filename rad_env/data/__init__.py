"""Episode storage: HDF5 schema, writer, reader and training windows."""

from .actions import ACTION_SETS, MEMORY_MAZE, MINECRAFT, ActionSet, get_action_set
from .dataset import WindowDataset, split_episodes
from .reader import EpisodeRef, EpisodeStore
from .schema import COLLECTOR_VERSION, SCHEMA_VERSION, Episode, FileMeta, SchemaError, action_space_json
from .writer import EpisodeWriter, write_episodes

__all__ = [
    "ACTION_SETS", "MEMORY_MAZE", "MINECRAFT", "ActionSet", "get_action_set", "WindowDataset",
    "split_episodes", "EpisodeRef", "EpisodeStore", "COLLECTOR_VERSION", "SCHEMA_VERSION", "Episode",
    "FileMeta", "SchemaError", "action_space_json", "EpisodeWriter", "write_episodes",
]
