"""Drawing the pendulum with numpy only (``rgb_array``); ``human`` shows it with pygame."""

from __future__ import annotations

import math

import numpy as np

SIZE_PX = 500
ROD_LENGTH = 0.38  # fraction of the frame
ROD_HALF_WIDTH_PX = 9.0
PIVOT_RADIUS_PX = 12.0
BACKGROUND = np.array([255, 255, 255], dtype=np.uint8)
ROD_COLOUR = np.array([204, 77, 77], dtype=np.uint8)
PIVOT_COLOUR = np.array([40, 40, 40], dtype=np.uint8)
ACTION_COLOUR = np.array([60, 120, 200], dtype=np.uint8)


class PendulumRenderer:
    """Rasterises the rod (θ = 0 points up) and an action bar into a (500, 500, 3) uint8 image."""

    def __init__(self, human: bool = False, fps: int = 20) -> None:
        ys, xs = np.mgrid[0:SIZE_PX, 0:SIZE_PX].astype(np.float32)
        self._xs, self._ys = xs, ys
        self._centre = SIZE_PX / 2.0
        self._human = human
        self._fps = fps
        self._screen = None
        self._clock = None

    def draw(self, theta: float, u: float | None, max_action: float) -> np.ndarray | None:
        """Draw the pendulum at ``theta`` [rad] with the last action ``u`` as an arc.

        Returns:
            uint8 (SIZE_PX, SIZE_PX, 3) RGB frame, or None in human mode (shown in a window).
        """
        img = np.empty((SIZE_PX, SIZE_PX, 3), dtype=np.uint8)
        img[:] = BACKGROUND
        c = self._centre
        length = ROD_LENGTH * SIZE_PX
        ex, ey = c + length * math.sin(theta), c - length * math.cos(theta)
        # distance of each pixel to the segment pivot → tip
        dx, dy = ex - c, ey - c
        t = ((self._xs - c) * dx + (self._ys - c) * dy) / (dx * dx + dy * dy)
        np.clip(t, 0.0, 1.0, out=t)
        dist2 = (self._xs - (c + t * dx)) ** 2 + (self._ys - (c + t * dy)) ** 2
        img[dist2 <= ROD_HALF_WIDTH_PX**2] = ROD_COLOUR
        img[(self._xs - c) ** 2 + (self._ys - c) ** 2 <= PIVOT_RADIUS_PX**2] = PIVOT_COLOUR
        if u is not None and max_action > 0:
            width = int(abs(u) / max_action * (SIZE_PX * 0.4))
            x0 = int(c) if u >= 0 else int(c) - width
            img[SIZE_PX - 30:SIZE_PX - 18, x0:x0 + width] = ACTION_COLOUR
        if not self._human:
            return img
        self._show(img)
        return None

    def _show(self, img: np.ndarray) -> None:
        try:
            import pygame
        except ImportError as e:
            from gymnasium.error import DependencyNotInstalled

            raise DependencyNotInstalled(
                'render_mode="human" needs pygame: pip install "gym-raas-mqtt[render]"'
            ) from e
        if self._screen is None:
            pygame.init()
            pygame.display.init()
            self._screen = pygame.display.set_mode((SIZE_PX, SIZE_PX))
            self._clock = pygame.time.Clock()
        pygame.event.pump()
        surf = pygame.surfarray.make_surface(np.transpose(img, (1, 0, 2)))
        self._screen.blit(surf, (0, 0))
        pygame.display.flip()
        self._clock.tick(self._fps)

    def close(self) -> None:
        """Close the pygame window, if one was opened."""
        if self._screen is not None:
            import pygame

            pygame.display.quit()
            pygame.quit()
            self._screen = None
