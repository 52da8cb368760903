"""Cameras for the converters' fixtures."""

from __future__ import annotations

import numpy as np


def look_at(eye, target) -> np.ndarray:
    """Camera-to-world in the OpenGL convention (nerfstudio's), world z up."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, np.cross(right, forward), -forward, eye
    return pose
