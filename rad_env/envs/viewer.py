"""A small window that shows frames and reads the keyboard (pygame, optional)."""

from __future__ import annotations

import numpy as np


class FrameViewer:
    """Shows uint8 RGB frames scaled up in a pygame window."""

    def __init__(self, title: str = "RAD dream", scale: int = 6) -> None:
        try:
            import pygame
        except ImportError as exc:
            raise ImportError("render_mode='human' and the interactive player need pygame and a display: "
                              "pip install pygame (or use render_mode='rgb_array')") from exc
        self.pygame = pygame
        pygame.init()
        self.scale = scale
        self.title = title
        self.screen = None

    def show(self, frame: np.ndarray) -> None:
        pygame = self.pygame
        h, w = frame.shape[:2]
        if self.screen is None:
            try:
                self.screen = pygame.display.set_mode((w * self.scale, h * self.scale))
            except pygame.error as exc:
                raise RuntimeError(f"cannot open a window (no display?): {exc}") from exc
            pygame.display.set_caption(self.title)
        surface = pygame.surfarray.make_surface(np.ascontiguousarray(frame.transpose(1, 0, 2)))
        self.screen.blit(pygame.transform.scale(surface, self.screen.get_size()), (0, 0))
        pygame.display.flip()
        pygame.event.pump()

    def pressed_keys(self) -> set[str]:
        """Names of keys pressed since the last call (e.g. 'up', 'left', 'escape')."""
        pygame = self.pygame
        keys = set()
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                keys.add("escape")
            elif event.type == pygame.KEYDOWN:
                keys.add(pygame.key.name(event.key))
        return keys

    def close(self) -> None:
        self.pygame.display.quit()
        self.screen = None
