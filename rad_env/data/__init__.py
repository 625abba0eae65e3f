"""Episode storage: HDF5 schema, writer, reader, segments and training windows."""

from .actions import (ACTION_SETS, MEMORY_MAZE, MINECRAFT, MINECRAFT_WALK, ActionSet, get_action_set,
                      walk_action_ids, walk_action_vector)
from .dataset import WindowDataset, split_episodes
from .reader import CorruptEpisodeError, EpisodeRef, EpisodeStore
from .schema import COLLECTOR_VERSION, SCHEMA_VERSION, Episode, FileMeta, SchemaError, action_space_json
from .segment import Batch, Segment, read_segment
from .streams import EpisodeStreams
from .writer import EpisodeWriter, write_episodes

__all__ = [
    "ACTION_SETS", "MEMORY_MAZE", "MINECRAFT", "MINECRAFT_WALK", "ActionSet", "get_action_set",
    "walk_action_ids", "walk_action_vector", "WindowDataset", "EpisodeStreams",
    "split_episodes", "CorruptEpisodeError", "EpisodeRef", "EpisodeStore", "COLLECTOR_VERSION",
    "SCHEMA_VERSION", "Episode", "FileMeta", "SchemaError", "action_space_json", "Batch", "Segment",
    "read_segment", "EpisodeWriter", "write_episodes",
]
